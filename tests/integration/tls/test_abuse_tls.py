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
import threading
import time

import grpc
import pytest

from alptest import GetProber, PROBE_LIMIT, cache_pb2_grpc, sd, tls_lines, wait_until

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
