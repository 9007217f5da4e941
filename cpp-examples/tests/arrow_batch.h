/* A hand-made Arrow producer for the tests: the six customer rows of
 * models/tabular/arrow_case.py as a record batch or a stream of them, counting every release. */
#ifndef RIVET_TEST_ARROW_BATCH_H
#define RIVET_TEST_ARROW_BATCH_H

#include <rivet/arrow.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ROWS 6
#define COLUMNS 9

/* How many times the producer's release callbacks ran: batches, schemas, streams; and how many
 * batches the streams made. */
extern int batch_releases, schema_releases, stream_releases, stream_batches_made;

/* A record batch of the six rows, without column `skip` (-1 for none); `plan_override`, when
 * not NULL, replaces the plan of row 4. */
void make_batch(struct ArrowArray *array, struct ArrowSchema *schema, int skip, const char *plan_override);

/* A stream of `batches` copies of the batch; batch `fail_at` (-1: none) fails with an error. */
void make_stream(struct ArrowArrayStream *stream, int batches, int fail_at);

/* The release callback of the batches' schemas (counted in schema_releases). */
void release_schema(struct ArrowSchema *schema);

#ifdef __cplusplus
}
#endif

#endif
