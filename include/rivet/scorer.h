// Rivet's C++ API (cxx bridge): the parts written in C++.
//
// Include <rivet/cxx.hpp>, not this file: it is included by the generated <rivet/bridge.h>,
// which defines the shared types declared here (TensorSpec, TensorRef, BackendOption).
//
// A legacy scorer joins Rivet by deriving from rivet::Scorer (one model) and, to be loaded by
// path and by backend name, from rivet::ScorerBackend (a factory). Rivet checks every input
// against the scorer's declared signature before calling run(), and every output against it
// after: a scorer sees only inputs that match what it declared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "rust/cxx.h"

namespace rivet {

// An element type. The values are rivet.h's RIVET_DTYPE_* (cxx checks that the bridge agrees).
enum class DType : std::uint32_t {
  Unknown = 0,
  F16 = 1,
  BF16 = 2,
  F32 = 3,
  F64 = 4,
  I8 = 5,
  I16 = 6,
  I32 = 7,
  I64 = 8,
  U8 = 9,
  Bool = 10,
};

// The DType of a C++ element type: element_dtype<float>::value == DType::F32 (rivet.hpp has
// its own dtype_of, for the C ABI's codes). bool is one byte, 0
// or 1. f16 and bf16 have no C++ type here; pass their bits as std::uint16_t with
// ScorerOutput::from_bits.
template <typename T>
struct element_dtype;
template <> struct element_dtype<float> : std::integral_constant<DType, DType::F32> {};
template <> struct element_dtype<double> : std::integral_constant<DType, DType::F64> {};
template <> struct element_dtype<std::int8_t> : std::integral_constant<DType, DType::I8> {};
template <> struct element_dtype<std::int16_t> : std::integral_constant<DType, DType::I16> {};
template <> struct element_dtype<std::int32_t> : std::integral_constant<DType, DType::I32> {};
template <> struct element_dtype<std::int64_t> : std::integral_constant<DType, DType::I64> {};
template <> struct element_dtype<std::uint8_t> : std::integral_constant<DType, DType::U8> {};
template <> struct element_dtype<bool> : std::integral_constant<DType, DType::Bool> {};

// Defined by the generated <rivet/bridge.h>.
struct TensorSpec;
struct TensorRef;
struct BackendOption;

// One output tensor of a scorer. It owns its values, moved in (never copied); Rivet hands them
// on as a tensor over this memory and destroys the ScorerOutput when the last user is done.
class ScorerOutput {
 public:
  // shape: one entry per dimension, each >= 0; values: the elements in row-major order.
  template <typename T>
  ScorerOutput(std::vector<std::int64_t> shape, std::vector<T> values)
      : ScorerOutput(element_dtype<T>::value, std::move(shape), std::move(values)) {}

  // An f16 or bf16 output (dtype F16 or BF16) given as its raw 16-bit patterns.
  static ScorerOutput from_bits(DType dtype, std::vector<std::int64_t> shape,
                                std::vector<std::uint16_t> bits) {
    return ScorerOutput(dtype, std::move(shape), std::move(bits));
  }

  DType dtype() const noexcept { return dtype_; }
  const std::vector<std::int64_t>& shape() const noexcept { return shape_; }
  const std::uint8_t* data() const noexcept { return data_; }
  std::size_t size_bytes() const noexcept { return size_; }

 private:
  template <typename T>
  ScorerOutput(DType dtype, std::vector<std::int64_t> shape, std::vector<T> values)
      : dtype_(dtype), shape_(std::move(shape)) {
    auto owned = std::make_shared<std::vector<T>>(std::move(values));
    data_ = reinterpret_cast<const std::uint8_t*>(owned->data());
    size_ = owned->size() * sizeof(T);
    owner_ = std::move(owned);
  }

