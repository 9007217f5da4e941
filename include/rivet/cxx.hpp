// Rivet's C++ API through cxx: include this one header.
//
//   rust::Box<rivet::LoadedModel> model = rivet::load("models/mlp/mlp.pt", "tch");
//   std::vector<float> x(16, 0.5f);
//   std::vector<std::int64_t> shape{1, 16};
//   rust::Box<rivet::ModelOutputs> out = model->run(rivet::inputs({rivet::tensor("features", x, shape)}));
//   rust::Slice<const float> logits = out->f32s(out->index_of("logits"));
//
// - Inputs are borrowed, never copied: a TensorRef points at the caller's buffer, which must
//   stay alive and unchanged until run() returns. Outputs are owned by the ModelOutputs box.
// - Every call that can fail throws rust::Error. Its what() reads "RIVET_ERROR_<CODE>: message"
//   (the codes of rivet.h); rivet::error_code(e) and rivet::error_message(e) split it.
// - A LoadedModel may be run from many threads at once.
// - Legacy C++ models join Rivet by deriving from rivet::Scorer (see rivet/scorer.h).
//
// The declarations themselves are in the generated <rivet/bridge.h>; this header adds the
// typed helpers below. It can be included together with rivet.hpp (the C ABI's RAII header):
// the names do not collide.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "rivet/bridge.h"

namespace rivet {

// A borrowed input: `data` (a C++ array of a Rivet element type) with `shape`, under `name`
// (empty: by position). Both must outlive the run.
template <typename T>
TensorRef tensor(rust::Str name, const T* data, std::size_t count, const std::vector<std::int64_t>& shape) {
  return TensorRef{name, element_dtype<T>::value, rust::Slice<const std::int64_t>(shape.data(), shape.size()),
                   rust::Slice<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(data), count * sizeof(T))};
}

// A borrowed input over a rust::Slice<const T>.
template <typename T>
TensorRef tensor(rust::Str name, rust::Slice<const T> data, const std::vector<std::int64_t>& shape) {
  return tensor(name, data.data(), data.size(), shape);
}

// A borrowed input over a std::vector.
template <typename T>
TensorRef tensor(rust::Str name, const std::vector<T>& data, const std::vector<std::int64_t>& shape) {
  return tensor(name, data.data(), data.size(), shape);
}

// The inputs of one run, as the slice LoadedModel::run takes. The list must outlive the run:
// pass it straight to run(), or keep the vector.
inline rust::Slice<const TensorRef> inputs(const std::vector<TensorRef>& list) {
  return rust::Slice<const TensorRef>(list.data(), list.size());
}

// The element values of a scorer's input (checks the dtype; throws std::invalid_argument).
template <typename T>
rust::Slice<const T> values(const TensorRef& input) {
  if (input.dtype != element_dtype<T>::value) {
    throw std::invalid_argument("input \"" + std::string(input.name) + "\" has another dtype");
  }
  return rust::Slice<const T>(reinterpret_cast<const T*>(input.data.data()), input.data.size() / sizeof(T));
}

// The code of a rust::Error thrown by this API (ErrorCode::None for any other exception text).
inline ErrorCode error_code(const std::exception& error) { return error_code(rust::Str(error.what())); }

// The message of a rust::Error thrown by this API, without the code.
inline std::string error_message(const std::exception& error) {
  return std::string(error_message(rust::Str(error.what())));
}

}  // namespace rivet
