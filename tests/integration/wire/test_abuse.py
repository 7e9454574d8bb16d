"""Abusive clients (spec §4.6 "a bad request never takes down the process
nor affects other connections"; issue #9).

Each test attacks a daemon on loopback, bounded in count and time, with
plain sockets or alptest.RawH2, while a prober asks /healthz (the metrics
server) and grpc.health.v1.Health/Check (its own HTTP/2 connection) every
50 ms: both are served by the one event loop, so a prober answered quickly
throughout means the loop never stalled. After each attack the daemon
answers a normal Get and its alpcrund_inflight_bytes gauge is back at its
baseline.
"""
import contextlib
import random
import resource
import select
import socket
import struct
import threading
import time

import hpack
import pytest
from hyperframe.frame import (ContinuationFrame, HeadersFrame,
                              PingFrame, RstStreamFrame, SettingsFrame)

import alptest
from alptest import (GET, HEALTH_CHECK, PREFACE, PROBE_LIMIT, SET, MiB, RawH2, big_mib,
                     encode_shared, grpc_frame, rss_bytes, sd, wait_until)

# Every test here is an abuse case: -m abuse selects them (pytest.ini).
pytestmark = pytest.mark.abuse

# Short timeouts, so that whatever is left hanging is cut quickly.
CONFIG = "handshake_timeout 1s\nidle_timeout 2s\nsend_timeout 2s\n"
PAYLOAD = b"still served " * 64


class Prober(threading.Thread):
    """Asks /healthz and a gRPC health check in a loop; keeps the failures
    and the slowest round trip."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.stop = threading.Event()
        self.failures = []
        self.worst = 0.0
        self.rounds = 0

    def check(self, h):
        st, _ = self.d.http_get("/healthz", timeout=PROBE_LIMIT)
        assert st == 200, "/healthz answered %d" % st
        if h is None:
            h = RawH2(self.d.port, timeout=PROBE_LIMIT)
        r = h.unary(HEALTH_CHECK, b"", timeout=PROBE_LIMIT)
        assert r.grpc_status == 0, r
        return h

    def run(self):
        h = None
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                try:
                    h = self.check(h)
                except (AssertionError, OSError):
                    # its connection may have been closed as idle: once more
                    # on a new one
                    if h is not None:
                        h.close()
                    h = self.check(None)
            except Exception as e:     # noqa: BLE001 - every failure counts
                self.failures.append("%.2fs: %r" % (time.monotonic() - t0, e))
                if h is not None:
                    h.close()
                h = None
            self.worst = max(self.worst, time.monotonic() - t0)
            self.rounds += 1
            self.stop.wait(0.05)
        if h is not None:
            h.close()


def recovered(d):
    """The daemon is up, serves a normal Get, and holds no request bytes."""
    assert d.alive()
    assert d.stub().GetSharedData(sd("victim"), timeout=10).payload == PAYLOAD
    d.close_channels()
    d.wait_metric(lambda m: m.value("alpcrund_inflight_bytes") == d.baseline, 10)


@contextlib.contextmanager
def under_attack(d):
    p = Prober(d)
    p.start()
    try:
        yield p
    finally:
        p.stop.set()
        p.join(30)
    assert p.rounds > 0, "the prober never ran"
    assert not p.failures, "the daemon stopped answering during the attack: %s" % p.failures[:5]
    assert p.worst < PROBE_LIMIT, "a probe took %.2fs" % p.worst
    recovered(d)


@pytest.fixture
def victim(make_daemon):
    def start(config=CONFIG):
        d = make_daemon(config)
        d.stub().SetSharedData(sd("victim", 1, PAYLOAD), timeout=10)
        d.close_channels()
        d.baseline = d.metric("alpcrund_inflight_bytes")
        return d
    return start


def closed_by_server(sock, timeout):
    """True when the server closes (EOF or reset) within timeout; what it
    sends before is read and dropped."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        p = select.poll()       # descriptors above 1023 (1500 connections)
        p.register(sock, select.POLLIN)
        if not p.poll(left * 1000):
            return False
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True


