/* Loads, runs and frees the bundled MLP N times (ORT, then tch, alternating) and reports RSS
 * growth: a leak in the load/run/free path shows as growth proportional to N.
 * usage: load_cycles [N=10000] */
#include <rivet.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int cycle(const char *path) {
  rivet_model_t *model = NULL;
  rivet_error_t *error = rivet_model_load(path, NULL, &model);
  if (error) {
    fprintf(stderr, "load %s: %s\n", path, rivet_error_message(error));
    rivet_error_free(error);
    return 1;
  }
  float x[16] = {0};
  const int64_t shape[2] = {1, 16};
  rivet_tensor_t *input = NULL;
  error = rivet_tensor_new(RIVET_DTYPE_F32, shape, 2, x, sizeof x, &input);
  rivet_outputs_t *outputs = NULL;
  const rivet_tensor_t *inputs[1] = {input};
  if (!error) error = rivet_model_run(model, NULL, inputs, 1, &outputs);
  int rc = 0;
  if (error) {
    fprintf(stderr, "run %s: %s\n", path, rivet_error_message(error));
    rivet_error_free(error);
    rc = 1;
  }
  rivet_outputs_free(outputs);
  rivet_tensor_free(input);
  rivet_model_free(model);
  return rc;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 10000;
  const char *paths[2] = {RIVET_MODELS "/mlp/mlp.onnx", RIVET_MODELS "/mlp/mlp.pt"};
  /* Warm up: first loads initialise the libraries' own process-wide state. */
  for (int i = 0; i < 20; i++)
    if (cycle(paths[i % 2])) return 1;
  long before = rss_kib();
  clock_t start = clock();
  long mid = before;
  for (long i = 0; i < n; i++) {
    if (cycle(paths[i % 2])) return 1;
    if (i == n / 2) mid = rss_kib();
  }
  long after = rss_kib();
  printf("%ld load/run/free cycles: RSS %ld KiB -> %ld KiB at half -> %ld KiB (%+ld KiB, %.2f KiB per 1000 cycles "
         "over the second half), %.1f s CPU\n",
         n, before, mid, after, after - before, (double)(after - mid) * 2000.0 / (double)n,
         (double)(clock() - start) / CLOCKS_PER_SEC);
  return 0;
}