  DType dtype_;
  std::vector<std::int64_t> shape_;
  std::shared_ptr<const void> owner_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// A model written in C++: a legacy scorer Rivet runs, checks, compares and benchmarks like any
// other backend's model.
//
// Threads: Rivet assumes a scorer is NOT thread-safe and serializes its runs (one at a time,
// from whichever thread calls). Override thread_safe() to return true only if run() may be
// called from several threads at once; Rivet then calls it concurrently.
//
// Exceptions: anything run(), inputs() or outputs() throws becomes a Rivet error (kind
// RIVET_ERROR_BACKEND) carrying what() (or a note that a non-std::exception was thrown); the
// process lives on.
class Scorer {
 public:
  virtual ~Scorer() = default;

  // The inputs it takes, in positional order: name, dtype, shape with -1 for a dimension of
  // any size. Called once, when Rivet wraps the scorer.
  virtual rust::Vec<TensorSpec> inputs() const = 0;

  // The outputs run() returns, in order (same form as inputs()).
  virtual rust::Vec<TensorSpec> outputs() const = 0;

  // Scores one batch. `inputs` are in the order inputs() declares, already checked against it
  // (dtype, rank, fixed dimensions); their memory is borrowed for this call only. Returns one
  // ScorerOutput per declared output, in order.
  virtual std::vector<ScorerOutput> run(rust::Slice<const TensorRef> inputs) = 0;

  // Whether run() may be called from several threads at once (default: no).
  virtual bool thread_safe() const { return false; }
};

// A C++ backend: makes a Scorer from a model file, so Rivet can load its models by path under
// the backend's name (rivet::load, `rivet compare --backend NAME`).
class ScorerBackend {
 public:
  virtual ~ScorerBackend() = default;

  // Loads the model file at `path`. `options` are the key=value settings given for this
  // backend, each key one of option_keys() (Rivet rejects any other before calling). Throw to
  // refuse; the message reaches the caller as a load error naming the path.
  virtual std::unique_ptr<Scorer> load(const std::string& path,
                                       const std::map<std::string, std::string>& options) = 0;

  // The option keys load() understands (default: none).
  virtual std::vector<std::string> option_keys() const { return {}; }
};

// The functions Rivet calls through the bridge (defined in the rivet-cxx crate's scorer.cc;
// not meant to be called by users).
namespace bridge {
// The outputs of one run() kept together until Rivet drops the last tensor over them.
struct ScorerOutputs {
  std::vector<ScorerOutput> items;
};
std::unique_ptr<ScorerOutputs> run_scorer(const Scorer& scorer, rust::Slice<const TensorRef> inputs);
rust::Vec<TensorSpec> scorer_inputs(const Scorer& scorer);
rust::Vec<TensorSpec> scorer_outputs(const Scorer& scorer);
bool scorer_thread_safe(const Scorer& scorer);
std::size_t output_count(const ScorerOutputs& outputs) noexcept;
DType output_dtype(const ScorerOutputs& outputs, std::size_t index) noexcept;
rust::Slice<const std::int64_t> output_shape(const ScorerOutputs& outputs, std::size_t index) noexcept;
rust::Slice<const std::uint8_t> output_data(const ScorerOutputs& outputs, std::size_t index) noexcept;
std::unique_ptr<Scorer> load_scorer(const ScorerBackend& backend, rust::Str path,
                                    rust::Slice<const BackendOption> options);
rust::Vec<rust::String> backend_option_keys(const ScorerBackend& backend);
}  // namespace bridge

}  // namespace rivet

namespace rust {
namespace behavior {
// How the bridge turns a C++ exception into a Rust error: like cxx's default for
// std::exception, and also for anything else thrown (cxx's default would std::terminate).
template <typename Try, typename Fail>
static void trycatch(Try&& func, Fail&& fail) noexcept try {
  func();
} catch (const std::exception& e) {
  fail(e.what());
} catch (...) {
  fail("an exception that is not a std::exception was thrown");
}
}  // namespace behavior
}  // namespace rust
