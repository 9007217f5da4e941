/* Loads, runs and frees the bundled MLP N times per backend (ONNX on ORT, then TorchScript on
 * tch) and reports, per backend, RSS and glibc's heap in use (mallinfo2: every arena, mmapped
 * chunks included): a leak in the load/run/free path shows as growth proportional to N. Each
 * backend is one test, which fails when either grows by more than GROWTH_BOUND_KIB per 1000
 * cycles over the second half (see there). usage: load_cycles [N=5000] */
#define _GNU_SOURCE /* mallinfo2 */
#include <malloc.h>
#include <rivet.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

/* The growth allowed per 1000 cycles, in KiB, for RSS and for the heap in use alike. ONNX
 * Runtime grows by itself, by about 70 KiB per 1000 load/free cycles (Python's onnxruntime
 * shows the same; it slows down over longer runs), and libtorch by under 10 KiB. Anything
 * Rivet leaked per cycle, a model, a session, an output buffer or an error message, would cost
 * at least 256 bytes a cycle on top of that; memcheck's runs of the suites catch smaller ones. */
#define GROWTH_BOUND_KIB 256.0

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

static long heap_kib(void) {
  struct mallinfo2 m = mallinfo2();
  return (long)((m.uordblks + m.hblkhd) / 1024);
}

static long cycles = 5000;

/* The cycles of one model; prints the growth over each half and checks it against the bound. */
static void phase(const char *name, const char *path) {
  const long n = cycles;
  /* Warm up: first loads initialise the libraries' own process-wide state. */
  for (int i = 0; i < 20; i++) {
    if (cycle(path)) {
      CHECK(0, "%s: warm-up cycle %d failed", name, i);
      return;
    }
  }
  long rss0 = rss_kib(), heap0 = heap_kib(), rss1 = rss0, heap1 = heap0;
  clock_t start = clock();
  for (long i = 0; i < n; i++) {
    if (cycle(path)) {
      CHECK(0, "%s: cycle %ld failed", name, i);
      return;
    }
    if (i == n / 2) rss1 = rss_kib(), heap1 = heap_kib();
  }
  long rss2 = rss_kib(), heap2 = heap_kib();
  printf("%s: %ld load/run/free cycles: RSS %ld -> %ld -> %ld KiB, heap in use %ld -> %ld -> %ld KiB; "
         "per 1000 cycles over the second half: RSS %+.1f KiB, heap %+.1f KiB; %.1f s CPU\n",
         name, n, rss0, rss1, rss2, heap0, heap1, heap2, (double)(rss2 - rss1) * 2000.0 / (double)n,
         (double)(heap2 - heap1) * 2000.0 / (double)n, (double)(clock() - start) / CLOCKS_PER_SEC);
  const double rss_growth = (double)(rss2 - rss1) * 2000.0 / (double)n;
  const double heap_growth = (double)(heap2 - heap1) * 2000.0 / (double)n;
  CHECK(rss_growth <= GROWTH_BOUND_KIB, "%s: RSS grew %.1f KiB per 1000 cycles, over the bound of %.0f", name,
        rss_growth, GROWTH_BOUND_KIB);
  CHECK(heap_growth <= GROWTH_BOUND_KIB, "%s: heap grew %.1f KiB per 1000 cycles, over the bound of %.0f", name,
        heap_growth, GROWTH_BOUND_KIB);
}

static void test_ort_cycles(void) { phase("ort", RIVET_MODELS "/mlp/mlp.onnx"); }
static void test_tch_cycles(void) { phase("tch", RIVET_MODELS "/mlp/mlp.pt"); }

int main(int argc, char **argv) {
  if (argc > 1) cycles = atol(argv[1]);
  if (cycles < 2) {
    fprintf(stderr, "usage: load_cycles [N >= 2]\n");
    return 2;
  }
  RUN_TEST(test_ort_cycles);
  RUN_TEST(test_tch_cycles);
  return report("load_cycles");
}
