#!/usr/bin/python3
"""fakes3.py: an S3-compatible object store for the tests of `backend s3`.

It owns a path-style S3 subset held in memory, kept atomic the way the
daemon relies on (conditional writes checked and committed under a per-key
lock), SigV4 verification, fault injection and deliberately broken modes
for the daemon's start-up probe. Python 3.11 standard library only; it is
both a script and a module (tests start it in a thread or as a process).

Command line:

    /usr/bin/python3 fakes3.py --listen 127.0.0.1:0 --port-file PATH
        [--bucket NAME ...] [--access-key AK --secret-key SK]
        [--region us-east-1] [--tls-cert C --tls-key K] [--mode MODE]
        [--min-part-size BYTES] [--verbose]

  Writes the bound port to PATH (a temporary file renamed into place) once
  listening; SIGTERM or SIGINT stops it (exit 0).

Module:

    FakeS3(host="127.0.0.1", port=0, buckets=(), access_key=None,
           secret_key=None, region="us-east-1", mode="correct", tls=None,
           min_part_size=5 MiB, service="s3", clock=time.time)
      .start() -> self      .stop()      .port  .url ("http[s]://host:port")
      .faults(rules=None, clear=False) -> the remaining rules (adds rules:
          a dict or a list of dicts, as POST /_fake/faults)
      .reset(objects=False, stats=False)   .set_mode(mode)   .stats() -> dict
      .release(): held answers go on (hold_after_bytes)
      .objects(bucket) -> {key: (bytes, metadata)}; metadata holds "etag"
          (quoted), "content-type", "last-modified" (epoch seconds) and the
          user metadata as "x-amz-meta-NAME"
      .put_object(bucket, key, data, metadata=None) -> etag (seeding, no
          conditions)    .uploads(bucket) -> {upload_id: (key, {n: bytes})}
      .age(seconds): moves every pending upload's Initiated and every
          object's LastModified that far into the past.
    tls: (certfile, keyfile) or an ssl.SSLContext. clock: the server's idea
    of now (for the 15-minute skew rule). Used as a context manager it
    starts and stops.

  Client helpers for the tests: sign_headers(...) (SigV4 headers of a
  request), Client(url, access_key, secret_key, region).request(...), and
  the SigV4 steps canonical_request(), string_to_sign(), signing_key(),
  signature().

S3 subset (path-style only, /bucket/key), answering with S3's XML error
bodies and status codes:

  PUT object: If-None-Match: * (412 PreconditionFailed when the key exists;
    another value 501 NotImplemented), If-Match: "etag" (412 when it
    differs, 404 NoSuchKey when the key is missing), Content-MD5 (400
    BadDigest), x-amz-meta-* and Content-Type stored. ETag: the quoted md5.
  GET/HEAD object: Range bytes=a-b, a-, -n (206, 416 InvalidRange),
    If-Match (412), If-None-Match (304).
  DELETE object: 204 (also for a missing key), If-Match (412, 404).
  ListObjectsV2 (?list-type=2: prefix, delimiter, max-keys, start-after,
    continuation-token, encoding-type=url) and ListObjects V1 (marker).
  Multipart: CreateMultipartUpload (POST ?uploads), UploadPart (PUT
    ?partNumber=N&uploadId=), ListParts (GET ?uploadId=),
    CompleteMultipartUpload (POST ?uploadId=, conditions as PUT; parts in
    ascending order, all but the last at least min_part_size bytes; ETag
    "md5-of-md5s-N"), AbortMultipartUpload (DELETE ?uploadId=),
    ListMultipartUploads (GET /bucket?uploads: prefix, key-marker,
    upload-id-marker, max-uploads).
  Buckets: PUT, HEAD, DELETE (409 BucketNotEmpty), GET /bucket?location,
    GET / (ListBuckets).
  Request bodies by Content-Length or chunked transfer-encoding;
  Expect: 100-continue; HTTP/1.1 keep-alive.

SigV4 (when access_key and secret_key are given): every request but
/_fake/ needs an Authorization header (403 AccessDenied without one). The
canonical request is rebuilt from the received method, the path decoded
and URI-encoded once per segment (S3 does not normalise paths), the sorted
query, the signed headers and x-amz-content-sha256 (400 InvalidRequest
when missing; UNSIGNED-PAYLOAD accepted; a hex digest is checked against
the body: 400 XAmzContentSHA256Mismatch; STREAMING-* 501 NotImplemented).
403 SignatureDoesNotMatch (the body carries the StringToSign and the
CanonicalRequest), 403 RequestTimeTooSkewed beyond 15 minutes, 403
InvalidAccessKeyId, 400 AuthorizationHeaderMalformed for a wrong region,
a credential date other than x-amz-date's or a malformed header, 403
AccessDenied for an x-amz-* header left unsigned.

Fault injection, on the same port under /_fake/ (never signed, not counted
in the stats), JSON bodies:

  POST /_fake/faults  a rule or a list of rules, appended:
      {"method": "PUT"|"GET"|"HEAD"|"DELETE"|"POST"|"*",  (default "*")
       "key": "<regex, re.search on the decoded key; '' for bucket requests>",
       "bucket": "<regex>", "op": "PutObject"|"UploadPart"|...  (optional)
       "action": ..., "count": N (default 1; -1 forever)}
    action: {"latency_ms": M} delay, then handle normally;
            {"status": 503, "code": "SlowDown"} (or 500 InternalError, 409
              ConditionalRequestConflict, any status and code): the body is
              read, nothing applied, that error answered;
            "lose_reply": applied, then the connection closed unanswered;
            {"cut_after_bytes": B}: B body bytes read, then the connection
              closed, nothing applied, no answer;
            {"stall_ms": M}: response headers sent, the body M ms later;
            {"hold_after_bytes": B}: response headers and the body's first
              B bytes sent, the rest held until the test lets it go
              (.release(), POST /_fake/release) or 60 s pass; the stats'
              "holding" counts the answers held right now;
            {"gather": N}: held until N requests of this rule are held at
              once, then all handled (a check that N requests are in
              flight together); one held 10 s without the others is
              answered 500 NotGathered, nothing applied.
    The first rule that matches a request is used (and its count spent).
  GET /_fake/faults   the remaining rules.
  POST /_fake/release lets every held answer go on (hold_after_bytes; the
                      ones held later are held until the next release).
  POST /_fake/reset   {"objects": true, "stats": true}: clears the faults;
                      the objects and uploads (buckets kept) and the stats
                      when asked.
  GET /_fake/stats    {"requests", "connections" (accepted), "by_method", "by_status" ("lost", "cut"
                      for those faults), "by_op", "bytes_in", "bytes_out",
                      "faults_applied"}.
  POST /_fake/mode    {"mode": MODE}.   POST /_fake/age {"seconds": N}.

Modes (stores that get conditional writes wrong, as real ones did):
  correct (default);
  ignore-conditions: PUT, CompleteMultipartUpload and DELETE ignore
    If-None-Match and If-Match (like npm's s3rver);
  ifmatch-missing-succeeds: If-Match on a missing key creates it;
  racy: conditions checked right one request at a time, but check and
    commit are not under the lock and 20 ms pass between them, so
    concurrent racers all win;
  bare-if-match: a write's If-Match matches only an ETag without its
    quotes, the quoted form HTTP defines answering 412 (like Ceph RGW 16),
    and If-Match on a missing key answers 412 as RGW does; conditions are
    otherwise honoured.
"""
import argparse
import base64
import binascii
import datetime
import email.utils
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape as _xml_escape

