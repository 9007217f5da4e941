/* The C ABI's test suite: dtypes, zero-copy views, DLPack, outputs owned by Rivet, backends and
 * their options by name, every bad-input case by code and message, PyTorch parity, shadow mode, and 16 threads
 * sharing one model. Ends with "capi_tests: N passed, N failed" counting tests (check.h). */
#define _POSIX_C_SOURCE 200809L /* mkstemp, dup, fileno */
#include <rivet.h>
#include <rivet/dlpack.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"

#include "check.h"

/* Checks that `error` has `code` and a message containing `needle`, then frees it. */
static void expect_error(rivet_error_t *error, rivet_error_code_t code, const char *needle, const char *what) {
  if (!error) {
    CHECK(0, "%s: expected error %u, got success", what, code);
    return;
  }
  const char *message = rivet_error_message(error);
  CHECK(rivet_error_code(error) == code, "%s: code %u, expected %u (%s)", what, rivet_error_code(error), code,
        message);
  CHECK(strstr(message, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, message, needle);
  rivet_error_free(error);
}

static void expect_ok(rivet_error_t *error, const char *what) {
  CHECK(error == NULL, "%s: %s", what, error ? rivet_error_message(error) : "");
  rivet_error_free(error);
}

static rivet_model_t *load(const char *path, const char *backend) {
  rivet_load_options_t *options = NULL;
  expect_ok(rivet_load_options_new(&options), "options");
  expect_ok(rivet_load_options_set_backend(options, backend), "set backend");
  rivet_model_t *model = NULL;
  rivet_error_t *error = rivet_model_load(path, options, &model);
  rivet_load_options_free(options);
  expect_ok(error, path);
  return model;
}

static const char *dtype_names[] = {"?", "f16", "bf16", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "bool"};

static void test_version(void) {
  CHECK(rivet_abi_version() == RIVET_ABI_VERSION, "abi %u", rivet_abi_version());
  CHECK(strlen(rivet_version()) > 0, "version");
}

static void test_dtype_round_trips(void) {
  rivet_model_t *torch = load(RIVET_MODELS "/identity/identity.pt", "tch");
  for (rivet_dtype_t d = RIVET_DTYPE_F16; d <= RIVET_DTYPE_BOOL; d++) {
    size_t size = rivet_dtype_size(d);
    unsigned char bytes[6 * 8];
    for (size_t i = 0; i < 6 * size; i++) bytes[i] = d == RIVET_DTYPE_BOOL ? (unsigned char)(i % 2) : (unsigned char)(i * 37 % 61);
    const int64_t shape[2] = {2, 3};
    char path[512];
    snprintf(path, sizeof path, RIVET_MODELS "/identity/identity_%s.onnx", dtype_names[d]);
    rivet_model_t *onnx = load(path, "ort");
    rivet_model_t *models[2] = {torch, onnx};
    for (int m = 0; m < 2; m++) {
      rivet_tensor_t *x = NULL;
      /* Copy into the tch run, view into the ort run. */
      rivet_error_t *error = m == 0 ? rivet_tensor_new(d, shape, 2, bytes, 6 * size, &x)
                                    : rivet_tensor_new_view(d, shape, 2, bytes, 6 * size, &x);
      expect_ok(error, "tensor");
      const rivet_tensor_t *in[1] = {x};
      rivet_outputs_t *outputs = NULL;
      expect_ok(rivet_model_run(models[m], NULL, in, 1, &outputs), "identity run");
      const rivet_tensor_t *y = rivet_outputs_get(outputs, 0);
      CHECK(rivet_tensor_dtype(y) == d, "%s: dtype %u", dtype_names[d], rivet_tensor_dtype(y));
      CHECK(rivet_tensor_byte_len(y) == 6 * size && memcmp(rivet_tensor_data(y), bytes, 6 * size) == 0,
            "%s on %s: bytes differ", dtype_names[d], m == 0 ? "tch" : "ort");
      CHECK(rivet_tensor_rank(y) == 2 && rivet_tensor_shape(y)[1] == 3, "%s: shape", dtype_names[d]);
      rivet_outputs_free(outputs);
      rivet_tensor_free(x);
    }
    rivet_model_free(onnx);
  }
  rivet_model_free(torch);
}

static void test_views_do_not_copy(void) {
  float data[16] = {1.0f};
  const int64_t shape[2] = {1, 16};
  rivet_tensor_t *view = NULL, *copy = NULL;
  expect_ok(rivet_tensor_new_view(RIVET_DTYPE_F32, shape, 2, data, sizeof data, &view), "view");
  expect_ok(rivet_tensor_new(RIVET_DTYPE_F32, shape, 2, data, sizeof data, &copy), "copy");
  CHECK(rivet_tensor_data(view) == (const void *)data, "a view must point at the caller's buffer");
  CHECK(rivet_tensor_data(copy) != (const void *)data, "a copy must not");
  data[3] = 42.0f;
  CHECK(((const float *)rivet_tensor_data(view))[3] == 42.0f, "a view sees the caller's writes");
  CHECK(((const float *)rivet_tensor_data(copy))[3] == 0.0f, "a copy does not");
  /* Misaligned views are refused rather than read unaligned. */
  rivet_tensor_t *bad = (rivet_tensor_t *)0x1;
  const int64_t four[1] = {4};
  expect_error(rivet_tensor_new_view(RIVET_DTYPE_F32, four, 1, (const char *)data + 1, 16, &bad),
               RIVET_ERROR_INVALID_TENSOR, "aligned to 4 bytes", "misaligned view");
  CHECK(bad == (rivet_tensor_t *)0x1, "out untouched on failure");
  rivet_tensor_free(view);
  rivet_tensor_free(copy);
}

static int dl_deleted;
static void count_delete(DLManagedTensorVersioned *self) {
  (void)self;
  dl_deleted++;
}

static void test_dlpack(void) {
  float data[2 * 16];
  for (int i = 0; i < 32; i++) data[i] = (float)i / 32.0f;
  int64_t shape[2] = {2, 16};
  DLManagedTensorVersioned managed;
  memset(&managed, 0, sizeof managed);
  managed.version.major = 1;
  managed.deleter = count_delete;
  managed.dl_tensor.data = data;
  managed.dl_tensor.device.device_type = kDLCPU;
  managed.dl_tensor.ndim = 2;
  managed.dl_tensor.dtype.code = kDLFloat;
  managed.dl_tensor.dtype.bits = 32;
  managed.dl_tensor.dtype.lanes = 1;
  managed.dl_tensor.shape = shape;

  /* Refused imports leave ownership with the caller: no deleter call. */
  managed.dl_tensor.device.device_type = kDLCUDA;
  rivet_tensor_t *t = NULL;
  expect_error(rivet_tensor_from_dlpack(&managed, &t), RIVET_ERROR_INVALID_TENSOR, "is not CPU", "cuda dlpack");
  managed.dl_tensor.device.device_type = kDLCPU;
  int64_t strides[2] = {1, 2};
  managed.dl_tensor.strides = strides;
  expect_error(rivet_tensor_from_dlpack(&managed, &t), RIVET_ERROR_INVALID_TENSOR, "not compact row-major",
               "strided dlpack");
  managed.dl_tensor.strides = NULL;
  CHECK(dl_deleted == 0 && t == NULL, "failed imports must not call the deleter");

  expect_ok(rivet_tensor_from_dlpack(&managed, &t), "dlpack import");
  CHECK(rivet_tensor_data(t) == (const void *)data, "DLPack import must not copy");
  rivet_model_t *model = load(RIVET_MODELS "/mlp/mlp.onnx", "ort");
  const rivet_tensor_t *in[1] = {t};
  rivet_outputs_t *outputs = NULL;
  expect_ok(rivet_model_run(model, NULL, in, 1, &outputs), "run on dlpack");
  /* A clone shares the imported memory: the deleter waits for the last handle. */
  rivet_tensor_t *shared = NULL;
  expect_ok(rivet_tensor_clone(t, &shared), "clone of an import");
  CHECK(rivet_tensor_data(shared) == (const void *)data, "a clone shares the data");
  rivet_tensor_free(t);
  CHECK(dl_deleted == 0, "the deleter waits while a clone uses the data (%d)", dl_deleted);
  rivet_tensor_free(shared);
  CHECK(dl_deleted == 1, "the deleter runs once, when the last handle is freed (%d)", dl_deleted);

  /* An output outlives its outputs handle through a clone, and exports without a copy. */
  rivet_tensor_t *kept = NULL;
  expect_ok(rivet_tensor_clone(rivet_outputs_get(outputs, 0), &kept), "clone an output");
  const void *out_data = rivet_tensor_data(kept);
  CHECK(out_data == rivet_tensor_data(rivet_outputs_get(outputs, 0)), "the clone shares the output's data");
  DLManagedTensorVersioned *exported = NULL;
  expect_ok(rivet_tensor_to_dlpack(kept, &exported), "dlpack export");
  rivet_outputs_free(outputs);
  CHECK(exported && exported->dl_tensor.data == out_data, "DLPack export must not copy");
  CHECK(exported && exported->dl_tensor.ndim == 2 && exported->dl_tensor.shape[0] == 2 &&
            exported->dl_tensor.shape[1] == 3 && exported->dl_tensor.dtype.code == kDLFloat &&
            exported->dl_tensor.dtype.bits == 32 && exported->version.major == 1,
        "exported metadata");
  CHECK(exported && (exported->flags & DLPACK_FLAG_BITMASK_READ_ONLY) != 0,
        "memory shared with other handles is exported read-only");
  if (exported) exported->deleter(exported);
  expect_error(rivet_tensor_to_dlpack(NULL, &exported), RIVET_ERROR_INVALID_ARGUMENT, "tensor is NULL",
               "export NULL");
  /* The handle is consumed on failure too: freeing it afterwards would be a double free, which
   * the memcheck run of this suite would report; here, nothing is left to free. */
  rivet_tensor_t *doomed = NULL;
  float one = 1.0f;
  int64_t one_shape[1] = {1};
  expect_ok(rivet_tensor_new(RIVET_DTYPE_F32, one_shape, 1, &one, sizeof one, &doomed), "tensor to export");
  expect_error(rivet_tensor_to_dlpack(doomed, NULL), RIVET_ERROR_INVALID_ARGUMENT, "out is NULL",
               "export into NULL consumes the tensor");

  /* An output outlives its model: ONNX Runtime's buffer is handed over, not copied, and a tensor
   * that alone uses it exports writable. (Read after rivet_model_free: the memcheck run of this
   * suite would report a buffer that went with the model.) */
  rivet_tensor_t *x = NULL;
  expect_ok(rivet_tensor_new(RIVET_DTYPE_F32, shape, 2, data, sizeof data, &x), "copied input");
  const rivet_tensor_t *in_x[1] = {x};
  expect_ok(rivet_model_run(model, NULL, in_x, 1, &outputs), "run on a copy");
  rivet_tensor_t *alone = NULL;
  expect_ok(rivet_tensor_clone(rivet_outputs_get(outputs, 0), &alone), "clone an output");
  float before[6];
  memcpy(before, rivet_tensor_data(alone), sizeof before);
  rivet_outputs_free(outputs);
  rivet_model_free(model);
  rivet_tensor_free(x);
  expect_ok(rivet_tensor_to_dlpack(alone, &exported), "export an output its model outlived");
  CHECK(exported && (exported->flags & DLPACK_FLAG_BITMASK_READ_ONLY) == 0,
        "an output used by one handle alone exports writable");
  if (exported) {
    float *values = (float *)exported->dl_tensor.data;
    CHECK(memcmp(values, before, sizeof before) == 0, "the output's values survive its model");
    values[0] = 42.0f; /* the consumer may write */
    exported->deleter(exported);
  }
}

static int close_to(const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float d = a[i] - b[i];
    if (d < 0) d = -d;
    float m = b[i] < 0 ? -b[i] : b[i];
    if (d > 1e-4f + 1e-4f * m) return 0;
  }
  return 1;
}

