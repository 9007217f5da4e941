/* Arrow record batches and streams from C: a batch built here by hand (as any Arrow producer
 * would hand one over) goes through the tabular example's fitted pipeline and its model, and the results match
 * scikit-learn's features and PyTorch's probabilities (models/tabular/arrow_case.py holds the
 * same six rows and wrote the references). Every release callback runs exactly once, also when
 * a call fails. Ends with "N passed, N failed". */
#include <rivet.h>
#include <rivet/arrow.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

#include "check.h"

#define ROWS 6
#define COLUMNS 9

/* How many times the producer's release callbacks ran. */
static int batch_releases, schema_releases;

static const char *const NAMES[COLUMNS] = {"customer_id", "signup_ts", "age", "income", "balance",
                                           "tenure_months", "num_products", "region", "plan"};

static const int64_t CUSTOMER[ROWS] = {900001, 900002, 900003, 900004, 900005, 900006};
static const char *const SIGNUP[ROWS] = {"2021-03-14 09:26:53", "2019-12-31 23:59:59", "2024-07-04 12:00:00",
                                         "2020-02-29 06:30:00", "2023-11-05 17:45:10", "2022-05-09 00:00:01"};
/* NaN marks a null: the column gets a validity bitmap with that row cleared. */
static const double AGE[ROWS] = {34.5, NAN, 999.0, 18.0, 71.2, 45.0};
static const double INCOME[ROWS] = {52000.0, 150000.0, NAN, 12000.0, 88000.0, 61000.0};
static const double BALANCE[ROWS] = {1200.5, -300.0, NAN, 0.0, 25000.0, 5000.0};
static const int64_t TENURE[ROWS] = {3, 60, 0, 12, 47, 95};
static const int64_t PRODUCTS[ROWS] = {2, 1, 4, 3, 2, 1};
static const char *const REGION[ROWS] = {"north", "south", "islands", "central", "west", "east"};
static const char *const PLAN[ROWS] = {"basic", "premium", "plus", "basic", "plus", "premium"};

/* One column's buffers, owned by the batch. */
typedef struct {
  uint8_t validity[1];
  void *values;   /* int64_t[] or double[] or int32_t offsets[] */
  char *text;     /* utf8 data, for strings */
  const void *buffers[3];
} column_data;

typedef struct {
  column_data columns[COLUMNS];
  struct ArrowArray children[COLUMNS];
  struct ArrowArray *child_pointers[COLUMNS];
  const void *struct_buffers[1];
} batch_data;

typedef struct {
  struct ArrowSchema children[COLUMNS];
  struct ArrowSchema *child_pointers[COLUMNS];
} schema_data;

/* Children are released by their parent, as the specification lets a producer do. */
static void release_child(struct ArrowArray *array) { array->release = NULL; }
static void release_child_schema(struct ArrowSchema *schema) { schema->release = NULL; }

static void release_batch(struct ArrowArray *array) {
  batch_data *data = array->private_data;
  for (int c = 0; c < COLUMNS; c++) {
    free(data->columns[c].values);
    free(data->columns[c].text);
  }
  free(data);
  array->release = NULL;
  batch_releases++;
}

static void release_schema(struct ArrowSchema *schema) {
  free(schema->private_data);
  schema->release = NULL;
  schema_releases++;
}

static void fill_int64(column_data *col, const int64_t *v) {
  col->values = malloc(ROWS * sizeof(int64_t));
  memcpy(col->values, v, ROWS * sizeof(int64_t));
  col->buffers[0] = NULL;
  col->buffers[1] = col->values;
}

/* Doubles with NaN as null: returns the null count. */
static int64_t fill_double(column_data *col, const double *v) {
  double *values = malloc(ROWS * sizeof(double));
  int64_t nulls = 0;
  col->validity[0] = 0;
  for (int r = 0; r < ROWS; r++) {
    values[r] = isnan(v[r]) ? 0.0 : v[r];
    if (isnan(v[r])) nulls++;
    else col->validity[0] |= (uint8_t)(1u << r);
  }
  col->values = values;
  col->buffers[0] = nulls ? col->validity : NULL;
  col->buffers[1] = values;
  return nulls;
}

static void fill_utf8(column_data *col, const char *const *v) {
  int32_t *offsets = malloc((ROWS + 1) * sizeof(int32_t));
  size_t total = 0;
  for (int r = 0; r < ROWS; r++) total += strlen(v[r]);
  col->text = malloc(total);
  offsets[0] = 0;
  for (int r = 0; r < ROWS; r++) {
    size_t n = strlen(v[r]);
    memcpy(col->text + offsets[r], v[r], n);
    offsets[r + 1] = offsets[r] + (int32_t)n;
  }
  col->values = offsets;
  col->buffers[0] = NULL;
  col->buffers[1] = offsets;
  col->buffers[2] = col->text;
}

