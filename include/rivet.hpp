// Rivet C++17 API: header-only RAII classes over the C ABI in rivet.h, the way wasmtime.hh sits
// on wasmtime.h. Handles are move-only and free themselves; failures throw rivet::Error, which
// carries the C error code and message. Thread-safety is the C ABI's: a Model may be run from
// many threads at once; a Tensor may be read by concurrent runs but not moved or destroyed
// while they use it.
#ifndef RIVET_HPP
#define RIVET_HPP

#include "rivet.h"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace rivet {

/// A failed Rivet call: the RIVET_ERROR_* code and the message naming what was wrong.
class Error : public std::runtime_error {
 public:
  Error(rivet_error_code_t code, const std::string& message) : std::runtime_error(message), code_(code) {}
  /// The RIVET_ERROR_* code.
  rivet_error_code_t code() const noexcept { return code_; }

 private:
  rivet_error_code_t code_;
};

namespace detail {
/// Throws the error (and frees it) when a call failed.
inline void check(rivet_error_t* error) {
  if (error != nullptr) {
    Error thrown(rivet_error_code(error), rivet_error_message(error));
    rivet_error_free(error);
    throw thrown;
  }
}
}  // namespace detail

/// Throws unless the loaded library implements the ABI this header describes.
inline void check_abi() {
  if (rivet_abi_version() != RIVET_ABI_VERSION) {
    throw Error(RIVET_ERROR_UNSUPPORTED, "librivet ABI version " + std::to_string(rivet_abi_version()) +
                                             " does not match rivet.hpp's " + std::to_string(RIVET_ABI_VERSION));
  }
}

/// A borrowed, read-only run of elements (std::span's subset that C++17 lacks).
template <class T>
class Span {
 public:
  Span(T* data, std::size_t size) noexcept : data_(data), size_(size) {}
  T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T* begin() const noexcept { return data_; }
  T* end() const noexcept { return data_ + size_; }

 private:
  T* data_;
  std::size_t size_;
};

/// The RIVET_DTYPE_* of a C++ element type.
template <class T>
struct dtype_of;
template <> struct dtype_of<float> { static constexpr rivet_dtype_t value = RIVET_DTYPE_F32; };
template <> struct dtype_of<double> { static constexpr rivet_dtype_t value = RIVET_DTYPE_F64; };
template <> struct dtype_of<std::int8_t> { static constexpr rivet_dtype_t value = RIVET_DTYPE_I8; };
template <> struct dtype_of<std::int16_t> { static constexpr rivet_dtype_t value = RIVET_DTYPE_I16; };
template <> struct dtype_of<std::int32_t> { static constexpr rivet_dtype_t value = RIVET_DTYPE_I32; };
template <> struct dtype_of<std::int64_t> { static constexpr rivet_dtype_t value = RIVET_DTYPE_I64; };
template <> struct dtype_of<std::uint8_t> { static constexpr rivet_dtype_t value = RIVET_DTYPE_U8; };
template <> struct dtype_of<bool> { static constexpr rivet_dtype_t value = RIVET_DTYPE_BOOL; };

