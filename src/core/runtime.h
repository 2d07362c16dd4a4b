/* What every part of the daemon reaches for: the event loop, the DNS resolver, the config
 * in force and whether the daemon is draining. main.c sets them; everything else reads. */
#ifndef CB_RUNTIME_H
#define CB_RUNTIME_H

#include <stdbool.h>

struct cfg;
struct event_base;
struct evdns_base;

void rt_init(struct event_base *base, struct evdns_base *dns);
/* The config in force: at start, and after each reload that was accepted. */
void rt_set_cfg(const struct cfg *cfg);
/* Shutting down: listeners closed, clients finish what they are in. */
void rt_set_draining(void);

struct event_base *rt_base(void);
struct evdns_base *rt_dns(void);
const struct cfg *rt_cfg(void);
bool rt_draining(void);

#endif
