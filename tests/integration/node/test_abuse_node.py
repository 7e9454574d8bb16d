"""A hostile or broken central (issue #9, spec §5 "Upstream link", §4.6): a
node must survive whatever its upstream sends.

Each test starts a real central and a node, lets the node fetch a copy of
"victim" (so that the node has a hit to serve), stops the central and puts
a fake in its place on the same port: a raw socket server that speaks
HTTP/2 by hand (hyper-h2, hyperframe and raw bytes) and misbehaves. While
it does, a prober asks the node's /healthz and Gets "victim" (a hit,
served locally) every 50 ms on a connection of its own: both answered
quickly throughout means the node's event loop never stalled. Afterwards
the node still serves the hit, its alpcrund_inflight_bytes gauge is back at
its baseline, and when the real central comes back on the same port the
link recovers (a Set on central is then fetched through the node, /readyz
says ready).

Bounded in count and time; loopback only; no timing in the assertions
(a backoff is checked from the node's own log of the delays it chose).
"""
import contextlib
import re
import socket
import ssl
import struct
import threading
import time

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from hyperframe.frame import (ContinuationFrame, GoAwayFrame,
                              HeadersFrame, PingFrame, RstStreamFrame,
                              SettingsFrame)

import alptest
from alptest import (GetProber, MiB, PROBE_LIMIT, encode_shared, grpc_frame, rss_bytes,
                     sd, wait_until)

# Every test here is an abuse case: -m abuse selects them (pytest.ini).
pytestmark = pytest.mark.abuse

C = grpc.StatusCode
PAYLOAD = b"served by the node " * 64
# Short link timeouts, so that what the fake leaves hanging is cut quickly.
NODE = ("upstream_connect_timeout 1s\nupstream_keepalive %s\n"
        "upstream_timeout 3s\nlog_level debug\n")
GET = "/alpcrun.v1.Cache/GetSharedData"
SET = "/alpcrun.v1.Cache/SetSharedData"


def call(fn, req, **kw):
    kw.setdefault("timeout", 20)
    try:
        return C.OK, fn(req, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()


# --- the fake central ------------------------------------------------------------


class Fake:
    """Listens on the central's port; every connection it accepts is given
    to handler(sock, fake) on a thread of its own (after the TLS handshake,
    with an ssl server context)."""

    def __init__(self, port, handler, ctx=None):
        self.handler = handler
        self.ctx = ctx
        self.accepted = 0
        self.socks = []
        self.errors = []
        self.stop = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(64)
        self.lsock.settimeout(0.05)
        self.threads = []
        self.th = threading.Thread(target=self._accept, daemon=True)
        self.th.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                sock = self.lsock.accept()[0]
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self.socks.append(sock)
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, sock):
        try:
            if self.ctx is not None:
                sock.settimeout(10)
                sock = self.ctx.wrap_socket(sock, server_side=True)
                self.socks.append(sock)
            self.handler(sock, self)
        except (OSError, h2.exceptions.H2Error):
            pass                # the node closed: what these tests want
        except Exception as e:  # noqa: BLE001 - a bug in the fake itself
            self.errors.append(repr(e))

    def close(self):
        self.stop.set()
        self.th.join(10)
        self.lsock.close()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self.threads:
            t.join(10)
        assert not self.errors, self.errors


def push(sock, data, fake):
    """Send all of data unless the fake stops first (a blocked send is
    retried, so that a node that does not read holds the fake back)."""
    view = memoryview(data)
    sock.settimeout(0.5)
    while view and not fake.stop.is_set():
        try:
            n = sock.send(view)
        except socket.timeout:
            continue
        view = view[n:]
    return not view


def recv_until_closed(sock, fake):
    """Read and drop until the node closes (True) or the fake stops."""
    while not fake.stop.is_set():
        sock.settimeout(0.05)
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


HEALTH_CHECK = "/grpc.health.v1.Health/Check"