/// A tensor handle (rivet_tensor_t), freed on destruction.
class Tensor {
 public:
  /// Takes ownership of a handle from the C API.
  explicit Tensor(rivet_tensor_t* raw) noexcept : raw_(raw) {}
  ~Tensor() { rivet_tensor_free(raw_); }
  Tensor(Tensor&& other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
  Tensor& operator=(Tensor&& other) noexcept {
    if (this != &other) {
      rivet_tensor_free(raw_);
      raw_ = std::exchange(other.raw_, nullptr);
    }
    return *this;
  }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  /// A tensor holding a copy of `count` elements at `data`.
  template <class T>
  static Tensor copy(const std::vector<std::int64_t>& shape, const T* data, std::size_t count) {
    rivet_tensor_t* raw = nullptr;
    detail::check(rivet_tensor_new(dtype_of<T>::value, shape.data(), shape.size(), data, count * sizeof(T), &raw));
    return Tensor(raw);
  }

  /// A tensor borrowing `count` elements at `data`, not copied: `data` must outlive the tensor.
  template <class T>
  static Tensor view(const std::vector<std::int64_t>& shape, const T* data, std::size_t count) {
    rivet_tensor_t* raw = nullptr;
    detail::check(
        rivet_tensor_new_view(dtype_of<T>::value, shape.data(), shape.size(), data, count * sizeof(T), &raw));
    return Tensor(raw);
  }

  /// Imports a DLPack tensor without copying; on success the tensor owns `managed`.
  static Tensor from_dlpack(DLManagedTensorVersioned* managed) {
    rivet_tensor_t* raw = nullptr;
    detail::check(rivet_tensor_from_dlpack(managed, &raw));
    return Tensor(raw);
  }

  /// Exports as DLPack without copying; this Tensor is empty afterwards and the consumer calls
  /// the returned tensor's deleter once.
  DLManagedTensorVersioned* to_dlpack() && {
    DLManagedTensorVersioned* managed = nullptr;
    rivet_tensor_t* consumed = raw_;  // rivet_tensor_to_dlpack takes it, success or not
    raw_ = nullptr;
    detail::check(rivet_tensor_to_dlpack(consumed, &managed));
    return managed;
  }

  rivet_dtype_t dtype() const noexcept { return rivet_tensor_dtype(raw_); }
  Span<const std::int64_t> shape() const noexcept {
    const std::int64_t rank = rivet_tensor_rank(raw_);  // -1 for a moved-from Tensor
    return {rivet_tensor_shape(raw_), rank < 0 ? 0 : static_cast<std::size_t>(rank)};
  }
  const void* data() const noexcept { return rivet_tensor_data(raw_); }
  std::size_t byte_len() const noexcept { return rivet_tensor_byte_len(raw_); }

  /// The elements as T; throws Error(RIVET_ERROR_INVALID_ARGUMENT) when T is not the dtype.
  template <class T>
  Span<const T> values() const {
    if (dtype() != dtype_of<T>::value) {
      throw Error(RIVET_ERROR_INVALID_ARGUMENT, "tensor dtype " + std::to_string(dtype()) +
                                                    " is not the requested " + std::to_string(dtype_of<T>::value));
    }
    return {static_cast<const T*>(data()), byte_len() / sizeof(T)};
  }

  /// A new handle sharing this tensor's data (nothing is copied).
  static Tensor share(const rivet_tensor_t* raw) {
    rivet_tensor_t* copy = nullptr;
    detail::check(rivet_tensor_clone(raw, &copy));
    return Tensor(copy);
  }

  /// The C handle, still owned by this Tensor.
  rivet_tensor_t* get() const noexcept { return raw_; }

 private:
  rivet_tensor_t* raw_;
};

/// Options for Model::load (rivet_load_options_t); setters chain.
class LoadOptions {
 public:
  LoadOptions() { detail::check(rivet_load_options_new(&raw_)); }
  ~LoadOptions() { rivet_load_options_free(raw_); }
  LoadOptions(LoadOptions&& other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
  LoadOptions& operator=(LoadOptions&& other) noexcept {
    if (this != &other) {
      rivet_load_options_free(raw_);
      raw_ = std::exchange(other.raw_, nullptr);
    }
    return *this;
  }
  LoadOptions(const LoadOptions&) = delete;
  LoadOptions& operator=(const LoadOptions&) = delete;

  /// "auto", "tch", "ort", "candle" or a registered backend's name.
  LoadOptions& backend(const std::string& name) { return set(rivet_load_options_set_backend(raw_, name.c_str())); }
  /// A backend's own option, e.g. option("ort", "instances", "4"); checked when the model loads.
  LoadOptions& option(const std::string& backend, const std::string& key, const std::string& value) {
    return set(rivet_load_options_set_option(raw_, backend.c_str(), key.c_str(), value.c_str()));
  }
  /// An option for the backend chosen with backend() (an error while that is "auto").
  LoadOptions& option(const std::string& key, const std::string& value) {
    return set(rivet_load_options_set_option(raw_, nullptr, key.c_str(), value.c_str()));
  }
  LoadOptions& device(rivet_device_t d, std::uint32_t ordinal = 0) {
    return set(rivet_load_options_set_device(raw_, d, ordinal));
  }
  LoadOptions& intra_op_threads(std::size_t n) { return set(rivet_load_options_set_intra_op_threads(raw_, n)); }
  LoadOptions& inter_op_threads(std::size_t n) { return set(rivet_load_options_set_inter_op_threads(raw_, n)); }
  const rivet_load_options_t* get() const noexcept { return raw_; }

 private:
  LoadOptions& set(rivet_error_t* error) {
    detail::check(error);
    return *this;
  }
  rivet_load_options_t* raw_ = nullptr;
};

/// How a shadow samples, compares and captures (rivet_shadow_options_t); setters chain.
class ShadowOptions {
 public:
  ShadowOptions() { detail::check(rivet_shadow_options_new(&raw_)); }
  ~ShadowOptions() { rivet_shadow_options_free(raw_); }
  ShadowOptions(ShadowOptions&& other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
  ShadowOptions& operator=(ShadowOptions&& other) noexcept {
    if (this != &other) {
      rivet_shadow_options_free(raw_);
      raw_ = std::exchange(other.raw_, nullptr);
    }
    return *this;
  }
  ShadowOptions(const ShadowOptions&) = delete;
  ShadowOptions& operator=(const ShadowOptions&) = delete;

  /// An element matches when |candidate - primary| <= atol + rtol * |primary| (default 1e-5 each).
  ShadowOptions& tolerance(double atol, double rtol) { return set(rivet_shadow_options_set_tolerance(raw_, atol, rtol)); }
  /// The share of requests compared, 0 to 1, spread evenly (default 1).
  ShadowOptions& sample(double share) { return set(rivet_shadow_options_set_sample(raw_, share)); }
  /// Comparisons pending at once, the running one included (default 64); beyond it they are
  /// dropped.
  ShadowOptions& queue(std::size_t requests) { return set(rivet_shadow_options_set_queue(raw_, requests)); }
  /// Captures divergent requests into `dir`, keeping at most `max_count` and `max_bytes`.
  ShadowOptions& capture(const std::string& dir, std::size_t max_count = 100, std::uint64_t max_bytes = 256u << 20) {
    return set(rivet_shadow_options_set_capture(raw_, dir.c_str(), max_count, max_bytes));
  }
  const rivet_shadow_options_t* get() const noexcept { return raw_; }

 private:
  ShadowOptions& set(rivet_error_t* error) {
    detail::check(error);
    return *this;
  }
  rivet_shadow_options_t* raw_ = nullptr;
};

/// One input or output of a model.
struct TensorInfo {
  std::string name;
  rivet_dtype_t dtype;             ///< RIVET_DTYPE_UNKNOWN when the model does not say
  std::int64_t rank;               ///< -1 when the shape is unknown
  std::vector<std::int64_t> shape; ///< -1 for dynamic dimensions
};

class Pipeline;

/// A loaded model (rivet_model_t). Safe to run from many threads at once.
class Model {
 public:
  /// Loads `path`; default options when `options` is null.
  static Model load(const std::string& path, const LoadOptions* options = nullptr) {
    rivet_model_t* raw = nullptr;
    detail::check(rivet_model_load(path.c_str(), options ? options->get() : nullptr, &raw));
    return Model(raw);
  }
  static Model load(const std::string& path, const LoadOptions& options) { return load(path, &options); }

