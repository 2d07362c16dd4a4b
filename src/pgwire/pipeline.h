/* What pipelining needs to know about a statement: its shape (the text with its literals
 * taken out, so "... WHERE aid = 17" and "... WHERE aid = 42" are one) and how long
 * statements of that shape have been taking. Queries of shapes that usually finish
 * within pipeline_max_query_time may wait on a server behind another client's. */
#ifndef CB_PIPELINE_H
#define CB_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Never 0. salt keeps the shapes of different pools apart. */
uint64_t pl_shape(const char *sql, size_t len, uint64_t salt);
/* Seen at least a few times and taking at most limit_us on average. */
bool pl_fast(uint64_t shape, uint64_t limit_us);
/* A statement of this shape took usec on the server. */
void pl_note(uint64_t shape, uint64_t usec);
/* Forget everything (tests, reload). */
void pl_reset(void);

#endif