/* A record batch of the six rows, without column `skip` (-1 for none); `plan_override`
 * replaces the plan of row 4 when not NULL. */
static void make_batch(struct ArrowArray *array, struct ArrowSchema *schema, int skip, const char *plan_override) {
  batch_data *data = calloc(1, sizeof(batch_data));
  schema_data *sdata = calloc(1, sizeof(schema_data));
  const char *plans[ROWS];
  memcpy(plans, PLAN, sizeof(plans));
  if (plan_override) plans[4] = plan_override;
  int n = 0;
  for (int c = 0; c < COLUMNS; c++) {
    if (c == skip) continue;
    column_data *col = &data->columns[n];
    const char *format = "l";
    int64_t nulls = 0;
    int64_t buffers = 2;
    switch (c) {
      case 0: fill_int64(col, CUSTOMER); break;
      case 1: fill_utf8(col, SIGNUP); format = "u"; buffers = 3; break;
      case 2: nulls = fill_double(col, AGE); format = "g"; break;
      case 3: nulls = fill_double(col, INCOME); format = "g"; break;
      case 4: nulls = fill_double(col, BALANCE); format = "g"; break;
      case 5: fill_int64(col, TENURE); break;
      case 6: fill_int64(col, PRODUCTS); break;
      case 7: fill_utf8(col, REGION); format = "u"; buffers = 3; break;
      default: fill_utf8(col, plans); format = "u"; buffers = 3; break;
    }
    data->children[n] = (struct ArrowArray){ROWS, nulls, 0, buffers, 0, col->buffers, NULL, NULL, release_child, NULL};
    data->child_pointers[n] = &data->children[n];
    sdata->children[n] = (struct ArrowSchema){format, NAMES[c], NULL, ARROW_FLAG_NULLABLE, 0, NULL, NULL,
                                              release_child_schema, NULL};
    sdata->child_pointers[n] = &sdata->children[n];
    n++;
  }
  data->struct_buffers[0] = NULL;
  *array = (struct ArrowArray){ROWS, 0, 0, 1, n, data->struct_buffers, data->child_pointers, NULL, release_batch, data};
  *schema = (struct ArrowSchema){"+s", "", NULL, 0, n, sdata->child_pointers, NULL, release_schema, sdata};
}

/* A stream of `batches` copies of the batch; batch `fail_at` (-1: none) fails with an error. */
typedef struct {
  int batches, fail_at, next;
} stream_data;

static int stream_releases, stream_batches_made;

static int stream_get_schema(struct ArrowArrayStream *stream, struct ArrowSchema *out) {
  (void)stream;
  struct ArrowArray unused;
  make_batch(&unused, out, -1, NULL);
  unused.release(&unused);
  batch_releases--; /* not one of the batches counted */
  return 0;
}

static int stream_get_next(struct ArrowArrayStream *stream, struct ArrowArray *out) {
  stream_data *data = stream->private_data;
  if (data->next == data->fail_at) return 5; /* EIO */
  if (data->next == data->batches) {
    out->release = NULL; /* the end */
    return 0;
  }
  struct ArrowSchema schema;
  make_batch(out, &schema, -1, NULL);
  schema.release(&schema);
  schema_releases--;
  data->next++;
  stream_batches_made++;
  return 0;
}

static const char *stream_last_error(struct ArrowArrayStream *stream) {
  (void)stream;
  return "the producer's disk is on fire";
}

static void release_stream(struct ArrowArrayStream *stream) {
  free(stream->private_data);
  stream->release = NULL;
  stream_releases++;
}

static void make_stream(struct ArrowArrayStream *stream, int batches, int fail_at) {
  stream_data *data = malloc(sizeof(stream_data));
  *data = (stream_data){batches, fail_at, 0};
  *stream = (struct ArrowArrayStream){stream_get_schema, stream_get_next, stream_last_error, release_stream, data};
}

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