static void test_parity(void) {
  npy_array x, y;
  CHECK(npy_read(RIVET_MODELS "/mlp/cases/b8/input.features.npy", &x) == 0, "read input");
  CHECK(npy_read(RIVET_MODELS "/mlp/cases/b8/output.logits.npy", &y) == 0, "read reference");
  const char *paths[3] = {RIVET_MODELS "/mlp/mlp.pt", RIVET_MODELS "/mlp/mlp.onnx", RIVET_MODELS "/mlp/mlp.onnx"};
  const char *backends[3] = {"tch", "ort", "candle"};
  for (int b = 0; b < 3; b++) {
    rivet_model_t *model = load(paths[b], backends[b]);
    CHECK(strcmp(rivet_model_backend(model), backends[b]) == 0, "backend %s", rivet_model_backend(model));
    rivet_tensor_info_t info;
    expect_ok(rivet_model_input_info(model, 0, &info), "input info");
    CHECK(strcmp(info.name, "features") == 0 && info.dtype == RIVET_DTYPE_F32 && info.rank == 2 &&
              info.shape[0] == -1 && info.shape[1] == 16,
          "input info of backend %s", backends[b]);
    rivet_tensor_t *t = NULL;
    expect_ok(rivet_tensor_new_view(RIVET_DTYPE_F32, x.shape, x.rank, x.data, x.byte_len, &t), "input");
    const rivet_tensor_t *in[1] = {t};
    const char *names[1] = {"features"};
    rivet_outputs_t *outputs = NULL;
    expect_ok(rivet_model_run(model, names, in, 1, &outputs), "run");
    const rivet_tensor_t *logits = NULL;
    expect_ok(rivet_outputs_by_name(outputs, "logits", &logits), "output by name");
    CHECK(rivet_outputs_count(outputs) == 1 && logits == rivet_outputs_get(outputs, 0) &&
              strcmp(rivet_outputs_name(outputs, 0), "logits") == 0,
          "backend %s: one output called logits", backends[b]);
    CHECK(rivet_outputs_get(outputs, 1) == NULL && rivet_outputs_name(outputs, 1) == NULL,
          "out-of-range outputs are NULL");
    CHECK(rivet_tensor_byte_len(logits) == y.byte_len && close_to(rivet_tensor_data(logits), y.data, y.byte_len / 4),
          "backend %s differs from PyTorch", backends[b]);
    const rivet_tensor_t *none = (const rivet_tensor_t *)0x1;
    expect_error(rivet_outputs_by_name(outputs, "probs", &none), RIVET_ERROR_INVALID_ARGUMENT,
                 "no output is called \"probs\" (outputs: logits)", "unknown output name");
    CHECK(none == (const rivet_tensor_t *)0x1, "by_name out untouched on failure");
    rivet_outputs_free(outputs);
    rivet_tensor_free(t);
    rivet_model_free(model);
  }
  npy_free(&x);
  npy_free(&y);
}