  /// A shadow (rivet_shadow_new): answers with `primary` and compares `candidate` on the same
  /// inputs on a thread of its own. Both stay usable (and may be destroyed) afterwards.
  static Model shadow(const Model& primary, const Model& candidate, const ShadowOptions* options = nullptr) {
    rivet_model_t* raw = nullptr;
    detail::check(rivet_shadow_new(primary.raw_, candidate.raw_, options ? options->get() : nullptr, &raw));
    return Model(raw);
  }
  static Model shadow(const Model& primary, const Model& candidate, const ShadowOptions& options) {
    return shadow(primary, candidate, &options);
  }
  /// A shadow's counts and latencies; throws for a model that is not a shadow.
  rivet_shadow_stats_t shadow_stats() const {
    rivet_shadow_stats_t stats{};
    detail::check(rivet_shadow_stats(raw_, &stats));
    return stats;
  }
  /// Waits until a shadow's queued comparisons are done.
  void shadow_flush() const { detail::check(rivet_shadow_flush(raw_)); }

  ~Model() { rivet_model_free(raw_); }
  Model(Model&& other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
  Model& operator=(Model&& other) noexcept {
    if (this != &other) {
      rivet_model_free(raw_);
      raw_ = std::exchange(other.raw_, nullptr);
    }
    return *this;
  }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  /// The name of the backend that loaded it ("tch", "ort", "candle"...).
  std::string backend() const { return rivet_model_backend(raw_); }
  std::size_t input_count() const noexcept { return rivet_model_input_count(raw_); }
  std::size_t output_count() const noexcept { return rivet_model_output_count(raw_); }
  TensorInfo input(std::size_t index) const { return info(index, false); }
  TensorInfo output(std::size_t index) const { return info(index, true); }

  /// Runs on inputs in signature order.
  std::vector<Tensor> run(const std::vector<const Tensor*>& inputs) const {
    return run_raw(nullptr, inputs);
  }

  /// Runs on inputs given by name, in any order.
  std::vector<Tensor> run(const std::vector<std::pair<std::string, const Tensor*>>& named) const {
    std::vector<const char*> names;
    std::vector<const Tensor*> inputs;
    for (const auto& item : named) {
      names.push_back(item.first.c_str());
      inputs.push_back(item.second);
    }
    return run_raw(names.data(), inputs);
  }

  /// Raw table in, predictions out: an Arrow record batch through `pipeline`, then the model
  /// (rivet_model_predict_arrow). Takes `array` and `schema`, also when it throws: their release
  /// callbacks run once, by Rivet.
  std::vector<Tensor> predict(const Pipeline& pipeline, ArrowArray* array, ArrowSchema* schema) const;
  /// The same for every batch of an Arrow C stream, outputs joined along rows
  /// (rivet_model_predict_arrow_stream). Takes `stream`, also when it throws.
  std::vector<Tensor> predict(const Pipeline& pipeline, ArrowArrayStream* stream) const;

  rivet_model_t* get() const noexcept { return raw_; }

 private:
  explicit Model(rivet_model_t* raw) noexcept : raw_(raw) {}

  static std::vector<Tensor> take_outputs(rivet_outputs_t* raw_outputs) {
    // Each output becomes a Tensor sharing its data (no copy), then the outputs handle goes.
    std::unique_ptr<rivet_outputs_t, void (*)(rivet_outputs_t*)> guard(raw_outputs, rivet_outputs_free);
    std::vector<Tensor> outputs;
    outputs.reserve(rivet_outputs_count(raw_outputs));
    for (std::size_t i = 0; i < rivet_outputs_count(raw_outputs); ++i) {
      outputs.push_back(Tensor::share(rivet_outputs_get(raw_outputs, i)));
    }
    return outputs;
  }

  TensorInfo info(std::size_t index, bool output) const {
    rivet_tensor_info_t raw{};
    detail::check(output ? rivet_model_output_info(raw_, index, &raw) : rivet_model_input_info(raw_, index, &raw));
    TensorInfo result{raw.name, raw.dtype, raw.rank, {}};
    if (raw.rank > 0) result.shape.assign(raw.shape, raw.shape + raw.rank);
    return result;
  }

  std::vector<Tensor> run_raw(const char* const* names, const std::vector<const Tensor*>& inputs) const {
    std::vector<const rivet_tensor_t*> raw_inputs;
    for (const Tensor* t : inputs) raw_inputs.push_back(t ? t->get() : nullptr);
    rivet_outputs_t* raw_outputs = nullptr;
    detail::check(rivet_model_run(raw_, names, raw_inputs.data(), raw_inputs.size(), &raw_outputs));
    return take_outputs(raw_outputs);
  }

  rivet_model_t* raw_ = nullptr;
};

/// A fitted preprocessing pipeline (rivet_pipeline_t), as `rivet prep fit` writes it. Safe to
/// use from many threads at once.
class Pipeline {
 public:
  static Pipeline load(const std::string& path) {
    rivet_pipeline_t* raw = nullptr;
    detail::check(rivet_pipeline_load(path.c_str(), &raw));
    return Pipeline(raw);
  }
  ~Pipeline() { rivet_pipeline_free(raw_); }
  Pipeline(Pipeline&& other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
  Pipeline& operator=(Pipeline&& other) noexcept {
    if (this != &other) {
      rivet_pipeline_free(raw_);
      raw_ = std::exchange(other.raw_, nullptr);
    }
    return *this;
  }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  /// The feature names, in tensor column order.
  std::vector<std::string> features() const {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < rivet_pipeline_feature_count(raw_); ++i) {
      names.emplace_back(rivet_pipeline_feature_name(raw_, i));
    }
    return names;
  }

