/* Arrow record batches and streams from C: a batch built here by hand (as any Arrow producer
 * would hand one over) goes through the tabular example's fitted pipeline and its model, and the results match
 * scikit-learn's features and PyTorch's probabilities (models/tabular/arrow_case.py holds the
 * same six rows and wrote the references). Every release callback runs exactly once, also when
 * a call fails. Ends with "arrow_tests: N passed, N failed" counting tests (check.h). */
#include <rivet.h>
#include <rivet/arrow.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arrow_batch.h"
#include "npy.h"

#include "check.h"

static void expect_error(rivet_error_t *error, rivet_error_code_t code, const char *needle, const char *what) {
  if (!error) {
    CHECK(0, "%s: expected error %u, got success", what, code);
    return;
  }
  const char *message = rivet_error_message(error);
  CHECK(rivet_error_code(error) == code, "%s: code %u, expected %u (%s)", what, rivet_error_code(error), code, message);
  CHECK(strstr(message, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, message, needle);
  rivet_error_free(error);
}

static int close_to(const float *got, const float *want, size_t n, double tolerance, const char *what) {
  for (size_t i = 0; i < n; i++) {
    if (fabs((double)got[i] - (double)want[i]) > tolerance * (1.0 + fabs((double)want[i]))) {
      fprintf(stderr, "%s[%zu]: %.9g vs reference %.9g\n", what, i, got[i], want[i]);
      return 0;
    }
  }
  return 1;
}

/* The fitted pipeline, the model it feeds and the references, shared by every test. */
static rivet_pipeline_t *pipeline;
static rivet_model_t *model;
static npy_array features, probability;

/* Loads the shared pipeline, model and references; the tests after it need them. */
static void test_fixtures_load(void) {
  rivet_load_options_t *options = NULL;
  CHECK(!rivet_pipeline_load(RIVET_MODELS "/tabular/tabular.pipeline.json", &pipeline), "pipeline loads");
  CHECK(rivet_load_options_new(&options) == NULL, "options");
  CHECK(rivet_load_options_set_backend(options, "ort") == NULL, "backend ort");
  CHECK(!rivet_model_load(RIVET_MODELS "/tabular/tabular.onnx", options, &model), "model loads");
  rivet_load_options_free(options);
  CHECK(npy_read(RIVET_MODELS "/tabular/cases/arrow/features.npy", &features) == 0, "features.npy");
  CHECK(npy_read(RIVET_MODELS "/tabular/cases/arrow/churn_probability.npy", &probability) == 0, "probability.npy");
}

static void test_feature_names(void) {
  CHECK(rivet_pipeline_feature_count(pipeline) == 16, "16 features, got %zu", rivet_pipeline_feature_count(pipeline));
  CHECK(strcmp(rivet_pipeline_feature_name(pipeline, 15), "region_west") == 0, "last feature name");
  CHECK(rivet_pipeline_feature_name(pipeline, 16) == NULL, "out-of-range feature name is NULL");
}

/* Transform: scikit-learn's features, the batch released once, the caller's structs marked. */
static void test_transform_batch(void) {
  const int batches = batch_releases, schemas = schema_releases;
  struct ArrowArray array;
  struct ArrowSchema schema;
  make_batch(&array, &schema, -1, NULL);
  rivet_tensor_t *tensor = NULL;
  rivet_error_t *error = rivet_pipeline_transform_arrow(pipeline, &array, &schema, &tensor);
  CHECK(error == NULL, "transform: %s", error ? rivet_error_message(error) : "");
  rivet_error_free(error);
  CHECK(batch_releases - batches == 1 && schema_releases - schemas == 1, "released once each: %d, %d",
        batch_releases - batches, schema_releases - schemas);
  CHECK(array.release == NULL && schema.release == NULL, "the caller's structs are marked released");
  CHECK(tensor != NULL, "a tensor");
  if (tensor) {
    const int64_t *shape = rivet_tensor_shape(tensor);
    CHECK(rivet_tensor_dtype(tensor) == RIVET_DTYPE_F32 && rivet_tensor_rank(tensor) == 2 && shape[0] == ROWS &&
              shape[1] == 16,
          "features are f32 [6, 16]");
    CHECK(close_to(rivet_tensor_data(tensor), features.data, ROWS * 16, 1e-6, "features"),
          "features match scikit-learn's within 1e-6");
    rivet_tensor_free(tensor);
  }
}

/* Raw table in, predictions out, in one call. */
static void test_predict_batch(void) {
  const int batches = batch_releases, schemas = schema_releases;
  struct ArrowArray array;
  struct ArrowSchema schema;
  make_batch(&array, &schema, -1, NULL);
  rivet_outputs_t *outputs = NULL;
  rivet_error_t *error = rivet_model_predict_arrow(model, pipeline, &array, &schema, &outputs);
  CHECK(error == NULL, "predict: %s", error ? rivet_error_message(error) : "");
  rivet_error_free(error);
  CHECK(batch_releases - batches == 1 && schema_releases - schemas == 1, "released once each: %d, %d",
        batch_releases - batches, schema_releases - schemas);
  CHECK(outputs != NULL, "outputs");
  if (outputs) {
    CHECK(rivet_outputs_count(outputs) == 1, "one output");
    CHECK(strcmp(rivet_outputs_name(outputs, 0), "churn_probability") == 0, "output name");
    const rivet_tensor_t *p = rivet_outputs_get(outputs, 0);
    CHECK(rivet_tensor_shape(p)[0] == ROWS && rivet_tensor_shape(p)[1] == 1, "probability is [6, 1]");
    CHECK(close_to(rivet_tensor_data(p), probability.data, ROWS, 1e-5, "probability"),
          "probabilities match PyTorch's within 1e-5");
    rivet_outputs_free(outputs);
  }
}

/* Failures name what was wrong, and still release the batch exactly once. */
static void test_failures_release_once(void) {
  const int batches = batch_releases, schemas = schema_releases;
  struct ArrowArray array;
  struct ArrowSchema schema;
  rivet_tensor_t *tensor = NULL;
  rivet_outputs_t *outputs = NULL;
  make_batch(&array, &schema, 3, NULL);
  expect_error(rivet_pipeline_transform_arrow(pipeline, &array, &schema, &tensor), RIVET_ERROR_PREPROCESS,
               "no column \"income\"", "missing column");
  CHECK(tensor == NULL, "out untouched on failure");
  CHECK(batch_releases - batches == 1 && schema_releases - schemas == 1, "released on failure: %d, %d",
        batch_releases - batches, schema_releases - schemas);

  make_batch(&array, &schema, -1, "gold");
  expect_error(rivet_model_predict_arrow(model, pipeline, &array, &schema, &outputs), RIVET_ERROR_PREPROCESS,
               "column \"plan\", row 4 (0-based): category \"gold\" was not seen when fitting", "unseen category");
  CHECK(outputs == NULL, "out untouched on failure");
  CHECK(batch_releases - batches == 2 && schema_releases - schemas == 2, "released on failure: %d, %d",
        batch_releases - batches, schema_releases - schemas);

  /* A schema that is not a record batch: the first column's schema alone. */
  make_batch(&array, &schema, -1, NULL);
  struct ArrowSchema *column = schema.children[0];
  struct ArrowSchema not_batch = {column->format, column->name, NULL, 0, 0, NULL, NULL, release_schema,
                                  calloc(1, 1)};
  expect_error(rivet_pipeline_transform_arrow(pipeline, &array, &not_batch, &tensor), RIVET_ERROR_PREPROCESS,
               "a record batch is a struct", "not a record batch");
  CHECK(batch_releases - batches == 3 && schema_releases - schemas == 3, "released: %d, %d",
        batch_releases - batches, schema_releases - schemas);
  schema.release(&schema); /* the real schema was never handed over */
  CHECK(schema_releases - schemas == 4, "own release");

  /* Already released, or NULL: refused, nothing released twice. */
  expect_error(rivet_pipeline_transform_arrow(pipeline, &array, &schema, &tensor), RIVET_ERROR_INVALID_ARGUMENT,
               "already released", "released batch");
  expect_error(rivet_pipeline_transform_arrow(pipeline, NULL, &schema, &tensor), RIVET_ERROR_INVALID_ARGUMENT,
               "array is NULL", "NULL array");
  make_batch(&array, &schema, -1, NULL);
  expect_error(rivet_pipeline_transform_arrow(NULL, &array, &schema, &tensor), RIVET_ERROR_INVALID_ARGUMENT,
               "pipeline is NULL", "NULL pipeline");
  CHECK(batch_releases - batches == 4 && schema_releases - schemas == 5, "released once on a NULL pipeline: %d, %d",
        batch_releases - batches, schema_releases - schemas);
}

/* Streams: one tensor for all batches, each batch and the stream released once. */
static void test_streams(void) {
  const int batches = batch_releases, schemas = schema_releases, streams = stream_releases;
  const int made = stream_batches_made;
  struct ArrowArrayStream stream;
  make_stream(&stream, 3, -1);
  rivet_tensor_t *tensor = NULL;
  rivet_error_t *error = rivet_pipeline_transform_arrow_stream(pipeline, &stream, &tensor);
  CHECK(error == NULL, "stream transform: %s", error ? rivet_error_message(error) : "");
  rivet_error_free(error);
  CHECK(stream.release == NULL && stream_releases - streams == 1, "stream released once: %d",
        stream_releases - streams);
  CHECK(batch_releases - batches == 3 && stream_batches_made - made == 3, "three batches released: %d",
        batch_releases - batches);
  CHECK(schema_releases - schemas == 1, "the stream's schema released once: %d", schema_releases - schemas);
  CHECK(tensor != NULL, "a tensor");
  if (tensor) {
    const int64_t *shape = rivet_tensor_shape(tensor);
    CHECK(shape[0] == 3 * ROWS && shape[1] == 16, "stream features are [18, 16]");
    const float *data = rivet_tensor_data(tensor);
    for (int b = 0; b < 3; b++) {
      CHECK(close_to(data + b * ROWS * 16, features.data, ROWS * 16, 1e-6, "stream features"),
            "batch %d matches scikit-learn's", b);
    }
    rivet_tensor_free(tensor);
  }
  make_stream(&stream, 2, -1);
  rivet_outputs_t *outputs = NULL;
  error = rivet_model_predict_arrow_stream(model, pipeline, &stream, &outputs);
  CHECK(error == NULL, "stream predict: %s", error ? rivet_error_message(error) : "");
  rivet_error_free(error);
  CHECK(outputs != NULL, "outputs");
  if (outputs) {
    const rivet_tensor_t *p = rivet_outputs_get(outputs, 0);
    CHECK(rivet_tensor_shape(p)[0] == 2 * ROWS, "stream probabilities for 12 rows");
    const float *data = rivet_tensor_data(p);
    CHECK(close_to(data, probability.data, ROWS, 1e-5, "stream probability") &&
              close_to(data + ROWS, probability.data, ROWS, 1e-5, "stream probability"),
          "stream probabilities match PyTorch's");
    rivet_outputs_free(outputs);
  }
  CHECK(stream_releases - streams == 2, "second stream released once");
}

/* A producer error mid-stream passes its message on; an empty or released stream is refused. */
static void test_stream_errors(void) {
  const int streams = stream_releases;
  struct ArrowArrayStream stream;
  rivet_tensor_t *tensor = NULL;
  rivet_outputs_t *outputs = NULL;
  make_stream(&stream, 3, 1);
  const int batches = batch_releases;
  expect_error(rivet_pipeline_transform_arrow_stream(pipeline, &stream, &tensor), RIVET_ERROR_PREPROCESS,
               "the producer's disk is on fire", "stream producer error");
  CHECK(stream_releases - streams == 1 && batch_releases - batches == 1, "released after the error: %d, %d",
        stream_releases - streams, batch_releases - batches);
  make_stream(&stream, 0, -1);
  expect_error(rivet_model_predict_arrow_stream(model, pipeline, &stream, &outputs), RIVET_ERROR_PREPROCESS,
               "held no record batch", "empty stream");
  CHECK(stream_releases - streams == 2, "empty stream released");
  expect_error(rivet_pipeline_transform_arrow_stream(pipeline, &stream, &tensor), RIVET_ERROR_INVALID_ARGUMENT,
               "stream is already released", "released stream");
  CHECK(tensor == NULL && outputs == NULL, "outs untouched on failure");
}

static void test_missing_pipeline_file(void) {
  rivet_pipeline_t *missing = NULL;
  expect_error(rivet_pipeline_load("/nonexistent/pipeline.json", &missing), RIVET_ERROR_IO, "/nonexistent/pipeline.json",
               "missing pipeline file");
  CHECK(missing == NULL, "out untouched");
}

int main(int argc, char **argv) {
  const char *suite = argc > 1 ? argv[1] : "arrow_tests";
  RUN_TEST(test_fixtures_load);
  if (!pipeline || !model || !features.data || !probability.data) return report(suite);
  RUN_TEST(test_feature_names);
  RUN_TEST(test_transform_batch);
  RUN_TEST(test_predict_batch);
  RUN_TEST(test_failures_release_once);
  RUN_TEST(test_streams);
  RUN_TEST(test_stream_errors);
  RUN_TEST(test_missing_pipeline_file);
  npy_free(&features);
  npy_free(&probability);
  rivet_model_free(model);
  rivet_pipeline_free(pipeline);
  return report(suite);
}