class H2Server:
    """A central's side of one connection, by hyper-h2: the server's
    SETTINGS at once, then each request's HEADERS handed to on_request(self,
    stream_id, path) while everything the node sends is read (PINGs and
    SETTINGS acknowledged by hyper-h2)."""

    def __init__(self, sock, fake, settings=None):
        self.sock, self.fake = sock, fake
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            push(self.sock, data, self.fake)

    def run(self, on_request, stop_reading=None):
        while not self.fake.stop.is_set():
            if stop_reading is not None and stop_reading.is_set():
                time.sleep(0.05)
                continue
            try:
                self.sock.settimeout(0.05)
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            for e in self.conn.receive_data(data):
                if isinstance(e, h2.events.RequestReceived):
                    path = dict(e.headers).get(":path")
                    if path == HEALTH_CHECK:
                        self.answer_probe(e.stream_id)
                        continue
                    on_request(self, e.stream_id, path)
            self.flush()

    def answer_probe(self, sid):
        """The node asks a central it reconnected to which store it has
        (spec §4); a fake names none, as an older central would."""
        self.conn.send_headers(sid, [(":status", "200"),
                                     ("content-type", "application/grpc"),
                                     ("grpc-status", "12")], end_stream=True)

    def reply_headers(self, sid):
        self.conn.send_headers(sid, [(":status", "200"),
                                     ("content-type", "application/grpc")])


# --- the test frame ---------------------------------------------------------------


@pytest.fixture
def hostile(make_pair, request):
    """hostile(handler, node_config="", keepalive="1s", tls=False) ->
    (central, node, fake): the node holds "victim", the central is stopped
    and the fake listens on its port (the node has connected to it). With
    tls, central and the fake speak TLS (conftest.py's pki certificates) and
    the node upstream_tls. Call recovered() at the end."""
    state = {}

    def start(handler, node_config="", keepalive="1s", tls=False):
        central_conf, ctx = "", None
        if tls:
            p = request.getfixturevalue("pki")
            central_conf = alptest.tls_lines(p)
            node_config += alptest.upstream_lines(p, cert=None)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(p.path("server.pem"), p.path("server.key"))
            ctx.set_alpn_protocols(["h2"])
        central, node = make_pair(central=central_conf,
                                  node=NODE % keepalive + node_config)
        central.cstub = ((lambda: alptest.tls_stub(central, p)) if tls else central.stub)
        central.cstub().SetSharedData(sd("victim", 1, PAYLOAD, ttl=600), timeout=10)
        assert node.stub().GetSharedData(sd("victim"), timeout=10).payload == PAYLOAD
        node.close_channels()
        central.close_channels()
        node.baseline = node.metric("alpcrund_inflight_bytes")
        central.stop()
        node.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 0, 10)
        fake = Fake(central.port, handler, ctx)
        state["fake"] = fake
        wait_until(lambda: fake.accepted > 0, 15, what="the node to connect to the fake")
        return central, node, fake
    yield start
    if "fake" in state:
        state["fake"].stop.set()
        with contextlib.suppress(Exception):
            state["fake"].lsock.close()


@contextlib.contextmanager
def probed(node):
    p = GetProber(node, PAYLOAD)
    p.start()
    try:
        yield p
        # at least two rounds, however quickly the attack went
        wait_until(lambda: p.rounds >= 2, 30, what="the prober to run")
    finally:
        p.stop.set()
        p.join(30)
    assert p.rounds > 0, "the prober never ran"
    assert not p.failures, "the node stopped answering during the attack: %s" % p.failures[:5]
    assert p.worst < PROBE_LIMIT, "a probe took %.2fs" % p.worst


def recovered(central, node, fake):
    """The fake goes, the real central comes back on its port: the node
    serves its hit, holds no bytes in flight, and the link works again."""
    fake.close()
    assert node.alive()
    ns = node.stub()
    assert ns.GetSharedData(sd("victim"), timeout=10).payload == PAYLOAD
    node.wait_metric(lambda m: m.value("alpcrund_inflight_bytes") == node.baseline, 15)
    central.start()
    central.cstub().SetSharedData(sd("after", 2, b"back"), timeout=10)

    def fetched():
        code, r = call(ns.GetSharedData, sd("after", 2), timeout=5)
        return code == C.OK and r.payload == b"back"
    wait_until(fetched, 30, interval=0.2, what="the link to recover")
    node.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 1, 10)
    st, body = node.http_get("/readyz")
    assert st == 200, (st, body)
    node.wait_metric(lambda m: m.value("alpcrund_inflight_bytes") == node.baseline, 15)
    node.close_channels()
    central.close_channels()


