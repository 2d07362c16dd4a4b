/* The admin HTTP port's writers: Prometheus text for /metrics and the JSON of /stats, from
 * a snapshot of the pools (pools_foreach) and the HTTP side's counters. No I/O: they
 * fill an evbuffer, admin_http.c serves it. */
#ifndef CB_ADMIN_METRICS_H
#define CB_ADMIN_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct pool_info;

/* Every pool as pools_foreach showed it, for writers that go over the pools per family. */
struct snapshot {
	struct pool_info *pools;
	size_t n, cap;
	bool oom;
};

/* Every pool now; false when out of memory. Free s->pools after. */
bool snapshot_take(struct snapshot *s);
/* /metrics: every family of the pools, the process and the HTTP side. */
void metrics_write(struct evbuffer *o, const struct snapshot *s, double start_time);
/* One pool of /stats. */
void json_pool(struct evbuffer *o, const struct pool_info *pi);
/* A JSON string (escaped; null for NULL). */
void put_json_str(struct evbuffer *o, const char *s);
/* A JSON number (0 for what JSON cannot carry). */
void put_double(struct evbuffer *o, double v);

#endif
