#!/usr/bin/python3
"""make-seeds.py: writes the seed corpora of the fuzz targets into
tests/fuzz/corpus/<target>/ (small valid inputs the fuzzer mutates; CI
replays them). Run it again after changing it: `tests/fuzz/make-seeds.py`.
Files it does not write (crash-* regressions) are left alone.

Debian's /usr/bin/python3 and python3-h2 (hyper-h2 for the HTTP/2 client
side); the SharedData messages are encoded by hand.
"""
import os
import struct

import h2.config
import h2.connection
from hyperframe.frame import (GoAwayFrame, PingFrame, PriorityFrame,
                              RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
API_KEY = "fuzz-key"            # fuzz_conn.c's key

SET = "/alpcrun.v1.Cache/SetSharedData"
UPDATE = "/alpcrun.v1.Cache/UpdateSharedData"
GET = "/alpcrun.v1.Cache/GetSharedData"
DELETE = "/alpcrun.v1.Cache/DeleteSharedData"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
WATCH = "/alpcrun.v1.Cache/WatchSharedData"


# --- protobuf and gRPC framing ----------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def shared(session_id=b"", level=None, payload=b"", ttl=None):
    out = b""
    if session_id:
        out += field_bytes(1, session_id)
    if level is not None:
        out += field_varint(2, level)
    if payload:
        out += field_bytes(3, payload)
    if ttl is not None:
        sec, nanos = ttl
        d = (field_varint(1, sec) if sec else b"") + (field_varint(2, nanos) if nanos else b"")
        out += field_bytes(4, d)
    return out


def health_request(service=b""):
    return field_bytes(1, service) if service else b""


def frame(body, flag=0, length=None):
    return struct.pack(">BI", flag, len(body) if length is None else length) + body


# --- HTTP/2 client bytes ------------------------------------------------------

class Client:
    """The bytes an h2c client with prior knowledge sends."""

    def __init__(self, settings=None):
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.c = h2.connection.H2Connection(config=cfg)
        self.c.initiate_connection()
        if settings:
            self.c.update_settings(settings)
        # The server's SETTINGS would come first; acknowledge them as a
        # client does (an ACK the server did not ask for yet is harmless).
        self.out = bytearray(self.c.data_to_send())
        self.out += SettingsFrame(0, flags=["ACK"]).serialize()

    def call(self, path, body, key=True, content_type="application/grpc",
             extra=(), end=True, split=None):
        sid = self.c.get_next_available_stream_id()
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path),
                (":authority", "127.0.0.1:2337"), ("content-type", content_type),
                ("te", "trailers"), ("grpc-timeout", "5S")]
        if key:
            hdrs.append(("api_key", API_KEY))
        hdrs += list(extra)
        self.c.send_headers(sid, hdrs, end_stream=body is None)
        if body is not None:
            if split:
                for i in range(0, len(body), split):
                    last = i + split >= len(body)
                    self.c.send_data(sid, body[i:i + split], end_stream=end and last)
            else:
                self.c.send_data(sid, body, end_stream=end)
        self.out += self.c.data_to_send()
        return sid

    def raw(self, data):
        self.out += data

    def bytes(self):
        self.out += self.c.data_to_send()
        return bytes(self.out)


