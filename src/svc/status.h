/*
 * status.h: the status page on metrics_listen (spec §8): GET / (one
 * self-contained HTML page) and GET /status.json (what it shows), built
 * from what the other modules expose; registered into the metrics HTTP
 * server's routes (metrics_route()). alpcrund(8), STATUS PAGE, documents
 * the JSON.
 */
#ifndef ALPCRUND_STATUS_H
#define ALPCRUND_STATUS_H

struct backend;
struct config;

/* After the backend, node mode and metrics_listen are up. 0, or -1. */
int	 status_init(const struct config *, struct backend *);
/* SIGHUP: status_sessions. */
void	 status_reconfigure(const struct config *);

#endif
