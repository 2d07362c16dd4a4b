/* Prometheus text and /stats JSON (metrics.h). */
#include "config.h"

#include "metrics.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/stats.h"
#include "http/http_proxy.h"
#include "pgwire/client.h"
#include "pgwire/pool.h"

static void metrics_http(struct evbuffer *o);

/* The struct stats counters: Prometheus name (cratebouncer_pool_<name>_total), JSON key. */
struct counter_def {
	const char *metric, *json, *help;
	size_t off;
	bool usec; /* microseconds, exported as seconds */
};

struct hist_def {
	const char *metric, *json, *help;
	size_t off;
};

struct avg_def {
	const char *json;
	size_t off;
};

static const struct counter_def counters[] = {
	{ "transactions", "xact_count", "Transactions carried.", offsetof(struct stats, xact_count),
	  false },
	{ "queries", "query_count", "Queries carried.", offsetof(struct stats, query_count),
	  false },
	{ "server_assignments", "server_assignment_count", "Times a server was linked to a client.",
	  offsetof(struct stats, server_assignment_count), false },
	{ "received_bytes", "bytes_received", "Bytes received from clients.",
	  offsetof(struct stats, bytes_received), false },
	{ "sent_bytes", "bytes_sent", "Bytes sent to clients.", offsetof(struct stats, bytes_sent),
	  false },
	{ "transaction_seconds", "xact_time_us", "Time spent in transactions.",
	  offsetof(struct stats, xact_time_us), true },
	{ "query_seconds", "query_time_us", "Time spent in queries.",
	  offsetof(struct stats, query_time_us), true },
	{ "wait_seconds", "wait_time_us", "Time clients waited for a server.",
	  offsetof(struct stats, wait_time_us), true },
	{ "client_parses", "client_parse_count", "Parse messages from clients.",
	  offsetof(struct stats, client_parse_count), false },
	{ "server_parses", "server_parse_count", "Parse messages sent to servers.",
	  offsetof(struct stats, server_parse_count), false },
	{ "binds", "bind_count", "Bind messages from clients.", offsetof(struct stats, bind_count),
	  false },
	{ "pipelined_queries", "pipelined_count",
	  "Queries sent to a server behind another client's (pipeline_depth).",
	  offsetof(struct stats, pipelined_count), false },
	{ "pipeline_retries", "pipeline_retry_count",
	  "Pipelined queries sent again because a cancel meant for an earlier one hit them.",
	  offsetof(struct stats, pipeline_retry_count), false },
};

static const struct hist_def hists[] = {
	{ "cratebouncer_query_duration_seconds", "query", "Duration of queries.",
	  offsetof(struct stats, query) },
	{ "cratebouncer_transaction_duration_seconds", "xact", "Duration of transactions.",
	  offsetof(struct stats, xact) },
	{ "cratebouncer_pool_wait_duration_seconds", "wait", "Time clients waited for a server.",
	  offsetof(struct stats, wait) },
};

/* struct stats_avg over the last stats_period: per second, or per event for the times. */
static const struct avg_def avgs[] = {
	{ "xact_count", offsetof(struct stats_avg, xact_count) },
	{ "query_count", offsetof(struct stats_avg, query_count) },
	{ "server_assignment_count", offsetof(struct stats_avg, server_assignment_count) },
	{ "recv", offsetof(struct stats_avg, recv) },
	{ "sent", offsetof(struct stats_avg, sent) },
	{ "xact_time_us", offsetof(struct stats_avg, xact_time_us) },
	{ "query_time_us", offsetof(struct stats_avg, query_time_us) },
	{ "wait_time_us", offsetof(struct stats_avg, wait_time_us) },
	{ "client_parse_count", offsetof(struct stats_avg, client_parse_count) },
	{ "server_parse_count", offsetof(struct stats_avg, server_parse_count) },
	{ "bind_count", offsetof(struct stats_avg, bind_count) },
};