/* Shadow mode: ORT answers, tch is compared on every request; the result is a model like any
 * other, its stats count every request and no divergence; options and misuse are checked. */
static void test_shadow(void) {
  npy_array x, y;
  CHECK(npy_read(RIVET_MODELS "/mlp/cases/b8/input.features.npy", &x) == 0, "read input");
  CHECK(npy_read(RIVET_MODELS "/mlp/cases/b8/output.logits.npy", &y) == 0, "read reference");
  rivet_model_t *primary = load(RIVET_MODELS "/mlp/mlp.onnx", "ort");
  rivet_model_t *candidate = load(RIVET_MODELS "/mlp/mlp.pt", "tch");
  rivet_shadow_options_t *options = NULL;
  expect_ok(rivet_shadow_options_new(&options), "shadow options");
  expect_ok(rivet_shadow_options_set_tolerance(options, 1e-5, 1e-5), "tolerance");
  expect_ok(rivet_shadow_options_set_queue(options, 32), "queue (more than the requests: none is dropped)");
  expect_error(rivet_shadow_options_set_sample(options, 1.5), RIVET_ERROR_INVALID_OPTION,
               "sample 1.5 is not between 0 and 1", "sample out of range");
  expect_error(rivet_shadow_options_set_queue(options, 0), RIVET_ERROR_INVALID_OPTION,
               "the queue must hold at least 1 request", "empty queue");
  rivet_model_t *shadow = NULL;
  expect_ok(rivet_shadow_new(primary, candidate, options, &shadow), "shadow");
  rivet_shadow_options_free(options);
  /* The shadow keeps its own references: the caller's handles may go. */
  rivet_model_free(candidate);
  CHECK(strcmp(rivet_model_backend(shadow), "ort") == 0, "the shadow answers as the primary's backend");
  rivet_tensor_t *t = NULL;
  expect_ok(rivet_tensor_new_view(RIVET_DTYPE_F32, x.shape, x.rank, x.data, x.byte_len, &t), "input");
  const rivet_tensor_t *in[1] = {t};
  const char *names[1] = {"features"};
  for (int i = 0; i < 20; i++) {
    rivet_outputs_t *outputs = NULL;
    expect_ok(rivet_model_run(shadow, names, in, 1, &outputs), "run the shadow");
    const rivet_tensor_t *logits = rivet_outputs_get(outputs, 0);
    CHECK(logits && close_to(rivet_tensor_data(logits), y.data, y.byte_len / 4), "the shadow's answer is PyTorch's");
    rivet_outputs_free(outputs);
  }
  expect_ok(rivet_shadow_flush(shadow), "flush");
  rivet_shadow_stats_t stats;
  expect_ok(rivet_shadow_stats(shadow, &stats), "stats");
  CHECK(stats.requests == 20 && stats.compared == 20 && stats.matched == 20 && stats.diverged == 0 &&
            stats.candidate_errors == 0 && stats.dropped == 0 && stats.skipped == 0,
        "stats: %llu requests, %llu compared, %llu matched, %llu diverged, %llu errors, %llu dropped",
        (unsigned long long)stats.requests, (unsigned long long)stats.compared, (unsigned long long)stats.matched,
        (unsigned long long)stats.diverged, (unsigned long long)stats.candidate_errors,
        (unsigned long long)stats.dropped);
  CHECK(stats.candidate_p50_ms > 0 && stats.candidate_p99_ms >= stats.candidate_p50_ms, "candidate latency");
  /* Misuse: stats of a plain model, signatures that differ, NULL arguments. */
  expect_error(rivet_shadow_stats(primary, &stats), RIVET_ERROR_INVALID_ARGUMENT, "model is not a shadow",
               "stats of a plain model");
  rivet_model_t *cnn = load(RIVET_MODELS "/cnn/cnn.onnx", "ort");
  rivet_model_t *none = (rivet_model_t *)0x1;
  expect_error(rivet_shadow_new(primary, cnn, NULL, &none), RIVET_ERROR_INVALID_INPUT,
               "shadow: the candidate takes inputs [\"image\"] where the primary takes [\"features\"]",
               "mismatched signatures");
  CHECK(none == (rivet_model_t *)0x1, "out untouched on failure");
  expect_error(rivet_shadow_new(primary, NULL, NULL, &none), RIVET_ERROR_INVALID_ARGUMENT, "candidate is NULL",
               "NULL candidate");
  rivet_model_free(cnn);
  rivet_tensor_free(t);
  rivet_model_free(shadow);
  rivet_model_free(primary);
  npy_free(&x);
  npy_free(&y);
}

