/*
 * s3be.h: what backend s3 shows of itself to the rest of the daemon: the
 * client of its store, so that what the start-up probe found out about
 * the store (s3probe.h: If-Match ETags sent bare) holds for the backend's
 * requests too; and its store's state (s3health.h) for /readyz, the
 * metrics and the status page.
 */
#ifndef ALPCRUND_S3BE_H
#define ALPCRUND_S3BE_H

struct backend;
struct s3_client;
struct s3_health;

/* The backend's client; NULL when be is not backend s3. */
struct s3_client *backend_s3_client(struct backend *be);
/* The state of its store; NULL when be is not backend s3. */
struct s3_health *backend_s3_health(struct backend *be);

#endif
