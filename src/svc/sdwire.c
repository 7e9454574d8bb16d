/*
 * sdwire.c: SharedData read in place (sdwire.h), on pbwire.c's reader with
 * protobuf-c's limits on top.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "bigbuf.h"
#include "pbwire.h"
#include "sdwire.h"

/* A decoded request: the message handlers see comes first. */
struct sd_req {
	Alpcrun__V1__SharedData		msg;
	Google__Protobuf__Duration	ttl;
	uint8_t				*body;
};

/* protobuf-c's longest tag and length prefix. */
#define TAG_MAX		5
#define LENPFX_MAX	5

/* A tag: at most 5 bytes, the field number kept to 32 bits; a one-byte tag
 * of field 0 is malformed (a longer one is an unknown field). */
static int
sd_tag(const uint8_t **pp, const uint8_t *end, uint32_t *field,
    unsigned *wt)
{
	const uint8_t *p = *pp;
	uint64_t f;

	if (p >= end || (*p & 0xf8) == 0)
		return -1;
	if (pbwire_tag(&p, end, &f, wt) != 0 || p - *pp > TAG_MAX)
		return -1;
	*field = (uint32_t)f;
	*pp = p;
	return 0;
}

static int
sd_len(const uint8_t **pp, const uint8_t *end, const uint8_t **data,
    size_t *len)
{
	const uint8_t *p = *pp;

	if (pbwire_len(&p, end, data, len) != 0 ||
	    *data - *pp > LENPFX_MAX || *len > INT_MAX)
		return -1;
	*pp = p;
	return 0;
}

static int
sd_skip(const uint8_t **pp, const uint8_t *end, unsigned wt)
{
	const uint8_t *data;
	size_t len;

	if (wt == PBWIRE_LEN)
		return sd_len(pp, end, &data, &len);
	return pbwire_skip(pp, end, wt);
}

/* A Duration's fields, merged into *sec and *nanos: each one given
 * replaces what an earlier occurrence of the ttl gave. */
static int
sd_duration(const uint8_t *p, const uint8_t *end, int64_t *sec,
    int32_t *nanos)
{
	unsigned long long n = 0;
	uint32_t field;
	uint64_t v;
	unsigned wt;

	while (p < end) {
		if (++n > SDWIRE_FIELDS_MAX || sd_tag(&p, end, &field, &wt) != 0)
			return -1;
		if (field != 1 && field != 2) {
			if (sd_skip(&p, end, wt) != 0)
				return -1;
			continue;
		}
		if (wt != PBWIRE_VARINT || pbwire_varint(&p, end, &v) != 0)
			return -1;
		if (field == 1)
			*sec = (int64_t)v;
		else
			*nanos = (int32_t)(uint32_t)v;
	}
	return 0;
}

int
sdwire_parse_head(const uint8_t *buf, size_t have, size_t total,
    struct sd_view *v)
{
	const uint8_t *p = buf, *q, *lp, *end = buf + have;
	uint32_t field;
	uint64_t plen;
	unsigned wt;

	if (have == 0 || have > total)
		return 0;
	for (;;) {
		q = p;
		/* A tag or field cut by `have` and a malformed one look
		 * alike here: the whole message decides. */
		if (q >= end || sd_tag(&q, end, &field, &wt) != 0)
			return 0;
		if (field != 3 || wt != PBWIRE_LEN) {
			if (sd_skip(&q, end, wt) != 0)
				return 0;
			p = q;
			continue;
		}
		lp = q;
		if (pbwire_varint(&q, end, &plen) != 0)
			return 0;
		if (q - lp > LENPFX_MAX || plen > INT_MAX ||
		    plen != (uint64_t)(total - (size_t)(q - buf)))
			return -1;
		/* The fields before it, as sdwire_parse() reads them. */
		if (sdwire_parse(buf, (size_t)(p - buf), v) != 0)
			return -1;
		v->has_payload = 1;
		v->payload_off = (size_t)(q - buf);
		v->payload_len = (size_t)plen;
		return 1;
	}
}

int
sdwire_parse(const uint8_t *buf, size_t len, struct sd_view *r)
{
	const uint8_t *p, *end, *data;
	unsigned long long n = 0;
	uint32_t field;
	uint64_t v;
	unsigned wt;
	size_t dlen;

	memset(r, 0, sizeof(*r));
	/* buf may be NULL then, and NULL + 0 is undefined. */
	if (len == 0)
		return 0;
	p = buf;
	end = buf + len;
	while (p < end) {
		if (++n > SDWIRE_FIELDS_MAX || sd_tag(&p, end, &field, &wt) != 0)
			return -1;
		if (field < 1 || field > 4) {
			if (sd_skip(&p, end, wt) != 0)
				return -1;
			continue;
		}
		if (field == 2) {
			if (wt != PBWIRE_VARINT ||
			    pbwire_varint(&p, end, &v) != 0)
				return -1;
			r->has_level = 1;
			r->level = (uint32_t)v;	/* as protobuf truncates */
			continue;
		}
		if (wt != PBWIRE_LEN || sd_len(&p, end, &data, &dlen) != 0)
			return -1;
		switch (field) {
		case 1:
			r->has_session_id = 1;
			r->session_id = data;
			r->session_len = dlen;
			break;
		case 3:
			r->has_payload = 1;
			r->payload_off = (size_t)(data - buf);
			r->payload_len = dlen;
			break;
		case 4:
			if (sd_duration(data, data + dlen, &r->ttl_seconds,
			    &r->ttl_nanos) != 0)
				return -1;
			r->has_ttl = 1;
			break;
		}
	}
	return 0;
}

ProtobufCMessage *
sdwire_decode(uint8_t *buf, size_t len)
{
	struct sd_view v;
	struct sd_req *q;

	if (sdwire_parse(buf, len, &v) != 0 ||
	    (q = malloc(sizeof(*q))) == NULL) {
		bigbuf_free(buf);
		return NULL;
	}
	alpcrun__v1__shared_data__init(&q->msg);
	q->body = buf;
	if (v.has_session_id) {
		q->msg.has_session_id = 1;
		q->msg.session_id.len = v.session_len;
		/* Empty: NULL, as protobuf-c leaves it. */
		q->msg.session_id.data = v.session_len > 0 ?
		    (uint8_t *)(uintptr_t)v.session_id : NULL;
	}
	q->msg.has_update_level = v.has_level;
	q->msg.update_level = v.level;
	if (v.has_payload) {
		q->msg.has_payload = 1;
		q->msg.payload.len = v.payload_len;
		q->msg.payload.data = v.payload_len > 0 ?
		    buf + v.payload_off : NULL;
	}
	if (v.has_ttl) {
		google__protobuf__duration__init(&q->ttl);
		q->ttl.seconds = v.ttl_seconds;
		q->ttl.nanos = v.ttl_nanos;
		q->msg.ttl = &q->ttl;
	}
	return &q->msg.base;
}

void
sdwire_free(ProtobufCMessage *m)
{
	struct sd_req *q = (struct sd_req *)(void *)m;

	if (q == NULL)
		return;
	bigbuf_free(q->body);
	free(q);
}

uint8_t *
sdwire_body(const Alpcrun__V1__SharedData *m)
{
	return ((const struct sd_req *)(const void *)m)->body;
}

void
sdwire_body_taken(Alpcrun__V1__SharedData *m)
{
	struct sd_req *q = (struct sd_req *)(void *)m;

	q->body = NULL;
	m->session_id.data = NULL;
	m->session_id.len = 0;
	m->payload.data = NULL;
	m->payload.len = 0;
}
