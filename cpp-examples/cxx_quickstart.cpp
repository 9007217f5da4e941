// The C++ API (cxx bridge) in one page: load the bundled MLP as TorchScript (libtorch) and as
// ONNX (ONNX Runtime), run PyTorch's reference input through both without copying it, and check
// the outputs against PyTorch's own. Exits 1 on any mismatch or error.
//
//   cmake --build build && ./build/cxx_quickstart
#include <rivet/cxx.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

extern "C" {
#include "tests/npy.h"
}

int main() {
  const std::string dir = std::string(RIVET_MODELS) + "/mlp/";
  npy_array input{}, reference{};
  if (npy_read((dir + "cases/b8/input.features.npy").c_str(), &input) != 0 ||
      npy_read((dir + "cases/b8/output.logits.npy").c_str(), &reference) != 0) {
    std::fprintf(stderr, "cannot read the reference case under %s\n", dir.c_str());
    return 1;
  }
  const float* x = static_cast<const float*>(input.data);
  std::vector<float> features(x, x + input.byte_len / sizeof(float));
  std::vector<std::int64_t> shape(input.shape, input.shape + input.rank);
  const float* want = static_cast<const float*>(reference.data);

  int status = 0;
  try {
    for (auto [file, backend] : {std::pair<const char*, const char*>{"mlp.pt", "tch"}, {"mlp.onnx", "ort"}}) {
      rust::Box<rivet::LoadedModel> model = rivet::load(dir + file, backend);
      rivet::TensorSpec in = model->inputs()[0];
      // Borrowed, not copied: Rivet reads `features` where it lies.
      rust::Box<rivet::ModelOutputs> out = model->run(rivet::inputs({rivet::tensor(in.name, features, shape)}));
      rust::Slice<const float> logits = out->f32s(out->index_of("logits"));
      double worst = 0;
      for (std::size_t i = 0; i < logits.size(); ++i) worst = std::fmax(worst, std::fabs(logits[i] - want[i]));
      const bool ok = logits.size() * sizeof(float) == reference.byte_len && worst < 1e-5;
      std::printf("%-8s on %-4s: logits f32[%lld, %lld], max abs diff vs PyTorch %.2e: %s\n", file,
                  std::string(model->backend()).c_str(), (long long)out->shape(0)[0], (long long)out->shape(0)[1],
                  worst, ok ? "ok" : "MISMATCH");
      status |= ok ? 0 : 1;
    }
    // Errors are rust::Error with Rivet's code and message.
    try {
      std::vector<std::int64_t> wrong{1, 8};
      rivet::load(dir + "mlp.onnx", "ort")->run(rivet::inputs({rivet::tensor("features", features.data(), 8, wrong)}));
    } catch (const rust::Error& e) {
      std::printf("a wrong shape is refused (code %u): %s\n", unsigned(rivet::error_code(e)),
                  rivet::error_message(e).c_str());
    }
  } catch (const rust::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    status = 1;
  }
  npy_free(&input);
  npy_free(&reference);
  return status;
}
