// The C++ side of benches/capi.rs's cxx case: one run of the bundled MLP (batch 1) through the
// C++ API, as a C++ service would call it, with the output read in place.
#include <rivet/cxx.hpp>

extern "C" std::size_t rivet_bench_cxx_run(const rivet::LoadedModel* model, const float* features,
                                           const std::int64_t* shape) {
  const rivet::TensorRef input{"features", rivet::DType::F32, rust::Slice<const std::int64_t>(shape, 2),
                               rust::Slice<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(features),
                                                               std::size_t(shape[0] * shape[1]) * sizeof(float))};
  rust::Box<rivet::ModelOutputs> out = model->run(rust::Slice<const rivet::TensorRef>(&input, 1));
  return out->f32s(0).size();
}
