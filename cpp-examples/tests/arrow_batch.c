/* The Arrow producer of the Arrow tests (arrow_batch.h): record batches and streams of six
 * customer rows, built by hand as any Arrow producer would hand them over. */
#include "arrow_batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


int batch_releases, schema_releases;

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

void release_schema(struct ArrowSchema *schema) {
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
void make_batch(struct ArrowArray *array, struct ArrowSchema *schema, int skip, const char *plan_override) {
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

int stream_releases, stream_batches_made;

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

void make_stream(struct ArrowArrayStream *stream, int batches, int fail_at) {
  stream_data *data = malloc(sizeof(stream_data));
  *data = (stream_data){batches, fail_at, 0};
  *stream = (struct ArrowArrayStream){stream_get_schema, stream_get_next, stream_last_error, release_stream, data};
}

