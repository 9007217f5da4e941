/* A minimal .npy reader for the tests: little-endian, C order, version 1 or 2. */
#ifndef RIVET_TEST_NPY_H
#define RIVET_TEST_NPY_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
  char descr[8];      /* e.g. "<f4" */
  int64_t shape[8];
  size_t rank;
  void *data;         /* malloc'd; free with npy_free */
  size_t byte_len;
} npy_array;

/* Returns 0 on success. */
int npy_read(const char *path, npy_array *out);
void npy_free(npy_array *a);
#endif
