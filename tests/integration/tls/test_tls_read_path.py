"""The TLS record path (src/h2/h2read.c's h2_read_tls, src/h2/tlsout.c):
once the handshake is done the daemon reads its TLS sockets itself, with
read-ahead, many records per read, and writes many records per writev.
What such a path can get wrong: a record split anywhere between two reads
(the client below cuts the ciphertext itself, through memory BIOs), a
sender that never stops starving the other connections, a client gone in
the middle of an upload, and a reply larger than the output's high mark
to a client whose windows never need a WINDOW_UPDATE (nothing is read
while it is sent, so only the output can resume it)."""
import os
import re
import socket
import ssl
import subprocess

import grpc
import pytest

import alptest
from alptest import (GET, MiB, SET, UPDATE, SharedData, encode_shared,
                     grpc_frame, sd, server_rx_queue, stamped_payload, start_set_flood,
                     tls_lines, tls_stub, wait_until)


class MemTLS:
    """A TLS client on a plain socket through memory BIOs, shaped like a
    socket for alptest.RawH2: the test decides how the ciphertext is cut
    into writes (cut(data) returns the pieces; None: all at once)."""

    def __init__(self, port, pki):
        self.raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
        ctx.set_alpn_protocols(["h2"])
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        self.cut = None
        self.after_piece = None
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_out()
                data = self.raw.recv(65536)
                assert data, "the daemon closed during the handshake"
                self.inc.write(data)
        self._send_out()
        assert self.obj.selected_alpn_protocol() == "h2"

    def _send_out(self):
        data = self.out.read()
        if not data:
            return
        pieces = self.cut(data) if self.cut else [data]
        for p in pieces:
            self.raw.sendall(p)
            if self.after_piece:
                self.after_piece()

    # what RawH2 uses of a socket
    def fileno(self):
        return self.raw.fileno()

    def getsockname(self):
        return self.raw.getsockname()

    def setsockopt(self, *a):
        self.raw.setsockopt(*a)

    def settimeout(self, t):
        self.raw.settimeout(t)

    def sendall(self, data):
        self.obj.write(data)
        self._send_out()

    def recv(self, n):
        got = bytearray()
        while True:
            try:
                got += self.obj.read(1 << 20)
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return bytes(got)
            if got:
                return bytes(got)
            data = self.raw.recv(1 << 20)
            if not data:
                return b""
            self.inc.write(data)

    def close(self):
        self.raw.close()


def mem_tls_h2(d, pki):
    """alptest.RawH2 over a MemTLS socket, past the HTTP/2 handshake."""
    h = alptest.RawH2(d.port, handshake=False)
    h.sock.close()
    h.sock = MemTLS(d.port, pki)
    h.send(alptest.PREFACE + alptest.SettingsFrame(0, settings={}).serialize())
    h.wait(lambda: h.settings_seen, 5, "server SETTINGS")
    return h


def odd_pieces(data, sizes=(1, 7, 4093, 5, 16411, 3, 777, 16406)):
    """data cut in pieces of odd sizes (none a multiple of a record), in
    turn: record boundaries fall anywhere within a write."""
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i:i + n])
        i += n
        k += 1
    return out


def test_tls_records_split_at_every_byte_across_reads(make_daemon, pki):
    """Every byte of the ciphertext of a Set and of a Get (a record header,
    its body and its tag, cut at each byte) reaches the daemon in a read of
    its own: each is sent alone and the next only once the daemon has
    taken it from the socket."""
    d = make_daemon(tls_lines(pki))
    payload = bytes(range(256)) * 3
    h = mem_tls_h2(d, pki)
    try:
        client_port = h.sock.getsockname()[1]
        for path, message in ((SET, encode_shared("bytes", 4, payload, ttl=(60, 0))),
                              (GET, encode_shared("bytes", 4))):
            wire = bytearray()
            real_send, h.send = h.send, wire.extend
            try:
                sid = h.start(path)
                h.send_data(sid, grpc_frame(message), end_stream=True)
            finally:
                h.send = real_send
            h.sock.cut = lambda data: [data[i:i + 1] for i in range(len(data))]
            h.sock.after_piece = lambda: wait_until(
                lambda: server_rx_queue(d.port, client_port) == 0, 5,
                what="the daemon to read a byte of a record")
            h.send(bytes(wire))
            h.sock.cut = h.sock.after_piece = None
            st = h.finish(sid)
            assert st.grpc_status == 0, st
        g = SharedData.FromString(st.messages[0][1])
        assert (g.session_id, g.update_level, g.payload) == ("bytes", 4, payload)
    finally:
        h.sock.close()


@pytest.mark.timeout(300)
def test_large_upload_in_odd_pieces_over_tls(make_daemon, pki):
    """A 64 MiB Update whose ciphertext goes out in odd-sized writes
    (records cut at every kind of place across the daemon's reads) is
    stored byte for byte, and the same connection answers after it."""
    mib = alptest.big_mib(64)
    d = make_daemon(tls_lines(pki) + "max_message_size %dm\n" % (mib + 8))
    s = tls_stub(d, pki)
    s.SetSharedData(sd("odd", 0, b"zero", ttl=600), timeout=10)
    payload = stamped_payload(mib)
    h = mem_tls_h2(d, pki)
    try:
        h.sock.cut = odd_pieces
        sid = h.start(UPDATE)
        body = grpc_frame(encode_shared("odd", 1, payload, ttl=(600, 0)))
        assert h.send_data_flow(sid, body, end_stream=True, stall=30) == len(body)
        h.sock.cut = None
        st = h.finish(sid, timeout=120)
        assert st.grpc_status == 0, st
        st = h.unary(GET, encode_shared("odd", 1), timeout=60)
        assert st.grpc_status == 0, st
    finally:
        h.sock.close()
    r = s.GetSharedData(sd("odd", 1), timeout=120)
    assert r.update_level == 1 and r.payload == payload