static void test_bad_inputs(void) {
  rivet_model_t *model = load(RIVET_MODELS "/mlp/mlp.onnx", "ort");
  float f[16] = {0};
  int64_t ids[16] = {0};
  const int64_t shape[2] = {1, 16}, narrow[2] = {1, 15};
  rivet_tensor_t *good = NULL, *ints = NULL, *short_row = NULL;
  expect_ok(rivet_tensor_new(RIVET_DTYPE_F32, shape, 2, f, sizeof f, &good), "good");
  expect_ok(rivet_tensor_new(RIVET_DTYPE_I64, shape, 2, ids, sizeof ids, &ints), "ints");
  expect_ok(rivet_tensor_new(RIVET_DTYPE_F32, narrow, 2, f, 15 * sizeof(float), &short_row), "short");
  rivet_tensor_t *sentinel = (rivet_tensor_t *)0x1;
  rivet_outputs_t *out_sentinel = (rivet_outputs_t *)0x1;
  rivet_outputs_t *out = out_sentinel;
  const rivet_tensor_t *in_good[1] = {good}, *in_ints[1] = {ints}, *in_short[1] = {short_row}, *in_null[1] = {NULL};
  const char *name[1] = {"features"}, *wrong_name[1] = {"feature"}, *null_name[1] = {NULL};

  expect_error(rivet_model_run(NULL, NULL, in_good, 1, &out), RIVET_ERROR_INVALID_ARGUMENT,
               "model is NULL", "NULL model");
  expect_error(rivet_model_run(model, null_name, in_good, 1, &out), RIVET_ERROR_INVALID_ARGUMENT,
               "input_names[0] is NULL", "NULL name");
  expect_error(rivet_model_run(model, NULL, in_null, 1, &out), RIVET_ERROR_INVALID_ARGUMENT,
               "inputs[0] is NULL", "NULL tensor");
  expect_error(rivet_model_run(model, wrong_name, in_good, 1, &out), RIVET_ERROR_INVALID_INPUT,
               "input \"feature\": unknown input name; the model's inputs are: features", "unknown name");
  expect_error(rivet_model_run(model, name, in_ints, 1, &out), RIVET_ERROR_INVALID_INPUT,
               "input \"features\": expected dtype f32, got i64", "wrong dtype");
  expect_error(rivet_model_run(model, name, in_short, 1, &out), RIVET_ERROR_INVALID_INPUT,
               "input \"features\": expected dimension 1 to be 16 (shape [batch, 16]), got 15", "wrong shape");
  expect_error(rivet_model_run(model, NULL, in_good, 0, &out), RIVET_ERROR_INVALID_INPUT,
               "expected 1 input(s) (features), got 0", "wrong count");
  expect_error(rivet_model_run(model, NULL, in_good, 1, NULL), RIVET_ERROR_INVALID_ARGUMENT, "out is NULL",
               "NULL out");
  CHECK(out == out_sentinel, "outputs untouched on failure");

  rivet_tensor_t *t = sentinel;
  expect_error(rivet_tensor_new(RIVET_DTYPE_F32, shape, 2, f, 60, &t), RIVET_ERROR_INVALID_TENSOR,
               "data is 60 bytes but f32[1, 16] needs 64 bytes", "wrong byte size");
  expect_error(rivet_tensor_new(99, shape, 2, f, 64, &t), RIVET_ERROR_INVALID_ARGUMENT,
               "dtype 99 is not a RIVET_DTYPE_* value", "bad dtype");
  const int64_t negative[2] = {1, -16};
  expect_error(rivet_tensor_new(RIVET_DTYPE_F32, negative, 2, f, 64, &t), RIVET_ERROR_INVALID_TENSOR,
               "shape[1] is -16", "negative dim");
  expect_error(rivet_tensor_new(RIVET_DTYPE_F32, shape, 2, NULL, 64, &t), RIVET_ERROR_INVALID_ARGUMENT,
               "data is NULL", "NULL data");
  expect_error(rivet_tensor_new(RIVET_DTYPE_F32, shape, 2, f, 64, NULL), RIVET_ERROR_INVALID_ARGUMENT,
               "out is NULL", "NULL out");
  unsigned char not_bool[2] = {1, 2};
  const int64_t two[1] = {2};
  expect_error(rivet_tensor_new(RIVET_DTYPE_BOOL, two, 1, not_bool, 2, &t), RIVET_ERROR_INVALID_TENSOR,
               "bools must be 0 or 1", "bad bool");
  CHECK(t == sentinel, "tensor out untouched on failure");

  rivet_model_t *m = (rivet_model_t *)0x1;
  expect_error(rivet_model_load(RIVET_MODELS "/mlp/missing.onnx", NULL, &m), RIVET_ERROR_MODEL_LOAD,
               "missing.onnx: No such file", "missing file");
  FILE *corrupt = fopen("rivet_capi_corrupt.onnx", "wb");
  if (corrupt) {
    fputs("\x08\x07this is not an ONNX model", corrupt);
    fclose(corrupt);
  }
  expect_error(rivet_model_load("rivet_capi_corrupt.onnx", NULL, &m), RIVET_ERROR_MODEL_LOAD,
               "no backend could load rivet_capi_corrupt.onnx", "corrupt file");
  remove("rivet_capi_corrupt.onnx");
  expect_error(rivet_model_load(NULL, NULL, &m), RIVET_ERROR_INVALID_ARGUMENT, "path is NULL", "NULL path");
  rivet_load_options_t *options = NULL;
  expect_ok(rivet_load_options_new(&options), "options");
  expect_error(rivet_load_options_set_backend(options, "tvm"), RIVET_ERROR_INVALID_OPTION,
               "no backend is registered as \"tvm\" (registered: tch, ort, candle)", "unknown backend");
  expect_error(rivet_load_options_set_backend(options, "two words"), RIVET_ERROR_INVALID_OPTION,
               "backend name \"two words\" is not valid", "bad backend name");
  expect_error(rivet_load_options_set_option(options, NULL, "instances", "2"), RIVET_ERROR_INVALID_OPTION,
               "backend is NULL and the options choose no backend", "option without a backend");
  expect_ok(rivet_load_options_set_backend(options, "candle"), "candle");
  expect_error(rivet_model_load(RIVET_MODELS "/identity/identity_u16.onnx", options, &m), RIVET_ERROR_UNSUPPORTED,
               "input \"x\" has element type uint16, which Candle cannot hold", "candle lacks a dtype");
  expect_ok(rivet_load_options_set_backend(options, "tch"), "tch");
  expect_error(rivet_model_load(RIVET_MODELS "/mlp/mlp.onnx", options, &m), RIVET_ERROR_MODEL_LOAD,
               "ONNX files are not TorchScript", "tch on onnx");
  expect_ok(rivet_load_options_set_backend(options, "ort"), "ort");
  expect_ok(rivet_load_options_set_option(options, NULL, "instances", "0"), "instances=0 is checked at load");
  expect_error(rivet_model_load(RIVET_MODELS "/mlp/mlp.onnx", options, &m), RIVET_ERROR_INVALID_OPTION,
               "ort: option instances = \"0\": expected auto or a whole number of at least 1", "zero instances");
  expect_ok(rivet_load_options_set_option(options, "ort", "instances", "2"), "instances=2");
  expect_ok(rivet_load_options_set_option(options, "ort", "optimisation", "basic"), "a misspelt key");
  expect_error(rivet_model_load(RIVET_MODELS "/mlp/mlp.onnx", options, &m), RIVET_ERROR_INVALID_OPTION,
               "ort: unknown option \"optimisation\"; known options: optimization, instances", "unknown key");
  rivet_load_options_free(options);
  options = NULL;
  expect_ok(rivet_load_options_new(&options), "options");
  expect_ok(rivet_load_options_set_option(options, "ort", "optimization", "disable"), "optimization");
  expect_ok(rivet_load_options_set_option(options, "ort", "instances", "2"), "instances");
  rivet_model_t *tuned = NULL;
  expect_ok(rivet_model_load(RIVET_MODELS "/mlp/mlp.onnx", options, &tuned), "auto with ort options");
  CHECK(tuned && strcmp(rivet_model_backend(tuned), "ort") == 0, "auto picks ort for ONNX");
  rivet_model_free(tuned);
  expect_ok(rivet_load_options_set_option(options, "tvm", "threads", "2"), "an option for an unknown backend");
  expect_error(rivet_model_load(RIVET_MODELS "/mlp/mlp.onnx", options, &m), RIVET_ERROR_INVALID_OPTION,
               "options given for backend \"tvm\", which is not registered", "option for an unknown backend");
  expect_error(rivet_load_options_set_backend(NULL, "ort"), RIVET_ERROR_INVALID_ARGUMENT, "options is NULL",
               "NULL options");
  rivet_load_options_free(options);
  CHECK(m == (rivet_model_t *)0x1, "model out untouched on failure");
  rivet_tensor_info_t info;
  expect_error(rivet_model_output_info(model, 5, &info), RIVET_ERROR_INVALID_ARGUMENT,
               "output index 5 is out of range (the model has 1)", "bad index");

  /* Every free accepts NULL; getters on NULL return zero values. */
  rivet_tensor_free(NULL);
  rivet_outputs_free(NULL);
  rivet_model_free(NULL);
  rivet_error_free(NULL);
  rivet_load_options_free(NULL);
  CHECK(rivet_tensor_data(NULL) == NULL && rivet_tensor_rank(NULL) == -1 && rivet_model_input_count(NULL) == 0 &&
            rivet_error_code(NULL) == 0 && strcmp(rivet_error_message(NULL), "") == 0 &&
            rivet_outputs_count(NULL) == 0 && rivet_outputs_get(NULL, 0) == NULL &&
            strcmp(rivet_model_backend(NULL), "") == 0,
        "NULL getters");

  rivet_tensor_free(good);
  rivet_tensor_free(ints);
  rivet_tensor_free(short_row);
  rivet_model_free(model);
}