def conn_seeds():
    s = {}
    c = Client()
    c.call(GET, frame(shared(b"s1")))
    s["get-miss"] = c.bytes()

    c = Client()
    c.call(SET, frame(shared(b"s1", 1, b"hello", ttl=(60, 0))))
    c.call(GET, frame(shared(b"s1")))
    s["set-get"] = c.bytes()

    c = Client()
    c.call(SET, frame(shared(b"s2", 0, b"a" * 100)))
    c.call(UPDATE, frame(shared(b"s2", 1, b"b" * 100)))
    c.call(GET, frame(shared(b"s2", 1)))
    c.call(DELETE, frame(shared(b"s2")))
    c.call(SET, frame(shared(b"s2", 1, b"b" * 100)))
    c.call(GET, frame(shared(b"s2")))
    s["set-update-delete"] = c.bytes()

    c = Client()
    c.call(HEALTH_CHECK, frame(health_request()), key=False)
    c.call(HEALTH_CHECK, frame(health_request(b"alpcrun.v1.Cache")), key=False)
    c.call(HEALTH_WATCH, frame(health_request()), key=False)
    s["health"] = c.bytes()

    # Refusals: no key, wrong key, wrong content-type, unknown method, bad
    # timeout, compressed, two messages, no message, truncated message.
    c = Client()
    c.call(GET, frame(shared(b"s1")), key=False)
    c.call(GET, frame(shared(b"s1")), key=False, extra=[("api_key", "wrong")])
    c.call(GET, frame(shared(b"s1")), content_type="text/plain")
    c.call("/alpcrun.v1.Cache/Nope", frame(b""))
    c.call(GET, frame(shared(b"s1")), extra=[("grpc-timeout", "12x")])
    c.call(GET, frame(shared(b"s1"), flag=1), extra=[("grpc-encoding", "gzip")])
    c.call(GET, frame(shared(b"s1")) * 2)
    c.call(GET, b"")
    c.call(GET, frame(shared(b"s1"))[:-2])
    c.call(SET, frame(b"\xff\xff\xff"))
    s["refusals"] = c.bytes()

    # A 4 GiB length prefix, and one just over max_message_size.
    c = Client()
    c.call(SET, struct.pack(">BI", 0, 0xFFFFFFFF) + b"x" * 16, end=False)
    c.call(SET, struct.pack(">BI", 0, (1 << 20) + 1), end=False)
    s["too-large"] = c.bytes()

    # Two 30 KiB uploads against max_inflight_bytes 48k: the second waits.
    c = Client()
    a = c.call(SET, frame(shared(b"big-a", 1, b"A" * 30000)), end=False, split=7000)
    b = c.call(SET, frame(shared(b"big-b", 1, b"B" * 30000)), end=False, split=7000)
    c.c.end_stream(a)
    c.c.end_stream(b)
    s["starved"] = c.bytes()

    # Control frames: PING, PRIORITY, WINDOW_UPDATE, SETTINGS, RST_STREAM
    # of an open stream, GOAWAY.
    c = Client()
    c.raw(PingFrame(0, opaque_data=b"12345678").serialize())
    sid = c.call(GET, frame(shared(b"s1")), end=False)
    c.raw(PriorityFrame(sid, depends_on=0, stream_weight=200).serialize())
    c.raw(WindowUpdateFrame(0, window_increment=1 << 20).serialize())
    c.raw(WindowUpdateFrame(sid, window_increment=1 << 16).serialize())
    c.raw(SettingsFrame(0, settings={4: 1 << 20, 5: 1 << 15}).serialize())
    c.raw(RstStreamFrame(sid, error_code=8).serialize())
    c.raw(GoAwayFrame(0, last_stream_id=0, error_code=0).serialize())
    s["control"] = c.bytes()

    # A large header block in CONTINUATION frames.
    c = Client()
    c.call(GET, frame(shared(b"s1")), extra=[("x-pad-%d" % i, "v" * 200) for i in range(40)])
    s["big-headers"] = c.bytes()

    # The change feed (fuzz_conn.c sets up watch.c): a snapshot of a few
    # sessions, a filtered watcher, live notices from writes, then one
    # watcher reset and a bad filter.
    c = Client()
    for i in range(5):
        c.call(SET, frame(shared(b"w%d" % i, 0, b"p" * 20, ttl=(60, 0))))
    a = c.call(WATCH, frame(b""), end=True)
    c.call(WATCH, frame(field_bytes(1, b"w1")))
    c.call(UPDATE, frame(shared(b"w1", 1, b"q")))
    c.call(DELETE, frame(shared(b"w2")))
    c.raw(RstStreamFrame(a, error_code=8).serialize())
    c.call(SET, frame(shared(b"w9", 0, b"r")))
    c.call(WATCH, frame(field_bytes(1, b"bad id")))
    s["watch"] = c.bytes()

    # A watcher whose window is never opened (SETTINGS_INITIAL_WINDOW_SIZE
    # 0; each Set's own stream gets a WINDOW_UPDATE for its reply): its
    # notices queue until the 4 KiB watch_buffer cuts it off.
    c = Client(settings={4: 0})
    c.call(WATCH, frame(b""))
    for i in range(24):
        sid = c.call(SET, frame(shared(b"stalled-%03d-" % i + b"k" * 240, 0, b"x")))
        c.raw(WindowUpdateFrame(sid, window_increment=1024).serialize())
    s["watch-stalled"] = c.bytes()

    s["bad-preface"] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    s["preface-only"] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    return s


