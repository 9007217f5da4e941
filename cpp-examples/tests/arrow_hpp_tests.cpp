// rivet.hpp's rivet::Pipeline and Model::predict on Arrow: the same hand-made batches and
// streams as arrow_tests.c, through the C++ wrappers, against scikit-learn's features and
// PyTorch's probabilities; a failure is a rivet::Error with the C code, and the batch it was
// given is still released exactly once. Ends with "arrow_hpp_tests: N passed, N failed" counting
// tests (check.h).
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

npy_array features{}, probability{};

// Both read through the C++ wrappers, the tests' shared fixtures.
const rivet::Pipeline& pipeline() {
  static const rivet::Pipeline loaded = rivet::Pipeline::load(RIVET_MODELS "/tabular/tabular.pipeline.json");
  return loaded;
}
const rivet::Model& model() {
  static const rivet::Model loaded =
      rivet::Model::load(RIVET_MODELS "/tabular/tabular.onnx", rivet::LoadOptions().backend("ort"));
  return loaded;
}

void test_fixtures_load() {
  CHECK(npy_read(RIVET_MODELS "/tabular/cases/arrow/features.npy", &features) == 0, "features.npy");
  CHECK(npy_read(RIVET_MODELS "/tabular/cases/arrow/churn_probability.npy", &probability) == 0, "probability.npy");
  auto names = pipeline().features();
  CHECK(names.size() == 16 && names.front() == "age" && names.back() == "region_west", "feature names");
  CHECK(model().backend() == "ort", "the model runs on ort");
}

void test_transform_batch() {
  const int batches = batch_releases, schemas = schema_releases;
  ArrowArray array;
  ArrowSchema schema;
  make_batch(&array, &schema, -1, nullptr);
  rivet::Tensor tensor = pipeline().transform(&array, &schema);
  CHECK(batch_releases - batches == 1 && schema_releases - schemas == 1, "released once: %d, %d",
        batch_releases - batches, schema_releases - schemas);
  CHECK(close_to(static_cast<const float*>(rivet_tensor_data(tensor.get())), static_cast<const float*>(features.data),
                 ROWS * 16, 1e-6),
        "features match scikit-learn's");
}

void test_predict_batch() {
  const int batches = batch_releases, schemas = schema_releases;
  ArrowArray array;
  ArrowSchema schema;
  make_batch(&array, &schema, -1, nullptr);
  auto outputs = model().predict(pipeline(), &array, &schema);
  CHECK(outputs.size() == 1 && rivet_tensor_shape(outputs[0].get())[0] == ROWS, "one output of 6 rows");
  CHECK(close_to(static_cast<const float*>(rivet_tensor_data(outputs[0].get())),
                 static_cast<const float*>(probability.data), ROWS, 1e-5),
        "probabilities match PyTorch's");
  CHECK(batch_releases - batches == 1 && schema_releases - schemas == 1, "released once: %d, %d",
        batch_releases - batches, schema_releases - schemas);
}

// Batches of a stream and the stream's schema are each released once.
void test_streams() {
  const int batches = batch_releases, schemas = schema_releases, streams = stream_releases;
  ArrowArrayStream stream;
  make_stream(&stream, 2, -1);
  auto joined = model().predict(pipeline(), &stream);
  CHECK(rivet_tensor_shape(joined[0].get())[0] == 2 * ROWS && stream_releases - streams == 1,
        "a stream of two batches");
  make_stream(&stream, 3, -1);
  rivet::Tensor all = pipeline().transform(&stream);
  CHECK(rivet_tensor_shape(all.get())[0] == 3 * ROWS && stream_releases - streams == 2, "a stream transformed");
  CHECK(batch_releases - batches == 2 + 3 && schema_releases - schemas == 2,
        "every batch and schema released once: %d, %d", batch_releases - batches, schema_releases - schemas);
}

// A failure is a rivet::Error with the C code, and the batch is still taken.
void test_errors() {
  const int batches = batch_releases;
  ArrowArray array;
  ArrowSchema schema;
  make_batch(&array, &schema, -1, "gold");
  try {
    model().predict(pipeline(), &array, &schema);
    CHECK(false, "an unseen plan must throw");
  } catch (const rivet::Error& e) {
    CHECK(e.code() == RIVET_ERROR_PREPROCESS, "code %u", e.code());
    CHECK(std::strstr(e.what(), "category \"gold\" was not seen when fitting") != nullptr, "message: %s", e.what());
  }
  CHECK(array.release == nullptr && schema.release == nullptr, "the failed call took the batch");
  CHECK(batch_releases - batches == 1, "released once: %d", batch_releases - batches);
  try {
    rivet::Pipeline::load("/nonexistent/pipeline.json");
    CHECK(false, "a missing file must throw");
  } catch (const rivet::Error& e) {
    CHECK(e.code() == RIVET_ERROR_IO, "code %u", e.code());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* suite = argc > 1 ? argv[1] : "arrow_hpp_tests";
  RUN_TEST(test_fixtures_load);
  if (tests_failed != 0) return report(suite);
  RUN_TEST(test_transform_batch);
  RUN_TEST(test_predict_batch);
  RUN_TEST(test_streams);
  RUN_TEST(test_errors);
  npy_free(&features);
  npy_free(&probability);
  return report(suite);
}