/* A backend library found by name (the example backend librivet_affine.so, in the folders of
 * RIVET_BACKEND_PATH, which the CMake test sets to cargo's output folder). */
static void test_backend_library_by_name(void) {
  if (!getenv("RIVET_BACKEND_PATH")) {
    printf("skipped: backend library by name (RIVET_BACKEND_PATH is not set)\n");
    return;
  }
  FILE *spec = fopen("rivet_capi_affine.json", "wb");
  if (spec) {
    fputs("{\"input\": \"x\", \"output\": \"y\", \"features\": 2, \"scale\": 3.0, \"bias\": 1.0}", spec);
    fclose(spec);
  }
  rivet_load_options_t *options = NULL;
  expect_ok(rivet_load_options_new(&options), "options");
  expect_ok(rivet_load_options_set_backend(options, "affine"), "affine is found by name");
  expect_ok(rivet_load_options_set_option(options, NULL, "clip", "5"), "its option");
  rivet_model_t *model = NULL;
  expect_ok(rivet_model_load("rivet_capi_affine.json", options, &model), "load with affine");
  CHECK(model && strcmp(rivet_model_backend(model), "affine") == 0, "the model says its backend");
  float x[4] = {0.0f, 1.0f, 2.0f, -3.0f};
  const int64_t shape[2] = {2, 2};
  rivet_tensor_t *t = NULL;
  expect_ok(rivet_tensor_new_view(RIVET_DTYPE_F32, shape, 2, x, sizeof x, &t), "input");
  const rivet_tensor_t *in[1] = {t};
  rivet_outputs_t *out = NULL;
  expect_ok(rivet_model_run(model, NULL, in, 1, &out), "run affine");
  const rivet_tensor_t *y = NULL;
  expect_ok(rivet_outputs_by_name(out, "y", &y), "output y");
  const float expected[4] = {1.0f, 4.0f, 5.0f, -5.0f};
  CHECK(y && memcmp(rivet_tensor_data(y), expected, sizeof expected) == 0, "y = clip(3x + 1, 5)");
  rivet_outputs_free(out);
  rivet_tensor_free(t);
  rivet_model_free(model);
  expect_ok(rivet_load_options_set_option(options, NULL, "clamp", "5"), "a misspelt option");
  model = (rivet_model_t *)0x1;
  expect_error(rivet_model_load("rivet_capi_affine.json", options, &model), RIVET_ERROR_INVALID_OPTION,
               "affine: unknown option \"clamp\"; known options: clip", "the backend checks its options");
  CHECK(model == (rivet_model_t *)0x1, "model out untouched on failure");
  rivet_load_options_free(options);
  remove("rivet_capi_affine.json");
}