def hpack_int(value, prefix_bits, first):
    """An HPACK integer (RFC 7541 5.1) with the given first-byte flags."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def send_quietly(sock, data):
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass


# --- garbage -----------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_random_bytes_on_fresh_connections(victim):
    d = victim()
    rng = random.Random(20261125)
    with under_attack(d):
        for batch in range(6):
            socks = []
            for i in range(50):
                s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
                junk = rng.randbytes(rng.randint(1, 4096))
                # half of them after a valid preface and SETTINGS: frame-level garbage
                if i % 2:
                    junk = PREFACE + SettingsFrame(0).serialize() + junk
                send_quietly(s, junk)
                socks.append(s)
            open_ = [i for i, s in enumerate(socks) if not closed_by_server(s, 6)]
            for s in socks:
                s.close()
            assert not open_, "batch %d: connections %s still open" % (batch, open_)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("opening", [
    b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\x00" * 64,
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x5a" * 64,      # TLS ClientHello
    PREFACE + PingFrame(0).serialize(),                                  # no SETTINGS first
    PREFACE[:10],                                                        # cut short: handshake_timeout
    b"",                                                                 # silent: handshake_timeout
], ids=["bad-magic", "http1", "tls", "no-settings", "truncated", "silent"])
def test_bad_preface(victim, opening):
    d = victim()
    with under_attack(d):
        socks = [socket.create_connection(("127.0.0.1", d.port), timeout=5) for _ in range(20)]
        for s in socks:
            send_quietly(s, opening)
        open_ = [i for i, s in enumerate(socks) if not closed_by_server(s, 6)]
        for s in socks:
            s.close()
        assert not open_, "connections %s still open" % open_


# --- gRPC framing --------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_4gib_length_prefix(victim):
    d = victim()
    before = rss_bytes(d.pid)
    with under_attack(d):
        conns = [RawH2(d.port) for _ in range(4)]
        try:
            streams = []
            for h in conns:
                for _ in range(10):
                    sid = h.start(SET)
                    h.send_data(sid, struct.pack(">BI", 0, 0xFFFFFFFF) + b"\xab" * 1024)
                    streams.append((h, sid))
            for h, sid in streams:
                st = h.finish(sid, 10)
                assert st.trailers_only and st.grpc_status == 8, st
                assert "max_message_size" in (st.grpc_message or ""), st
            # what still comes on those streams is dropped
            for h, sid in streams:
                h.send_data(sid, b"\xcd" * 4096, end_stream=True)
            for h in conns:
                assert h.unary(HEALTH_CHECK, b"").grpc_status == 0
        finally:
            for h in conns:
                h.close()
    assert rss_bytes(d.pid) - before < 32 * MiB, "RSS grew %d MiB" % ((rss_bytes(d.pid) - before) // MiB)


@pytest.mark.timeout(120)
def test_waiting_uploads_are_bounded_by_max_inflight_bytes(victim):
    d = victim("handshake_timeout 1s\nidle_timeout 60s\nsend_timeout 2s\nmax_inflight_bytes 16m\n")
    before = rss_bytes(d.pid)
    with under_attack(d):
        conns = []
        try:
            for _ in range(2):
                h = RawH2(d.port)
                for _ in range(64):
                    # each announces 64 MiB and sends what its window allows
                    sid = h.start(SET)
                    h.send_data(sid, struct.pack(">BI", 0, 64 * MiB) + b"\x01" * (MiB - 5))
                conns.append(h)
            # Measure once the daemon has taken in all of it: a PING is
            # answered only after the frames sent before it.
            for h in conns:
                h.ping(30)
            grown = rss_bytes(d.pid) - before
        finally:
            for h in conns:
                h.close()
    # one 64 MiB message is admitted (alone it may exceed the limit); the
    # others may hold little besides
    assert grown < (16 + 64 + 16) * MiB, "RSS grew %d MiB for 128 waiting uploads" % (grown // MiB)


# --- HTTP/2 ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_rapid_reset_of_thousands_of_streams(victim):
    d = victim()
    with under_attack(d):
        # 1. bursts of HEADERS + RST_STREAM: nghttp2 answers GOAWAY after
        # about a thousand (its rapid-reset mitigation), or serves them all
        for _ in range(3):
            with RawH2(d.port) as h:
                hdrs = h.request_headers(GET)
                burst = bytearray()
                for _ in range(3000):
                    sid = h.new_stream_id()
                    f = HeadersFrame(sid, data=h.encoder.encode(hdrs))
                    f.flags.add("END_HEADERS")
                    burst += f.serialize() + RstStreamFrame(sid, error_code=8).serialize()
                h.send(bytes(burst))
                try:
                    h.wait_closed(3)
                except AssertionError:
                    pass        # still open after serving the burst: fine too
                except OSError:
                    pass
        # 2. uploads reset halfway: each reserved its message; the reset
        # must give it back
        with RawH2(d.port) as h:
            for _ in range(20):
                for _ in range(5):
                    sid = h.start(SET)
                    h.send_data(sid, struct.pack(">BI", 0, 2 * MiB) + b"\x00" * 60000)
                    h.rst(sid)
                h.pump(0)
            assert h.unary(HEALTH_CHECK, b"").grpc_status == 0


def continuation_block(h, block):
    """HEADERS + CONTINUATION frames of 16 KiB carrying block."""
    sid = h.new_stream_id()
    h.stream(sid)
    out = bytearray()
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    for i, chunk in enumerate(chunks):
        f = (HeadersFrame if i == 0 else ContinuationFrame)(sid, data=chunk)
        if i == len(chunks) - 1:
            f.flags.add("END_HEADERS")
        out += f.serialize()
    h.send(bytes(out))
    return sid


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shape", ["one-value", "many-fields"])
def test_256k_request_headers_in_continuation_frames(victim, shape):
    d = victim()
    with under_attack(d):
        for _ in range(5):
            with RawH2(d.port) as h:
                hdrs = h.request_headers(GET)
                if shape == "one-value":
                    hdrs.append(("x-big", "v" * (256 * 1024)))
                else:
                    hdrs += [("x-f%05d" % i, "w" * 90) for i in range(2600)]
                enc = hpack.Encoder()
                sid = continuation_block(h, enc.encode(hdrs, huffman=False))
                st = h.stream(sid)
                try:
                    h.wait(lambda: st.done or h.goaways, 5, "the refusal")
                except AssertionError:
                    assert h.closed, "256 KiB of headers neither refused nor closed: %r" % st
                if st.blocks:
                    assert st.headers.get(":status") != "200" or st.grpc_status not in (None, 0), st
                if not h.closed and not h.goaways:
                    # the stream alone was refused (RST_STREAM), or nghttp2
                    # is closing the connection (its CONTINUATION cap): a
                    # connection that lives on keeps its HPACK state
                    h.encoder = enc
                    try:
                        ok = h.unary(HEALTH_CHECK, b"").grpc_status == 0
                    except AssertionError:
                        ok = h.closed or bool(h.goaways)
                    assert ok, "connection neither closed nor serving: %s" % h.frame_summary()


@pytest.mark.timeout(120)
def test_hpack_table_abuse(victim):
    d = victim()
    with under_attack(d):
        # 1. a dynamic table size update far above SETTINGS_HEADER_TABLE_SIZE
        # (4096): a compression error for the connection
        with RawH2(d.port) as h:
            sid = h.new_stream_id()
            update = hpack_int(2 ** 31, 5, 0x20)        # dynamic table size update
            f = HeadersFrame(sid, data=update + h.encoder.encode(h.request_headers(GET)))
            f.flags.add("END_HEADERS")
            h.send(f.serialize())
            assert h.wait_closed(5) in ("goaway", "eof")
        # 2. an index far past the end of the table
        with RawH2(d.port) as h:
            f = HeadersFrame(h.new_stream_id(), data=hpack_int(1000, 7, 0x80))   # indexed field 1000
            f.flags.add("END_HEADERS")
            h.send(f.serialize())
            assert h.wait_closed(5) in ("goaway", "eof")
        # 3. many indexed inserts: every request adds 30 new fields, so the
        # table churns all the time; every request is still served
        with RawH2(d.port) as h:
            n = 0
            for batch in range(10):
                sids = []
                for _ in range(30):
                    extra = [("x-churn-%d" % (n + i), "%0100d" % (n * 31 + i)) for i in range(30)]
                    n += 30
                    sid = h.start(HEALTH_CHECK, extra=extra)
                    h.send_data(sid, grpc_frame(b""), end_stream=True)
                    sids.append(sid)
                for sid in sids:
                    assert h.finish(sid, 10).grpc_status == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_control_frame_flood(victim, kind):
    d = victim()
    before = rss_bytes(d.pid)
    with under_attack(d):
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)   # we never read
            frame = (SettingsFrame(0, settings={alptest.S_ENABLE_PUSH: 0}) if kind == "settings"
                     else PingFrame(0, opaque_data=b"flooding")).serialize()
            send_quietly(s, PREFACE + SettingsFrame(0).serialize())
            s.settimeout(10)
            for _ in range(20):
                send_quietly(s, frame * 1000)
            # nghttp2 stops at its queue of unanswered ACKs (GOAWAY, close)
            # or answers them all: either way the daemon is fine
            closed_by_server(s, 3)
            s.close()
    assert rss_bytes(d.pid) - before < 64 * MiB, "RSS grew %d MiB" % ((rss_bytes(d.pid) - before) // MiB)


# Refused streams: the server must not answer faster than it is read.
FLOOD_CONFIG = ("handshake_timeout 1s\nidle_timeout 60s\nsend_timeout 60s\n"
                "max_concurrent_streams 1\n")
FLOOD_FRAMES = 1_000_000        # 10 bytes each: 10 MB at most


def refused_headers(first_sid, count):
    """count HEADERS frames opening streams first_sid, first_sid + 2, ...:
    END_STREAM, END_HEADERS, a one-byte block (:method GET, indexed)."""
    head = b"\x00\x00\x01\x01\x05"
    return b"".join(head + struct.pack(">I", sid) + b"\x82"
                    for sid in range(first_sid, first_sid + 2 * count, 2))


def read_by_server(d, h):
    """True once the daemon has read everything h sent (or the connection
    is gone)."""
    if h.send_error is not None:
        return True
    try:
        return alptest.server_rx_queue(d.port, h.sock.getsockname()[1]) == 0
    except (AssertionError, OSError):
        return True


@pytest.mark.timeout(120)
@pytest.mark.parametrize("paced", [False, True], ids=["burst", "paced"])
def test_refused_stream_flood_from_a_client_that_never_reads(victim, paced):
    # Before the client ACKs our SETTINGS, nghttp2 answers each stream
    # over max_concurrent_streams with RST_STREAM REFUSED_STREAM. A client
    # that never ACKs and never reads, flooding HEADERS, made those answers
    # pile up in nghttp2's queue (over 200 MB for 1.5 M frames) until
    # send_timeout. burst: one write; the daemon sees thousands of streams
    # refused in one read and says GOAWAY ENHANCE_YOUR_CALM. paced: 2,000
    # frames a read, each read answered until our output is full; then
    # the answers queue up, and past the bound the daemon closes the
    # connection (a GOAWAY would wait behind what the client does not read).
    d = victim(FLOOD_CONFIG)
    before = rss_bytes(d.pid)
    peak = before
    batch = 2_000 if paced else 50_000
    with under_attack(d):
        with RawH2(d.port, handshake=False, rcvbuf=4096) as h:
            h.sock.settimeout(10)       # a server that stops reading fails
            # stream 1 holds the one slot: a Get whose body never comes
            sid = h.new_stream_id()
            f = HeadersFrame(sid, data=h.encoder.encode(h.request_headers(GET)))
            f.flags.add("END_HEADERS")
            h.send(PREFACE + SettingsFrame(0).serialize() + f.serialize())
            sent, first = 0, 3
            t0 = time.monotonic()
            while sent < FLOOD_FRAMES and h.send_error is None:
                h.send(refused_headers(first, batch))
                first += 2 * batch
                sent += batch
                if paced:
                    wait_until(lambda: read_by_server(d, h), 10,
                               what="the daemon reading the batch")
                peak = max(peak, rss_bytes(d.pid))
            took = time.monotonic() - t0
            outcome = None
            if not paced:
                outcome = h.wait_closed(10)
            elif h.send_error is None:
                outcome = "eof" if closed_by_server(h.sock, 10) else None
            grown = max(peak, rss_bytes(d.pid, "VmHWM")) - before
            print("flood: %d frames in %.1fs, RSS +%.1f MiB, %s" % (
                sent, took, grown / MiB, outcome or h.send_error))
            # (not under the sanitizers: their allocator and quarantine keep
            # freed memory resident; the connection ended all the same)
            if not alptest.SANITIZED:
                assert grown < 32 * MiB, "RSS grew %d MiB" % (grown // MiB)
            if paced:
                assert h.send_error is not None or outcome == "eof", (
                    "%d frames sent, the connection is still open" % sent)
            else:
                assert outcome == "goaway", h.frame_summary()
                assert h.goaways[0][1] == alptest.H2_ENHANCE_YOUR_CALM, h.frame_summary()
        # logged once; the prober's connections were served throughout,
        # and under_attack() ends with a Get on a new one
        assert d.log().count('msg="HTTP/2 frame flood"') == 1, d.log_tail()


# --- connections --------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_1500_idle_connections(victim):
    need = 1500 + 100 + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip("open-file hard limit %d below %d" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    # idle_timeout long enough to hold them; handshake_timeout still short
    d = victim("handshake_timeout 2s\nidle_timeout 120s\nsend_timeout 2s\n")
    idle, silent = [], []
    try:
        with under_attack(d):
            hello = PREFACE + SettingsFrame(0).serialize() + SettingsFrame(0, flags=["ACK"]).serialize()
            for i in range(1500):
                s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
                s.sendall(hello)
                idle.append(s)
                if i % 15 == 0:
                    # and 100 that never say a word: handshake_timeout cuts them
                    silent.append(socket.create_connection(("127.0.0.1", d.port), timeout=10))
            d.wait_metric(lambda m: m.value("alpcrund_connections") >= 1500, 30)
            t0 = time.monotonic()
            assert all(closed_by_server(s, 10) for s in silent), "a silent connection outlived handshake_timeout"
            assert time.monotonic() - t0 < 10
            m = d.metrics()
            assert m.value("alpcrund_connections") >= 1500
            assert d.alive()
            assert d.stub().GetSharedData(sd("victim"), timeout=10).payload == PAYLOAD
            d.close_channels()
    finally:
        for s in idle + silent:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    d.wait_metric(lambda m: m.value("alpcrund_connections") == 0, 30)


@pytest.mark.timeout(120)
def test_slowloris_preface_cut_by_handshake_timeout(victim):
    d = victim()
    data = PREFACE + SettingsFrame(0).serialize()
    with under_attack(d):
        socks = [socket.create_connection(("127.0.0.1", d.port), timeout=5) for _ in range(20)]
        t0 = time.monotonic()
        alive = list(socks)
        i = 0
        while alive and time.monotonic() - t0 < 8:
            for s in list(alive):
                try:
                    s.sendall(data[i % len(data):i % len(data) + 1])
                except OSError:
                    alive.remove(s)
                    continue
                if closed_by_server(s, 0.001):
                    alive.remove(s)
            i += 1
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        for s in socks:
            s.close()
        assert not alive, "%d trickling connections outlived handshake_timeout 1s" % len(alive)
        assert elapsed < 5


@pytest.mark.timeout(120)
def test_slowloris_header_block_cut_by_idle_timeout(victim):
    d = victim()
    with under_attack(d):
        socks = []
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            block = hpack.Encoder().encode(
                [(":method", "POST"), (":scheme", "http"), (":path", GET),
                 (":authority", "127.0.0.1"), ("content-type", "application/grpc")] +
                [("x-pad", "p" * 200)])
            f = HeadersFrame(1, data=block)
            f.flags.add("END_HEADERS")
            raw = f.serialize()
            s.sendall(PREFACE + SettingsFrame(0).serialize() + raw[:9])
            socks.append((s, raw[9:]))
        t0 = time.monotonic()
        alive = list(socks)
        i = 0
        while alive and time.monotonic() - t0 < 8:
            for item in list(alive):
                s, rest = item
                try:
                    s.sendall(rest[i:i + 1])
                except OSError:
                    alive.remove(item)
                    continue
                if closed_by_server(s, 0.001):
                    alive.remove(item)
            i += 1
            time.sleep(0.1)
        for s, _ in socks:
            s.close()
        assert not alive, "%d trickled header blocks outlived idle_timeout 2s" % len(alive)


@pytest.mark.timeout(300)
def test_client_that_never_reads_a_large_reply(victim):
    d = victim()
    size = big_mib(200) * MiB
    d.stub().SetSharedData(sd("huge", 1, b"\x5a" * size), timeout=120)
    d.close_channels()
    d.wait_metric(lambda m: m.value("alpcrund_connections") == 0, 10)
    before = rss_bytes(d.pid)
    with under_attack(d):
        readers = []
        for _ in range(3):
            h = RawH2(d.port, settings={alptest.S_INITIAL_WINDOW_SIZE: 2 ** 31 - 1},
                      auto_window=False, rcvbuf=32768)
            h.window_update(0, 2 ** 31 - 1 - 65535)
            sid = h.start(GET)
            h.send_data(sid, grpc_frame(encode_shared("huge")), end_stream=True)
            readers.append(h)
        # never read: send_timeout (2 s) closes each once its output stalls
        t0 = time.monotonic()
        peak = [before]

        def closed():
            peak[0] = max(peak[0], rss_bytes(d.pid))
            return d.metric("alpcrund_connections") <= 1
        wait_until(closed, 20, interval=0.1, what="send_timeout to close the stalled readers")
        assert time.monotonic() - t0 >= 1.0
        grown = peak[0] - before
        for h in readers:
            h.close()
    assert grown < 64 * MiB, "RSS grew %d MiB with 3 stalled readers" % (grown // MiB)
    # the payload is intact for a reader that reads
    assert len(d.stub().GetSharedData(sd("huge"), timeout=120).payload) == size
