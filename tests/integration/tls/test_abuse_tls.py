"""Abuse on a TLS listener (tls_cert, spec §3; issue #9): garbage, stalled
and broken handshakes by the hundred, and a storm of full and abandoned
handshakes, while a prober asks /healthz and Gets "victim" over TLS every
50 ms on a connection of its own (the loop never stalled). Afterwards every
attacking connection is closed (alpcrund_connections back to 0), nothing is
held in flight, and TLS clients are served. Certificates: conftest.py's pki
fixture. Cleartext on a TLS port, TLS on a cleartext port, ALPN and the
handshake timeout of one connection are test_tls.py's."""
import random
import socket
import ssl
import struct
import threading
import time

import grpc
import hpack
import pytest

import alptest
from alptest import (GET, PREFACE, GetProber, MiB, PROBE_LIMIT, cache_pb2_grpc, rss_bytes,
                     sd, tls_lines, wait_until)

# Every test here is an abuse case: -m abuse selects them (pytest.ini).
pytestmark = pytest.mark.abuse

PAYLOAD = b"served over TLS " * 32
CONFIG = "handshake_timeout 1s\nidle_timeout 2s\n"


@pytest.fixture
def tls_victim(make_daemon, pki):
    def start():
        d = make_daemon(tls_lines(pki) + CONFIG)
        creds = grpc.ssl_channel_credentials(root_certificates=pki.read("ca.pem"))
        with grpc.secure_channel(d.addr, creds, options=[
                ("grpc.ssl_target_name_override", "localhost")]) as ch:
            cache_pb2_grpc.CacheStub(ch).SetSharedData(sd("victim", 1, PAYLOAD), timeout=10)
        d.baseline = d.metric("alpcrund_inflight_bytes")
        return d
    return start


def attack(d, pki, fn):
    p = GetProber(d, PAYLOAD, channel=lambda: grpc.secure_channel(
        d.addr, grpc.ssl_channel_credentials(root_certificates=pki.read("ca.pem")),
        options=[("grpc.ssl_target_name_override", "localhost"),
                 ("grpc.use_local_subchannel_pool", 1)]))
    p.start()
    try:
        fn()
        # at least two rounds, however quickly the attack went
        wait_until(lambda: p.rounds >= 2, 30, what="the prober to run")
    finally:
        p.stop.set()
        p.join(30)
    assert p.rounds > 0
    assert not p.failures, "the daemon stopped answering during the attack: %s" % p.failures[:5]
    assert p.worst < PROBE_LIMIT, "a probe took %.2fs" % p.worst
    # every attacking connection (and the prober's) closed, nothing held
    d.wait_metric(lambda m: m.value("alpcrund_connections") == 0, 20)
    d.wait_metric(lambda m: m.value("alpcrund_inflight_bytes") == d.baseline, 10)
    assert d.alive()