int main(int argc, char **argv) {
  rivet_pipeline_t *pipeline = NULL;
  rivet_model_t *model = NULL;
  rivet_load_options_t *options = NULL;
  CHECK(!rivet_pipeline_load(RIVET_MODELS "/tabular/tabular.pipeline.json", &pipeline), "pipeline loads");
  CHECK(rivet_load_options_new(&options) == NULL, "options");
  CHECK(rivet_load_options_set_backend(options, "ort") == NULL, "backend ort");
  CHECK(!rivet_model_load(RIVET_MODELS "/tabular/tabular.onnx", options, &model), "model loads");
  rivet_load_options_free(options);
  if (!pipeline || !model) {
    printf("%s: %d passed, %d failed\n", argc > 1 ? argv[1] : "arrow_tests", passed, failed + 1);
    return 1;
  }
  CHECK(rivet_pipeline_feature_count(pipeline) == 16, "16 features, got %zu", rivet_pipeline_feature_count(pipeline));
  CHECK(strcmp(rivet_pipeline_feature_name(pipeline, 15), "region_west") == 0, "last feature name");
  CHECK(rivet_pipeline_feature_name(pipeline, 16) == NULL, "out-of-range feature name is NULL");

  npy_array features, probability;
  CHECK(npy_read(RIVET_MODELS "/tabular/cases/arrow/features.npy", &features) == 0, "features.npy");
  CHECK(npy_read(RIVET_MODELS "/tabular/cases/arrow/churn_probability.npy", &probability) == 0, "probability.npy");

  /* Transform: scikit-learn's features, the batch released once, the caller's structs marked. */
  struct ArrowArray array;
  struct ArrowSchema schema;
  make_batch(&array, &schema, -1, NULL);
  rivet_tensor_t *tensor = NULL;
  rivet_error_t *error = rivet_pipeline_transform_arrow(pipeline, &array, &schema, &tensor);
  CHECK(error == NULL, "transform: %s", error ? rivet_error_message(error) : "");
  rivet_error_free(error);
  CHECK(batch_releases == 1 && schema_releases == 1, "released once each: %d, %d", batch_releases, schema_releases);
  CHECK(array.release == NULL && schema.release == NULL, "the caller's structs are marked released");
  if (tensor) {
    const int64_t *shape = rivet_tensor_shape(tensor);
    CHECK(rivet_tensor_dtype(tensor) == RIVET_DTYPE_F32 && rivet_tensor_rank(tensor) == 2 && shape[0] == ROWS &&
              shape[1] == 16,
          "features are f32 [6, 16]");
    CHECK(close_to(rivet_tensor_data(tensor), features.data, ROWS * 16, 1e-6, "features"),
          "features match scikit-learn's within 1e-6");
    rivet_tensor_free(tensor);
  }

  /* Raw table in, predictions out, in one call. */
  make_batch(&array, &schema, -1, NULL);
  rivet_outputs_t *outputs = NULL;
  error = rivet_model_predict_arrow(model, pipeline, &array, &schema, &outputs);
  CHECK(error == NULL, "predict: %s", error ? rivet_error_message(error) : "");
  rivet_error_free(error);
  CHECK(batch_releases == 2 && schema_releases == 2, "released once each: %d, %d", batch_releases, schema_releases);
  if (outputs) {
    CHECK(rivet_outputs_count(outputs) == 1, "one output");
    CHECK(strcmp(rivet_outputs_name(outputs, 0), "churn_probability") == 0, "output name");
    const rivet_tensor_t *p = rivet_outputs_get(outputs, 0);
    CHECK(rivet_tensor_shape(p)[0] == ROWS && rivet_tensor_shape(p)[1] == 1, "probability is [6, 1]");
    CHECK(close_to(rivet_tensor_data(p), probability.data, ROWS, 1e-5, "probability"),
          "probabilities match PyTorch's within 1e-5");
    rivet_outputs_free(outputs);
  }

  /* Failures name what was wrong, and still release the batch exactly once. */
  make_batch(&array, &schema, 3, NULL);
  tensor = NULL;
  expect_error(rivet_pipeline_transform_arrow(pipeline, &array, &schema, &tensor), RIVET_ERROR_PREPROCESS,
               "no column \"income\"", "missing column");
  CHECK(tensor == NULL, "out untouched on failure");
  CHECK(batch_releases == 3 && schema_releases == 3, "released on failure: %d, %d", batch_releases, schema_releases);

  make_batch(&array, &schema, -1, "gold");
  expect_error(rivet_model_predict_arrow(model, pipeline, &array, &schema, &outputs), RIVET_ERROR_PREPROCESS,
               "column \"plan\", row 4: category \"gold\" was not seen when fitting", "unseen category");
  CHECK(batch_releases == 4 && schema_releases == 4, "released on failure: %d, %d", batch_releases, schema_releases);

  /* A schema that is not a record batch: the first column's schema alone. */
  make_batch(&array, &schema, -1, NULL);
  struct ArrowSchema *column = schema.children[0];
  struct ArrowSchema not_batch = {column->format, column->name, NULL, 0, 0, NULL, NULL, release_schema,
                                  calloc(1, 1)};
  expect_error(rivet_pipeline_transform_arrow(pipeline, &array, &not_batch, &tensor), RIVET_ERROR_PREPROCESS,
               "a record batch is a struct", "not a record batch");
  CHECK(batch_releases == 5 && schema_releases == 5, "released: %d, %d", batch_releases, schema_releases);
  schema.release(&schema); /* the real schema was never handed over */
  CHECK(schema_releases == 6, "own release");

  /* Already released, or NULL: refused, nothing released twice. */
  expect_error(rivet_pipeline_transform_arrow(pipeline, &array, &schema, &tensor), RIVET_ERROR_INVALID_ARGUMENT,
               "already released", "released batch");
  expect_error(rivet_pipeline_transform_arrow(pipeline, NULL, &schema, &tensor), RIVET_ERROR_INVALID_ARGUMENT,
               "array is NULL", "NULL array");
  make_batch(&array, &schema, -1, NULL);
  expect_error(rivet_pipeline_transform_arrow(NULL, &array, &schema, &tensor), RIVET_ERROR_INVALID_ARGUMENT,
               "pipeline is NULL", "NULL pipeline");
  CHECK(batch_releases == 6 && schema_releases == 7, "released once on a NULL pipeline: %d, %d", batch_releases,
        schema_releases);
  /* A stream of three batches: one tensor of 18 rows, each batch and the stream released once. */
  int batches_before = batch_releases, schemas_before = schema_releases;
  struct ArrowArrayStream stream;
  make_stream(&stream, 3, -1);
  tensor = NULL;
  error = rivet_pipeline_transform_arrow_stream(pipeline, &stream, &tensor);
  CHECK(error == NULL, "stream transform: %s", error ? rivet_error_message(error) : "");
  rivet_error_free(error);
  CHECK(stream.release == NULL && stream_releases == 1, "stream released once: %d", stream_releases);
  CHECK(batch_releases - batches_before == 3 && stream_batches_made == 3, "three batches released: %d",
        batch_releases - batches_before);
  CHECK(schema_releases - schemas_before == 1, "the stream's schema released once: %d",
        schema_releases - schemas_before);
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
  outputs = NULL;
  error = rivet_model_predict_arrow_stream(model, pipeline, &stream, &outputs);
  CHECK(error == NULL, "stream predict: %s", error ? rivet_error_message(error) : "");
  rivet_error_free(error);
  if (outputs) {
    const rivet_tensor_t *p = rivet_outputs_get(outputs, 0);
    CHECK(rivet_tensor_shape(p)[0] == 2 * ROWS, "stream probabilities for 12 rows");
    const float *data = rivet_tensor_data(p);
    CHECK(close_to(data, probability.data, ROWS, 1e-5, "stream probability") &&
              close_to(data + ROWS, probability.data, ROWS, 1e-5, "stream probability"),
          "stream probabilities match PyTorch's");
    rivet_outputs_free(outputs);
  }
  CHECK(stream_releases == 2, "second stream released once");
  /* A producer error mid-stream: its message, and everything released once. */
  make_stream(&stream, 3, 1);
  batches_before = batch_releases;
  expect_error(rivet_pipeline_transform_arrow_stream(pipeline, &stream, &tensor), RIVET_ERROR_PREPROCESS,
               "the producer's disk is on fire", "stream producer error");
  CHECK(stream_releases == 3 && batch_releases - batches_before == 1, "released after the error: %d, %d",
        stream_releases, batch_releases - batches_before);
  make_stream(&stream, 0, -1);
  expect_error(rivet_model_predict_arrow_stream(model, pipeline, &stream, &outputs), RIVET_ERROR_PREPROCESS,
               "held no record batch", "empty stream");
  CHECK(stream_releases == 4, "empty stream released");
  expect_error(rivet_pipeline_transform_arrow_stream(pipeline, &stream, &tensor), RIVET_ERROR_INVALID_ARGUMENT,
               "stream is already released", "released stream");

  rivet_pipeline_t *missing = NULL;
  expect_error(rivet_pipeline_load("/nonexistent/pipeline.json", &missing), RIVET_ERROR_IO, "/nonexistent/pipeline.json",
               "missing pipeline file");
  CHECK(missing == NULL, "out untouched");

  npy_free(&features);
  npy_free(&probability);
  rivet_model_free(model);
  rivet_pipeline_free(pipeline);
  printf("%s: %d passed, %d failed\n", argc > 1 ? argv[1] : "arrow_tests", passed, failed);
  return failed == 0 ? 0 : 1;
}