/* Length of the valid UTF-8 sequence at s, 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f; /* no surrogates */
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* A JSON string body or a Prometheus label value; bytes that are not UTF-8 (an upstream's
 * error message may carry any) become U+FFFD so that the output stays valid. */
static void put_escaped(struct evbuffer *o, const char *str, bool json)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		size_t n = utf8_len(s);
		if (n == 0) {
			evbuffer_add(o, "\xef\xbf\xbd", 3);
			s++;
		} else if (*s == '"' || *s == '\\') {
			evbuffer_add_printf(o, "\\%c", *s++);
		} else if (*s == '\n') {
			evbuffer_add(o, "\\n", 2);
			s++;
		} else if (json && *s < 0x20) {
			evbuffer_add_printf(o, "\\u%04x", *s++);
		} else {
			evbuffer_add(o, s, n);
			s += n;
		}
	}
}

/* NULL is JSON null. */
void put_json_str(struct evbuffer *o, const char *s)
{
	if (!s) {
		evbuffer_add(o, "null", 4);
		return;
	}
	evbuffer_add(o, "\"", 1);
	put_escaped(o, s, true);
	evbuffer_add(o, "\"", 1);
}

/* Microseconds as exact decimal seconds: 0.0025, 30, 1.000001. */
static const char *seconds_str(uint64_t us, char buf[32])
{
	int n = snprintf(buf, 32, "%llu.%06llu", (unsigned long long)(us / 1000000),
			 (unsigned long long)(us % 1000000));

	while (buf[n - 1] == '0')
		buf[--n] = '\0';
	if (buf[n - 1] == '.')
		buf[n - 1] = '\0';
	return buf;
}

static void put_seconds(struct evbuffer *o, uint64_t us)
{
	char buf[32];

	evbuffer_add_printf(o, "%s", seconds_str(us, buf));
}

void put_double(struct evbuffer *o, double v)
{
	evbuffer_add_printf(o, "%.3f", isfinite(v) ? v : 0.0);
}

static void snapshot_add(const struct pool_info *pi, void *arg)
{
	struct snapshot *s = arg;

	if (s->oom)
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct pool_info *p = realloc(s->pools, cap * sizeof(*p));
		if (!p) {
			s->oom = true;
			return;
		}
		s->pools = p;
		s->cap = cap;
	}
	s->pools[s->n++] = *pi;
}

/* The strings and counters it points to stay valid until the handler returns. */
bool snapshot_take(struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	pools_foreach(snapshot_add, s);
	if (s->oom) {
		free(s->pools);
		s->pools = NULL;
	}
	return !s->oom;
}

