// A multi-threaded "scoring service" of the kind legacy C++ stacks run: it loads the TorchScript
// and ONNX twins of the bundled MLP once, serves requests from worker threads that share the
// two model handles, checks that both backends agree, and prints p50/p99 latency per backend.
//
// usage: legacy_service [threads=4] [requests_per_thread=250]
#include <rivet.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace {

struct Stats {
  std::vector<double> tch_us, ort_us;
  std::size_t agreed = 0, served = 0;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  std::size_t i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[i];
}

bool close(rivet::Span<const float> a, rivet::Span<const float> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::fabs(a[i] - b[i]) > 1e-4f + 1e-4f * std::fabs(b[i])) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 4;
  const int requests = argc > 2 ? std::atoi(argv[2]) : 250;
  try {
    rivet::check_abi();
    rivet::LoadOptions ort_options;
    ort_options.backend("ort").option("instances", std::to_string(threads)).intra_op_threads(1);
    const rivet::Model onnx = rivet::Model::load(RIVET_MODELS "/mlp/mlp.onnx", ort_options);
    rivet::LoadOptions tch_options;
    tch_options.backend("tch").intra_op_threads(1);  // process-wide in libtorch
    const rivet::Model torch = rivet::Model::load(RIVET_MODELS "/mlp/mlp.pt", tch_options);

    Stats total;
    std::mutex lock;
    std::vector<std::thread> workers;
    for (int w = 0; w < threads; ++w) {
      workers.emplace_back([&, w] {
        Stats mine;
        std::mt19937 rng(static_cast<unsigned>(w));
        std::normal_distribution<float> normal;
        std::vector<float> features(16);
        for (int r = 0; r < requests; ++r) {
          for (float& f : features) f = normal(rng);
          // The request's buffer is borrowed, not copied.
          rivet::Tensor x = rivet::Tensor::view<float>({1, 16}, features.data(), features.size());
          auto t0 = std::chrono::steady_clock::now();
          std::vector<rivet::Tensor> a = torch.run({{"features", &x}});
          auto t1 = std::chrono::steady_clock::now();
          std::vector<rivet::Tensor> b = onnx.run({{"features", &x}});
          auto t2 = std::chrono::steady_clock::now();
          mine.tch_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
          mine.ort_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
          mine.served++;
          if (close(a.at(0).values<float>(), b.at(0).values<float>())) mine.agreed++;
        }
        std::lock_guard<std::mutex> guard(lock);
        total.tch_us.insert(total.tch_us.end(), mine.tch_us.begin(), mine.tch_us.end());
        total.ort_us.insert(total.ort_us.end(), mine.ort_us.begin(), mine.ort_us.end());
        total.agreed += mine.agreed;
        total.served += mine.served;
      });
    }
    for (auto& t : workers) t.join();

    std::printf("served %zu requests on %d threads sharing one model per backend\n", total.served, threads);
    std::printf("tch (mlp.pt):   p50 %8.1f us   p99 %8.1f us\n", percentile(total.tch_us, 0.5),
                percentile(total.tch_us, 0.99));
    std::printf("ort (mlp.onnx): p50 %8.1f us   p99 %8.1f us\n", percentile(total.ort_us, 0.5),
                percentile(total.ort_us, 0.99));
    std::printf("both backends agree on %zu/%zu requests\n", total.agreed, total.served);
    return total.agreed == total.served ? 0 : 1;
  } catch (const rivet::Error& e) {
    std::fprintf(stderr, "rivet error %u: %s\n", e.code(), e.what());
    return 1;
  }
}