def client_hello(pki):
    """The bytes of a real ClientHello (ALPN h2, SNI localhost)."""
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.set_alpn_protocols(["h2"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def closed_by_server(s, timeout):
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return True
    except socket.timeout:
        return False
    return False


@pytest.mark.timeout(180)
def test_garbage_stalled_and_broken_handshakes(tls_victim, pki):
    d = tls_victim()
    rng = random.Random(20261125)
    hello = client_hello(pki)

    def openers():
        for i in range(300):
            kind = i % 4
            if kind == 0:               # random bytes
                yield rng.randbytes(rng.randint(1, 4096))
            elif kind == 1:             # a 16 KiB handshake record begun, stalled
                yield b"\x16\x03\x01\x40\x00" + rng.randbytes(100)
            elif kind == 2:             # a real ClientHello, then garbage records
                yield hello + b"\x17\x03\x03\x00\x10" + rng.randbytes(16)
            else:                       # a ClientHello cut short
                yield hello[:rng.randint(5, len(hello) - 1)]

    def run():
        socks = []
        for data in openers():
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            socks.append(s)
            if len(socks) == 50:
                still = [i for i, s in enumerate(socks) if not closed_by_server(s, 6)]
                for s in socks:
                    s.close()
                socks = []
                assert not still, "connections %s still open" % still
    attack(d, pki, run)


@pytest.mark.timeout(180)
def test_handshake_storm(tls_victim, pki):
    """Four threads: full handshakes closed at once, and ClientHellos
    abandoned before the server's answer, 150 of each per thread."""
    d = tls_victim()
    hello = client_hello(pki)
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.set_alpn_protocols(["h2"])
    done = []
    errors = []

    def worker():
        try:
            for i in range(300):
                raw = socket.create_connection(("127.0.0.1", d.port), timeout=10)
                if i % 2:
                    raw.sendall(hello)
                    raw.close()
                    continue
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    assert s.selected_alpn_protocol() == "h2"
                done.append(1)
        except Exception as e:         # noqa: BLE001
            errors.append(repr(e))

    def run():
        ths = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(150)
        assert not errors, errors[:3]
        assert len(done) == 600
    attack(d, pki, run)


@pytest.mark.timeout(120)
def test_refused_stream_flood_over_tls(make_daemon, pki):
    """The TLS read path bounds what nghttp2 queues as the cleartext one
    does (wire/test_abuse.py): a client that never ACKs our SETTINGS nor
    reads, flooding HEADERS over max_concurrent_streams 1 (each refused
    with an RST_STREAM), is closed with the daemon's memory bounded, and
    TLS clients are served throughout."""
    d = make_daemon(tls_lines(pki) + "handshake_timeout 1s\nidle_timeout 60s\n"
                    "send_timeout 60s\nmax_concurrent_streams 1\n")
    creds = grpc.ssl_channel_credentials(root_certificates=pki.read("ca.pem"))
    with grpc.secure_channel(d.addr, creds, options=[
            ("grpc.ssl_target_name_override", "localhost")]) as ch:
        cache_pb2_grpc.CacheStub(ch).SetSharedData(sd("victim", 1, PAYLOAD), timeout=10)
    d.baseline = d.metric("alpcrund_inflight_bytes")
    before = rss_bytes(d.pid)
    peak = [before]
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.set_alpn_protocols(["h2"])

    def run():
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # never read
        raw.settimeout(10)
        raw.connect(("127.0.0.1", d.port))
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            enc = hpack.Encoder()
            block = enc.encode([(":method", "POST"), (":scheme", "https"),
                                (":path", GET), (":authority", "localhost"),
                                ("content-type", "application/grpc"), ("te", "trailers")])
            # stream 1 holds the one slot: a Get whose body never comes
            s.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" +
                      len(block).to_bytes(3, "big") + b"\x01\x04" +
                      struct.pack(">I", 1) + block)
            sent, sid, err = 0, 3, None
            while sent < 1_000_000 and err is None:
                chunk = b"".join(b"\x00\x00\x01\x01\x05" + struct.pack(">I", i) + b"\x82"
                                 for i in range(sid, sid + 100_000, 2))
                sid += 100_000
                try:
                    s.sendall(chunk)
                except OSError as e:
                    err = e
                sent += 50_000
                peak[0] = max(peak[0], rss_bytes(d.pid))
            assert err is not None or closed_by_server(s, 10), (
                "%d frames sent, the connection is still open" % sent)
        peak[0] = max(peak[0], rss_bytes(d.pid, "VmHWM"))

    attack(d, pki, run)
    grown = peak[0] - before
    # (not under the sanitizers: their allocator and quarantine keep
    # freed memory resident; the connection ended all the same)
    if not alptest.SANITIZED:
        assert grown < 32 * MiB, "RSS grew %d MiB" % (grown // MiB)
    assert d.log().count('msg="HTTP/2 frame flood"') == 1, d.log_tail()