def miss(node, sid, **kw):
    return call(node.stub().GetSharedData, sd(sid), **kw)


# --- garbage and broken framing ---------------------------------------------------


# nghttp2's words for a server whose first bytes are not SETTINGS
NOT_H2 = ("HTTP/2 error: Remote peer returned unexpected data while we expected "
          "SETTINGS frame.  Perhaps, peer does not support HTTP/2 properly.")


@pytest.mark.timeout(120)
def test_garbage_instead_of_settings(hostile):
    def handler(sock, fake):
        push(sock, b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n" +
             bytes(range(256)) * 16, fake)
        recv_until_closed(sock, fake)
    central, node, fake = hostile(handler)
    with probed(node):
        wait_until(lambda: fake.accepted >= 3, 20, what="the node to try again")
        code, msg = miss(node, "m1")
        assert (code, msg) == (C.UNAVAILABLE, "central cache unreachable: " + NOT_H2), \
            (code, msg)
    # /readyz follows the reason of the latest attempt, not the central's
    # shutdown before the fake came
    st, body = node.http_get("/readyz")
    assert (st, body.strip()) == (503, "central cache unreachable: " + NOT_H2), (st, body)
    recovered(central, node, fake)


@pytest.mark.timeout(120)
def test_four_gib_length_prefix_in_a_reply(hostile):
    def on_request(srv, sid, path):
        srv.reply_headers(sid)
        srv.conn.send_data(sid, struct.pack(">BI", 0, 0xFFFFFFFF) + b"x" * 64)

    def handler(sock, fake):
        H2Server(sock, fake).run(on_request)
    central, node, fake = hostile(handler)
    with probed(node):
        code, msg = miss(node, "m2")
        assert (code, msg) == (C.RESOURCE_EXHAUSTED, "reply of 4294967295 bytes "
                               "exceeds max_message_size 272629760"), (code, msg)
        # nothing was allocated for it, and the link stays up
        assert node.metric("alpcrund_inflight_bytes") == node.baseline
        assert node.metric("alpcrund_upstream_up") == 1
    assert node.metric("alpcrund_entries") == 1
    recovered(central, node, fake)


@pytest.mark.timeout(120)
def test_announced_reply_that_never_comes_is_bounded(hostile):
    # A prefix within max_message_size: the node allocates the message
    # whole and counts it in flight (max_inflight_bytes), until its
    # upstream_timeout gives up on it.
    announced = alptest.big_mib(200) * MiB

    def on_request(srv, sid, path):
        srv.reply_headers(sid)
        srv.conn.send_data(sid, struct.pack(">BI", 0, announced) + b"y" * 1000)

    def handler(sock, fake):
        H2Server(sock, fake).run(on_request)
    central, node, fake = hostile(handler)
    with probed(node):
        got = []
        th = threading.Thread(target=lambda: got.append(miss(node, "m3")))
        th.start()
        node.wait_metric(lambda m: m.value("alpcrund_inflight_bytes") >=
                         node.baseline + announced, 10)
        th.join(30)
        # the waiter's upstream_timeout, or the fetch's own (the same
        # length, started together): either may fire first
        assert got and got[0] in ((C.DEADLINE_EXCEEDED,
                                   "deadline exceeded waiting for the central cache"),
                                  (C.DEADLINE_EXCEEDED, "deadline exceeded")), got
    recovered(central, node, fake)


