/*
 * s3be.h: what backend s3 shows of itself to the rest of the daemon: the
 * client of its store, so that what the start-up probe found out about
 * the store (s3probe.h: If-Match ETags sent bare) holds for the backend's
 * requests too.
 */
#ifndef ALPCRUND_S3BE_H
#define ALPCRUND_S3BE_H

struct backend;
struct s3_client;

/* The backend's client; NULL when be is not backend s3. */
struct s3_client *backend_s3_client(struct backend *be);

#endif