# --- HTTP/2 server bytes (fuzz_h2client.c) --------------------------------------


def notice(sid=b"", level=None, kind=0, seq=0):
    out = field_bytes(1, sid) if sid else b""
    if level is not None:
        out += field_varint(2, level)
    if kind:
        out += field_varint(4, kind)
    if seq:
        out += field_varint(5, seq)
    return out


class Server:
    """The bytes a server sends to fuzz_h2client.c's client, cut into the
    records the target delivers one at a time: [2-byte length][bytes].
    The first byte says which calls the client starts (fuzz_h2client.c);
    they are streams 1, 3, 5 in the order unary, streaming, body."""

    def __init__(self, ctl, calls=(GET, WATCH, SET)):
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.c = h2.connection.H2Connection(config=cfg)
        self.c.initiate_connection()
        # The client's requests, as if received, so that the server may
        # answer them: its preface, then one HEADERS per call.
        cl = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        cl.initiate_connection()
        for path in calls:
            sid = cl.get_next_available_stream_id()
            cl.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                  (":path", path), (":authority", "x"),
                                  ("content-type", "application/grpc"),
                                  ("te", "trailers")])
        self.c.receive_data(cl.data_to_send())
        self.out = bytes([ctl])
        # The server's SETTINGS (and its ACK of the client's) alone: the
        # client sends its requests once they arrived.
        self.record(self.c.data_to_send())

    def record(self, data):
        self.out += struct.pack(">H", len(data)) + data

    def headers(self, sid, status="200", ct="application/grpc", end=False, extra=()):
        self.c.send_headers(sid, [(":status", status), ("content-type", ct)] + list(extra),
                            end_stream=end)

    def data(self, sid, body, end=False):
        self.c.send_data(sid, body, end_stream=end)

    def trailers(self, sid, status=0, message=None):
        h = [("grpc-status", str(status))]
        if message is not None:
            h.append(("grpc-message", message))
        self.c.send_headers(sid, h, end_stream=True)

    def flush(self, split=None):
        data = self.c.data_to_send()
        if split:
            for i in range(0, len(data), split):
                self.record(data[i:i + split])
        elif data:
            self.record(data)

    def raw(self, data):
        self.flush()
        self.record(data)

    def bytes(self):
        self.flush()
        return self.out


