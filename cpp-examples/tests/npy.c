#include "npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int npy_read(const char *path, npy_array *out) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  unsigned char pre[8];
  int rc = -1;
  char *header = NULL;
  if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) goto done;
  size_t header_len = 0;
  if (pre[6] == 1) {
    unsigned char l[2];
    if (fread(l, 1, 2, f) != 2) goto done;
    header_len = (size_t)l[0] | ((size_t)l[1] << 8);
  } else {
    unsigned char l[4];
    if (fread(l, 1, 4, f) != 4) goto done;
    header_len = (size_t)l[0] | ((size_t)l[1] << 8) | ((size_t)l[2] << 16) | ((size_t)l[3] << 24);
  }
  header = calloc(header_len + 1, 1);
  if (!header || fread(header, 1, header_len, f) != header_len) goto done;
  const char *d = strstr(header, "'descr': '");
  const char *s = strstr(header, "'shape': (");
  if (!d || !s) goto done;
  d += 10;
  size_t n = 0;
  while (d[n] && d[n] != '\'' && n < sizeof out->descr - 1) n++;
  memcpy(out->descr, d, n);
  out->descr[n] = 0;
  s += 10;
  out->rank = 0;
  size_t count = 1;
  while (*s && *s != ')') {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s) break;
    out->shape[out->rank++] = v;
    count *= (size_t)v;
    s = end;
    while (*s == ',' || *s == ' ') s++;
  }
  size_t item = (size_t)atoi(out->descr + 2);
  out->byte_len = count * item;
  out->data = malloc(out->byte_len ? out->byte_len : 1);
  if (!out->data || fread(out->data, 1, out->byte_len, f) != out->byte_len) goto done;
  rc = 0;
done:
  free(header);
  fclose(f);
  return rc;
}

void npy_free(npy_array *a) {
  free(a->data);
  a->data = NULL;
}