#define THREADS 16
#define RUNS 200

typedef struct {
  const rivet_model_t *model;
  const rivet_tensor_t *input;
  const float *expected;
  int mismatches;
} worker_args;

static void *worker(void *p) {
  worker_args *a = p;
  for (int r = 0; r < RUNS; r++) {
    const rivet_tensor_t *in[1] = {a->input};
    rivet_outputs_t *out = NULL;
    rivet_error_t *error = rivet_model_run(a->model, NULL, in, 1, &out);
    if (error || memcmp(rivet_tensor_data(rivet_outputs_get(out, 0)), a->expected, 8 * 3 * sizeof(float)) != 0)
      a->mismatches++;
    rivet_error_free(error);
    rivet_outputs_free(out);
  }
  return NULL;
}

/* Panics Rivet catches inside a library (tch's thread setters unwrap libtorch's refusal) become
 * errors and print nothing: 100 loads alternating two inter-op thread counts (libtorch accepts
 * one, then refuses the other every time, through a panic in tch) leave the host's stderr empty. */
static void test_caught_panics_are_silent(void) {
  char path[] = "/tmp/rivet-capi-stderr-XXXXXX";
  int capture = mkstemp(path);
  CHECK(capture >= 0, "temporary file for stderr");
  if (capture < 0) return;
  fflush(stderr);
  int saved = dup(2);
  dup2(capture, 2);
  int refused = 0, loaded = 0;
  for (int i = 0; i < 100; i++) {
    rivet_load_options_t *options = NULL;
    rivet_load_options_new(&options);
    rivet_load_options_set_backend(options, "tch");
    rivet_load_options_set_inter_op_threads(options, (size_t)(5 + i % 2));
    rivet_model_t *model = NULL;
    rivet_error_t *error = rivet_model_load(RIVET_MODELS "/mlp/mlp.pt", options, &model);
    if (error != NULL && rivet_error_code(error) == RIVET_ERROR_UNSUPPORTED) refused++;
    if (error == NULL) loaded++;
    rivet_error_free(error);
    rivet_model_free(model);
    rivet_load_options_free(options);
  }
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  struct stat written;
  fstat(capture, &written);
  close(capture);
  unlink(path);
  CHECK(refused >= 49 && refused + loaded == 100, "100 loads alternating inter-op threads 5 and 6: %d refused, %d loaded",
        refused, loaded);
  CHECK(written.st_size == 0, "caught panics wrote %lld bytes to stderr", (long long)written.st_size);
}

