/* Statistics arithmetic; the counters themselves live in each pool. */
#include "stats.h"

#include <string.h>

const uint64_t stats_bucket_us[STATS_BUCKETS] = {
	100,   250,   500,    1000,   2500,    5000,    10000,
	25000, 50000, 100000, 250000, 1000000, 5000000, 30000000,
};

void stats_hist_add(struct stats_hist *h, uint64_t us)
{
	int i = 0;

	while (i < STATS_BUCKETS && us > stats_bucket_us[i])
		i++;
	h->buckets[i]++;
	h->count++;
	h->sum_us += us;
}

static double per(uint64_t a, uint64_t b, double d)
{
	return d > 0 ? (double)(b - a) / d : 0;
}

void stats_average(const struct stats *p, const struct stats *c, double secs, struct stats_avg *a)
{
	uint64_t xacts = c->xact_count - p->xact_count, queries = c->query_count - p->query_count;
	uint64_t assigns = c->server_assignment_count - p->server_assignment_count;

	memset(a, 0, sizeof(*a));
	a->xact_count = per(p->xact_count, c->xact_count, secs);
	a->query_count = per(p->query_count, c->query_count, secs);
	a->server_assignment_count = per(p->server_assignment_count, c->server_assignment_count,
					 secs);
	a->recv = per(p->bytes_received, c->bytes_received, secs);
	a->sent = per(p->bytes_sent, c->bytes_sent, secs);
	a->xact_time_us = xacts ? (double)(c->xact_time_us - p->xact_time_us) / (double)xacts : 0;
	a->query_time_us = queries ? (double)(c->query_time_us - p->query_time_us) / (double)queries
				   : 0;
	a->wait_time_us = assigns ? (double)(c->wait_time_us - p->wait_time_us) / (double)assigns
				  : 0;
	a->client_parse_count = per(p->client_parse_count, c->client_parse_count, secs);
	a->server_parse_count = per(p->server_parse_count, c->server_parse_count, secs);
	a->bind_count = per(p->bind_count, c->bind_count, secs);
}
