"""Spec §3, §7, issue 5: TLS and mutual TLS on the listeners and on the node
-> central link. Certificates: conftest.py's pki fixture (alptest.make_pki,
with the openssl command: a CA, a server certificate for localhost and
127.0.0.1, a client certificate, a second CA with a server and a client
certificate of its own, an expired certificate). Clients: grpcio secure
channels, Python's ssl module for what grpcio will not do (no ALPN h2,
session reuse), raw sockets for cleartext on a TLS port."""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import grpc
import pytest

import alptest
from alptest import (MiB, encode_shared, grpc_frame, health_pb2, health_pb2_grpc,
                     rss_bytes, sd, stamped_payload, tls_channel, tls_lines, tls_stub,
                     upstream_lines, wait_until)

C = grpc.StatusCode
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def code_of(fn, req, timeout=10):
    try:
        fn(req, timeout=timeout)
        return C.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def log_count(d, pattern):
    return len(re.findall(pattern, d.log(), re.M))


def ssl_client(alpn=("h2",), ca="ca", pki=None):
    ctx = ssl.create_default_context(cafile=pki.path(ca + ".pem"))
    if alpn is not None:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def read_until_closed(s, timeout=10):
    """Read and drop until the server closes; True when it did."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, ssl.SSLError):
        return True
    except socket.timeout:
        return False


# --- the contract over TLS ---------------------------------------------------------


def test_contract_over_tls(make_daemon, pki):
    d = make_daemon(tls_lines(pki))
    s = tls_stub(d, pki)
    s.SetSharedData(sd("t1", 1, b"one", ttl=60), timeout=10)
    r = s.GetSharedData(sd("t1", 1), timeout=10)
    assert (r.session_id, r.update_level, r.payload) == ("t1", 1, b"one")
    s.UpdateSharedData(sd("t1", 2, b"two"), timeout=10)
    assert s.GetSharedData(sd("t1"), timeout=10).payload == b"two"
    # error cases keep their exact status and message over TLS
    assert code_of(s.SetSharedData, sd("t1", 2, b"x")) == (
        C.ALREADY_EXISTS, "shared data already exists for session t1 at update level 2")
    assert code_of(s.UpdateSharedData, sd("t1", 9, b"x")) == (
        C.FAILED_PRECONDITION, "update level mismatch: expected 3, got 9")
    assert code_of(s.GetSharedData, sd("nope")) == (
        C.NOT_FOUND, "shared data not found for session nope")
    s.DeleteSharedData(sd("t1"), timeout=10)
    assert code_of(s.GetSharedData, sd("t1"))[0] == C.NOT_FOUND
    h = health_pb2_grpc.HealthStub(tls_channel(d, pki))
    assert h.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == 1
    assert re.search(r"msg=\"TLS on\" cert=\S+server\.pem client_ca=\(none\)", d.log()), d.log_tail()


@pytest.mark.timeout(300)
def test_large_payload_over_tls(make_daemon, pki):
    mib = alptest.big_mib(64)
    d = make_daemon(tls_lines(pki))
    s = tls_stub(d, pki)
    payload = stamped_payload(mib)
    s.SetSharedData(sd("big", 1, payload, ttl=600), timeout=120)
    for _ in range(2):
        r = s.GetSharedData(sd("big", 1), timeout=120)
        assert len(r.payload) == len(payload) and r.payload == payload
    # many small replies on the same connection after the large ones
    for i in range(50):
        s.SetSharedData(sd("small%d" % i, 1, os.urandom(1000)), timeout=10)
        assert len(s.GetSharedData(sd("small%d" % i), timeout=10).payload) == 1000


def test_wrong_trust_or_name_is_refused_by_the_client(make_daemon, pki):
    d = make_daemon(tls_lines(pki))
    # the client's own verification: another CA, or a name not in the cert
    assert code_of(tls_stub(d, pki, ca="ca2").GetSharedData, sd("x"))[0] == C.UNAVAILABLE
    assert code_of(tls_stub(d, pki, name="other.example").GetSharedData, sd("x"))[0] == C.UNAVAILABLE
    assert code_of(tls_stub(d, pki).GetSharedData, sd("x"))[0] == C.NOT_FOUND
    assert d.alive()


def test_session_resumption(make_daemon, pki):
    d = make_daemon(tls_lines(pki))
    ctx = ssl_client(pki=pki)
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "h2"
            s.sendall(PREFACE + EMPTY_SETTINGS)
            s.recv(9)          # the server's SETTINGS: its session ticket came first
            session = s.session
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            assert s.session_reused
    assert d.alive()


# --- mutual TLS ------------------------------------------------------------------------


def test_mtls(make_daemon, pki):
    d = make_daemon(tls_lines(pki, client_ca="ca"))
    # no client certificate: refused, one line naming why
    assert code_of(tls_stub(d, pki).GetSharedData, sd("x"))[0] == C.UNAVAILABLE
    d.wait_log(r'level=warn msg="client certificate refused" peer=127\.0\.0\.1:\d+ '
               r'subject="\(none\)" reason="no client certificate"')
    # a certificate from another CA: refused, with its subject
    assert code_of(tls_stub(d, pki, cert="client2").GetSharedData, sd("x"))[0] == C.UNAVAILABLE
    d.wait_log(r'level=warn msg="client certificate refused" peer=\S+ '
               r'subject="CN = other-client" reason="certificate verify failed: '
               r'unable to get local issuer certificate"')
    # the right certificate: served
    s = tls_stub(d, pki, cert="client")
    s.SetSharedData(sd("m", 1, b"mtls"), timeout=10)
    assert s.GetSharedData(sd("m"), timeout=10).payload == b"mtls"
    assert d.alive()


# --- node -> central over TLS ------------------------------------------------------------


def test_node_reaches_central_over_mtls(make_pair, pki):
    # upstream_server_name unset: the host of upstream, 127.0.0.1, is
    # checked against the certificate's IP SAN
    central, node = make_pair(central=tls_lines(pki, client_ca="ca"),
                              node=upstream_lines(pki))
    cs = tls_stub(central, pki, cert="client")
    cs.SetSharedData(sd("n1", 3, b"via tls", ttl=60), timeout=10)
    ns = node.stub()
    r = ns.GetSharedData(sd("n1", 3), timeout=10)
    assert (r.update_level, r.payload) == (3, b"via tls")
    # a large reply through the TLS link
    big = stamped_payload(alptest.big_mib(16))
    cs.SetSharedData(sd("n2", 1, big, ttl=60), timeout=60)
    assert ns.GetSharedData(sd("n2", 1), timeout=60).payload == big
    # a write through the node goes to central over the same link
    ns.SetSharedData(sd("n3", 1, b"forwarded"), timeout=10)
    assert cs.GetSharedData(sd("n3"), timeout=10).payload == b"forwarded"


def test_node_with_the_dns_name_of_central(make_pair, pki):
    central, node = make_pair(central=tls_lines(pki),
                              node=upstream_lines(pki, cert=None, name="localhost"))
    tls_stub(central, pki).SetSharedData(sd("d1", 1, b"dns"), timeout=10)
    assert node.stub().GetSharedData(sd("d1", 1), timeout=10).payload == b"dns"


def test_wrong_upstream_server_name_is_unavailable_naming_it(make_pair, pki):
    central, node = make_pair(central=tls_lines(pki),
                              node=upstream_lines(pki, cert=None, name="wrong.example"))
    code, msg = code_of(node.stub().GetSharedData, sd("w", 1))
    assert code == C.UNAVAILABLE
    assert msg == "central cache unreachable: TLS: certificate verify failed: hostname mismatch", msg
    assert node.alive() and central.alive()


def test_node_without_client_certificate_is_refused_by_central(make_pair, pki):
    central, node = make_pair(central=tls_lines(pki, client_ca="ca"),
                              node=upstream_lines(pki, cert=None))
    code, msg = code_of(node.stub().GetSharedData, sd("w", 1))
    assert code == C.UNAVAILABLE
    assert msg.startswith("central cache unreachable: TLS: ") and "certificate required" in msg, msg
    central.wait_log(r'msg="client certificate refused" .*reason="no client certificate"')


def test_node_trusting_another_ca(make_pair, pki):
    central, node = make_pair(central=tls_lines(pki), node=upstream_lines(pki, cert=None, ca="ca2"))
    code, msg = code_of(node.stub().GetSharedData, sd("w", 1))
    assert (code, msg) == (C.UNAVAILABLE, "central cache unreachable: TLS: certificate verify "
                           "failed: unable to get local issuer certificate"), msg


def test_node_reloads_upstream_certificates(make_pair, pki, tmp_path):
    ca = str(tmp_path / "upstream-ca.pem")
    shutil.copy(pki.path("ca2.pem"), ca)           # the wrong CA first
    central, node = make_pair(central=tls_lines(pki),
                              node="upstream_tls on\nupstream_ca %s\n" % ca)
    tls_stub(central, pki).SetSharedData(sd("u1", 1, b"rotated"), timeout=10)
    code, msg = code_of(node.stub().GetSharedData, sd("u1", 1))
    assert code == C.UNAVAILABLE and "unable to get local issuer certificate" in msg, msg
    # the right CA in place: SIGHUP, and the next connection to central works
    shutil.copy(pki.path("ca.pem"), ca)
    mark = len(node.log())
    node.signal(signal.SIGHUP)
    node.wait_log(r"msg=reloaded", start=mark)
    wait_until(lambda: code_of(node.stub().GetSharedData, sd("u1", 1))[0] == C.OK, 20,
               what="the node reaching central with the new CA")
    # a broken file keeps the current certificates, and says why
    with open(ca, "w") as f:
        f.write("nothing\n")
    mark = len(node.log())
    node.signal(signal.SIGHUP)
    node.wait_log(r'level=error msg="upstream TLS not reloaded, keeping the old certificates" '
                  r'error="upstream_ca %s: no certificates in the file"' % re.escape(ca), start=mark)
    assert node.stub().GetSharedData(sd("u1", 1), timeout=10).payload == b"rotated"


# --- SIGHUP: rotation ------------------------------------------------------------------------


def test_rotation_keeps_established_connections(make_daemon, pki, tmp_path):
    cert, key = str(tmp_path / "live.pem"), str(tmp_path / "live.key")
    shutil.copy(pki.path("server.pem"), cert)
    shutil.copy(pki.path("server.key"), key)
    d = make_daemon("tls_cert %s\ntls_key %s\n" % (cert, key))
    old = tls_stub(d, pki)                                  # trusts the first CA only
    old.SetSharedData(sd("r", 1, b"before"), timeout=10)
    # rotate to a certificate of the second CA, files replaced in place
    shutil.copy(pki.path("server2.pem"), cert)
    shutil.copy(pki.path("server2.key"), key)
    mark = len(d.log())
    d.signal(signal.SIGHUP)
    d.wait_log(r'msg="TLS certificate reloaded" cert=%s' % re.escape(cert), start=mark)
    # the open connection keeps working (a new one would fail: wrong CA)
    assert old.GetSharedData(sd("r"), timeout=10).payload == b"before"
    old.UpdateSharedData(sd("r", 2, b"after"), timeout=10)
    # new connections see the new certificate
    assert code_of(tls_stub(d, pki).GetSharedData, sd("r"))[0] == C.UNAVAILABLE
    assert tls_stub(d, pki, ca="ca2").GetSharedData(sd("r"), timeout=10).payload == b"after"
    # a broken new certificate keeps the current one and says why
    with open(cert, "w") as f:
        f.write("not a certificate\n")
    mark = len(d.log())
    d.signal(signal.SIGHUP)
    d.wait_log(r'level=error msg="TLS certificate not reloaded, keeping the old one" '
               r'error="tls_cert %s: no PEM certificate in the file"' % re.escape(cert), start=mark)
    d.wait_log(r"msg=reloaded", start=mark)
    assert tls_stub(d, pki, ca="ca2").GetSharedData(sd("r"), timeout=10).payload == b"after"
    assert old.GetSharedData(sd("r"), timeout=10).payload == b"after"
    # a key that does not match: the same
    shutil.copy(pki.path("server.pem"), cert)
    mark = len(d.log())
    d.signal(signal.SIGHUP)
    d.wait_log(r'msg="TLS certificate not reloaded, keeping the old one" error="tls_key %s: '
               r'key does not match the certificate tls_cert %s"'
               % (re.escape(key), re.escape(cert)), start=mark)
    assert tls_stub(d, pki, ca="ca2").GetSharedData(sd("r"), timeout=10).payload == b"after"


def test_turning_tls_off_needs_a_restart(make_daemon, pki):
    d = make_daemon(tls_lines(pki))
    mark = len(d.log())
    d.write_config("")
    d.signal(signal.SIGHUP)
    d.wait_log(r'msg="turning TLS on or off needs a restart" tls_cert=\(unset\)', start=mark)
    d.wait_log(r"msg=reloaded", start=mark)
    # still TLS
    assert code_of(tls_stub(d, pki).GetSharedData, sd("x"))[0] == C.NOT_FOUND


@pytest.mark.abuse
@pytest.mark.timeout(300)
def test_stalled_tls_readers_are_bounded_and_timed_out(make_daemon, pki):
    # Over TLS the reply is copied into records as it goes out: a reader
    # that stops reading holds the bounded output (plaintext and
    # encrypted), not a copy of the reply, and send_timeout still closes it.
    mib = alptest.big_mib(64)
    d = make_daemon(tls_lines(pki) + "send_timeout 2s\n")
    payload = stamped_payload(mib)
    s = tls_stub(d, pki)
    s.SetSharedData(sd("big", 1, payload), timeout=120)
    base = rss_bytes(d.pid)
    readers = []
    for _ in range(3):
        c = alptest.RawH2(d.port, handshake=False, auto_window=False, rcvbuf=64 * 1024)
        c.sock = ssl_client(pki=pki).wrap_socket(c.sock, server_hostname="localhost")
        c.send(alptest.PREFACE + alptest.SettingsFrame(
            0, settings={alptest.S_INITIAL_WINDOW_SIZE: 2**31 - 1}).serialize())
        c.window_update(0, 2**31 - 1 - 65535)
        sid = c.start(alptest.GET, end_stream=False)
        c.send_data(sid, grpc_frame(encode_shared(b"big")), end_stream=True)
        readers.append(c)
    d.wait_log(r"(?s)(msg=\"send timeout\".*){3}", timeout=60)
    grown = rss_bytes(d.pid) - base
    assert grown < 48 * MiB, "daemon grew %d MiB for 3 stalled TLS readers" % (grown // MiB)
    for c in readers:
        c.sock.close()
    assert s.GetSharedData(sd("big", 1), timeout=120).payload == payload
    # the grpcio connection, idle all that time, was not cut: send_timeout
    # is about queued output only
    assert log_count(d, r'msg="send timeout"') == 3, d.log_tail()


@pytest.mark.timeout(120)
def test_slow_steady_tls_reader_is_not_cut(make_daemon, pki):
    # Reading slowly but steadily is progress (send_progress in conn.c),
    # over TLS as in cleartext; the pacing below is the reader's.
    d = make_daemon(tls_lines(pki) + "send_timeout 1s\n")
    payload = stamped_payload(4)
    tls_stub(d, pki).SetSharedData(sd("steady", 1, payload), timeout=60)
    c = alptest.RawH2(d.port, handshake=False, auto_window=False, rcvbuf=64 * 1024)
    c.sock = ssl_client(pki=pki).wrap_socket(c.sock, server_hostname="localhost")
    c.send(alptest.PREFACE + alptest.SettingsFrame(
        0, settings={alptest.S_INITIAL_WINDOW_SIZE: 2**31 - 1}).serialize())
    c.window_update(0, 2**31 - 1 - 65535)
    sid = c.start(alptest.GET, end_stream=False)
    c.send_data(sid, grpc_frame(encode_shared(b"steady")), end_stream=True)
    st = c.stream(sid)
    try:
        while not st.done:
            data = c.sock.recv(16384)
            assert data, "cut off while reading: " + d.log_tail()
            c.inbuf += data
            c._parse()
            time.sleep(0.03)        # about 0.5 MB/s
        assert st.ended and st.header("grpc-status", len(st.blocks) - 1) == "0"
    finally:
        c.sock.close()
    assert log_count(d, r'msg="send timeout"') == 0, d.log_tail()


def test_idle_timeout_over_tls_goaway_then_close(make_daemon, pki):
    # The closing sequence over TLS: GOAWAY, close_notify, FIN; the
    # client sees the GOAWAY, then the end.
    d = make_daemon(tls_lines(pki) + "idle_timeout 500ms\n")
    c = alptest.RawH2(d.port, handshake=False)
    c.sock = ssl_client(pki=pki).wrap_socket(c.sock, server_hostname="localhost")
    c.send(alptest.PREFACE + alptest.SettingsFrame(0).serialize())
    assert c.wait_closed(10) == "goaway"
    assert c.goaways[0][1] == alptest.H2_NO_ERROR, c.goaways
    deadline = time.monotonic() + 10
    with pytest.raises(alptest.Closed):
        while time.monotonic() < deadline:
            c.pump(0.2)
    c.sock.close()
    assert d.alive()


# --- the wrong kind of client ---------------------------------------------------------------


def test_cleartext_client_on_a_tls_port(make_daemon, pki):
    d = make_daemon(tls_lines(pki))
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(PREFACE + EMPTY_SETTINGS)
        assert read_until_closed(s)
    d.wait_log(r'level=info msg="cleartext client on a TLS port" peer=127\.0\.0\.1:\d+ '
               r'reason="not TLS: the client sent cleartext \(an HTTP/2 preface\?\)"')
    assert log_count(d, r"cleartext client on a TLS port") == 1
    assert log_count(d, r"TLS handshake failed") == 0
    # still serving TLS clients
    assert code_of(tls_stub(d, pki).GetSharedData, sd("x"))[0] == C.NOT_FOUND


def test_tls_client_on_a_cleartext_port(make_daemon, pki):
    d = make_daemon()
    ctx = ssl_client(pki=pki)
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            ctx.wrap_socket(raw, server_hostname="localhost")
    d.wait_log(r'level=info msg="TLS client on a cleartext port" peer=127\.0\.0\.1:\d+$')
    assert log_count(d, r"TLS client on a cleartext port") == 1
    assert code_of(d.stub().GetSharedData, sd("x"))[0] == C.NOT_FOUND


@pytest.mark.parametrize("alpn,offered", [
    (("http/1.1",), 'reason="client offered no ALPN h2 \\(offered: http/1\\.1\\)"'),
    (None, 'reason="client offered no ALPN \\(h2 required\\)"'),
], ids=["http1.1", "none"])
def test_client_without_alpn_h2_is_refused(make_daemon, pki, alpn, offered):
    d = make_daemon(tls_lines(pki))
    ctx = ssl_client(alpn=alpn, pki=pki)
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as ei:
            ctx.wrap_socket(raw, server_hostname="localhost")
    assert "no application protocol" in str(ei.value).lower(), ei.value
    d.wait_log(r'level=info msg="TLS client refused" peer=127\.0\.0\.1:\d+ ' + offered)
    assert log_count(d, r"TLS client refused") == 1
    assert d.alive()


def test_handshake_timeout_covers_tls(make_daemon, pki):
    d = make_daemon(tls_lines(pki) + "handshake_timeout 300ms\n")
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01")         # a TLS record begun, never finished
        assert read_until_closed(s, timeout=10)
    d.wait_log(r"msg=\"handshake timeout\" peer=127\.0\.0\.1")


# --- start-up errors -----------------------------------------------------------------------


def start_fails(make_daemon, text):
    d = make_daemon(text, start=False)
    d.expect_exit = True
    with pytest.raises(Exception):
        d.start()
    assert d.returncode == 1
    return d


def check_fails(text, tmp_path):
    p = tmp_path / "check.conf"
    p.write_text(text)
    out = subprocess.run([alptest.ALPCRUND, "-t", "-c", str(p)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1, out
    return out.stderr


def test_startup_unreadable_file(make_daemon, pki, tmp_path):
    missing = str(tmp_path / "missing.pem")
    text = "tls_cert %s\ntls_key %s\n" % (missing, pki.path("server.key"))
    d = start_fails(make_daemon, text)
    want = 'level=error msg="cannot set up TLS" error="tls_cert %s: No such file or directory"' % missing
    assert want in d.log(), d.log_tail()
    assert "alpcrund: tls_cert %s: No such file or directory" % missing in check_fails(text, tmp_path)


def test_startup_key_not_matching(make_daemon, pki, tmp_path):
    text = "tls_cert %s\ntls_key %s\n" % (pki.path("server.pem"), pki.path("client.key"))
    d = start_fails(make_daemon, text)
    want = ('error="tls_key %s: key does not match the certificate tls_cert %s"'
            % (pki.path("client.key"), pki.path("server.pem")))
    assert want in d.log(), d.log_tail()
    assert want[7:-1] in check_fails(text, tmp_path)


def test_startup_ca_without_certificates(make_daemon, pki, tmp_path):
    text = tls_lines(pki) + "tls_client_ca %s\n" % pki.path("server.key")
    d = start_fails(make_daemon, text)
    want = 'error="tls_client_ca %s: no certificates in the file"' % pki.path("server.key")
    assert want in d.log(), d.log_tail()
    assert want[7:-1] in check_fails(text, tmp_path)


def test_startup_expired_certificate_warns(make_daemon, pki, tmp_path):
    d = make_daemon(tls_lines(pki, server="expired"))
    d.wait_log(r'level=warn msg="TLS certificate not valid now" warning="tls_cert %s: '
               r'certificate expired on \w+ +\d+ [\d:]+ \d+ GMT"' % re.escape(pki.path("expired.pem")))
    p = tmp_path / "ok.conf"
    p.write_text(tls_lines(pki, server="expired"))
    out = subprocess.run([alptest.ALPCRUND, "-t", "-c", str(p)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out
    assert "alpcrund: warning: tls_cert %s: certificate expired on" % pki.path("expired.pem") \
        in out.stderr, out.stderr


def test_startup_upstream_errors(make_daemon, pki, tmp_path):
    missing = str(tmp_path / "nope.pem")
    text = "mode node\nupstream 127.0.0.1:9\nupstream_tls on\nupstream_ca %s\n" % missing
    d = start_fails(make_daemon, text)
    want = ('msg="cannot start node mode" error="upstream_ca %s: No such file or directory"'
            % missing)
    assert want in d.log(), d.log_tail()
    text = ("mode node\nupstream 127.0.0.1:9\nupstream_tls on\nupstream_cert %s\n"
            "upstream_key %s\n" % (pki.path("client.pem"), pki.path("server.key")))
    err = check_fails(text, tmp_path)
    assert ("alpcrund: upstream_key %s: key does not match the certificate upstream_cert %s"
            % (pki.path("server.key"), pki.path("client.pem"))) in err, err


# --- h2load over TLS ---------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_h2load_over_tls(make_daemon, pki, tmp_path, perf):
    if not shutil.which("h2load"):
        pytest.skip("h2load (Debian package nghttp2-client) is not installed")
    n = 5000 if alptest.SANITIZED else 20000
    d = make_daemon(tls_lines(pki))
    tls_stub(d, pki).SetSharedData(sd("h2load", 1, os.urandom(1024), ttl=600), timeout=10)
    body = tmp_path / "get.bin"
    body.write_bytes(grpc_frame(encode_shared("h2load", 1)))
    before = d.requests("GetSharedData", "OK")
    out = subprocess.run(
        ["h2load", "-n", str(n), "-c", "16", "-m", "32", "-d", str(body),
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "https://%s/alpcrun.v1.Cache/GetSharedData" % d.addr],
        capture_output=True, text=True, timeout=240)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", text)
    assert m and int(m.group(4)) == n, text
    assert "Application protocol: h2" in text, text
    for line in text.splitlines():
        if line.strip().startswith(("finished in", "req/s")):
            perf("h2load TLS " + line.strip())
    d.wait_requests("GetSharedData", "OK", before + n, timeout=10)
