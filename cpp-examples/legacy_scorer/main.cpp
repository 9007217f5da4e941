// The migration step this folder shows: a legacy C++ scorer (mlp_scorer.cpp) registered with
// Rivet under a name and run on the same inputs as Rivet's backends (tch on the TorchScript
// file, ort and candle on the ONNX file): every output against PyTorch's reference, latency
// side by side.
//
//   ./legacy_scorer [runs]     (default 2000 timed runs per backend, batch 1)
#include <rivet/cxx.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "mlp_scorer.h"

extern "C" {
#include "../tests/npy.h"
}

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 2000;
  const std::string dir = std::string(RIVET_MODELS) + "/mlp/";
  npy_array input{}, reference{};
  if (npy_read((dir + "cases/b1/input.features.npy").c_str(), &input) != 0 ||
      npy_read((dir + "cases/b1/output.logits.npy").c_str(), &reference) != 0) {
    std::fprintf(stderr, "cannot read the reference case under %s\n", dir.c_str());
    return 1;
  }
  std::vector<std::int64_t> shape(input.shape, input.shape + input.rank);
  const float* x = static_cast<const float*>(input.data);
  std::vector<float> features(x, x + input.byte_len / sizeof(float));
  const float* want = static_cast<const float*>(reference.data);

  int status = 0;
  try {
    // The one line a legacy service adds: its scorer becomes the Rivet backend "legacy_mlp".
    rivet::register_scorer_backend("legacy_mlp", std::make_unique<legacy::MlpBackend>());

    std::printf("%-12s %-8s %10s %10s  %s\n", "file", "backend", "p50 us", "p99 us", "max abs diff vs PyTorch");
    for (auto [file, backend] : {std::pair<const char*, const char*>{"mlp.weights", "legacy_mlp"},
                                 {"mlp.pt", "tch"},
                                 {"mlp.onnx", "ort"},
                                 {"mlp.onnx", "candle"}}) {
      auto config = rivet::new_load_config();
      config->set_backend(backend);
      // One thread each, as the legacy scorer has; Candle sizes its pool from RAYON_NUM_THREADS.
      if (std::string(backend) != "candle") config->set_threads(1, 1);
      auto model = rivet::load_with(dir + file, *config);
      // The inputs of every run: borrowed views of `features`, kept for the loop.
      const std::vector<rivet::TensorRef> list{rivet::tensor("features", features, shape)};
      const auto in = rivet::inputs(list);
      auto out = model->run(in);
      auto logits = out->f32s(0);
      double worst = 0;
      for (std::size_t i = 0; i < logits.size(); ++i) worst = std::fmax(worst, std::fabs(logits[i] - want[i]));
      std::vector<double> micros;
      micros.reserve(runs);
      for (int i = 0; i < runs + 50; ++i) {
        auto start = std::chrono::steady_clock::now();
        model->run(in);
        auto took = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
        if (i >= 50) micros.push_back(took);  // the first 50 are warm-up
      }
      std::sort(micros.begin(), micros.end());
      const bool ok = worst < 1e-5;
      std::printf("%-12s %-8s %10.2f %10.2f  %.2e %s\n", file, backend, micros[micros.size() / 2],
                  micros[micros.size() * 99 / 100], worst, ok ? "ok" : "MISMATCH");
      status |= ok ? 0 : 1;
    }
  } catch (const rust::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    status = 1;
  }
  npy_free(&input);
  npy_free(&reference);
  if (status == 0) std::printf("the legacy scorer agrees with PyTorch and with Rivet's backends\n");
  return status;
}
