/* The latency a pooler adds to one query, measured interleaved: one connection to each
 * target (the first is the reference, a direct TLS connection), then SAMPLES rounds in
 * which every target runs the same query once, in an order that rotates from round to
 * round. Drift over the run (frequency, other load, the upstream's caches) reaches every
 * target alike, which sequential runs (pgbench -l through one, then the other) cannot
 * promise: their p50s differed by tens of microseconds from one invocation to the next.
 *
 *   latency_probe SAMPLES ROWS NAME=CONNINFO...
 *
 * The query is pgbench -S's: SELECT abalance FROM pgbench_accounts WHERE aid = $random,
 * aid in 1..ROWS, sent as a simple Query (pgbench's default). Prints, for each target, the
 * p50/p90/p99 of its samples in microseconds and, for the others, what they add to the
 * first: p50 minus the reference's p50, and the median of the per-round differences.
 * Build: cc -O2 -o latency_probe latency_probe.c $(pkg-config --cflags --libs libpq) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define MAX_TARGETS 8
#define WARMUP 500

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(double *sorted, long n, double p)
{
	long i = (long)(n * p);
	return sorted[i < n ? i : n - 1];
}

static double one_query(PGconn *conn, const char *name, long rows)
{
	char sql[96];
	snprintf(sql, sizeof(sql), "SELECT abalance FROM pgbench_accounts WHERE aid = %ld",
		 1 + random() % rows);
	double t0 = now_us();
	PGresult *res = PQexec(conn, sql);
	double t1 = now_us();
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "latency_probe: %s: %s", name, PQerrorMessage(conn));
		exit(1);
	}
	PQclear(res);
	return t1 - t0;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: latency_probe SAMPLES ROWS NAME=CONNINFO NAME=CONNINFO...\n");
		return 2;
	}
	long samples = atol(argv[1]), rows = atol(argv[2]);
	int n = argc - 3;
	if (samples < 10 || rows < 1 || n > MAX_TARGETS) {
		fprintf(stderr, "latency_probe: SAMPLES >= 10, ROWS >= 1, at most %d targets\n",
			MAX_TARGETS);
		return 2;
	}
	const char *name[MAX_TARGETS];
	PGconn *conn[MAX_TARGETS];
	double *lat[MAX_TARGETS];
	for (int k = 0; k < n; k++) {
		char *eq = strchr(argv[3 + k], '=');
		if (!eq) {
			fprintf(stderr, "latency_probe: %s is not NAME=CONNINFO\n", argv[3 + k]);
			return 2;
		}
		*eq = '\0';
		name[k] = argv[3 + k];
		conn[k] = PQconnectdb(eq + 1);
		if (PQstatus(conn[k]) != CONNECTION_OK) {
			fprintf(stderr, "latency_probe: %s: %s", name[k], PQerrorMessage(conn[k]));
			return 1;
		}
		lat[k] = malloc(sizeof(double) * (size_t)samples);
		if (!lat[k])
			return 1;
	}
	srandom(1);
	for (int i = 0; i < WARMUP; i++)
		for (int k = 0; k < n; k++)
			one_query(conn[k], name[k], rows);
	for (long i = 0; i < samples; i++)
		for (int j = 0; j < n; j++) {
			int k = (int)((i + j) % n);
			lat[k][i] = one_query(conn[k], name[k], rows);
		}

	/* the per-round differences first: sorting a target's samples loses the rounds */
	double *diff = malloc(sizeof(double) * (size_t)samples), dmed[MAX_TARGETS] = { 0 };
	if (!diff)
		return 1;
	for (int k = 1; k < n; k++) {
		for (long i = 0; i < samples; i++)
			diff[i] = lat[k][i] - lat[0][i];
		qsort(diff, (size_t)samples, sizeof(double), cmp_double);
		dmed[k] = pct(diff, samples, 0.5);
	}
	printf("%-14s %9s %9s %9s %14s %18s\n", "target", "p50 us", "p90 us", "p99 us",
	       "p50 - ref p50", "median of diffs");
	double ref50 = 0;
	for (int k = 0; k < n; k++) {
		double *s = lat[k];
		qsort(s, (size_t)samples, sizeof(double), cmp_double);
		double p50 = pct(s, samples, 0.5);
		if (k == 0) {
			ref50 = p50;
			printf("%-14s %9.1f %9.1f %9.1f %14s %18s\n", name[k], p50, pct(s, samples, 0.9),
			       pct(s, samples, 0.99), "(reference)", "");
		} else {
			printf("%-14s %9.1f %9.1f %9.1f %+14.1f %+18.1f\n", name[k], p50,
			       pct(s, samples, 0.9), pct(s, samples, 0.99), p50 - ref50, dmed[k]);
		}
	}
	for (int k = 0; k < n; k++)
		PQfinish(conn[k]);
	return 0;
}
