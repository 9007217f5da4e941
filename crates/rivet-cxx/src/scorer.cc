// The C++ half of the scorer bridge: Rivet calls these (declared in rivet/scorer.h) to reach a
// user's rivet::Scorer and rivet::ScorerBackend. Exceptions pass through to the bridge, whose
// trycatch (scorer.h) turns them into Rust errors.
#include "rivet-cxx/src/lib.rs.h"

#include <stdexcept>

namespace rivet {
namespace bridge {

std::unique_ptr<ScorerOutputs> run_scorer(const Scorer& scorer, rust::Slice<const TensorRef> inputs) {
  // Rivet holds the scorer as const so that thread-safe scorers can be shared; run() is not
  // const because legacy scorers keep state. Serialization (scorer.h) makes this sound.
  auto outputs = std::make_unique<ScorerOutputs>();
  outputs->items = const_cast<Scorer&>(scorer).run(inputs);
  return outputs;
}

rust::Vec<TensorSpec> scorer_inputs(const Scorer& scorer) { return scorer.inputs(); }

rust::Vec<TensorSpec> scorer_outputs(const Scorer& scorer) { return scorer.outputs(); }

bool scorer_thread_safe(const Scorer& scorer) { return scorer.thread_safe(); }

std::size_t output_count(const ScorerOutputs& outputs) noexcept { return outputs.items.size(); }

DType output_dtype(const ScorerOutputs& outputs, std::size_t index) noexcept {
  return outputs.items[index].dtype();
}

rust::Slice<const std::int64_t> output_shape(const ScorerOutputs& outputs, std::size_t index) noexcept {
  const auto& shape = outputs.items[index].shape();
  return {shape.data(), shape.size()};
}

rust::Slice<const std::uint8_t> output_data(const ScorerOutputs& outputs, std::size_t index) noexcept {
  const auto& item = outputs.items[index];
  return {item.data(), item.size_bytes()};
}

std::unique_ptr<Scorer> load_scorer(const ScorerBackend& backend, rust::Str path,
                                    rust::Slice<const BackendOption> options) {
  std::map<std::string, std::string> settings;
  for (const auto& option : options) {
    settings[std::string(option.key)] = std::string(option.value);
  }
  auto scorer = const_cast<ScorerBackend&>(backend).load(std::string(path), settings);
  if (!scorer) {
    throw std::runtime_error("the backend's load() returned no scorer");
  }
  return scorer;
}

rust::Vec<rust::String> backend_option_keys(const ScorerBackend& backend) {
  rust::Vec<rust::String> keys;
  for (const auto& key : backend.option_keys()) {
    keys.push_back(rust::String(key));
  }
  return keys;
}

}  // namespace bridge
}  // namespace rivet
