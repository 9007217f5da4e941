/* libtorch is loaded only when a TorchScript model is: after loading and running an ONNX model
 * this process maps no libtorch; after loading a TorchScript model it does. Run as its own
 * process (nothing else may load a TorchScript model first); the tests run in order. */
#include <rivet.h>

#include <stdio.h>
#include <string.h>

#include "check.h"

/* Whether a line of /proc/self/maps names a file containing `needle`. */
static int mapped(const char *needle) {
  FILE *maps = fopen("/proc/self/maps", "r");
  if (!maps) return -1;
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof line, maps)) found = strstr(line, needle) != NULL;
  fclose(maps);
  return found;
}

/* Loads `path` and runs it once on a zero row of 16 features; 0 on success. */
static int load_and_run(const char *path, const char *backend) {
  rivet_load_options_t *options = NULL;
  rivet_model_t *model = NULL;
  rivet_tensor_t *input = NULL;
  rivet_outputs_t *outputs = NULL;
  float x[16] = {0};
  const int64_t shape[2] = {1, 16};
  rivet_error_t *error = rivet_load_options_new(&options);
  if (!error) error = rivet_load_options_set_backend(options, backend);
  if (!error) error = rivet_model_load(path, options, &model);
  if (!error) error = rivet_tensor_new(RIVET_DTYPE_F32, shape, 2, x, sizeof x, &input);
  const rivet_tensor_t *inputs[1] = {input};
  if (!error) error = rivet_model_run(model, NULL, inputs, 1, &outputs);
  int ok = !error && rivet_outputs_count(outputs) == 1;
  if (error) fprintf(stderr, "%s on %s: %s\n", backend, path, rivet_error_message(error));
  rivet_error_free(error);
  rivet_outputs_free(outputs);
  rivet_tensor_free(input);
  rivet_model_free(model);
  rivet_load_options_free(options);
  return ok ? 0 : 1;
}

/* Runs first: ONNX models on ort and candle leave libtorch and the tch backend unmapped. */
static void test_onnx_maps_no_libtorch(void) {
  CHECK(mapped("/libtorch") == 0, "libtorch is mapped before any model is loaded");
  CHECK(load_and_run(RIVET_MODELS "/mlp/mlp.onnx", "ort") == 0, "the ONNX model runs on ort");
  CHECK(load_and_run(RIVET_MODELS "/mlp/mlp.onnx", "candle") == 0, "the ONNX model runs on candle");
  CHECK(mapped("/libonnxruntime.so") == 1, "ONNX Runtime is mapped after an ort run");
  CHECK(mapped("/libtorch") == 0, "libtorch is mapped after running ONNX models only");
  CHECK(mapped("/librivet_tch.so") == 0, "the tch backend library is mapped after running ONNX models only");
}

/* Then a TorchScript model maps both. */
static void test_torchscript_maps_libtorch(void) {
  CHECK(load_and_run(RIVET_MODELS "/mlp/mlp.pt", "auto") == 0, "the TorchScript model runs");
  CHECK(mapped("/libtorch_cpu.so") == 1, "libtorch is mapped after loading a TorchScript model");
  CHECK(mapped("/librivet_tch.so") == 1, "the tch backend library is mapped after loading a TorchScript model");
}

int main(void) {
  RUN_TEST(test_onnx_maps_no_libtorch);
  RUN_TEST(test_torchscript_maps_libtorch);
  return report("lazy_libtorch");
}