@pytest.mark.timeout(120)
def test_endless_continuation_frames(hostile):
    sent = []

    def field(name, value):
        # HPACK literal without indexing, new name (RFC 7541 6.2.2): the
        # dynamic table is never touched, so any number of them is valid.
        def s(b):
            assert len(b) < 127 or len(b) < 16384
            if len(b) < 127:
                return bytes([len(b)]) + b
            n = len(b) - 127
            out = bytearray([127])
            while n >= 128:
                out.append(n & 0x7F | 0x80)
                n >>= 7
            out.append(n)
            return bytes(out) + b
        return b"\x00" + s(name) + s(value)

    def on_request(srv, sid, path):
        srv.flush()
        hdr = HeadersFrame(sid, data=b"\x88" + field(b"x-pad", b"v" * 8000))
        push(srv.sock, hdr.serialize(), srv.fake)
        total = 0
        block = ContinuationFrame(sid, data=field(b"x-more", b"w" * 16000)).serialize()
        # 64 MiB of header block, or until the node gives up
        while total < 64 * MiB and push(srv.sock, block, srv.fake):
            total += len(block)
            sent.append(total)

    def handler(sock, fake):
        H2Server(sock, fake).run(on_request)
    central, node, fake = hostile(handler)
    with probed(node):
        code, msg = miss(node, "m4")
        assert code in (C.UNAVAILABLE, C.INTERNAL), (code, msg)
        # the node closed the connection long before 64 MiB
        wait_until(lambda: fake.threads and not fake.threads[0].is_alive(), 20,
                   what="the node to drop the connection")
        assert sent and sent[-1] < 64 * MiB, sent[-1:]
    assert "Too many CONTINUATION frames" in node.log(), node.log_tail()
    recovered(central, node, fake)


# --- resets, floods, GOAWAY ------------------------------------------------------------