def h2client_seeds():
    s = {}
    reply = frame(shared(b"fuzz-session", 3, b"payload" * 20, ttl=(60, 0)))

    # A whole unary reply: HEADERS, DATA, trailers.
    sv = Server(1, calls=(GET,))
    sv.headers(1)
    sv.data(1, reply)
    sv.trailers(1)
    s["unary-ok"] = sv.bytes()

    # The same, each frame cut into 7-byte records.
    sv = Server(1, calls=(GET,))
    sv.headers(1)
    sv.data(1, reply[:20])
    sv.data(1, reply[20:])
    sv.trailers(1)
    sv.flush(split=7)
    s["unary-split"] = sv.bytes()

    # Errors: grpc-status with a percent-encoded message; Trailers-Only;
    # HTTP 503; no content-type; two messages in a unary reply.
    sv = Server(1 | 2 | 4)
    sv.headers(1)
    sv.trailers(1, 5, "not%20found%3A%ZZ")
    sv.headers(3, end=True, extra=[("grpc-status", "14"), ("grpc-message", "draining")])
    sv.headers(5, status="503", ct="text/plain", end=True)
    s["errors"] = sv.bytes()

    sv = Server(1 | 32, calls=(GET, GET))
    sv.headers(1)
    sv.data(1, reply + reply)
    sv.trailers(1)
    sv.flush()              # the second call starts from the first's done
    sv.headers(3, ct="text/html")
    sv.data(3, b"<html>no</html>", end=True)
    s["two-messages-retry"] = sv.bytes()

    # A streaming reply: a snapshot of three sessions, its end, changes,
    # then the server ends the stream; the unary Get and the Set answered.
    sv = Server(1 | 2 | 4)
    sv.headers(3)
    sv.flush()
    for i, sid in enumerate((b"a", b"b", b"c")):
        sv.data(3, frame(notice(sid, i, kind=1, seq=i + 1)))
    sv.data(3, frame(notice(kind=6, seq=4)) + frame(notice(b"a", 1, kind=3, seq=5)))
    sv.flush()
    sv.data(3, frame(notice(b"b", 1, kind=4, seq=6))[:4])
    sv.flush()
    sv.data(3, frame(notice(b"b", 1, kind=4, seq=6))[4:] + frame(notice(b"c", 0, kind=5, seq=7)))
    sv.headers(1)
    sv.data(1, reply)
    sv.trailers(1)
    sv.headers(5)
    sv.data(5, frame(b""))
    sv.trailers(5)
    # answered before the client sent its whole body: as gRPC servers do
    sv.c.reset_stream(5, error_code=0)
    sv.trailers(3, 14, "drained")
    s["stream"] = sv.bytes()

    # The streaming call cancelled after the first record, messages after.
    sv = Server(2 | 8, calls=(WATCH,))
    sv.headers(1)
    sv.data(1, frame(notice(b"a", 0, kind=1, seq=1)))
    sv.trailers(1)
    s["stream-cancelled"] = sv.bytes()

    # A 4 GiB length prefix, and one just over the client's 96 KiB limit.
    sv = Server(1 | 2, calls=(GET, WATCH))
    sv.headers(1)
    sv.data(1, struct.pack(">BI", 0, 0xFFFFFFFF) + b"x" * 16)
    sv.headers(3)
    sv.data(3, struct.pack(">BI", 0, (96 << 10) + 1) + b"y" * 100)
    s["oversize-prefix"] = sv.bytes()

    # A compressed message, a prefix flag that is not 0 or 1.
    sv = Server(1 | 2, calls=(GET, WATCH))
    sv.headers(1)
    sv.data(1, frame(b"zz", flag=1))
    sv.headers(3)
    sv.data(3, frame(b"zz", flag=0x80))
    s["compressed"] = sv.bytes()

    # GOAWAY refusing streams 3 and 5 (they move to a new connection,
    # which cannot be made), the unary call answered on the old one.
    sv = Server(1 | 2 | 4)
    sv.raw(GoAwayFrame(0, last_stream_id=1, error_code=0).serialize())
    sv.headers(1)
    sv.data(1, reply)
    sv.trailers(1)
    s["goaway"] = sv.bytes()

    # A graceful GOAWAY after a call was answered: the link hands over to a
    # new connection (which cannot be made) while the old one finishes the
    # streaming call it still carries.
    sv = Server(1 | 2 | 4)
    sv.headers(1)
    sv.data(1, reply)
    sv.trailers(1)
    sv.headers(3)
    sv.flush()
    sv.raw(GoAwayFrame(0, last_stream_id=3, error_code=0).serialize())
    sv.data(3, frame(notice(b"a", 0, kind=1, seq=1)) + frame(notice(kind=6, seq=2)))
    sv.trailers(3, 0)
    s["goaway-handover"] = sv.bytes()

    # GOAWAY with an error, before anything was answered.
    sv = Server(1 | 2 | 4)
    sv.raw(GoAwayFrame(0, last_stream_id=0, error_code=11).serialize())
    s["goaway-calm"] = sv.bytes()

    # RST_STREAM of each call: REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM,
    # after a partial reply on one of them.
    sv = Server(1 | 2 | 4)
    sv.headers(1)
    sv.data(1, reply[:30])
    sv.c.reset_stream(1, error_code=8)
    sv.c.reset_stream(3, error_code=7)
    sv.c.reset_stream(5, error_code=11)
    s["rst"] = sv.bytes()

    # A reply, then RST_STREAM(NO_ERROR) before its trailers; a PING,
    # a SETTINGS change and WINDOW_UPDATEs that let the 70 KiB body go.
    sv = Server(1 | 4, calls=(GET, SET))
    sv.raw(PingFrame(0, opaque_data=b"12345678").serialize())
    sv.raw(SettingsFrame(0, settings={4: 1 << 20, 5: 1 << 15, 3: 1}).serialize())
    sv.raw(WindowUpdateFrame(0, window_increment=1 << 20).serialize() +
           WindowUpdateFrame(3, window_increment=1 << 20).serialize())
    sv.headers(1)
    sv.data(1, reply)
    sv.c.reset_stream(1, error_code=0)
    s["control"] = sv.bytes()

    # Big response headers in CONTINUATION frames; the client gets freed
    # with calls in flight (control bit 4).
    sv = Server(1 | 2 | 16, calls=(GET, WATCH))
    sv.headers(1, extra=[("x-pad-%d" % i, "v" * 200) for i in range(60)])
    sv.flush()
    sv.headers(3)
    sv.data(3, frame(notice(b"a", 0, kind=1, seq=1)))
    s["big-headers-free"] = sv.bytes()

    # Not HTTP/2 at all, and nothing.
    s["garbage"] = b"\x07" + struct.pack(">H", 40) + b"HTTP/1.1 400 Bad Request\r\n\r\nno h2 here"
    s["silent"] = b"\x07"
    return s


