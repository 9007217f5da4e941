// A service migrating off its legacy scorer, with proof: the legacy C++ MLP keeps answering
// (the primary, through its backend library librivet_legacy_mlp.so), and its ONNX twin on ONNX
// Runtime is shadowed on every request. At the end the service checks that every request was
// compared and none diverged. Then a twin with one planted weight error shows what a divergence
// looks like: every request diverges, and each capture names the output that differed.
//
//   shadow_migration [REQUESTS]      prints one line per phase; exits 1 when a check fails
#include <rivet.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

const std::string kModels = RIVET_MODELS;

// The requests: batches of 1 to 8 rows of 16 features, from a fixed seed.
std::vector<float> request(std::uint64_t& seed, std::int64_t rows) {
  std::vector<float> x(std::size_t(rows) * 16);
  for (auto& v : x) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    v = float(seed >> 40) / float(1u << 24) * 4.0f - 2.0f;
  }
  return x;
}

// Serves `requests` requests from `model`, as the service's request loop would.
void serve(const rivet::Model& model, int requests) {
  std::uint64_t seed = 42;
  for (int i = 0; i < requests; ++i) {
    std::int64_t rows = 1 + i % 8;
    std::vector<float> x = request(seed, rows);
    std::vector<std::int64_t> shape{rows, 16};
    auto input = rivet::Tensor::view(shape, x.data(), x.size());
    auto outputs = model.run({{"features", &input}});
    if (outputs.size() != 1) throw std::runtime_error("expected one output");
  }
}

// The legacy weight file with the first bias of its last layer moved by `delta`, so that every
// answer's first logit is off by it (RVTW0001: magic, layer count, then per layer out, in,
// out x in weights and out biases, little-endian), written to `path`.
void plant_error(const std::string& path, float delta) {
  std::ifstream in(kModels + "/mlp/mlp.weights", std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto u32 = [&](std::size_t at) {
    std::uint32_t v;
    std::memcpy(&v, bytes.data() + at, 4);
    return std::size_t(v);
  };
  std::size_t at = 12, last_bias = 0;
  for (std::size_t layer = 0, count = u32(8); layer < count; ++layer) {
    std::size_t out = u32(at), in_features = u32(at + 4);
    last_bias = at + 8 + out * in_features * 4;
    at = last_bias + out * 4;
  }
  float bias;
  std::memcpy(&bias, bytes.data() + last_bias, 4);
  bias += delta;
  std::memcpy(bytes.data() + last_bias, &bias, 4);
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

int main(int argc, char** argv) {
  int requests = argc > 1 ? std::atoi(argv[1]) : 200;
  bool ok = true;
  try {
    auto legacy = rivet::Model::load(kModels + "/mlp/mlp.weights", rivet::LoadOptions().backend("legacy_mlp"));
    auto twin = rivet::Model::load(kModels + "/mlp/mlp.onnx", rivet::LoadOptions().backend("ort"));

    // 1. The legacy scorer answers; its ONNX twin is compared on every request.
    rivet::ShadowOptions options;
    options.tolerance(1e-4, 1e-4).queue(std::size_t(requests));
    auto service = rivet::Model::shadow(legacy, twin, options);
    serve(service, requests);
    service.shadow_flush();
    auto stats = service.shadow_stats();
    std::printf("migration: %s answered %llu requests; %s compared on %llu: %llu matched, %llu diverged, "
                "%llu failed, %llu dropped (p50 %.3f ms vs %.3f ms)\n",
                service.backend().c_str(), (unsigned long long)stats.requests, twin.backend().c_str(),
                (unsigned long long)stats.compared, (unsigned long long)stats.matched,
                (unsigned long long)stats.diverged, (unsigned long long)stats.candidate_errors,
                (unsigned long long)stats.dropped, stats.primary_p50_ms, stats.candidate_p50_ms);
    ok = ok && stats.requests == std::uint64_t(requests) && stats.compared == stats.requests &&
         stats.matched == stats.requests && stats.diverged == 0;

    // 2. A planted divergence: a twin with one weight wrong diverges on every request, and each
    //    capture (inputs, both outputs, record.json) names the output that differed.
    char dir_template[] = "/tmp/rivet-shadow-migration-XXXXXX";
    std::string dir = mkdtemp(dir_template);
    plant_error(dir + "/wrong.weights", 0.5f);
    auto wrong = rivet::Model::load(dir + "/wrong.weights", rivet::LoadOptions().backend("legacy_mlp"));
    rivet::ShadowOptions capture;
    capture.tolerance(1e-4, 1e-4).queue(16).capture(dir + "/captures", 100);
    auto planted = rivet::Model::shadow(twin, wrong, capture);
    serve(planted, 16);
    planted.shadow_flush();
    auto caught = planted.shadow_stats();
    int named = 0;
    for (int i = 0; i < 16; ++i) {
      char folder[16];
      std::snprintf(folder, sizeof folder, "%08d", i);
      std::string record = read_file(dir + "/captures/" + folder + "/record.json");
      bool names_it = record.find("\"name\":\"logits\"") != std::string::npos &&
                      record.find("\"outside\":0,") == std::string::npos;
      bool has_data = !read_file(dir + "/captures/" + folder + "/input_0.npy").empty() &&
                      !read_file(dir + "/captures/" + folder + "/primary.logits.npy").empty() &&
                      !read_file(dir + "/captures/" + folder + "/candidate.logits.npy").empty();
      named += names_it && has_data;
    }
    std::printf("planted divergence: %llu of %llu requests diverged, %llu captured, %d captures name logits\n",
                (unsigned long long)caught.diverged, (unsigned long long)caught.compared,
                (unsigned long long)caught.captured, named);
    ok = ok && caught.diverged == 16 && caught.captured == 16 && named == 16;
    std::string cleanup = "rm -rf '" + dir + "'";
    if (std::system(cleanup.c_str()) != 0) std::printf("could not remove %s\n", dir.c_str());
  } catch (const rivet::Error& e) {
    std::printf("error %u: %s\n", e.code(), e.what());
    return 1;
  }
  std::printf("shadow migration: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
