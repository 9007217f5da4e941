/*
 * Arrow's C Data Interface and C Stream Interface structs, for programs without Arrow's own
 * headers (https://arrow.apache.org/docs/format/CDataInterface.html and
 * CStreamInterface.html). The layout is the specification's, and the ARROW_C_DATA_INTERFACE /
 * ARROW_C_STREAM_INTERFACE guards are the ones every copy of these definitions uses, so this
 * header and arrow/c/abi.h (or nanoarrow) can be included together in either order.
 *
 * Used by rivet_pipeline_transform_arrow[_stream] and rivet_model_predict_arrow[_stream] in
 * rivet.h.
 */
#ifndef RIVET_ARROW_H
#define RIVET_ARROW_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE

#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

/* A column's type and name; a record batch is a struct ("+s") whose children are the columns. */
struct ArrowSchema {
  const char* format;
  const char* name;
  const char* metadata;
  int64_t flags;
  int64_t n_children;
  struct ArrowSchema** children;
  struct ArrowSchema* dictionary;
  void (*release)(struct ArrowSchema*);
  void* private_data;
};

/* A column's data: validity bitmap first, then the type's buffers. */
struct ArrowArray {
  int64_t length;
  int64_t null_count;
  int64_t offset;
  int64_t n_buffers;
  int64_t n_children;
  const void** buffers;
  struct ArrowArray** children;
  struct ArrowArray* dictionary;
  void (*release)(struct ArrowArray*);
  void* private_data;
};

#endif /* ARROW_C_DATA_INTERFACE */

#ifndef ARROW_C_STREAM_INTERFACE
#define ARROW_C_STREAM_INTERFACE

/* A stream of record batches: get_schema once, then get_next until it yields a released
 * (release == NULL) array; a non-zero return is an errno-like code, explained by
 * get_last_error. */
struct ArrowArrayStream {
  int (*get_schema)(struct ArrowArrayStream*, struct ArrowSchema* out);
  int (*get_next)(struct ArrowArrayStream*, struct ArrowArray* out);
  const char* (*get_last_error)(struct ArrowArrayStream*);
  void (*release)(struct ArrowArrayStream*);
  void* private_data;
};

#endif /* ARROW_C_STREAM_INTERFACE */

#ifdef __cplusplus
}
#endif

#endif /* RIVET_ARROW_H */
