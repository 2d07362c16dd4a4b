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
/* The shape of a client's input when that is exactly one autocommit Query, or one
 * extended-protocol group (Parse/Bind/Describe/Execute, one Sync at the end) of such
 * statements (extended: the pool renames statements, so a Bind's statement is known from
 * names), of at most PIPE_QUERY_MAX bytes; else 0. */
#define PIPE_QUERY_MAX 8192
struct ps_map;
uint64_t pl_input_shape(const uint8_t *msg, size_t len, const struct ps_map *names, bool extended,
			uint64_t salt);
/* Forget everything (tests, reload). */
void pl_reset(void);

#endif