@pytest.mark.timeout(300)
def test_a_tls_sender_that_never_stops(make_daemon, pki, tmp_path):
    """h2load uploads 32 MiB messages back to back over TLS on one
    connection as fast as the windows let it; meanwhile Gets on other TLS
    connections are answered, while that sender is still sending."""
    d = make_daemon(tls_lines(pki) + "max_message_size 64m\n")
    stub = tls_stub(d, pki)
    stub.SetSharedData(sd("small", 1, b"s" * 1024), timeout=10)
    body = tmp_path / "set.bin"
    body.write_bytes(grpc_frame(sd("flood", 1, os.urandom(32 * MiB)).SerializeToString()))
    flood = start_set_flood(d, body, "https")
    try:
        wait_until(lambda: d.requests("SetSharedData", "OK") >= 3, 120,
                   what="the flood's first uploads")
        other = tls_stub(d, pki)
        for _ in range(20):
            r = other.GetSharedData(sd("small"), timeout=10)
            assert r.payload == b"s" * 1024
        sets_after = d.requests("SetSharedData", "OK")
        assert flood.poll() is None, "the flood ended before the Gets did"
        wait_until(lambda: d.requests("SetSharedData", "OK") > sets_after, 120,
                   what="another upload of the flood after the Gets")
    finally:
        flood.kill()
        flood.wait()


@pytest.mark.parametrize("cut_at", [1 * MiB, 20 * MiB])
def test_tls_client_gone_mid_upload_stores_nothing(make_daemon, pki, cut_at):
    """A TLS client that closes its connection in the middle of a 32 MiB
    upload (in the middle of a record, too): nothing is stored, the bytes
    it held are released, and the daemon goes on serving."""
    d = make_daemon(tls_lines(pki))
    payload = os.urandom(32 * MiB)
    body = grpc_frame(encode_shared("cut", 1, payload, ttl=(60, 0)))
    h = mem_tls_h2(d, pki)
    try:
        sid = h.start(SET)
        h.send_data_flow(sid, body[:cut_at], stall=5.0)
        wait_until(lambda: d.metric("alpcrund_inflight_bytes") > 0, 10,
                   what="the upload counted in flight")
        # Half a record more, then the close.
        h.sock.obj.write(alptest.DataFrame(sid, data=body[cut_at:cut_at + 4000]).serialize())
        h.sock.raw.sendall(h.sock.out.read()[:2000])
    finally:
        h.sock.close()
    wait_until(lambda: d.metric("alpcrund_inflight_bytes") == 0, 10,
               what="the cut upload's bytes released")
    s = tls_stub(d, pki)
    with pytest.raises(grpc.RpcError) as e:
        s.GetSharedData(sd("cut"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    s.SetSharedData(sd("after", 1, b"ok"), timeout=10)
    assert s.GetSharedData(sd("after"), timeout=10).payload == b"ok"


def h2load_gets(d, tmp_path, session, n, conns):
    """h2load Gets of session over TLS (its windows are 1 GiB: it sends no
    WINDOW_UPDATE while a reply comes); the DATA bytes it received."""
    body = tmp_path / ("get-%s.bin" % session)
    body.write_bytes(grpc_frame(encode_shared(session)))
    r = subprocess.run(
        ["h2load", "-n", str(n), "-c", str(conns), "-m", "1", "-d", str(body),
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "https://%s/alpcrun.v1.Cache/GetSharedData" % d.addr],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"requests: %d total, %d started, %d done, %d succeeded" % (n, n, n, n),
                     r.stdout), r.stdout
    m = re.search(r"traffic: .*\((\d+)\) data", r.stdout)
    return int(m.group(1))


@pytest.mark.timeout(300)
def test_large_tls_gets_to_a_reader_that_never_updates_windows(make_daemon, pki, tmp_path):
    """64 MiB replies (16 times the output's high mark) to h2load, whose
    windows need no WINDOW_UPDATE: the daemon reads nothing while it
    sends, so the output alone must bring nghttp2 back each time the
    socket took what was queued. Four connections at once, then one."""
    mib = alptest.big_mib(64)
    d = make_daemon(tls_lines(pki) + "max_message_size %dm\n" % (mib + 8))
    tls_stub(d, pki).SetSharedData(sd("g64", 1, os.urandom(mib * MiB)), timeout=120)
    for n, conns in ((8, 4), (3, 1)):
        got = h2load_gets(d, tmp_path, "g64", n, conns)
        # each reply: the payload and the message's other fields
        assert n * mib * MiB < got <= n * (mib * MiB + 64), got


@pytest.mark.timeout(300)
def test_alpcrunctl_large_level_over_tls(make_daemon, pki, tmp_path):
    """The client side's TLS path (alpcrunctl, as a node's upstream link):
    a 64 MiB set from a file and a get to a file, byte for byte."""
    mib = alptest.big_mib(64)
    d = make_daemon(tls_lines(pki) + "max_message_size %dm\n" % (mib + 8))
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(stamped_payload(mib))
    ctl = os.path.join(os.environ["TOP_BUILDDIR"], "alpcrunctl")
    base = [ctl, "-s", "localhost:%d" % d.port, "--tls", "--ca", pki.path("ca.pem")]
    for args in (["set", "lvl", "1", str(src)], ["get", "lvl", "1", "-o", str(dst)]):
        r = subprocess.run(base + args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    assert dst.read_bytes() == src.read_bytes()
