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

    s["bad-preface"] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    s["preface-only"] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
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
