// A "legacy" C++ scorer: the bundled MLP's forward pass in plain C++ (dense layers, ReLU between
// them), reading the weights export.py writes to models/mlp/mlp.weights. It is what a team
// migrating to Rivet already has; deriving from rivet::Scorer is all it takes to run it beside
// Rivet's backends (main.cpp) and through the rivet CLI (plugin/, librivet_legacy_mlp.so).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <rivet/cxx.hpp>

namespace legacy {

// One dense layer: y = W x + b, W stored [out][in] row-major.
struct DenseLayer {
  std::uint32_t out = 0;
  std::uint32_t in = 0;
  std::vector<float> weight;
  std::vector<float> bias;
};

// Reads "RVTW0001" weight files; throws std::runtime_error naming the file and the problem.
std::vector<DenseLayer> read_dense_weights(const std::string& path);

// The MLP: features f32[batch, in] -> logits f32[batch, out]. Not thread-safe on purpose (it
// reuses one scratch buffer, as legacy code often does), so Rivet serializes its runs.
class MlpScorer : public rivet::Scorer {
 public:
  explicit MlpScorer(std::vector<DenseLayer> layers);

  rust::Vec<rivet::TensorSpec> inputs() const override;
  rust::Vec<rivet::TensorSpec> outputs() const override;
  std::vector<rivet::ScorerOutput> run(rust::Slice<const rivet::TensorRef> inputs) override;

 private:
  std::vector<DenseLayer> layers_;
  std::vector<float> scratch_;
};

// Makes MlpScorers from weight files: the backend registered as "legacy_mlp".
class MlpBackend : public rivet::ScorerBackend {
 public:
  std::unique_ptr<rivet::Scorer> load(const std::string& path,
                                      const std::map<std::string, std::string>& options) override;
};

}  // namespace legacy

// For the backend library (plugin/): a new MlpBackend, owned by the caller.
extern "C" rivet::ScorerBackend* legacy_mlp_backend();
