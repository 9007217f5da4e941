/* Load a bundled ONNX model, run it on one row of features, print the outputs. */
#include <rivet.h>
#include <stdio.h>

static int fail(rivet_error_t *error) {
  fprintf(stderr, "error %u: %s\n", rivet_error_code(error), rivet_error_message(error));
  rivet_error_free(error);
  return 1;
}

int main(void) {
  if (rivet_abi_version() != RIVET_ABI_VERSION) {
    fprintf(stderr, "librivet ABI %u, header %d\n", rivet_abi_version(), RIVET_ABI_VERSION);
    return 1;
  }
  printf("rivet %s\n", rivet_version());

  rivet_model_t *model = NULL;
  rivet_error_t *error = rivet_model_load(RIVET_MODELS "/mlp/mlp.onnx", NULL, &model);
  if (error) return fail(error);

  float features[16];
  for (int i = 0; i < 16; i++) features[i] = (float)i / 16.0f - 0.5f;
  const int64_t shape[2] = {1, 16};
  rivet_tensor_t *input = NULL;
  error = rivet_tensor_new(RIVET_DTYPE_F32, shape, 2, features, sizeof features, &input);
  if (error) {
    rivet_model_free(model);
    return fail(error);
  }

  const char *names[1] = {"features"};
  const rivet_tensor_t *inputs[1] = {input};
  /* The outputs belong to Rivet: one handle, freed once, whatever their number. */
  rivet_outputs_t *outputs = NULL;
  error = rivet_model_run(model, names, inputs, 1, &outputs);
  rivet_tensor_free(input);
  if (error) {
    rivet_model_free(model);
    return fail(error);
  }
  printf("backend: %s\n", rivet_model_backend(model));
  for (size_t i = 0; i < rivet_outputs_count(outputs); i++) {
    const rivet_tensor_t *output = rivet_outputs_get(outputs, i);
    const int64_t *dims = rivet_tensor_shape(output);
    const float *values = (const float *)rivet_tensor_data(output);
    printf("%s f32[%lld, %lld]:", rivet_outputs_name(outputs, i), (long long)dims[0], (long long)dims[1]);
    for (size_t j = 0; j < rivet_tensor_byte_len(output) / sizeof(float); j++) printf(" %.6f", values[j]);
    printf("\n");
  }
  rivet_outputs_free(outputs);
  rivet_model_free(model);
  return 0;
}
