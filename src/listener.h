/* Client listeners: TCP on each listen_addr and a Unix socket .s.PGSQL.<port>. */
#ifndef CB_LISTENER_H
#define CB_LISTENER_H

struct cfg;
struct event_base;

/* Binds every listener; -1 after logging why. */
int listeners_start(struct event_base *base, const struct cfg *cfg)
	__attribute__((warn_unused_result));
void listeners_stop(void);

#endif
