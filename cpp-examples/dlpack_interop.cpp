// Tensors in and out of Rivet as DLPack, without copying: a producer's buffer goes in through
// DLManagedTensorVersioned, the model's output comes out as one.
#include <rivet.hpp>
#include <rivet/dlpack.h>  // DLPack's types (or include a real dlpack.h)

#include <cstdio>
#include <vector>

namespace {

int deleter_calls = 0;

struct Producer {
  std::vector<float> data;
  std::vector<int64_t> shape;
  DLManagedTensorVersioned managed{};
};

void delete_producer(DLManagedTensorVersioned* self) {
  ++deleter_calls;
  delete static_cast<Producer*>(self->manager_ctx);
}

DLManagedTensorVersioned* make_input() {
  auto* p = new Producer{std::vector<float>(2 * 16), {2, 16}, {}};
  for (std::size_t i = 0; i < p->data.size(); ++i) p->data[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
  p->managed.version = {1, 0};
  p->managed.manager_ctx = p;
  p->managed.deleter = delete_producer;
  p->managed.dl_tensor.data = p->data.data();
  p->managed.dl_tensor.device = {kDLCPU, 0};
  p->managed.dl_tensor.ndim = 2;
  p->managed.dl_tensor.dtype = {kDLFloat, 32, 1};
  p->managed.dl_tensor.shape = p->shape.data();
  return &p->managed;
}

}  // namespace

int main() {
  try {
    rivet::check_abi();
    const rivet::Model model = rivet::Model::load(RIVET_MODELS "/mlp/mlp.onnx");
    DLManagedTensorVersioned* input = make_input();
    const void* producer_data = input->dl_tensor.data;
    std::vector<rivet::Tensor> outputs;
    {
      rivet::Tensor x = rivet::Tensor::from_dlpack(input);
      std::printf("zero-copy in: %s\n", x.data() == producer_data ? "yes" : "NO");
      outputs = model.run({&x});
      std::printf("input deleter calls while Rivet holds it: %d\n", deleter_calls);
    }
    const void* output_data = outputs.at(0).data();
    DLManagedTensorVersioned* out = std::move(outputs.at(0)).to_dlpack();
    std::printf("zero-copy out: %s\n", out->dl_tensor.data == output_data ? "yes" : "NO");
    const auto* logits = static_cast<const float*>(out->dl_tensor.data);
    std::printf("output: ndim %d, shape [%lld, %lld], dtype code %u bits %u\n", out->dl_tensor.ndim,
                static_cast<long long>(out->dl_tensor.shape[0]), static_cast<long long>(out->dl_tensor.shape[1]),
                out->dl_tensor.dtype.code, out->dl_tensor.dtype.bits);
    std::printf("logits[0] = %.6f %.6f %.6f\n", logits[0], logits[1], logits[2]);
    out->deleter(out);
    std::printf("input deleter calls: %d\n", deleter_calls);
    return deleter_calls == 1 ? 0 : 1;
  } catch (const rivet::Error& e) {
    std::fprintf(stderr, "rivet error %u: %s\n", e.code(), e.what());
    return 1;
  }
}
