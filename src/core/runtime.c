/* The daemon's run-time context (runtime.h): one per process, set by main.c. */
#include "runtime.h"

#include <stddef.h>

static struct {
	struct event_base *base;
	struct evdns_base *dns;
	const struct cfg *cfg;
	bool draining;
} rt;

void rt_init(struct event_base *base, struct evdns_base *dns)
{
	rt.base = base;
	rt.dns = dns;
}

void rt_set_cfg(const struct cfg *cfg)
{
	rt.cfg = cfg;
}

void rt_set_draining(void)
{
	rt.draining = true;
}

struct event_base *rt_base(void)
{
	return rt.base;
}

struct evdns_base *rt_dns(void)
{
	return rt.dns;
}

const struct cfg *rt_cfg(void)
{
	return rt.cfg;
}

bool rt_draining(void)
{
	return rt.draining;
}
