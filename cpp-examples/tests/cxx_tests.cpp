// Tests of the C++ API (cxx bridge), both ways: C++ calling Rivet, and Rivet calling C++
// scorers. Built from the installed package like every C/C++ test; run again under valgrind.
#include <rivet/cxx.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../legacy_scorer/mlp_scorer.h"

extern "C" {
#include "npy.h"
}
#include "check.h"

namespace {

const std::string kModels = RIVET_MODELS;

struct Case {
  std::vector<float> features;
  std::vector<std::int64_t> shape;
  std::vector<float> logits;
};

// A reference case of the bundled MLP: inputs and PyTorch eager's outputs.
Case read_case(const std::string& name) {
  Case c;
  npy_array in{}, out{};
  std::string dir = kModels + "/mlp/cases/" + name;
  if (npy_read((dir + "/input.features.npy").c_str(), &in) != 0 ||
      npy_read((dir + "/output.logits.npy").c_str(), &out) != 0) {
    throw std::runtime_error("cannot read case " + dir);
  }
  const float* x = static_cast<const float*>(in.data);
  c.features.assign(x, x + in.byte_len / sizeof(float));
  c.shape.assign(in.shape, in.shape + in.rank);
  const float* y = static_cast<const float*>(out.data);
  c.logits.assign(y, y + out.byte_len / sizeof(float));
  npy_free(&in);
  npy_free(&out);
  return c;
}

double max_abs_diff(rust::Slice<const float> a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (std::size_t i = 0; i < b.size(); ++i) worst = std::fmax(worst, std::fabs(double(a[i]) - b[i]));
  return worst;
}

// Runs `body`, which must throw rust::Error; returns its what() (empty if nothing was thrown).
template <typename F>
std::string thrown(F body, rivet::ErrorCode* code = nullptr) {
  try {
    body();
  } catch (const rust::Error& e) {
    if (code) *code = rivet::error_code(e);
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

rust::Vec<rivet::TensorSpec> specs(const char* name, rivet::DType dtype, std::vector<std::int64_t> shape) {
  rust::Vec<rivet::TensorSpec> list;
  rust::Vec<std::int64_t> dims;
  for (auto d : shape) dims.push_back(d);
  list.push_back({name, dtype, dims});
  return list;
}

// A scorer that records where its input's bytes were, and returns them doubled.
class ProbeScorer : public rivet::Scorer {
 public:
  const void* seen = nullptr;
  std::size_t seen_bytes = 1;
  rust::Vec<rivet::TensorSpec> inputs() const override { return specs("x", rivet::DType::F32, {-1, 4}); }
  rust::Vec<rivet::TensorSpec> outputs() const override { return specs("y", rivet::DType::F32, {-1, 4}); }
  std::vector<rivet::ScorerOutput> run(rust::Slice<const rivet::TensorRef> in) override {
    seen = in[0].data.data();
    seen_bytes = in[0].data.size();
    auto x = rivet::values<float>(in[0]);
    std::vector<float> y(x.begin(), x.end());
    for (auto& v : y) v *= 2;
    std::vector<rivet::ScorerOutput> out;
    out.emplace_back(std::vector<std::int64_t>{in[0].shape[0], 4}, std::move(y));
    return out;
  }
};

// A scorer that fails the way legacy code does, depending on its input's first value.
class FailingScorer : public rivet::Scorer {
 public:
  rust::Vec<rivet::TensorSpec> inputs() const override { return specs("x", rivet::DType::F32, {1}); }
  rust::Vec<rivet::TensorSpec> outputs() const override { return specs("y", rivet::DType::F32, {1}); }
  std::vector<rivet::ScorerOutput> run(rust::Slice<const rivet::TensorRef> in) override {
    float x = rivet::values<float>(in[0])[0];
    std::vector<rivet::ScorerOutput> out;
    if (x == 1) throw std::runtime_error("legacy failure 42");
    if (x == 2) throw 7;
    if (x == 3) {  // the wrong dtype
      out.emplace_back(std::vector<std::int64_t>{1}, std::vector<double>{1.0});
      return out;
    }
    if (x == 4) {  // the wrong shape
      out.emplace_back(std::vector<std::int64_t>{2}, std::vector<float>{1, 2});
      return out;
    }
    if (x == 5) return out;  // no outputs
    out.emplace_back(std::vector<std::int64_t>{1}, std::vector<float>{x + 1});
    return out;
  }
};

// The legacy backend with option keys of its own, which Rivet reads into strings it keeps for as
// long as the backend stays registered.
class KeyedBackend : public legacy::MlpBackend {
 public:
  std::vector<std::string> option_keys() const override { return {"precision", "cache_mib"}; }
};

// Counts how many runs are in flight at once.
class SlowScorer : public rivet::Scorer {
 public:
  explicit SlowScorer(bool safe, std::atomic<int>* peak) : safe_(safe), peak_(peak) {}
  rust::Vec<rivet::TensorSpec> inputs() const override { return specs("x", rivet::DType::F32, {1}); }
  rust::Vec<rivet::TensorSpec> outputs() const override { return specs("y", rivet::DType::F32, {1}); }
  bool thread_safe() const override { return safe_; }
  std::vector<rivet::ScorerOutput> run(rust::Slice<const rivet::TensorRef> in) override {
    int now = ++in_flight_;
    int seen = peak_->load();
    while (now > seen && !peak_->compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    --in_flight_;
    std::vector<rivet::ScorerOutput> out;
    out.emplace_back(std::vector<std::int64_t>{1}, std::vector<float>{rivet::values<float>(in[0])[0]});
    return out;
  }

 private:
  bool safe_;
  std::atomic<int>* peak_;
  std::atomic<int> in_flight_{0};
};

void test_rivet_models_match_pytorch() {
  for (const char* name : {"b1", "b8"}) {
    Case c = read_case(name);
    for (auto [file, backend] : {std::pair<const char*, const char*>{"mlp.pt", "tch"}, {"mlp.onnx", "ort"}}) {
      auto model = rivet::load(kModels + "/mlp/" + file, backend);
      CHECK(std::string(model->backend()) == backend, "backend %s", std::string(model->backend()).c_str());
      auto out = model->run(rivet::inputs({rivet::tensor("features", c.features, c.shape)}));
      double diff = max_abs_diff(out->f32s(out->index_of("logits")), c.logits);
      CHECK(diff < 1e-5, "%s %s on case %s: max abs diff %g", backend, file, name, diff);
      auto shape = out->shape(0);
      CHECK(shape.size() == 2 && shape[0] == c.shape[0] && shape[1] == 3, "%s output shape", backend);
    }
  }
}

void test_signature() {
  auto model = rivet::load(kModels + "/mlp/mlp.onnx", "ort");
  auto inputs = model->inputs();
  CHECK(inputs.size() == 1 && std::string(inputs[0].name) == "features" && inputs[0].dtype == rivet::DType::F32 &&
            inputs[0].shape.size() == 2 && inputs[0].shape[0] == -1 && inputs[0].shape[1] == 16,
        "mlp.onnx input spec");
  auto outputs = model->outputs();
  CHECK(outputs.size() == 1 && std::string(outputs[0].name) == "logits", "mlp.onnx output spec");
}

void test_zero_copy_both_ways() {
  auto probe = std::make_unique<ProbeScorer>();
  ProbeScorer* raw = probe.get();
  auto model = rivet::wrap_scorer("probe", std::move(probe));
  std::vector<float> x{1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<std::int64_t> shape{2, 4};
  auto out = model->run(rivet::inputs({rivet::tensor("x", x, shape)}));
  CHECK(raw->seen == static_cast<const void*>(x.data()), "the scorer received the C++ buffer itself");
  auto y = out->f32s(0);
  CHECK(y.size() == 8 && y[0] == 2 && y[7] == 16, "probe doubled its input");
  // By position (no names) works too, and from a rust::Slice<const float>.
  rust::Slice<const float> slice(x.data(), x.size());
  auto again = model->run(rivet::inputs({rivet::tensor("", slice, shape)}));
  CHECK(again->f32s(0)[3] == 8, "positional run");
  CHECK(raw->seen == static_cast<const void*>(x.data()), "a rust::Slice input is not copied either");
  // Empty slices: a batch of zero rows.
  std::vector<float> none;
  std::vector<std::int64_t> empty_shape{0, 4};
  auto empty = model->run(rivet::inputs({rivet::tensor("x", none, empty_shape)}));
  CHECK(raw->seen_bytes == 0, "the scorer saw 0 bytes");
  auto empty_out_shape = empty->shape(0);
  CHECK(empty->f32s(0).size() == 0 && empty_out_shape.size() == 2 && empty_out_shape[0] == 0, "empty output");
  // A Rivet backend on an empty batch.
  auto mlp = rivet::load(kModels + "/mlp/mlp.onnx", "ort");
  std::vector<std::int64_t> no_rows{0, 16};
  auto zero = mlp->run(rivet::inputs({rivet::tensor("features", none, no_rows)}));
  CHECK(zero->shape(0).size() == 2 && zero->shape(0)[0] == 0 && zero->f32s(0).size() == 0, "ort on 0 rows");
}

void test_legacy_scorer_matches_pytorch() {
  rivet::register_scorer_backend("legacy_mlp_here", std::make_unique<legacy::MlpBackend>());
  auto here = rivet::load(kModels + "/mlp/mlp.weights", "legacy_mlp_here");
  // The same scorer packaged as a backend library (librivet_legacy_mlp.so), found by name.
  auto library = rivet::load(kModels + "/mlp/mlp.weights", "legacy_mlp");
  for (const char* name : {"b1", "b8"}) {
    Case c = read_case(name);
    for (auto* model : {&here, &library}) {
      auto out = (*model)->run(rivet::inputs({rivet::tensor("features", c.features, c.shape)}));
      double diff = max_abs_diff(out->f32s(0), c.logits);
      CHECK(diff < 1e-5, "legacy scorer (%s) on case %s: max abs diff %g", std::string((*model)->backend()).c_str(),
            name, diff);
    }
  }
  // Its options are checked by Rivet against option_keys() (none).
  auto config = rivet::new_load_config();
  config->set_backend("legacy_mlp_here");
  config->set_option("threads=2");
  rivet::ErrorCode code{};
  std::string what = thrown([&] { rivet::load_with(kModels + "/mlp/mlp.weights", *config); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidOption &&
            contains(what, "legacy_mlp_here: unknown option \"threads\"; it takes no options"),
        "unknown scorer option: %s", what.c_str());
  // A file it cannot read: its exception is the load error's reason.
  what = thrown([&] { rivet::load(kModels + "/mlp/mlp.onnx", "legacy_mlp_here"); }, &code);
  CHECK(code == rivet::ErrorCode::ModelLoad && contains(what, "not a dense weight file (no RVTW0001 header)") &&
            contains(what, "mlp.onnx"),
        "bad weight file: %s", what.c_str());
}

// Shadow mode through the C++ API, with the legacy C++ scorer on either side of ONNX Runtime.
void test_shadow_either_side() {
  rivet::register_scorer_backend("legacy_mlp_shadow", std::make_unique<legacy::MlpBackend>());
  auto legacy = rivet::load(kModels + "/mlp/mlp.weights", "legacy_mlp_shadow");
  auto ort = rivet::load(kModels + "/mlp/mlp.onnx", "ort");
  auto config = rivet::default_shadow_config();
  CHECK(config.atol == 1e-5 && config.rtol == 1e-5 && config.sample == 1.0 && config.queue == 64 &&
            config.capture_dir.empty(),
        "shadow defaults");
  // The scorer and ORT agree within 1e-4 (each is within 1e-5 of PyTorch).
  config.atol = 1e-4;
  config.rtol = 1e-4;
  for (int side = 0; side < 2; ++side) {
    const auto& primary = side == 0 ? legacy : ort;
    const auto& candidate = side == 0 ? ort : legacy;
    auto shadow = rivet::shadow(*primary, *candidate, config);
    CHECK(std::string(shadow->backend()) == std::string(primary->backend()), "the shadow answers as its primary");
    for (const char* name : {"b1", "b8", "b1", "b8"}) {
      Case c = read_case(name);
      auto out = shadow->run(rivet::inputs({rivet::tensor("features", c.features, c.shape)}));
      CHECK(max_abs_diff(out->f32s(0), c.logits) < 1e-5, "side %d: the shadow's answer is PyTorch's", side);
    }
    shadow->shadow_flush();
    auto stats = shadow->shadow_stats();
    CHECK(stats.requests == 4 && stats.compared == 4 && stats.matched == 4 && stats.diverged == 0 &&
              stats.candidate_errors == 0 && stats.dropped == 0,
          "side %d: %llu requests, %llu compared, %llu matched", side, (unsigned long long)stats.requests,
          (unsigned long long)stats.compared, (unsigned long long)stats.matched);
  }
  rivet::ErrorCode code{};
  std::string what = thrown([&] { ort->shadow_stats(); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidArgument && contains(what, "the model is not a shadow"),
        "stats of a plain model: %s", what.c_str());
  auto cnn = rivet::load(kModels + "/cnn/cnn.onnx", "ort");
  what = thrown([&] { rivet::shadow(*ort, *cnn, config); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidInput &&
            contains(what, "shadow: the candidate takes inputs [\"image\"] where the primary takes [\"features\"]"),
        "mismatched signatures: %s", what.c_str());
  config.sample = 2;
  what = thrown([&] { rivet::shadow(*ort, *legacy, config); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidOption && contains(what, "sample: 2 is not between 0 and 1"),
        "sample out of range: %s", what.c_str());
}

void test_errors_reach_cpp() {
  rivet::ErrorCode code{};
  std::string what = thrown([] { rivet::load(kModels + "/mlp/missing.onnx", "ort"); }, &code);
  CHECK(code == rivet::ErrorCode::ModelLoad && contains(what, "RIVET_ERROR_MODEL_LOAD: ort: cannot load") &&
            contains(what, "missing.onnx"),
        "bad path: %s", what.c_str());
  what = thrown([] { rivet::load(kModels + "/mlp/mlp.onnx", "tvm"); }, &code);
  CHECK(code == rivet::ErrorCode::ModelLoad || code == rivet::ErrorCode::InvalidOption, "unknown backend: %s",
        what.c_str());
  CHECK(contains(what, "no backend is registered as \"tvm\""), "unknown backend: %s", what.c_str());

  auto model = rivet::load(kModels + "/mlp/mlp.onnx", "ort");
  std::vector<std::int64_t> ids(16, 1);
  std::vector<std::int64_t> shape{1, 16};
  what = thrown([&] { model->run(rivet::inputs({rivet::tensor("features", ids, shape)})); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidInput &&
            rivet::error_message(std::runtime_error(what)) ==
                "invalid input: input \"features\": expected dtype f32, got i64",
        "wrong dtype: %s", what.c_str());
  std::vector<float> narrow(15, 0.f);
  std::vector<std::int64_t> narrow_shape{1, 15};
  what = thrown([&] { model->run(rivet::inputs({rivet::tensor("features", narrow, narrow_shape)})); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidInput && contains(what, "input \"features\": expected dimension 1 to be 16"),
        "wrong shape: %s", what.c_str());
  std::vector<float> x(16, 0.f);
  std::vector<std::int64_t> claims{2, 16};
  what = thrown([&] { model->run(rivet::inputs({rivet::tensor("features", x, claims)})); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidTensor, "bytes short of the shape: %s", what.c_str());
  what = thrown([&] { model->run(rivet::inputs({rivet::tensor("features", x, shape), rivet::tensor("", x, shape)})); },
                &code);
  CHECK(code == rivet::ErrorCode::InvalidArgument && contains(what, "all be named or all unnamed"), "mixed: %s",
        what.c_str());
  auto out = model->run(rivet::inputs({rivet::tensor("features", x, shape)}));
  what = thrown([&] { out->f64s(0); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidArgument && contains(what, "output \"logits\" is f32, not f64"), "%s",
        what.c_str());
  what = thrown([&] { out->index_of("probs"); }, &code);
  CHECK(contains(what, "no output named \"probs\" (outputs: logits)"), "%s", what.c_str());
  what = thrown([&] { out->bytes(3); }, &code);
  CHECK(contains(what, "output index 3 out of range"), "%s", what.c_str());
}

void test_scorer_exceptions_become_errors() {
  auto model = rivet::wrap_scorer("flaky", std::make_unique<FailingScorer>());
  std::vector<std::int64_t> shape{1};
  auto run = [&](float v) {
    std::vector<float> x{v};
    auto out = model->run(rivet::inputs({rivet::tensor("x", x, shape)}));
    return out->f32s(0)[0];
  };
  rivet::ErrorCode code{};
  std::string what = thrown([&] { run(1); }, &code);
  CHECK(code == rivet::ErrorCode::Backend &&
            what == "RIVET_ERROR_BACKEND: flaky: run failed: the C++ scorer threw while running: legacy failure 42",
        "std::runtime_error: %s", what.c_str());
  what = thrown([&] { run(2); }, &code);
  CHECK(code == rivet::ErrorCode::Backend && contains(what, "not a std::exception"), "throw 7: %s", what.c_str());
  what = thrown([&] { run(3); }, &code);
  CHECK(code == rivet::ErrorCode::Backend && contains(what, "output \"y\": the scorer returned f64, declared f32"),
        "wrong output dtype: %s", what.c_str());
  what = thrown([&] { run(4); }, &code);
  CHECK(contains(what, "output \"y\": the scorer returned shape [2], declared [1]"), "wrong output shape: %s",
        what.c_str());
  what = thrown([&] { run(5); }, &code);
  CHECK(contains(what, "the scorer returned 0 output(s), declared 1"), "no outputs: %s", what.c_str());
  // The process, and the scorer, live on.
  CHECK(run(9) == 10, "the scorer still runs after its failures");
  what = thrown([&] { rivet::wrap_scorer("empty", std::unique_ptr<rivet::Scorer>()); }, &code);
  CHECK(contains(what, "no scorer (a null std::unique_ptr)"), "null scorer: %s", what.c_str());
  what = thrown([&] { rivet::register_scorer_backend("auto", std::make_unique<legacy::MlpBackend>()); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidOption && contains(what, "\"auto\" is not a name a backend can take"),
        "auto as a name: %s", what.c_str());
  // A name already taken is refused before the backend's option keys are read (under memcheck:
  // nothing of the refused backend is lost).
  rivet::register_scorer_backend("keyed_mlp", std::make_unique<KeyedBackend>());
  what = thrown([&] { rivet::register_scorer_backend("keyed_mlp", std::make_unique<KeyedBackend>()); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidOption &&
            contains(what, "a backend named \"keyed_mlp\" is already registered"),
        "a taken name: %s", what.c_str());
  what = thrown([&] { rivet::wrap_scorer("auto", std::make_unique<FailingScorer>()); }, &code);
  CHECK(code == rivet::ErrorCode::InvalidOption, "auto as a model's backend: %s", what.c_str());
}

void test_threads() {
  // 8 threads run the C++ scorer (serialized by Rivet) and an ONNX Runtime model at once;
  // every output equals the serial one.
  rivet::register_scorer_backend("legacy_mlp_threads", std::make_unique<legacy::MlpBackend>());
  auto legacy = rivet::load(kModels + "/mlp/mlp.weights", "legacy_mlp_threads");
  auto ort = rivet::load(kModels + "/mlp/mlp.onnx", "ort");
  Case c = read_case("b8");
  auto serial = [&](const rust::Box<rivet::LoadedModel>& m) {
    auto out = m->run(rivet::inputs({rivet::tensor("features", c.features, c.shape)}));
    auto v = out->f32s(0);
    return std::vector<float>(v.begin(), v.end());
  };
  const std::vector<float> want_legacy = serial(legacy), want_ort = serial(ort);
  std::atomic<int> mismatches{0}, runs{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        const auto& model = (t + i) % 2 ? legacy : ort;
        const auto& want = (t + i) % 2 ? want_legacy : want_ort;
        try {
          if (serial(model) != want) ++mismatches;
        } catch (const std::exception&) {
          ++mismatches;
        }
        ++runs;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(runs == 80 && mismatches == 0, "8 threads: %d mismatches in %d runs", mismatches.load(), runs.load());

  // A scorer that is not thread-safe is never entered twice; one that says it is, is.
  for (bool safe : {false, true}) {
    std::atomic<int> peak{0};
    auto model = rivet::wrap_scorer("slow", std::make_unique<SlowScorer>(safe, &peak));
    std::vector<std::thread> callers;
    for (int t = 0; t < 4; ++t) {
      callers.emplace_back([&] {
        std::vector<float> x{1};
        std::vector<std::int64_t> shape{1};
        model->run(rivet::inputs({rivet::tensor("x", x, shape)}));
      });
    }
    for (auto& th : callers) th.join();
    if (safe) {
      CHECK(peak.load() > 1, "a thread-safe scorer ran concurrently (peak %d)", peak.load());
    } else {
      CHECK(peak.load() == 1, "a scorer that is not thread-safe ran one at a time (peak %d)", peak.load());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  RUN_TEST(test_rivet_models_match_pytorch);
  RUN_TEST(test_signature);
  RUN_TEST(test_zero_copy_both_ways);
  RUN_TEST(test_legacy_scorer_matches_pytorch);
  RUN_TEST(test_shadow_either_side);
  RUN_TEST(test_errors_reach_cpp);
  RUN_TEST(test_scorer_exceptions_become_errors);
  RUN_TEST(test_threads);
  return report(argc > 1 ? argv[1] : "cxx_tests");
}
