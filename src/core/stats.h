/* Statistics: counters per pool as PgBouncer's SHOW STATS reports them, latency
 * histograms for /metrics, and per-second averages over the last stats_period. */
#ifndef CB_STATS_H
#define CB_STATS_H

#include <stdint.h>

#define STATS_BUCKETS 14
/* Upper bounds of the histogram buckets in microseconds; a last +Inf bucket is implied. */
extern const uint64_t stats_bucket_us[STATS_BUCKETS];

struct stats_hist {
	uint64_t count;
	uint64_t sum_us;
	uint64_t buckets[STATS_BUCKETS + 1]; /* non-cumulative; [STATS_BUCKETS] is +Inf */
};

struct stats {
	uint64_t xact_count, query_count, server_assignment_count;
	uint64_t bytes_received, bytes_sent; /* from clients, to clients */
	uint64_t xact_time_us, query_time_us, wait_time_us;
	uint64_t client_parse_count, server_parse_count, bind_count;
	uint64_t pipelined_count;      /* queries sent behind another client's */
	uint64_t pipeline_retry_count; /* ... and sent again after a late cancel hit them */
	struct stats_hist query, xact, wait;
};

/* Per-second rates and per-event averages over the last period, as PgBouncer's avg_*. */
struct stats_avg {
	double xact_count, query_count, server_assignment_count;   /* per second */
	double recv, sent;                                         /* bytes per second */
	double xact_time_us, query_time_us, wait_time_us;          /* per event */
	double client_parse_count, server_parse_count, bind_count; /* per second */
};

void stats_hist_add(struct stats_hist *h, uint64_t us);
/* avg from the counters at the start (prev) and end (cur) of a period of secs seconds. */
void stats_average(const struct stats *prev, const struct stats *cur, double secs,
		   struct stats_avg *avg);

#endif
