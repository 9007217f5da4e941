// rivet.hpp's rivet::Pipeline and Model::predict on Arrow: the same hand-made batches and
// streams as arrow_tests.c, through the C++ wrappers, against scikit-learn's features and
// PyTorch's probabilities; a failure is a rivet::Error with the C code, and the batch it was
// given is still released exactly once. Ends with "N passed, N failed".
#include <rivet.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "arrow_batch.h"
extern "C" {
#include "npy.h"
}

#include "check.h"

namespace {

bool close_to(const float* got, const float* want, std::size_t n, double tolerance) {
  for (std::size_t i = 0; i < n; ++i) {
    if (std::fabs(double(got[i]) - double(want[i])) > tolerance * (1.0 + std::fabs(double(want[i])))) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  npy_array features{}, probability{};
  CHECK(npy_read(RIVET_MODELS "/tabular/cases/arrow/features.npy", &features) == 0, "features.npy");
  CHECK(npy_read(RIVET_MODELS "/tabular/cases/arrow/churn_probability.npy", &probability) == 0, "probability.npy");
  try {
    auto pipeline = rivet::Pipeline::load(RIVET_MODELS "/tabular/tabular.pipeline.json");
    auto model = rivet::Model::load(RIVET_MODELS "/tabular/tabular.onnx", rivet::LoadOptions().backend("ort"));
    auto names = pipeline.features();
    CHECK(names.size() == 16 && names.front() == "age" && names.back() == "region_west", "feature names");

    ArrowArray array;
    ArrowSchema schema;
    make_batch(&array, &schema, -1, nullptr);
    rivet::Tensor tensor = pipeline.transform(&array, &schema);
    CHECK(batch_releases == 1 && schema_releases == 1, "released once: %d, %d", batch_releases, schema_releases);
    CHECK(close_to(static_cast<const float*>(rivet_tensor_data(tensor.get())), static_cast<const float*>(features.data),
                   ROWS * 16, 1e-6),
          "features match scikit-learn's");

    make_batch(&array, &schema, -1, nullptr);
    auto outputs = model.predict(pipeline, &array, &schema);
    CHECK(outputs.size() == 1 && rivet_tensor_shape(outputs[0].get())[0] == ROWS, "one output of 6 rows");
    CHECK(close_to(static_cast<const float*>(rivet_tensor_data(outputs[0].get())),
                   static_cast<const float*>(probability.data), ROWS, 1e-5),
          "probabilities match PyTorch's");

    ArrowArrayStream stream;
    make_stream(&stream, 2, -1);
    auto joined = model.predict(pipeline, &stream);
    CHECK(rivet_tensor_shape(joined[0].get())[0] == 2 * ROWS && stream_releases == 1, "a stream of two batches");
    make_stream(&stream, 3, -1);
    rivet::Tensor all = pipeline.transform(&stream);
    CHECK(rivet_tensor_shape(all.get())[0] == 3 * ROWS && stream_releases == 2, "a stream transformed");

    make_batch(&array, &schema, -1, "gold");
    try {
      model.predict(pipeline, &array, &schema);
      CHECK(false, "an unseen plan must throw");
    } catch (const rivet::Error& e) {
      CHECK(e.code() == RIVET_ERROR_PREPROCESS, "code %u", e.code());
      CHECK(std::strstr(e.what(), "category \"gold\" was not seen when fitting") != nullptr, "message: %s", e.what());
    }
    CHECK(array.release == nullptr && schema.release == nullptr, "the failed call took the batch");
    try {
      rivet::Pipeline::load("/nonexistent/pipeline.json");
      CHECK(false, "a missing file must throw");
    } catch (const rivet::Error& e) {
      CHECK(e.code() == RIVET_ERROR_IO, "code %u", e.code());
    }
  } catch (const rivet::Error& e) {
    CHECK(false, "unexpected error %u: %s", e.code(), e.what());
  }
  // Batches: 3 alone and 2 + 3 in streams; schemas: 3 with the batches and 1 per stream.
  CHECK(batch_releases == 3 + 2 + 3 && schema_releases == 3 + 2, "every batch and schema released once: %d, %d",
        batch_releases, schema_releases);
  npy_free(&features);
  npy_free(&probability);
  std::printf("%s: %d passed, %d failed\n", argc > 1 ? argv[1] : "arrow_hpp_tests", passed, failed);
  return failed == 0 ? 0 : 1;
}