MODES = ("correct", "ignore-conditions", "ifmatch-missing-succeeds", "racy", "bare-if-match")
RACY_GAP = 0.020
SKEW_LIMIT = 15 * 60
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_STORED_HEADERS = ("content-type", "cache-control", "content-disposition",
                   "content-encoding", "content-language", "expires")


# ---------------------------------------------------------------- SigV4

def uri_encode(data, keep_slash=False):
    """SigV4's URI encoding: every byte but A-Z a-z 0-9 - _ . ~ as %XX
    (upper-case hex); '/' kept when keep_slash."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    out = []
    for b in data:
        if b in _UNRESERVED or (keep_slash and b == 0x2F):
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def canonical_uri(raw_path):
    """The S3 canonical URI of a request target's path as received: decoded
    once, then encoded once, '/' kept (no normalisation of '.', '..', '//')."""
    if isinstance(raw_path, str):
        raw_path = raw_path.encode("latin-1")
    return uri_encode(urllib.parse.unquote_to_bytes(raw_path or b"/"), keep_slash=True)


def canonical_query(raw_query):
    """Pairs decoded then encoded, sorted by name and value ('+' is a plus,
    a name without '=' has an empty value)."""
    if isinstance(raw_query, str):
        raw_query = raw_query.encode("latin-1")
    pairs = []
    for piece in (raw_query or b"").split(b"&"):
        if not piece:
            continue
        name, _, value = piece.partition(b"=")
        pairs.append((uri_encode(urllib.parse.unquote_to_bytes(name)),
                      uri_encode(urllib.parse.unquote_to_bytes(value))))
    pairs.sort()
    return "&".join("%s=%s" % p for p in pairs)


def _trim(value):
    return re.sub(r"\s+", " ", value.strip())


def canonical_headers(header_pairs, signed):
    """header_pairs: (name, value) in arrival order (a name may repeat);
    signed: the lower-case names. Values trimmed, inner runs of white space
    made one space, repeats joined with ','."""
    values = {}
    for name, value in header_pairs:
        values.setdefault(name.lower(), []).append(_trim(value))
    return "".join("%s:%s\n" % (n, ",".join(values.get(n, []))) for n in signed)


def canonical_request(method, raw_path, raw_query, header_pairs, signed, payload_hash):
    return "\n".join([method, canonical_uri(raw_path), canonical_query(raw_query),
                      canonical_headers(header_pairs, signed), ";".join(signed),
                      payload_hash])


def string_to_sign(amz_date, scope, creq):
    return "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                      hashlib.sha256(creq.encode("utf-8")).hexdigest()])


def signing_key(secret_key, date, region, service):
    k = ("AWS4" + secret_key).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode("utf-8"), hashlib.sha256).digest()
    return k


def signature(secret_key, date, region, service, sts):
    return hmac.new(signing_key(secret_key, date, region, service),
                    sts.encode("utf-8"), hashlib.sha256).hexdigest()


def amz_now(t=None):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if t is None else t))


def sign_headers(method, target, headers, access_key, secret_key, region="us-east-1",
                 service="s3", payload_hash=EMPTY_SHA256, amz_date=None, content_sha256=True):
    """The headers to add to a request (Authorization, x-amz-date and, for
    service s3 unless content_sha256 is false, x-amz-content-sha256 with
    payload_hash, which the canonical request ends with in any case).
    target: the request target as sent
    ("/bucket/key?query", already percent-encoded); headers: a dict or
    (name, value) pairs that go out, Host among them. Every header given is
    signed."""
    amz_date = amz_date or amz_now()
    pairs = list(headers.items() if isinstance(headers, dict) else headers)
    extra = [("x-amz-date", amz_date)]
    if service == "s3" and content_sha256:
        extra.append(("x-amz-content-sha256", payload_hash))
    have = {n.lower() for n, _ in pairs}
    pairs += [p for p in extra if p[0] not in have]
    path, _, query = target.partition("?")
    signed = sorted({n.lower() for n, _ in pairs})
    creq = canonical_request(method, path, query, pairs, signed, payload_hash)
    scope = "%s/%s/%s/aws4_request" % (amz_date[:8], region, service)
    sig = signature(secret_key, amz_date[:8], region, service,
                    string_to_sign(amz_date, scope, creq))
    out = dict(p for p in extra if p[0] not in have)
    out["Authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
                            % (access_key, scope, ";".join(signed), sig))
    return out


# ---------------------------------------------------------------- client

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # {lower-case name: value}
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    @property
    def etag(self):
        return self.headers.get("etag")

    @property
    def code(self):
        """The <Code> of an XML error body, or None."""
        m = re.search(rb"<Code>([^<]*)</Code>", self.body or b"")
        return m.group(1).decode() if m else None

    def __repr__(self):
        return "<Response %d %s %r>" % (self.status, self.code or "", (self.body or b"")[:200])


class Client:
    """A small S3 client for the tests: signs with SigV4 when given keys.
    request() takes the key unencoded and the query as a dict or pairs."""

    def __init__(self, url, access_key=None, secret_key=None, region="us-east-1", timeout=30):
        u = urllib.parse.urlsplit(url)
        self.https = u.scheme == "https"
        self.host, self.port = u.hostname, u.port
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.timeout = timeout

    def connect(self):
        if self.https:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            c = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=ctx)
        else:
            c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        c.connect()
        return c

    @staticmethod
    def target(bucket=None, key=None, query=None):
        path = "/"
        if bucket:
            path += uri_encode(bucket)
            if key is not None:
                path += "/" + uri_encode(key, keep_slash=True)
        if query:
            items = query.items() if isinstance(query, dict) else query
            path += "?" + "&".join(uri_encode(k) + ("=" + uri_encode(str(v)) if v is not None else "")
                                   for k, v in items)
        return path

    def request(self, method, bucket=None, key=None, query=None, body=b"", headers=None,
                conn=None, sign=True, payload="sha256"):
        """payload: "sha256" (the body's hash), "unsigned" (UNSIGNED-PAYLOAD)
        or a literal x-amz-content-sha256 value; None sends no such header."""
        target = self.target(bucket, key, query)
        hdrs = {"Host": "%s:%d" % (self.host, self.port)}
        hdrs.update(headers or {})
        if body or method in ("PUT", "POST"):
            hdrs["Content-Length"] = str(len(body))
        if payload == "sha256":
            ph = hashlib.sha256(body).hexdigest()
        elif payload == "unsigned":
            ph = "UNSIGNED-PAYLOAD"
        else:
            ph = payload
        if ph is not None:
            hdrs["x-amz-content-sha256"] = ph
        if sign and self.access_key:
            hdrs.update(sign_headers(method, target, hdrs, self.access_key, self.secret_key,
                                     self.region, payload_hash=ph if ph is not None else EMPTY_SHA256,
                                     content_sha256=ph is not None))
        own = conn is None
        c = conn or self.connect()
        try:
            c.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for n, v in hdrs.items():
                c.putheader(n, v)
            c.endheaders(body if body else None)
            r = c.getresponse()
            data = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            if own:
                c.close()


# ---------------------------------------------------------------- store

class S3Error(Exception):
    def __init__(self, status, code, message="", **extra):
        super().__init__("%d %s" % (status, code))
        self.status, self.code, self.message, self.extra = status, code, message, extra


class _Obj:
    __slots__ = ("data", "etag", "headers", "meta", "mtime")

    def __init__(self, data, etag, headers, meta, mtime):
        self.data, self.etag, self.headers, self.meta, self.mtime = data, etag, headers, meta, mtime


class _Upload:
    def __init__(self, bucket, key, headers, meta, initiated):
        self.bucket, self.key, self.headers, self.meta = bucket, key, headers, meta
        self.initiated = initiated
        self.parts = {}                 # number -> (data, md5 hex, mtime)


class _Cut(Exception):
    """Close the connection without an answer."""


def _quote(md5hex):
    return '"%s"' % md5hex


def _unquote_etag(v):
    v = v.strip()
    if v.startswith("W/"):
        v = v[2:]
    return v.strip('"')


def _etag_matches(header, etag):
    if header.strip() == "*":
        return True
    want = _unquote_etag(etag)
    return any(_unquote_etag(p) == want for p in header.split(","))


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def _http_date(t):
    return email.utils.formatdate(t, usegmt=True)


def _x(s):
    return _xml_escape(str(s), {'"': "&quot;"})


def _rule_check(rule):
    if not isinstance(rule, dict):
        raise ValueError("a rule is a JSON object")
    r = dict(rule)
    r.setdefault("method", "*")
    r.setdefault("key", "")
    r.setdefault("count", 1)
    if r["method"] not in ("*", "PUT", "GET", "HEAD", "DELETE", "POST"):
        raise ValueError("bad method %r" % r["method"])
    re.compile(r["key"])
    if "bucket" in r:
        re.compile(r["bucket"])
    if not isinstance(r["count"], int) or r["count"] == 0 or r["count"] < -1:
        raise ValueError("count: a positive integer or -1")
    a = r.get("action")
    if a == "lose_reply":
        pass
    elif isinstance(a, dict) and len(a) == 1 and next(iter(a)) in ("latency_ms", "cut_after_bytes",
                                                                   "stall_ms", "gather",
                                                                   "hold_after_bytes"):
        if not isinstance(next(iter(a.values())), int) or next(iter(a.values())) < 0:
            raise ValueError("%s: a non-negative integer" % next(iter(a)))
    elif isinstance(a, dict) and "status" in a and set(a) <= {"status", "code", "message"}:
        if not isinstance(a["status"], int) or not 400 <= a["status"] <= 599:
            raise ValueError("status: 400-599")
        a = dict(a)
        a.setdefault("code", {500: "InternalError", 503: "SlowDown",
                              409: "ConditionalRequestConflict"}.get(a["status"], "InternalError"))
        r["action"] = a
    else:
        raise ValueError("unknown action %r" % (a,))
    return r


class FakeS3:
    def __init__(self, host="127.0.0.1", port=0, buckets=(), access_key=None, secret_key=None,
                 region="us-east-1", mode="correct", tls=None, min_part_size=5 * 1024 * 1024,
                 service="s3", clock=time.time, verbose=False):
        if mode not in MODES:
            raise ValueError("mode: one of %s" % ", ".join(MODES))
        if (access_key is None) != (secret_key is None):
            raise ValueError("access_key and secret_key go together")
        self.host, self._want_port = host, port
        self.access_key, self.secret_key = access_key, secret_key
        self.region, self.service, self.clock = region, service, clock
        self.mode, self.min_part_size, self.verbose = mode, min_part_size, verbose
        self.tls = tls
        self._mu = threading.Lock()
        self._gather_cv = threading.Condition()
        self._gathers = {}      # id(rule action) -> [held, generation]
        self._go = threading.Event()    # hold_after_bytes: let them go
        self._buckets = {b: {} for b in buckets}
        self._bucket_ctime = {b: clock() for b in buckets}
        self._uploads = {}
        self._key_locks = {}
        self._rules = []
        self._stats = self._zero_stats()
        self._server = None
        self._thread = None
        self._conns = set()
        self._reqid = 0

    # -- life

    def start(self):
        srv = _Server((self.host, self._want_port), _Handler)
        srv.fake = self
        if self.tls is not None:
            ctx = self.tls
            if not isinstance(ctx, ssl.SSLContext):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(self.tls[0], self.tls[1])
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
        self._server = srv
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fakes3", daemon=True)
        self._thread.start()
        return self

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        h = self.host if ":" not in self.host else "[%s]" % self.host
        return "%s://%s:%d" % ("https" if self.tls is not None else "http", h, self.port)

    def stop(self):
        if self._server is None:
            return
        self.release()
        self._server.shutdown()
        self._server.server_close()
        with self._mu:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- inspection and control

    @staticmethod
    def _zero_stats():
        return {"requests": 0, "connections": 0, "by_method": {}, "by_status": {}, "by_op": {},
                "bytes_in": 0, "bytes_out": 0, "faults_applied": 0, "holding": 0}

    def stats(self):
        with self._mu:
            return json.loads(json.dumps(self._stats))

    def faults(self, rules=None, clear=False):
        new = []
        if rules is not None:
            for r in ([rules] if isinstance(rules, dict) else rules):
                new.append(_rule_check(r))
        with self._mu:
            if clear:
                self._rules = []
            self._rules.extend(new)
            return json.loads(json.dumps(self._rules))

    def release(self):
        with self._mu:
            go, self._go = self._go, threading.Event()
        go.set()

    def _hold(self):
        with self._mu:
            go = self._go
            self._stats["holding"] += 1
        go.wait(60)
        with self._mu:
            self._stats["holding"] -= 1

    def reset(self, objects=False, stats=False):
        with self._mu:
            self._rules = []
            if objects:
                for b in self._buckets:
                    self._buckets[b] = {}
                self._uploads = {}
            if stats:
                self._stats = self._zero_stats()

    def set_mode(self, mode):
        if mode not in MODES:
            raise ValueError("mode: one of %s" % ", ".join(MODES))
        self.mode = mode

    def age(self, seconds):
        with self._mu:
            for u in self._uploads.values():
                u.initiated -= seconds
            for objs in self._buckets.values():
                for o in objs.values():
                    o.mtime -= seconds

    def objects(self, bucket):
        with self._mu:
            objs = dict(self._buckets[bucket])
        out = {}
        for k, o in objs.items():
            md = {"etag": o.etag, "last-modified": o.mtime}
            md.update(o.headers)
            md.update(o.meta)
            out[k] = (o.data, md)
        return out

    def put_object(self, bucket, key, data, metadata=None):
        headers = {k: v for k, v in (metadata or {}).items() if k in _STORED_HEADERS}
        meta = {k: v for k, v in (metadata or {}).items() if k.startswith("x-amz-meta-")}
        etag = _quote(hashlib.md5(data).hexdigest())
        with self._mu:
            self._buckets.setdefault(bucket, {})[key] = _Obj(bytes(data), etag, headers, meta, self.clock())
        return etag

    def uploads(self, bucket):
        with self._mu:
            return {uid: (u.key, {n: p[0] for n, p in u.parts.items()})
                    for uid, u in self._uploads.items() if u.bucket == bucket}

    # -- internals used by the handler

    def _gather(self, action, timeout=10.0):
        """Hold until action["gather"] requests of this rule are held:
        True, or False after timeout without them."""
        with self._gather_cv:
            g = self._gathers.setdefault(id(action), [0, 0])
            gen = g[1]
            g[0] += 1
            if g[0] >= action["gather"]:
                g[0], g[1] = 0, g[1] + 1
                self._gather_cv.notify_all()
                return True
            if self._gather_cv.wait_for(lambda: g[1] != gen, timeout):
                return True
            g[0] -= 1
            return False

    def _count(self, field, name, n=1):
        with self._mu:
            d = self._stats[field]
            d[name] = d.get(name, 0) + n

    def _match_rule(self, method, bucket, key, op):
        with self._mu:
            for i, r in enumerate(self._rules):
                if r["method"] not in ("*", method):
                    continue
                if r.get("op") not in (None, op):
                    continue
                if "bucket" in r and not re.search(r["bucket"], bucket or ""):
                    continue
                if not re.search(r["key"], key or ""):
                    continue
                if r["count"] > 0:
                    r["count"] -= 1
                    if r["count"] == 0:
                        del self._rules[i]
                self._stats["faults_applied"] += 1
                return r["action"]
        return None

    def _key_lock(self, bucket, key):
        with self._mu:
            lk = self._key_locks.get((bucket, key))
            if lk is None:
                lk = self._key_locks[(bucket, key)] = threading.Lock()
            return lk

    def _bucket(self, name):
        b = self._buckets.get(name)
        if b is None:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=name)
        return b

    def _get(self, bucket, key):
        with self._mu:
            return self._bucket(bucket).get(key)

    def _precondition(self, cur, headers, key):
        """The rule of a conditional write: None (go on) or the S3Error."""
        if self.mode == "ignore-conditions":
            return None
        if_match = headers.get("If-Match")
        if_none = headers.get("If-None-Match")
        if if_none is not None and if_none.strip() != "*":
            return S3Error(501, "NotImplemented",
                           "A header you provided implies functionality that is not implemented",
                           Header="If-None-Match")
        if if_match is not None:
            if cur is None and self.mode == "bare-if-match":
                return S3Error(412, "PreconditionFailed",
                               "At least one of the pre-conditions you specified did not hold",
                               Condition="If-Match")
            if cur is None:
                if self.mode != "ifmatch-missing-succeeds":
                    return S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
            elif not (_unquote_etag(cur.etag) == if_match.strip()
                      if self.mode == "bare-if-match" else _etag_matches(if_match, cur.etag)):
                return S3Error(412, "PreconditionFailed",
                               "At least one of the pre-conditions you specified did not hold",
                               Condition="If-Match")
        if if_none is not None and cur is not None:
            return S3Error(412, "PreconditionFailed",
                           "At least one of the pre-conditions you specified did not hold",
                           Condition="If-None-Match")
        return None

    def _conditional_commit(self, bucket, key, headers, make, on_commit=None):
        """Check the request's conditions against the current object and
        store make() under the key's lock (in mode racy: no lock, and
        RACY_GAP between check and commit). Returns the stored _Obj."""
        def once():
            cur = self._get(bucket, key)
            err = self._precondition(cur, headers, key)
            if err is not None:
                raise err
            if self.mode == "racy":
                time.sleep(RACY_GAP)
            obj = make()
            with self._mu:
                self._bucket(bucket)[key] = obj
                if on_commit:
                    on_commit()
            return obj
        if self.mode == "racy":
            return once()
        with self._key_lock(bucket, key):
            return once()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def _parse_amz_date(s):
    try:
        return datetime.datetime.strptime(s, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(s).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


_AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256\s+(.*)$", re.S)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AmazonS3"
    sys_version = ""
    timeout = 120

    def version_string(self):
        return self.server_version

    # -- plumbing

    def setup(self):
        super().setup()
        # An answer goes out as headers, then body: without this a small
        # one waits for the client's delayed ACK (40 ms) between the two.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        fake = self.server.fake
        with fake._mu:
            fake._conns.add(self.connection)
            fake._stats["connections"] += 1

    def finish(self):
        fake = self.server.fake
        with fake._mu:
            fake._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.server.fake.verbose:
            sys.stderr.write("fakes3: %s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _read_exact(self, n):
        chunks = []
        while n > 0:
            b = self.rfile.read(min(n, 1 << 20))
            if not b:
                raise _Cut()
            chunks.append(b)
            n -= len(b)
        return b"".join(chunks)

    def _read_body(self, limit=None):
        """The request body (Content-Length or chunked); with limit, at most
        that many bytes are read."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            out = []
            got = 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise _Cut()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:                 # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                if limit is not None and got + size >= limit:
                    out.append(self._read_exact(limit - got))
                    got = limit
                    break
                out.append(self._read_exact(size))
                got += size
                self._read_exact(2)
            return b"".join(out)
        n = int(self.headers.get("Content-Length") or 0)
        if limit is not None:
            n = min(n, limit)
        return self._read_exact(n)

    # -- the request

    def _handle(self):
        fake = self.server.fake
        raw = self.path.encode("latin-1")
        if raw.startswith(b"http://") or raw.startswith(b"https://"):
            raw = b"/" + raw.split(b"/", 3)[3] if raw.count(b"/") >= 3 else b"/"
        self.raw_path, _, self.raw_query = raw.partition(b"?")
        if self.raw_path.startswith(b"/_fake/"):
            return self._control()
        self.query = {}
        for piece in self.raw_query.split(b"&"):
            if piece:
                n, _, v = piece.partition(b"=")
                self.query.setdefault(urllib.parse.unquote(n.decode("latin-1")),
                                      urllib.parse.unquote(v.decode("latin-1")))
        path = urllib.parse.unquote_to_bytes(self.raw_path).decode("utf-8", "replace")
        parts = path[1:].split("/", 1)
        self.bucket = parts[0] or None
        self.key = parts[1] if len(parts) > 1 and parts[1] != "" else None
        self.op = self._op_name()
        with fake._mu:
            fake._reqid += 1
            self.reqid = "%016X" % (fake._reqid * 7919 + 0x5EED)
            st = fake._stats
            st["requests"] += 1
            st["by_method"][self.command] = st["by_method"].get(self.command, 0) + 1
            st["by_op"][self.op] = st["by_op"].get(self.op, 0) + 1
        self.stall = None
        self.hold = None
        self.lose = False
        action = fake._match_rule(self.command, self.bucket, self.key, self.op)
        if isinstance(action, dict) and "cut_after_bytes" in action:
            try:
                body = self._read_body(limit=action["cut_after_bytes"])
                fake._count("by_status", "cut")
                with fake._mu:
                    fake._stats["bytes_in"] += len(body)
            except (_Cut, ValueError, OSError):
                pass
            self._drop()
            return
        if isinstance(action, dict) and "gather" in action and not fake._gather(action):
            self._read_body()
            self._error(S3Error(500, "NotGathered", "the other requests of the gather did not come"))
            return
        if isinstance(action, dict) and "latency_ms" in action:
            time.sleep(action["latency_ms"] / 1000.0)
        elif isinstance(action, dict) and "stall_ms" in action:
            self.stall = action["stall_ms"] / 1000.0
        elif isinstance(action, dict) and "hold_after_bytes" in action:
            self.hold = action["hold_after_bytes"]
        elif action == "lose_reply":
            self.lose = True
        try:
            try:
                self.body = self._read_body()
            except ValueError:
                raise S3Error(400, "IncompleteBody", "The request body could not be read")
            with fake._mu:
                fake._stats["bytes_in"] += len(self.body)
            if isinstance(action, dict) and "status" in action:
                raise S3Error(action["status"], action["code"],
                              action.get("message", "Injected by the test"))
            if fake.access_key is not None:
                self._authenticate()
            self._check_payload()
            self._dispatch()
        except _Cut:
            self._drop()
        except S3Error as e:
            self._error(e)
        except Exception as e:          # a bug here answers 500, not a hang
            sys.stderr.write("fakes3: %s %s: %r\n" % (self.command, self.path, e))
            self._error(S3Error(500, "InternalError", "We encountered an internal error: %r" % e))

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _op_name(self):
        m, q = self.command, self.query
        if self.bucket is None:
            return "ListBuckets"
        if self.key is None:
            if m == "GET":
                if "uploads" in q:
                    return "ListMultipartUploads"
                if "location" in q:
                    return "GetBucketLocation"
                return "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
            return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket",
                    "POST": "PostBucket"}[m]
        if m == "PUT":
            return "UploadPart" if "uploadId" in q else "PutObject"
        if m == "POST":
            if "uploads" in q:
                return "CreateMultipartUpload"
            return "CompleteMultipartUpload" if "uploadId" in q else "PostObject"
        if m == "DELETE":
            return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
        if m == "GET" and "uploadId" in q:
            return "ListParts"
        return {"GET": "GetObject", "HEAD": "HeadObject"}[m]

    # -- answers

    def _send(self, status, headers=(), body=b"", length=None):
        fake = self.server.fake
        if self.lose:
            fake._count("by_status", "lost")
            self._drop()
            return
        with_body = body and self.command != "HEAD" and status not in (204, 304)
        # Counted before the answer goes out: a client that has its answer
        # finds it in the stats.
        with fake._mu:
            st = fake._stats
            st["by_status"][str(status)] = st["by_status"].get(str(status), 0) + 1
            if with_body:
                st["bytes_out"] += len(body)
        self.send_response(status)
        self.send_header("x-amz-request-id", self.reqid)
        self.send_header("x-amz-id-2", base64.b64encode(self.reqid.encode()).decode())
        for n, v in (headers.items() if isinstance(headers, dict) else headers):
            self.send_header(n, v)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.stall:
            try:
                self.wfile.flush()
            except OSError:
                pass
            time.sleep(self.stall)
        if with_body and self.hold is not None:
            self.wfile.write(body[:self.hold])
            try:
                self.wfile.flush()
            except OSError:
                pass
            fake._hold()
            body = body[self.hold:]
        if with_body:
            self.wfile.write(body)

    def _xml(self, status, root, inner, headers=()):
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<%s xmlns="%s">%s</%s>'
                % (root, XMLNS, inner, root)).encode("utf-8")
        h = [("Content-Type", "application/xml")] + list(headers)
        self._send(status, h, body)

    def _error(self, e):
        extra = "".join("<%s>%s</%s>" % (k, _x(v), k) for k, v in e.extra.items())
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
                '%s<RequestId>%s</RequestId><HostId>fakes3</HostId></Error>'
                % (_x(e.code), _x(e.message), extra, self.reqid)).encode("utf-8")
        if self.command == "HEAD":
            self._send(e.status, [("Content-Type", "application/xml")], b"", length=0)
        else:
            self._send(e.status, [("Content-Type", "application/xml")], body)

    # -- SigV4

    def _authenticate(self):
        fake = self.server.fake
        auth = self.headers.get("Authorization")
        if auth is None:
            if "X-Amz-Signature" in self.query:
                raise S3Error(501, "NotImplemented", "Presigned URLs are not implemented here")
            raise S3Error(403, "AccessDenied", "Access Denied")
        m = _AUTH_RE.match(auth.strip())
        if not m:
            raise S3Error(400, "InvalidArgument", "Unsupported Authorization Type",
                          ArgumentName="Authorization", ArgumentValue=auth)
        comps = {}
        for c in m.group(1).split(","):
            n, _, v = c.strip().partition("=")
            comps[n] = v
        if set(comps) != {"Credential", "SignedHeaders", "Signature"}:
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; the authorization header requires "
                          "three components: Credential, SignedHeaders, and Signature.")
        cred = comps["Credential"].split("/")
        if len(cred) != 5 or cred[4] != "aws4_request":
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; the Credential is mal-formed; "
                          "expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
        ak, cdate, region, service = cred[:4]
        if ak != fake.access_key:
            raise S3Error(403, "InvalidAccessKeyId",
                          "The AWS Access Key Id you provided does not exist in our records.",
                          AWSAccessKeyId=ak)
        if region != fake.region:
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; the region '%s' is wrong; "
                          "expecting '%s'" % (region, fake.region), Region=fake.region)
        if service != fake.service:
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; incorrect service \"%s\". "
                          "This endpoint belongs to \"%s\"." % (service, fake.service))
        if fake.service == "s3" and self.headers.get("x-amz-content-sha256") is None:
            raise S3Error(400, "InvalidRequest",
                          "Missing required header for this request: x-amz-content-sha256")
        amz_date = self.headers.get("x-amz-date") or self.headers.get("Date")
        t = _parse_amz_date(amz_date) if amz_date else None
        if t is None:
            raise S3Error(403, "AccessDenied",
                          "AWS authentication requires a valid Date or x-amz-date header")
        if self.headers.get("x-amz-date") and cdate != amz_date[:8]:
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; Invalid credential date. "
                          "Date is not the same as X-Amz-Date.")
        now = fake.clock()
        if abs(now - t) > SKEW_LIMIT:
            raise S3Error(403, "RequestTimeTooSkewed",
                          "The difference between the request time and the current time is too large.",
                          RequestTime=amz_date, ServerTime=amz_now(now), MaxAllowedSkewMilliseconds=900000)
        signed = comps["SignedHeaders"].split(";")
        if "host" not in signed:
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; host must be signed")
        unsigned = sorted({n.lower() for n in self.headers.keys()
                           if n.lower().startswith("x-amz-") and n.lower() not in signed})
        if unsigned:
            raise S3Error(403, "AccessDenied",
                          "There were headers present in the request which were not signed",
                          HeadersNotSigned=", ".join(unsigned))
        payload = self.headers.get("x-amz-content-sha256") or EMPTY_SHA256
        creq = canonical_request(self.command, self.raw_path, self.raw_query,
                                 self.headers.items(), signed, payload)
        scope = "/".join(cred[1:])
        sts = string_to_sign(self.headers.get("x-amz-date") or amz_now(t), scope, creq)
        want = signature(fake.secret_key, cdate, region, service, sts)
        if not hmac.compare_digest(want, comps["Signature"]):
            raise S3Error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature you "
                          "provided. Check your key and signing method.",
                          AWSAccessKeyId=ak, StringToSign=sts, SignatureProvided=comps["Signature"],
                          CanonicalRequest=creq)

    def _check_payload(self):
        ph = self.headers.get("x-amz-content-sha256")
        if ph is None or ph == "UNSIGNED-PAYLOAD":
            return
        if ph.startswith("STREAMING-"):
            raise S3Error(501, "NotImplemented", "Streaming (aws-chunked) payloads are not implemented here",
                          Header="x-amz-content-sha256")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", ph):
            raise S3Error(400, "InvalidArgument",
                          "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                          "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, or a valid sha256 value.",
                          ArgumentName="x-amz-content-sha256", ArgumentValue=ph)
        got = hashlib.sha256(self.body).hexdigest()
        if got != ph.lower():
            raise S3Error(400, "XAmzContentSHA256Mismatch",
                          "The provided 'x-amz-content-sha256' header does not match what was computed.",
                          ClientComputedContentSHA256=ph, S3ComputedContentSHA256=got)

    def _check_md5(self):
        v = self.headers.get("Content-MD5")
        if v is None:
            return
        try:
            d = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            d = b""
        if len(d) != 16:
            raise S3Error(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
        if d != hashlib.md5(self.body).digest():
            raise S3Error(400, "BadDigest",
                          "The Content-MD5 you specified did not match what we received.")

    def _stored_headers(self):
        h = {n: self.headers[n] for n in _STORED_HEADERS if self.headers.get(n) is not None}
        h.setdefault("content-type", "binary/octet-stream")
        meta = {n.lower(): v for n, v in self.headers.items() if n.lower().startswith("x-amz-meta-")}
        return h, meta

    # -- operations

    def _dispatch(self):
        fake = self.server.fake
        op = self.op
        if op == "ListBuckets":
            if self.command != "GET":
                raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
            with fake._mu:
                names = sorted(fake._buckets)
                inner = "".join("<Bucket><Name>%s</Name><CreationDate>%s</CreationDate></Bucket>"
                                % (_x(n), _iso(fake._bucket_ctime.get(n, 0))) for n in names)
            return self._xml(200, "ListAllMyBucketsResult",
                             "<Owner><ID>fakes3</ID></Owner><Buckets>%s</Buckets>" % inner)
        getattr(self, "_op_" + op, self._op_unknown)()

    def _op_unknown(self):
        raise S3Error(501, "NotImplemented",
                      "A header or query you provided implies functionality that is not implemented")

    def _op_CreateBucket(self):
        fake = self.server.fake
        with fake._mu:
            if self.bucket not in fake._buckets:
                fake._buckets[self.bucket] = {}
                fake._bucket_ctime[self.bucket] = fake.clock()
        self._send(200, [("Location", "/" + self.bucket)])

    def _op_HeadBucket(self):
        with self.server.fake._mu:
            self.server.fake._bucket(self.bucket)
        self._send(200, [("x-amz-bucket-region", self.server.fake.region)], length=0)

    def _op_DeleteBucket(self):
        fake = self.server.fake
        with fake._mu:
            if fake._bucket(self.bucket):
                raise S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty",
                              BucketName=self.bucket)
            del fake._buckets[self.bucket]
        self._send(204)

    def _op_GetBucketLocation(self):
        with self.server.fake._mu:
            self.server.fake._bucket(self.bucket)
        r = self.server.fake.region
        self._xml(200, "LocationConstraint", "" if r == "us-east-1" else _x(r))

    def _op_PutObject(self):
        fake = self.server.fake
        if (self.headers.get("Content-Length") is None
                and "chunked" not in self.headers.get("Transfer-Encoding", "").lower()):
            raise S3Error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        if self.headers.get("x-amz-copy-source"):
            raise S3Error(501, "NotImplemented", "CopyObject is not implemented here")
        self._check_md5()
        with fake._mu:
            fake._bucket(self.bucket)
        data = self.body
        headers, meta = self._stored_headers()
        etag = _quote(hashlib.md5(data).hexdigest())
        fake._conditional_commit(self.bucket, self.key, self.headers,
                                 lambda: _Obj(data, etag, headers, meta, fake.clock()))
        self._send(200, [("ETag", etag)])

    def _object_headers(self, o):
        h = [("ETag", o.etag), ("Last-Modified", _http_date(o.mtime)), ("Accept-Ranges", "bytes")]
        h += [(n.title(), v) for n, v in o.headers.items()]
        h += list(o.meta.items())
        return h

    def _read_conditions(self, o):
        im = self.headers.get("If-Match")
        if im is not None and not _etag_matches(im, o.etag):
            raise S3Error(412, "PreconditionFailed",
                          "At least one of the pre-conditions you specified did not hold",
                          Condition="If-Match")
        inm = self.headers.get("If-None-Match")
        if inm is not None and _etag_matches(inm, o.etag):
            self._send(304, [("ETag", o.etag), ("Last-Modified", _http_date(o.mtime))])
            return False
        return True

    def _op_GetObject(self):
        o = self.server.fake._get(self.bucket, self.key)
        if o is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=self.key)
        if not self._read_conditions(o):
            return
        size = len(o.data)
        rng = self.headers.get("Range")
        m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng or "")
        if m and (m.group(1) or m.group(2)):
            a, b = m.group(1), m.group(2)
            if a:
                start = int(a)
                end = min(int(b), size - 1) if b else size - 1
                bad = start >= size or (b and int(b) < start)
            else:
                n = int(b)
                start, end = max(0, size - n), size - 1
                bad = n == 0 or size == 0
            if bad:
                raise S3Error(416, "InvalidRange", "The requested range is not satisfiable",
                              RangeRequested=rng, ActualObjectSize=size)
            h = self._object_headers(o) + [("Content-Range", "bytes %d-%d/%d" % (start, end, size))]
            return self._send(206, h, o.data[start:end + 1])
        self._send(200, self._object_headers(o), o.data)

    def _op_HeadObject(self):
        o = self.server.fake._get(self.bucket, self.key)
        if o is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=self.key)
        if self._read_conditions(o):
            self._send(200, self._object_headers(o), length=len(o.data))

    def _op_DeleteObject(self):
        fake = self.server.fake

        def once():
            with fake._mu:
                cur = fake._bucket(self.bucket).get(self.key)
            if self.headers.get("If-Match") is not None and fake.mode != "ignore-conditions":
                if cur is None:
                    raise S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=self.key)
                if not _etag_matches(self.headers["If-Match"], cur.etag):
                    raise S3Error(412, "PreconditionFailed",
                                  "At least one of the pre-conditions you specified did not hold",
                                  Condition="If-Match")
            if fake.mode == "racy":
                time.sleep(RACY_GAP)
            with fake._mu:
                fake._bucket(self.bucket).pop(self.key, None)
        if fake.mode == "racy":
            once()
        else:
            with fake._key_lock(self.bucket, self.key):
                once()
        self._send(204)

    def _list_common(self, v2):
        fake = self.server.fake
        q = self.query
        prefix = q.get("prefix", "")
        delim = q.get("delimiter", "")
        try:
            max_keys = int(q.get("max-keys", "1000"))
            if max_keys < 0:
                raise ValueError
        except ValueError:
            raise S3Error(400, "InvalidArgument", "Provided max-keys not an integer or within integer range",
                          ArgumentName="max-keys", ArgumentValue=q.get("max-keys"))
        max_keys = min(max_keys, 1000)
        after, after_prefix = "", False
        if v2:
            if "continuation-token" in q:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(q["continuation-token"].encode()))
                    after, after_prefix = tok["k"], tok["p"]
                except (ValueError, KeyError, TypeError, binascii.Error):
                    raise S3Error(400, "InvalidArgument", "The continuation token provided is incorrect",
                                  ArgumentName="continuation-token")
            else:
                after = q.get("start-after", "")
        else:
            after = q.get("marker", "")
        with fake._mu:
            objs = sorted(fake._bucket(self.bucket).items())
        items = []          # (name, obj or None for a common prefix)
        truncated = False
        seen_prefixes = set()
        for k, o in objs:
            if not k.startswith(prefix):
                continue
            if k <= after or (after_prefix and k.startswith(after)):
                continue
            if delim:
                i = k.find(delim, len(prefix))
                if i >= 0:
                    cp = k[:i + len(delim)]
                    if cp in seen_prefixes or (after and cp <= after):
                        continue
                    if len(items) >= max_keys:
                        truncated = True
                        break
                    seen_prefixes.add(cp)
                    items.append((cp, None))
                    continue
            if len(items) >= max_keys:
                truncated = True
                break
            items.append((k, o))
        enc = q.get("encoding-type") == "url"

        def e(s):
            return _x(urllib.parse.quote(s, safe="/") if enc else s)
        inner = ["<Name>%s</Name><Prefix>%s</Prefix>" % (_x(self.bucket), e(prefix))]
        if delim:
            inner.append("<Delimiter>%s</Delimiter>" % e(delim))
        inner.append("<MaxKeys>%d</MaxKeys><IsTruncated>%s</IsTruncated>"
                     % (max_keys, "true" if truncated else "false"))
        if enc:
            inner.append("<EncodingType>url</EncodingType>")
        if v2:
            inner.append("<KeyCount>%d</KeyCount>" % len(items))
            if "continuation-token" in q:
                inner.append("<ContinuationToken>%s</ContinuationToken>" % _x(q["continuation-token"]))
            elif "start-after" in q:
                inner.append("<StartAfter>%s</StartAfter>" % e(q["start-after"]))
            if truncated:
                last, lo = items[-1]
                tok = base64.urlsafe_b64encode(json.dumps({"k": last, "p": lo is None}).encode()).decode()
                inner.append("<NextContinuationToken>%s</NextContinuationToken>" % tok)
        else:
            inner.append("<Marker>%s</Marker>" % e(after))
            if truncated and delim:
                inner.append("<NextMarker>%s</NextMarker>" % e(items[-1][0]))
        for name, o in items:
            if o is not None:
                inner.append("<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag>"
                             "<Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>"
                             % (e(name), _iso(o.mtime), _x(o.etag), len(o.data)))
        for name, o in items:
            if o is None:
                inner.append("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % e(name))
        self._xml(200, "ListBucketResult", "".join(inner))

    def _op_ListObjectsV2(self):
        self._list_common(True)

    def _op_ListObjects(self):
        self._list_common(False)

    # -- multipart

    def _op_CreateMultipartUpload(self):
        fake = self.server.fake
        headers, meta = self._stored_headers()
        uid = secrets.token_urlsafe(24)
        with fake._mu:
            fake._bucket(self.bucket)
            fake._uploads[uid] = _Upload(self.bucket, self.key, headers, meta, fake.clock())
        self._xml(200, "InitiateMultipartUploadResult",
                  "<Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId>"
                  % (_x(self.bucket), _x(self.key), _x(uid)))

    def _upload(self):
        fake = self.server.fake
        uid = self.query.get("uploadId", "")
        with fake._mu:
            fake._bucket(self.bucket)
            u = fake._uploads.get(uid)
        if u is None or u.bucket != self.bucket or u.key != self.key:
            raise S3Error(404, "NoSuchUpload",
                          "The specified upload does not exist. The upload ID may be invalid, or the "
                          "upload may have been aborted or completed.", UploadId=uid)
        return uid, u

    def _op_UploadPart(self):
        fake = self.server.fake
        try:
            n = int(self.query.get("partNumber", ""))
        except ValueError:
            n = 0
        if not 1 <= n <= 10000:
            raise S3Error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive",
                          ArgumentName="partNumber", ArgumentValue=self.query.get("partNumber"))
        self._check_md5()
        uid, u = self._upload()
        md5 = hashlib.md5(self.body).hexdigest()
        with fake._mu:
            if uid not in fake._uploads:
                raise S3Error(404, "NoSuchUpload", "The specified upload does not exist.", UploadId=uid)
            u.parts[n] = (self.body, md5, fake.clock())
        self._send(200, [("ETag", _quote(md5))])

    def _op_ListParts(self):
        uid, u = self._upload()
        with self.server.fake._mu:
            parts = sorted(u.parts.items())
        inner = ("<Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId><PartNumberMarker>0</PartNumberMarker>"
                 "<MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated>"
                 % (_x(self.bucket), _x(self.key), _x(uid)))
        inner += "".join("<Part><PartNumber>%d</PartNumber><LastModified>%s</LastModified><ETag>%s</ETag>"
                         "<Size>%d</Size></Part>" % (n, _iso(p[2]), _x(_quote(p[1])), len(p[0]))
                         for n, p in parts)
        self._xml(200, "ListPartsResult", inner)

    def _op_AbortMultipartUpload(self):
        uid, _ = self._upload()
        with self.server.fake._mu:
            self.server.fake._uploads.pop(uid, None)
        self._send(204)

    def _op_CompleteMultipartUpload(self):
        fake = self.server.fake
        uid, u = self._upload()
        try:
            root = ET.fromstring(self.body)
        except ET.ParseError:
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not "
                          "validate against our published schema")
        want = []
        for el in root.iter():
            if el.tag.split("}")[-1] == "Part":
                num = etag = None
                for c in el:
                    t = c.tag.split("}")[-1]
                    if t == "PartNumber":
                        num = (c.text or "").strip()
                    elif t == "ETag":
                        etag = (c.text or "").strip()
                if num is None or etag is None or not num.isdigit():
                    raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did "
                                  "not validate against our published schema")
                want.append((int(num), _unquote_etag(etag)))
        if not want:
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not "
                          "validate against our published schema")
        if any(b[0] <= a[0] for a, b in zip(want, want[1:])):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order. "
                          "The parts list must be specified in order by part number.", UploadId=uid)
        with fake._mu:
            have = dict(u.parts)
        datas = []
        for i, (n, etag) in enumerate(want):
            p = have.get(n)
            if p is None or p[1] != etag.lower():
                raise S3Error(400, "InvalidPart", "One or more of the specified parts could not be found. "
                              "The part may not have been uploaded, or the specified entity tag may not "
                              "match the part's entity tag.", UploadId=uid, PartNumber=n, ETag=etag)
            if i < len(want) - 1 and len(p[0]) < fake.min_part_size:
                raise S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum "
                              "allowed object size.", ProposedSize=len(p[0]),
                              MinSizeAllowed=fake.min_part_size, PartNumber=n)
            datas.append(p)
        data = b"".join(p[0] for p in datas)
        etag = _quote(hashlib.md5(b"".join(bytes.fromhex(p[1]) for p in datas)).hexdigest()
                      + "-%d" % len(datas))

        def gone():
            fake._uploads.pop(uid, None)
        fake._conditional_commit(self.bucket, self.key, self.headers,
                                 lambda: _Obj(data, etag, dict(u.headers), dict(u.meta), fake.clock()),
                                 on_commit=gone)
        self._xml(200, "CompleteMultipartUploadResult",
                  "<Location>%s/%s/%s</Location><Bucket>%s</Bucket><Key>%s</Key><ETag>%s</ETag>"
                  % (_x(fake.url), _x(self.bucket), _x(uri_encode(self.key, True)), _x(self.bucket),
                     _x(self.key), _x(etag)), headers=[("ETag", etag)])

    def _op_ListMultipartUploads(self):
        fake = self.server.fake
        q = self.query
        prefix = q.get("prefix", "")
        km, um = q.get("key-marker", ""), q.get("upload-id-marker", "")
        try:
            mx = min(int(q.get("max-uploads", "1000")), 1000)
            if mx < 0:
                raise ValueError
        except ValueError:
            raise S3Error(400, "InvalidArgument", "max-uploads: a non-negative integer",
                          ArgumentName="max-uploads")
        with fake._mu:
            fake._bucket(self.bucket)
            ups = sorted((u.key, uid, u.initiated) for uid, u in fake._uploads.items()
                         if u.bucket == self.bucket and u.key.startswith(prefix))
        if km:
            ups = [x for x in ups if (x[0], x[1]) > (km, um)] if um else [x for x in ups if x[0] > km]
        truncated = len(ups) > mx
        ups = ups[:mx]
        inner = ("<Bucket>%s</Bucket><KeyMarker>%s</KeyMarker><UploadIdMarker>%s</UploadIdMarker>"
                 "<Prefix>%s</Prefix><MaxUploads>%d</MaxUploads><IsTruncated>%s</IsTruncated>"
                 % (_x(self.bucket), _x(km), _x(um), _x(prefix), mx, "true" if truncated else "false"))
        if truncated and ups:
            inner += ("<NextKeyMarker>%s</NextKeyMarker><NextUploadIdMarker>%s</NextUploadIdMarker>"
                      % (_x(ups[-1][0]), _x(ups[-1][1])))
        inner += "".join("<Upload><Key>%s</Key><UploadId>%s</UploadId><StorageClass>STANDARD</StorageClass>"
                         "<Initiated>%s</Initiated></Upload>" % (_x(k), _x(uid), _iso(t))
                         for k, uid, t in ups)
        self._xml(200, "ListMultipartUploadsResult", inner)

    # -- /_fake/

    def _control(self):
        fake = self.server.fake
        self.reqid = "FAKE"
        self.stall, self.hold, self.lose = None, None, False
        try:
            body = self._read_body()
        except (_Cut, ValueError):
            return self._drop()
        try:
            arg = json.loads(body) if body.strip() else None
        except ValueError:
            return self._json(400, {"error": "the body is not JSON"})
        path, cmd = self.raw_path.decode(), self.command
        try:
            if path == "/_fake/faults" and cmd == "GET":
                return self._json(200, fake.faults())
            if path == "/_fake/faults" and cmd == "POST":
                if isinstance(arg, dict) and "rules" in arg:
                    arg = arg["rules"]
                return self._json(200, fake.faults(arg if arg is not None else []))
            if path == "/_fake/faults" and cmd == "DELETE":
                return self._json(200, fake.faults(clear=True))
            if path == "/_fake/reset" and cmd == "POST":
                arg = arg or {}
                fake.reset(objects=bool(arg.get("objects")), stats=bool(arg.get("stats")))
                return self._json(200, {"ok": True})
            if path == "/_fake/release" and cmd == "POST":
                fake.release()
                return self._json(200, {"ok": True})
            if path == "/_fake/stats" and cmd == "GET":
                return self._json(200, fake.stats())
            if path == "/_fake/mode" and cmd == "POST":
                fake.set_mode((arg or {}).get("mode"))
                return self._json(200, {"mode": fake.mode})
            if path == "/_fake/age" and cmd == "POST":
                fake.age(float((arg or {}).get("seconds", 0)))
                return self._json(200, {"ok": True})
        except (ValueError, TypeError, re.error) as e:
            return self._json(400, {"error": str(e)})
        return self._json(404, {"error": "no such control: %s %s" % (cmd, path)})

    def _json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description="A fake S3 store for the tests of backend s3.")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free one)")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--bucket", action="append", default=[], help="a bucket to create (repeatable)")
    ap.add_argument("--access-key")
    ap.add_argument("--secret-key")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--mode", default="correct", choices=MODES)
    ap.add_argument("--min-part-size", type=int, default=5 * 1024 * 1024)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if (a.access_key is None) != (a.secret_key is None):
        ap.error("--access-key and --secret-key go together")
    if (a.tls_cert is None) != (a.tls_key is None):
        ap.error("--tls-cert and --tls-key go together")
    tls = (a.tls_cert, a.tls_key) if a.tls_cert else None
    fake = FakeS3(host, int(port), buckets=a.bucket, access_key=a.access_key, secret_key=a.secret_key,
                  region=a.region, mode=a.mode, tls=tls, min_part_size=a.min_part_size,
                  verbose=a.verbose)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    fake.start()
    if a.port_file:
        tmp = "%s.tmp.%d" % (a.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % fake.port)
        os.rename(tmp, a.port_file)
    sys.stderr.write("fakes3: listening on %s (mode %s)\n" % (fake.url, fake.mode))
    sys.stderr.flush()
    while not done.wait(3600):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