def deframe_seeds():
    # Two bytes of chunk-split seed, then the DATA byte stream.
    s = {}
    s["set"] = b"\x00\x01" + frame(shared(b"session-1", 3, b"payload" * 10, ttl=(30, 500)))
    s["get"] = b"\x12\x34" + frame(shared(b"session-1"))
    s["two-messages"] = b"\xab\xcd" + frame(shared(b"a", 0)) + frame(shared(b"b", 1, b"x"))
    s["empty-message"] = b"\x00\x07" + frame(b"")
    s["compressed"] = b"\x00\x09" + frame(shared(b"c"), flag=1)
    s["health"] = b"\x00\x02" + frame(health_request(b"alpcrun.v1.Cache"))
    s["too-large"] = b"\x00\x03" + struct.pack(">BI", 0, 0xFFFFFFFF) + b"zz"
    s["negative-ttl"] = b"\x00\x05" + frame(shared(b"n", 1, b"p", ttl=((1 << 64) - 5, 0)))
    s["partial"] = b"\x00\x06" + frame(shared(b"p", 1, b"q" * 50))[:-10]
    return s


def pbwire_seeds():
    # The bytes are read as they are (fuzz_pbwire.c): as wire fields from
    # every offset, as a SharedData sdwire.c and protobuf-c both decode, and as the
    # makings of a SharedData (flags, session length, session, level, ttl,
    # payload) that protobuf-c packs.
    s = {}
    s["reply"] = shared(b"fuzz-session", 3, b"payload" * 10, ttl=(60, 500))
    s["reply-level-0"] = shared(b"s", 0)
    s["empty"] = b""
    # Each wire type as an unknown field, then a known one.
    s["unknown-fields"] = (field_varint(9, 300) + varint(10 << 3 | 1) + b"\x01" * 8 +
                           field_bytes(11, b"nested") + varint(12 << 3 | 5) + b"\x02" * 4 +
                           shared(b"after", 7))
    # Fields given twice: the last scalar wins, two ttls merge (as
    # protobuf says, not as protobuf-c 1.4 does).
    s["repeated"] = shared(b"first", 1, b"a", ttl=(5, 0)) + shared(b"second", 2, b"b", ttl=(0, 9))
    # Ten-byte varints: a negative ttl, a level past 32 bits.
    s["long-varints"] = (field_varint(2, (1 << 64) - 1) +
                         field_bytes(4, field_varint(1, (1 << 64) - 5) + field_varint(2, (1 << 64) - 1)))
    # Refused: eleven bytes of varint, a group, field 0, the undefined wire
    # types, a length past the end, a truncated fixed64.
    s["eleven-byte-varint"] = varint(2 << 3) + b"\xff" * 10 + b"\x01"
    s["group"] = varint(9 << 3 | 3) + field_varint(1, 1) + varint(9 << 3 | 4)
    s["field-0"] = field_varint(0, 1)
    s["wire-type-6-7"] = varint(9 << 3 | 6) + b"\x00" + varint(9 << 3 | 7) + b"\x00"
    s["length-past-end"] = varint(3 << 3 | 2) + varint(1000) + b"short"
    s["truncated-fixed"] = varint(9 << 3 | 1) + b"\x00" * 7
    # An overlong zero and a tag of a field number past 2^29 - 1.
    s["overlong"] = b"\x90\x80\x80\x00\x05" + varint((1 << 40) << 3) + b"\x00"
    # protobuf-c's limits: a five-byte tag of field 2^32 - 1 and a two-byte
    # tag of field 0 (unknown fields), a five-byte length; refused: a
    # six-byte tag, a six-byte length, a length past INT_MAX.
    s["protobuf-c-limits"] = (b"\xfa\xff\xff\xff\x7f\x00" + b"\x80\x00\x05" +
                              b"\x1a\x81\x80\x80\x80\x00a")
    s["six-byte-tag"] = b"\x9a\x80\x80\x80\x80\x00\x00"
    s["six-byte-length"] = b"\x1a\x81\x80\x80\x80\x80\x00a"
    s["length-past-int-max"] = b"\x1a\xff\xff\xff\xff\x07"
    # Nested length-delimited fields, four deep.
    inner = field_bytes(1, b"x")
    for _ in range(3):
        inner = field_bytes(1, inner)
    s["nested"] = field_bytes(11, inner) + shared(b"n", 1)
    # Makings of a SharedData: every field present, level and ttl at their
    # limits (flags 0x0f, session of 4 bytes).
    s["makings"] = bytes([0x0F, 4]) + b"sess" + b"\xff" * 4 + b"\x80" + b"\x00" * 7 + \
        b"\xc4\x65\x36\x00" + b"payload bytes"
    return s