static void put_family(struct evbuffer *o, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{database="...",user="..." and whatever extra holds (",k=\"v\"" or "")} */
static void put_pool_sample(struct evbuffer *o, const char *name, const struct pool_info *pi,
			    const char *extra)
{
	evbuffer_add_printf(o, "%s{database=\"", name);
	put_escaped(o, pi->database, false);
	evbuffer_add(o, "\",user=\"", 8);
	put_escaped(o, pi->user, false);
	evbuffer_add_printf(o, "\"%s} ", extra);
}

static uint64_t stat_at(const struct stats *st, size_t off)
{
	uint64_t v;

	memcpy(&v, (const char *)st + off, sizeof(v));
	return v;
}

static void metrics_histogram(struct evbuffer *o, const struct snapshot *s,
			      const struct hist_def *d)
{
	put_family(o, d->metric, "histogram", d->help);
	for (size_t i = 0; i < s->n; i++) {
		const struct pool_info *pi = &s->pools[i];
		const struct stats_hist *hs = (const struct stats_hist *)((const char *)pi->totals +
									  d->off);
		char name[128], le[64];
		uint64_t cum = 0;

		snprintf(name, sizeof(name), "%s_bucket", d->metric);
		for (int b = 0; b < STATS_BUCKETS; b++) {
			char secs[32];
			snprintf(le, sizeof(le), ",le=\"%s\"",
				 seconds_str(stats_bucket_us[b], secs));
			cum += hs->buckets[b];
			put_pool_sample(o, name, pi, le);
			evbuffer_add_printf(o, "%llu\n", (unsigned long long)cum);
		}
		put_pool_sample(o, name, pi, ",le=\"+Inf\"");
		evbuffer_add_printf(o, "%llu\n", (unsigned long long)hs->count);
		snprintf(name, sizeof(name), "%s_sum", d->metric);
		put_pool_sample(o, name, pi, "");
		put_seconds(o, hs->sum_us);
		evbuffer_add(o, "\n", 1);
		snprintf(name, sizeof(name), "%s_count", d->metric);
		put_pool_sample(o, name, pi, "");
		evbuffer_add_printf(o, "%llu\n", (unsigned long long)hs->count);
	}
}

/* Prometheus text format 0.0.4: every family's HELP, TYPE and samples together. */
void metrics_write(struct evbuffer *o, const struct snapshot *s, double start_time)
{
	static const char *const cl_states[] = { "active", "waiting" };
	static const char *const sv_states[] = { "active", "idle", "used", "login" };
	char name[128], extra[64];

	put_family(o, "cratebouncer_up", "gauge", "1 while the pooler serves.");
	evbuffer_add(o, "cratebouncer_up 1\n", 18);
	put_family(o, "cratebouncer_info", "gauge", "Version of the pooler, as a label.");
	evbuffer_add(o, "cratebouncer_info{version=\"", 27);
	put_escaped(o, PACKAGE_VERSION, false);
	evbuffer_add(o, "\"} 1\n", 5);
	put_family(o, "cratebouncer_start_time_seconds", "gauge",
		   "Start time of the pooler since the Unix epoch in seconds.");
	evbuffer_add_printf(o, "cratebouncer_start_time_seconds %.3f\n", start_time);
	put_family(o, "cratebouncer_clients", "gauge",
		   "Client connections, of every pool and logging in.");
	evbuffer_add_printf(o, "cratebouncer_clients %d\n", clients_total());
	put_family(o, "cratebouncer_servers", "gauge", "Server connections to upstreams.");
	evbuffer_add_printf(o, "cratebouncer_servers %d\n", pools_server_count());

	for (size_t c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
		const struct counter_def *d = &counters[c];
		snprintf(name, sizeof(name), "cratebouncer_pool_%s_total", d->metric);
		put_family(o, name, "counter", d->help);
		for (size_t i = 0; i < s->n; i++) {
			uint64_t v = stat_at(s->pools[i].totals, d->off);
			put_pool_sample(o, name, &s->pools[i], "");
			if (d->usec)
				put_seconds(o, v);
			else
				evbuffer_add_printf(o, "%llu", (unsigned long long)v);
			evbuffer_add(o, "\n", 1);
		}
	}

	put_family(o, "cratebouncer_pool_clients", "gauge", "Clients of the pool by state.");
	for (size_t i = 0; i < s->n; i++) {
		const int v[] = { s->pools[i].cl_active, s->pools[i].cl_waiting };
		for (size_t k = 0; k < 2; k++) {
			snprintf(extra, sizeof(extra), ",state=\"%s\"", cl_states[k]);
			put_pool_sample(o, "cratebouncer_pool_clients", &s->pools[i], extra);
			evbuffer_add_printf(o, "%d\n", v[k]);
		}
	}
	put_family(o, "cratebouncer_pool_servers", "gauge",
		   "Server connections of the pool by state.");
	for (size_t i = 0; i < s->n; i++) {
		const struct pool_info *pi = &s->pools[i];
		const int v[] = { pi->sv_active, pi->sv_idle, pi->sv_used, pi->sv_login };
		for (size_t k = 0; k < 4; k++) {
			snprintf(extra, sizeof(extra), ",state=\"%s\"", sv_states[k]);
			put_pool_sample(o, "cratebouncer_pool_servers", pi, extra);
			evbuffer_add_printf(o, "%d\n", v[k]);
		}
	}
	put_family(o, "cratebouncer_pool_max_wait_seconds", "gauge",
		   "How long the longest-waiting client of the pool has waited.");
	for (size_t i = 0; i < s->n; i++) {
		put_pool_sample(o, "cratebouncer_pool_max_wait_seconds", &s->pools[i], "");
		put_seconds(o, s->pools[i].maxwait_us);
		evbuffer_add(o, "\n", 1);
	}
	put_family(o, "cratebouncer_pool_size", "gauge", "Most server connections the pool opens.");
	for (size_t i = 0; i < s->n; i++) {
		put_pool_sample(o, "cratebouncer_pool_size", &s->pools[i], "");
		evbuffer_add_printf(o, "%d\n", s->pools[i].pool_size);
	}
	put_family(o, "cratebouncer_upstream_up", "gauge",
		   "1 unless the last connection or login to the upstream failed.");
	for (size_t i = 0; i < s->n; i++) {
		const struct pool_info *pi = &s->pools[i];
		evbuffer_add(o, "cratebouncer_upstream_up{database=\"", 35);
		put_escaped(o, pi->database, false);
		evbuffer_add(o, "\",user=\"", 8);
		put_escaped(o, pi->user, false);
		evbuffer_add(o, "\",host=\"", 8);
		put_escaped(o, pi->host ? pi->host : "", false);
		evbuffer_add_printf(o, "\",port=\"%d\"} %d\n", pi->port, pi->last_error ? 0 : 1);
	}

	for (size_t k = 0; k < sizeof(hists) / sizeof(hists[0]); k++)
		metrics_histogram(o, s, &hists[k]);
	metrics_http(o);
}

/* The HTTP side, when it is on: requests by status class, connections, bytes. */
static void metrics_http(struct evbuffer *o)
{
	struct http_stats st;
	static const char *const classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };

	if (!http_proxy_enabled())
		return;
	http_proxy_stats(&st);
	put_family(o, "cratebouncer_http_requests_total", "counter",
		   "HTTP requests forwarded to the upstream.");
	evbuffer_add(o, "cratebouncer_http_requests_total{upstream=\"", 44);
	put_escaped(o, st.upstream, false);
	evbuffer_add_printf(o, "\"} %llu\n", (unsigned long long)st.requests);
	put_family(
		o, "cratebouncer_http_responses_total", "counter",
		"HTTP responses to clients by status class (cratebouncer's own errors included).");
	for (int k = 0; k < 5; k++) {
		evbuffer_add(o, "cratebouncer_http_responses_total{upstream=\"", 45);
		put_escaped(o, st.upstream, false);
		evbuffer_add_printf(o, "\",class=\"%s\"} %llu\n", classes[k],
				    (unsigned long long)st.responses[k + 1]);
	}
	put_family(o, "cratebouncer_http_upstream_errors_total", "counter",
		   "Failed connections to the HTTP upstream.");
	evbuffer_add_printf(o, "cratebouncer_http_upstream_errors_total %llu\n",
			    (unsigned long long)st.errors_upstream);
	put_family(o, "cratebouncer_http_retries_total", "counter",
		   "Requests sent again on a fresh connection after a stale one failed.");
	evbuffer_add_printf(o, "cratebouncer_http_retries_total %llu\n",
			    (unsigned long long)st.retries);
	put_family(o, "cratebouncer_http_clients", "gauge", "HTTP client connections.");
	evbuffer_add_printf(o, "cratebouncer_http_clients %d\n", st.clients);
	put_family(o, "cratebouncer_http_upstream_connections", "gauge",
		   "Connections to the HTTP upstream by state.");
	evbuffer_add_printf(o,
			    "cratebouncer_http_upstream_connections{state=\"idle\"} %d\n"
			    "cratebouncer_http_upstream_connections{state=\"busy\"} %d\n"
			    "cratebouncer_http_upstream_connections{state=\"pinned\"} %d\n",
			    st.upstream_idle, st.upstream_busy, st.upstream_pinned);
	put_family(o, "cratebouncer_http_waiting", "gauge",
		   "HTTP requests waiting for an upstream connection.");
	evbuffer_add_printf(o, "cratebouncer_http_waiting %d\n", st.waiting);
	put_family(o, "cratebouncer_http_upstream_up", "gauge",
		   "1 unless the last connection to the HTTP upstream failed.");
	evbuffer_add_printf(o, "cratebouncer_http_upstream_up %d\n", st.last_error ? 0 : 1);
}