@pytest.mark.timeout(120)
def test_reply_then_rst_stream(hostile):
    reply = grpc_frame(encode_shared("r1", 1, b"one", ttl=(600, 0)))

    first = []

    def on_request(srv, sid, path):
        srv.reply_headers(sid)
        if not first:
            first.append(sid)
            # a whole reply, then a reset of the closed stream
            srv.conn.send_data(sid, reply)
            srv.conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
            srv.flush()
            push(srv.sock, RstStreamFrame(sid, error_code=2).serialize(), srv.fake)
        else:
            # half a reply, then INTERNAL_ERROR
            srv.conn.send_data(sid, reply[:len(reply) // 2])
            srv.flush()
            push(srv.sock, RstStreamFrame(sid, error_code=2).serialize(), srv.fake)

    def handler(sock, fake):
        H2Server(sock, fake).run(on_request)
    central, node, fake = hostile(handler)
    with probed(node):
        code, r = miss(node, "r1")
        assert code == C.OK and r.payload == b"one", (code, r)
        code, msg = miss(node, "r2")
        assert (code, msg) == (C.INTERNAL, "stream reset: INTERNAL_ERROR"), (code, msg)
    # r1 stored, r2 not
    assert node.metric("alpcrund_entries") == 2
    recovered(central, node, fake)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("flood", ["ping", "settings"])
def test_ping_and_settings_flood(hostile, flood):
    frames = 100000
    one = (PingFrame(0, opaque_data=b"flooding").serialize() if flood == "ping" else
           SettingsFrame(0, settings={SettingsFrame.MAX_FRAME_SIZE: 16384}).serialize())
    go = threading.Event()
    done = threading.Event()
    sent = []

    def handler(sock, fake):
        try:
            srv = H2Server(sock, fake)
            go.wait(30)             # once the prober runs
            batch = one * 1000
            n = 0
            # without reading: the node's answers pile up on its side
            while n < frames and push(sock, batch, fake):
                n += 1000
            sent.append(n)
        finally:
            done.set()
        srv.run(lambda s, sid, path: None)
    central, node, fake = hostile(handler)
    with probed(node):
        go.set()
        wait_until(done.is_set, 60, what="the flood to be sent or refused")
    recovered(central, node, fake)


# what the node says of a central whose frames it would have to queue
# answers to without end (h2c_conn.c, OBQ_PER_STREAM)
FLOOD_REASON = ("HTTP/2 error: frame flood (too many frames queued in answer "
                "to the server's)")


def first_request(sock, fake):
    """Read the node's preface and frames until its first HEADERS: that
    stream's id (None when the node closed or the fake stops)."""
    buf = b""
    while not fake.stop.is_set():
        sock.settimeout(0.05)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            return None
        buf += data
        off = 24                            # the client's preface
        while len(buf) >= off + 9:
            length, kind = int.from_bytes(buf[off:off + 3], "big"), buf[off + 3]
            if kind == 1:                   # HEADERS
                return struct.unpack(">I", buf[off + 5:off + 9])[0] & 0x7FFFFFFF
            off += 9 + length
    return None


@pytest.mark.timeout(180)
def test_push_promise_flood(hostile, perf):
    """The fake never ACKs the node's SETTINGS (so push is still on as far
    as nghttp2 knows) and floods PUSH_PROMISEs on the node's first stream,
    never reading: nghttp2 answers each with RST_STREAM(CANCEL), a frame it
    does not cap itself. The node ends the connection once too many answers
    are queued (its memory bounded), logs it once, and recovers."""
    frames = 2000000
    batch_frames = 20000
    go = threading.Event()
    done = threading.Event()
    sent = []
    conns = []

    def handler(sock, fake):
        conns.append(sock)
        if len(conns) > 1:                  # later connections: a plain fake
            H2Server(sock, fake).run(lambda s, sid, path: None)
            return
        n = 0
        try:
            push(sock, SettingsFrame(0).serialize(), fake)
            sid = first_request(sock, fake)
            go.wait(30)
            promised = 2
            while sid is not None and n < frames:
                batch = b"".join(
                    b"\x00\x00\x04\x05\x04" + struct.pack(">II", sid, p)
                    for p in range(promised, promised + 2 * batch_frames, 2))
                promised += 2 * batch_frames
                if not push(sock, batch, fake):
                    break
                n += batch_frames
        finally:
            sent.append(n)
            done.set()
        recv_until_closed(sock, fake)
    central, node, fake = hostile(handler)
    rss0 = rss_bytes(node.pid)
    with probed(node):
        go.set()
        # the node asks central something, should it not have yet
        threading.Thread(target=miss, args=(node, "p1"), kwargs={"timeout": 5},
                         daemon=True).start()
        wait_until(done.is_set, 120, what="the flood to be sent or cut off")
        grown = rss_bytes(node.pid, "VmHWM") - rss0
        perf("a PUSH_PROMISE flood from a central that never reads: %d frames "
             "sent, node RSS +%d MiB" % (sent[0], grown >> 20))
        if not alptest.SANITIZED:
            assert grown <= 48 * MiB, grown >> 20
        assert sent[0] < frames, sent
        wait_until(lambda: FLOOD_REASON in node.log(), 30, what="the node to see a flood")
    assert node.log().count("upstream HTTP/2 frame flood") == 1, node.log()
    recovered(central, node, fake)


def retry_delays(log, reason):
    return [int(m.group(1)) for m in re.finditer(
        r'upstream down.*reason="%s" retry_ms=(\d+)' % re.escape(reason), log)]


@pytest.mark.timeout(120)
def test_goaway_loop_backs_off(hostile):
    def handler(sock, fake):
        # accepts, and says GOAWAY at once, again and again
        push(sock, SettingsFrame(0).serialize() +
             GoAwayFrame(0, last_stream_id=0, error_code=0).serialize(), fake)
        recv_until_closed(sock, fake)
    central, node, fake = hostile(handler)
    with probed(node):
        # the node's own delays: doubling (±20%) up to 5 s, from where the
        # refused connections while central was away left them
        wait_until(lambda: any(x >= 4000 for x in retry_delays(node.log(), "GOAWAY")),
                   40, what="the backoff to reach its cap")
        delays = retry_delays(node.log(), "GOAWAY")
        capped = next(i for i, x in enumerate(delays) if x >= 4000)
        rising = delays[:capped + 1]
        assert len(rising) >= 3, delays
        assert all(b > a for a, b in zip(rising, rising[1:])), delays
        # one connection per delay, not a spin
        assert fake.accepted <= len(retry_delays(node.log(), "GOAWAY")) + 2, \
            (fake.accepted, delays)
        code, msg = miss(node, "g1")
        assert (code, msg) == (C.UNAVAILABLE, "central cache unreachable: GOAWAY"), (code, msg)
    recovered(central, node, fake)


# --- flow control ------------------------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_central_never_reads_a_forwarded_set(hostile, tls, perf):
    """Over TLS the body is copied into TLS records as it is framed: that
    copy, not counted in flight, stays within the connection's 4 MiB of
    queued output (the node's RSS)."""
    mib = alptest.big_mib(64)
    payload = b"s" * (mib * MiB)
    limit = 3 * mib * MiB
    stop_reading = threading.Event()

    def on_request(srv, sid, path):
        if path == SET:
            stop_reading.set()      # and never a byte read again

    def handler(sock, fake):
        # windows wide open: only the socket and the node's own bounds
        # hold the body back
        srv = H2Server(sock, fake, settings={
            SettingsFrame.INITIAL_WINDOW_SIZE: 2 ** 31 - 1})
        srv.conn.increment_flow_control_window(2 ** 31 - 1 - 65535)
        srv.flush()
        srv.run(on_request, stop_reading=stop_reading)
    # PINGs every 4s: the body is stuck behind flow control before the
    # link is found dead
    central, node, fake = hostile(handler, "max_inflight_bytes %d\n" % limit,
                                  keepalive="4s", tls=tls)
    rss0 = rss_bytes(node.pid)
    with probed(node):
        seen = []
        peak = []
        got = []
        th = threading.Thread(target=lambda: got.append(call(
            node.stub().SetSharedData, sd("big", 0, payload), timeout=3)))
        th.start()
        while th.is_alive():
            seen.append(node.metric("alpcrund_inflight_bytes"))
            peak.append(rss_bytes(node.pid))
            th.join(0.1)
        assert got and got[0][0] == C.DEADLINE_EXCEEDED, got
        assert max(seen) <= limit, (max(seen), limit)
        # the request, held once, plus the output (not under the
        # sanitizers: their allocator and quarantine keep freed memory
        # resident)
        grown = max(peak) - rss0
        perf("a %d MiB Set stuck behind a central that never reads: node RSS +%d MiB, "
             "in flight at most %d MiB" % (mib, grown >> 20, int(max(seen)) >> 20))
        if not alptest.SANITIZED:
            assert grown <= len(payload) + 24 * MiB, (grown >> 20, len(payload) >> 20)
        # the link is declared dead (no PING answer), which frees the body
        node.wait_metric(lambda m: m.value("alpcrund_inflight_bytes") == node.baseline, 20)
    assert stop_reading.is_set()
    recovered(central, node, fake)


# --- the change feed (prefetch on) ------------------------------------------------------


@pytest.mark.timeout(120)
def test_hostile_change_feed(hostile):
    """A node with prefetch on watches central: the fake's feed lists the
    node's copy in its snapshot (so that reconciliation keeps it), then
    floods notices about sessions the node does not hold, sends a message
    that is not a notice, and a 4 GiB length prefix. Fetches it provokes are
    answered NOT_FOUND."""
    N = alptest.cache_pb2.SharedDataNotice
    watches = []

    def notice(**kw):
        return grpc_frame(N(**kw).SerializeToString())

    def on_request(srv, sid, path):
        if path != "/alpcrun.v1.Cache/WatchSharedData":
            srv.conn.send_headers(sid, [(":status", "200"),
                                        ("content-type", "application/grpc"),
                                        ("grpc-status", "5"),
                                        ("grpc-message", "not here")], end_stream=True)
            return
        watches.append(sid)
        srv.reply_headers(sid)
        srv.conn.send_data(sid, notice(session_id="victim", update_level=1,
                                       kind=N.SNAPSHOT, seq=1) +
                           notice(kind=N.SNAPSHOT_END, seq=2))
        srv.flush()
        flood = b"".join(notice(session_id="other-%d" % i, update_level=i,
                                kind=N.SET, seq=3 + i) for i in range(20000))
        flood += grpc_frame(b"\xff\xff\xff\xff")           # not a notice
        flood += struct.pack(">BI", 0, 0xFFFFFFFF) + b"z" * 64
        # within the stream's and the connection's windows, in pieces
        for i in range(0, len(flood), 16000):
            while srv.conn.local_flow_control_window(sid) < 16000:
                srv.sock.settimeout(1)
                for e in srv.conn.receive_data(srv.sock.recv(65536)):
                    pass
            srv.conn.send_data(sid, flood[i:i + 16000])
            srv.flush()

    def handler(sock, fake):
        H2Server(sock, fake).run(on_request)
    central, node, fake = hostile(handler, "prefetch on\n")
    with probed(node):
        wait_until(lambda: len(watches) >= 3, 30, what="the node to watch again, twice")
        assert node.metric("alpcrund_upstream_up") == 1
    recovered(central, node, fake)