def config_seeds():
    s = {}
    s["minimal"] = b"listen 127.0.0.1:2337\n"
    with open(os.path.join(HERE, "..", "..", "conf", "alpcrund.conf"), "rb") as f:
        s["example"] = f.read()
    s["every-value"] = b"""# every directive this build accepts
mode central
listen 127.0.0.1:2337
listen [::1]:2338
listen unix:/tmp/alpcrund.sock
backend memory
max_memory 512m
default_ttl 10m
max_ttl 1h
sweep_interval 500ms
max_message_size 260m
max_inflight_bytes 1g
api_key_file /etc/alpcrund.key
metrics_listen 127.0.0.1:9337
max_connections 10000
max_concurrent_streams 128
handshake_timeout 10s
idle_timeout 0
send_timeout 60
shutdown_grace 30s
log_level debug
log_target /var/log/alpcrund.log
pid_file /run/alpcrund.pid
"""
    s["errors"] = b"""listen nowhere
max_memory 12q
default_ttl -1s
mode sideways
unknown_directive 1
log_level
max_connections 99999999999999999999999
backend lmdb
lmdb_full_ratio 0%
\tshutdown_grace 2h # too long
"""
    s["quotes-comments"] = b'log_target "/tmp/a b.log"   # a comment\n\n  \t\nlog_level\twarn\r\n'
    return s


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print("%s: %d seeds" % (d, len(seeds)))


if __name__ == "__main__":
    write("conn", conn_seeds())
    write("deframe", deframe_seeds())
    write("config", config_seeds())
    write("h2client", h2client_seeds())
    write("pbwire", pbwire_seeds())