/* An empty tensor with huge dimensions gets one verdict whatever their order: refused. */
static void test_huge_empty_shapes(void) {
  const int64_t huge = (int64_t)1 << 40;
  const int64_t shapes[3][3] = {{0, huge, huge}, {huge, 0, huge}, {huge, huge, 0}};
  for (int i = 0; i < 3; i++) {
    rivet_tensor_t *t = NULL;
    expect_error(rivet_tensor_new_view(RIVET_DTYPE_F32, shapes[i], 3, NULL, 0, &t), RIVET_ERROR_INVALID_TENSOR,
                 "has more elements than fit in memory", "huge empty shape");
    CHECK(t == NULL, "no tensor for a refused shape");
  }
  const int64_t fine[2] = {0, huge};
  rivet_tensor_t *empty = NULL;
  expect_ok(rivet_tensor_new_view(RIVET_DTYPE_F32, fine, 2, NULL, 0, &empty), "[0, 2^40] is an empty tensor");
  rivet_tensor_free(empty);
}

/* No getter answers the same for a missing tensor as for a real one (ABI 3): rank is -1 only
 * for NULL, data is NULL only for NULL. */
static void test_getters_tell_null_apart(void) {
  const float one = 1.0f;
  rivet_tensor_t *scalar = NULL, *copied_empty = NULL, *viewed_empty = NULL;
  expect_ok(rivet_tensor_new(RIVET_DTYPE_F32, NULL, 0, &one, sizeof one, &scalar), "scalar");
  CHECK(rivet_tensor_rank(scalar) == 0 && rivet_tensor_rank(NULL) == -1, "rank: scalar %lld, NULL %lld",
        (long long)rivet_tensor_rank(scalar), (long long)rivet_tensor_rank(NULL));
  CHECK(rivet_tensor_shape(scalar) == NULL && rivet_tensor_data(scalar) != NULL &&
            *(const float *)rivet_tensor_data(scalar) == 1.0f,
        "a scalar has no shape array and one element");
  const int64_t shape[2] = {0, 3};
  expect_ok(rivet_tensor_new(RIVET_DTYPE_I64, shape, 2, NULL, 0, &copied_empty), "empty copy");
  expect_ok(rivet_tensor_new_view(RIVET_DTYPE_I64, shape, 2, NULL, 0, &viewed_empty), "empty view");
  CHECK(rivet_tensor_data(copied_empty) != NULL && rivet_tensor_data(viewed_empty) != NULL &&
            rivet_tensor_data(NULL) == NULL,
        "an empty tensor's data is not NULL; only a missing tensor's is");
  CHECK(rivet_tensor_rank(copied_empty) == 2 && rivet_tensor_shape(copied_empty)[1] == 3 &&
            rivet_tensor_byte_len(viewed_empty) == 0,
        "an empty tensor keeps its shape");
  rivet_tensor_free(scalar);
  rivet_tensor_free(copied_empty);
  rivet_tensor_free(viewed_empty);
}