static void json_histogram(struct evbuffer *o, const struct stats_hist *hs)
{
	evbuffer_add(o, "{\"buckets_us\":[", 15);
	for (int b = 0; b < STATS_BUCKETS; b++)
		evbuffer_add_printf(o, "%s%llu", b ? "," : "",
				    (unsigned long long)stats_bucket_us[b]);
	evbuffer_add(o, "],\"counts\":[", 12);
	for (int b = 0; b <= STATS_BUCKETS; b++)
		evbuffer_add_printf(o, "%s%llu", b ? "," : "", (unsigned long long)hs->buckets[b]);
	evbuffer_add_printf(o, "],\"count\":%llu,\"sum_us\":%llu}", (unsigned long long)hs->count,
			    (unsigned long long)hs->sum_us);
}

/* One pool of /stats. Histogram counts are per bucket, not cumulative; the last one is
 * above the highest bound. */
void json_pool(struct evbuffer *o, const struct pool_info *pi)
{
	evbuffer_add(o, "{\"database\":", 12);
	put_json_str(o, pi->database);
	evbuffer_add(o, ",\"user\":", 8);
	put_json_str(o, pi->user);
	evbuffer_add(o, ",\"dbname\":", 10);
	put_json_str(o, pi->dbname);
	evbuffer_add(o, ",\"host\":", 8);
	put_json_str(o, pi->host);
	evbuffer_add_printf(o, ",\"port\":%d,\"pool_mode\":", pi->port);
	put_json_str(o, pi->pool_mode);
	evbuffer_add_printf(o,
			    ",\"pool_size\":%d,\"min_pool_size\":%d"
			    ",\"clients\":{\"active\":%d,\"waiting\":%d}"
			    ",\"servers\":{\"active\":%d,\"idle\":%d,\"used\":%d,\"login\":%d}"
			    ",\"max_wait_us\":%llu,\"upstream_up\":%s,\"last_error\":",
			    pi->pool_size, pi->min_pool_size, pi->cl_active, pi->cl_waiting,
			    pi->sv_active, pi->sv_idle, pi->sv_used, pi->sv_login,
			    (unsigned long long)pi->maxwait_us, pi->last_error ? "false" : "true");
	put_json_str(o, pi->last_error);
	evbuffer_add(o, ",\"totals\":{", 11);
	for (size_t c = 0; c < sizeof(counters) / sizeof(counters[0]); c++)
		evbuffer_add_printf(o, "%s\"%s\":%llu", c ? "," : "", counters[c].json,
				    (unsigned long long)stat_at(pi->totals, counters[c].off));
	evbuffer_add(o, "},\"averages\":{", 14);
	for (size_t a = 0; a < sizeof(avgs) / sizeof(avgs[0]); a++) {
		double v;
		memcpy(&v, (const char *)pi->avg + avgs[a].off, sizeof(v));
		evbuffer_add_printf(o, "%s\"%s\":", a ? "," : "", avgs[a].json);
		put_double(o, v);
	}
	evbuffer_add(o, "},\"histograms\":{", 16);
	for (size_t k = 0; k < sizeof(hists) / sizeof(hists[0]); k++) {
		evbuffer_add_printf(o, "%s\"%s\":", k ? "," : "", hists[k].json);
		json_histogram(
			o, (const struct stats_hist *)((const char *)pi->totals + hists[k].off));
	}
	evbuffer_add(o, "}}", 2);
}
