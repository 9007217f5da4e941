#include "mlp_scorer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace legacy {
namespace {

std::uint32_t read_u32(std::istream& in, const std::string& path) {
  unsigned char bytes[4];
  if (!in.read(reinterpret_cast<char*>(bytes), 4)) {
    throw std::runtime_error(path + ": truncated weight file");
  }
  return std::uint32_t(bytes[0]) | std::uint32_t(bytes[1]) << 8 | std::uint32_t(bytes[2]) << 16 |
         std::uint32_t(bytes[3]) << 24;
}

std::vector<float> read_f32s(std::istream& in, std::size_t count, const std::string& path) {
  std::vector<float> values(count);
  // The file is little-endian, as is every machine Rivet builds for.
  if (!in.read(reinterpret_cast<char*>(values.data()), std::streamsize(count * sizeof(float)))) {
    throw std::runtime_error(path + ": truncated weight file");
  }
  return values;
}

}  // namespace

std::vector<DenseLayer> read_dense_weights(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error(path + ": cannot open");
  }
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "RVTW0001", 8) != 0) {
    throw std::runtime_error(path + ": not a dense weight file (no RVTW0001 header)");
  }
  std::uint32_t count = read_u32(in, path);
  if (count == 0 || count > 64) {
    throw std::runtime_error(path + ": implausible layer count " + std::to_string(count));
  }
  std::vector<DenseLayer> layers;
  for (std::uint32_t i = 0; i < count; ++i) {
    DenseLayer layer;
    layer.out = read_u32(in, path);
    layer.in = read_u32(in, path);
    if (layer.out == 0 || layer.in == 0 || layer.out > (1u << 16) || layer.in > (1u << 16)) {
      throw std::runtime_error(path + ": implausible layer size");
    }
    if (!layers.empty() && layers.back().out != layer.in) {
      throw std::runtime_error(path + ": layer " + std::to_string(i) + " takes " + std::to_string(layer.in) +
                               " values but the previous layer gives " + std::to_string(layers.back().out));
    }
    layer.weight = read_f32s(in, std::size_t(layer.out) * layer.in, path);
    layer.bias = read_f32s(in, layer.out, path);
    layers.push_back(std::move(layer));
  }
  return layers;
}

MlpScorer::MlpScorer(std::vector<DenseLayer> layers) : layers_(std::move(layers)) {
  if (layers_.empty()) {
    throw std::invalid_argument("an MLP needs at least one layer");
  }
}

rust::Vec<rivet::TensorSpec> MlpScorer::inputs() const {
  rust::Vec<rivet::TensorSpec> specs;
  specs.push_back({"features", rivet::DType::F32, {-1, std::int64_t(layers_.front().in)}});
  return specs;
}

rust::Vec<rivet::TensorSpec> MlpScorer::outputs() const {
  rust::Vec<rivet::TensorSpec> specs;
  specs.push_back({"logits", rivet::DType::F32, {-1, std::int64_t(layers_.back().out)}});
  return specs;
}

std::vector<rivet::ScorerOutput> MlpScorer::run(rust::Slice<const rivet::TensorRef> inputs) {
  // Rivet has checked the input against inputs(): one f32[batch, in].
  const rivet::TensorRef& features = inputs[0];
  const auto batch = std::size_t(features.shape[0]);
  const float* x = reinterpret_cast<const float*>(features.data.data());
  std::size_t widest = 0;
  for (const auto& layer : layers_) widest = std::max<std::size_t>(widest, layer.out);
  scratch_.resize(2 * widest);
  std::vector<float> logits(batch * layers_.back().out);
  for (std::size_t row = 0; row < batch; ++row) {
    const float* in = x + row * layers_.front().in;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const DenseLayer& layer = layers_[l];
      const bool last = l + 1 == layers_.size();
      float* out = last ? logits.data() + row * layer.out : scratch_.data() + (l % 2) * widest;
      for (std::uint32_t o = 0; o < layer.out; ++o) {
        const float* w = layer.weight.data() + std::size_t(o) * layer.in;
        float sum = layer.bias[o];
        for (std::uint32_t i = 0; i < layer.in; ++i) sum += w[i] * in[i];
        out[o] = last ? sum : std::max(sum, 0.0f);
      }
      in = out;
    }
  }
  std::vector<rivet::ScorerOutput> outputs;
  outputs.emplace_back(std::vector<std::int64_t>{std::int64_t(batch), std::int64_t(layers_.back().out)},
                       std::move(logits));
  return outputs;
}

std::unique_ptr<rivet::Scorer> MlpBackend::load(const std::string& path,
                                                const std::map<std::string, std::string>&) {
  return std::unique_ptr<rivet::Scorer>(new MlpScorer(read_dense_weights(path)));
}

}  // namespace legacy

extern "C" rivet::ScorerBackend* legacy_mlp_backend() { return new legacy::MlpBackend(); }