/* Copies `from` to `to`; 0 on success. */
static int copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  int status = (in && out) ? 0 : -1;
  char buffer[65536];
  size_t n;
  while (status == 0 && (n = fread(buffer, 1, sizeof buffer, in)) > 0) {
    if (fwrite(buffer, 1, n, out) != n) status = -1;
  }
  if (in) fclose(in);
  if (out && fclose(out) != 0) status = -1;
  return status;
}

/* Linux paths are bytes: a model in a folder whose name is not UTF-8 loads and runs on every
 * backend. */
static void test_paths_are_bytes(void) {
  const char *dir = "/tmp/rivet-capi-\xff\xfe-not-utf8";
  mkdir(dir, 0700);
  char onnx[256], pt[256], spec[256];
  snprintf(onnx, sizeof onnx, "%s/mlp.onnx", dir);
  snprintf(pt, sizeof pt, "%s/mlp.pt", dir);
  snprintf(spec, sizeof spec, "%s/mlp.spec.json", dir);
  CHECK(copy_file(RIVET_MODELS "/mlp/mlp.onnx", onnx) == 0 && copy_file(RIVET_MODELS "/mlp/mlp.pt", pt) == 0 &&
            copy_file(RIVET_MODELS "/mlp/mlp.spec.json", spec) == 0,
        "copy the MLP into a non-UTF-8 folder");
  const char *files[] = {onnx, onnx, pt};
  const char *backends[] = {"ort", "candle", "tch"};
  for (int i = 0; i < 3; i++) {
    rivet_load_options_t *options = NULL;
    rivet_load_options_new(&options);
    rivet_load_options_set_backend(options, backends[i]);
    rivet_model_t *model = NULL;
    rivet_error_t *error = rivet_model_load(files[i], options, &model);
    CHECK(error == NULL, "%s from a non-UTF-8 path: %s", backends[i], error ? rivet_error_message(error) : "");
    if (model != NULL) {
      float x[16] = {0};
      int64_t shape[2] = {1, 16};
      rivet_tensor_t *input = NULL;
      expect_ok(rivet_tensor_new_view(RIVET_DTYPE_F32, shape, 2, x, sizeof x, &input), "view");
      rivet_outputs_t *outputs = NULL;
      const rivet_tensor_t *inputs[] = {input};
      expect_ok(rivet_model_run(model, NULL, inputs, 1, &outputs), backends[i]);
      CHECK(outputs != NULL && rivet_outputs_count(outputs) == 1, "%s ran", backends[i]);
      rivet_outputs_free(outputs);
      rivet_tensor_free(input);
    }
    rivet_error_free(error);
    rivet_model_free(model);
    rivet_load_options_free(options);
  }
  unlink(onnx);
  unlink(pt);
  unlink(spec);
  rmdir(dir);
}

static void test_threads(void) {
  npy_array x;
  CHECK(npy_read(RIVET_MODELS "/mlp/cases/b8/input.features.npy", &x) == 0, "read input");
  const char *paths[2] = {RIVET_MODELS "/mlp/mlp.pt", RIVET_MODELS "/mlp/mlp.onnx"};
  const char *backends[2] = {"tch", "ort"};
  for (int b = 0; b < 2; b++) {
    rivet_model_t *model = load(paths[b], backends[b]);
    rivet_tensor_t *t = NULL;
    expect_ok(rivet_tensor_new(RIVET_DTYPE_F32, x.shape, x.rank, x.data, x.byte_len, &t), "input");
    const rivet_tensor_t *in[1] = {t};
    rivet_outputs_t *serial = NULL;
    expect_ok(rivet_model_run(model, NULL, in, 1, &serial), "serial run");
    pthread_t threads[THREADS];
    worker_args args[THREADS];
    for (int i = 0; i < THREADS; i++) {
      args[i] = (worker_args){model, t, rivet_tensor_data(rivet_outputs_get(serial, 0)), 0};
      pthread_create(&threads[i], NULL, worker, &args[i]);
    }
    int mismatches = 0;
    for (int i = 0; i < THREADS; i++) {
      pthread_join(threads[i], NULL);
      mismatches += args[i].mismatches;
    }
    CHECK(mismatches == 0, "backend %s: %d of %d concurrent runs differ from the serial run", backends[b],
          mismatches, THREADS * RUNS);
    rivet_outputs_free(serial);
    rivet_tensor_free(t);
    rivet_model_free(model);
  }
  npy_free(&x);
}

/* argv[1], when given, names the suite in the summary line (the memcheck run's is its own). */
int main(int argc, char **argv) {
  RUN_TEST(test_version);
  RUN_TEST(test_dtype_round_trips);
  RUN_TEST(test_views_do_not_copy);
  RUN_TEST(test_dlpack);
  RUN_TEST(test_parity);
  RUN_TEST(test_shadow);
  RUN_TEST(test_bad_inputs);
  RUN_TEST(test_backend_library_by_name);
  RUN_TEST(test_threads);
  RUN_TEST(test_caught_panics_are_silent);
  RUN_TEST(test_paths_are_bytes);
  RUN_TEST(test_huge_empty_shapes);
  RUN_TEST(test_getters_tell_null_apart);
  return report(argc > 1 ? argv[1] : "capi_tests");
}