  /// An Arrow record batch as a [rows, features] f32 tensor (rivet_pipeline_transform_arrow).
  /// Takes `array` and `schema`, also when it throws.
  Tensor transform(ArrowArray* array, ArrowSchema* schema) const {
    rivet_tensor_t* raw = nullptr;
    detail::check(rivet_pipeline_transform_arrow(raw_, array, schema, &raw));
    return Tensor(raw);
  }

  /// Every batch of an Arrow C stream as one [rows, features] tensor
  /// (rivet_pipeline_transform_arrow_stream). Takes `stream`, also when it throws.
  Tensor transform(ArrowArrayStream* stream) const {
    rivet_tensor_t* raw = nullptr;
    detail::check(rivet_pipeline_transform_arrow_stream(raw_, stream, &raw));
    return Tensor(raw);
  }

  rivet_pipeline_t* get() const noexcept { return raw_; }

 private:
  explicit Pipeline(rivet_pipeline_t* raw) noexcept : raw_(raw) {}
  rivet_pipeline_t* raw_ = nullptr;
};

inline std::vector<Tensor> Model::predict(const Pipeline& pipeline, ArrowArray* array, ArrowSchema* schema) const {
  rivet_outputs_t* raw_outputs = nullptr;
  detail::check(rivet_model_predict_arrow(raw_, pipeline.get(), array, schema, &raw_outputs));
  return take_outputs(raw_outputs);
}

inline std::vector<Tensor> Model::predict(const Pipeline& pipeline, ArrowArrayStream* stream) const {
  rivet_outputs_t* raw_outputs = nullptr;
  detail::check(rivet_model_predict_arrow_stream(raw_, pipeline.get(), stream, &raw_outputs));
  return take_outputs(raw_outputs);
}

}  // namespace rivet

#endif  // RIVET_HPP
