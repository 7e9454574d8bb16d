"""alpcrunctl(1) end to end (issue 7, spec §9): every command against a real
daemon (and a node in front of one), exit codes and stderr messages naming
the gRPC status (spec §4's exact messages), usage errors, binary payloads
through stdin and stdout, a 200 MiB file, --ttl, health, the API key, and
the progress bar shown only when stderr is a terminal."""
import errno
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest

import alptest
from alptest import MiB, sd, wait_until

CTL = os.path.join(alptest.TOP_BUILDDIR, "alpcrunctl")

# Exit status scheme of alpcrunctl(1): 10 + the gRPC status code.
EXIT = {c.name: 10 + c.value[0] for c in grpc.StatusCode if c.value[0] != 0}


def ctl(*args, server=None, input=None, env=None, timeout=120, stderr=subprocess.PIPE,
        key=None):
    """Run alpcrunctl; (returncode, stdout bytes, stderr text)."""
    e = dict(os.environ)
    e.pop("METALCORE_API_KEY", None)
    if key is not None:
        e["METALCORE_API_KEY"] = key
    e.update(env or {})
    argv = [CTL]
    if server is not None:
        argv += ["-s", server]
    r = subprocess.run(argv + list(args), input=input, env=e, stdout=subprocess.PIPE,
                       stderr=stderr, timeout=timeout)
    err = r.stderr.decode("utf-8", "replace") if r.stderr is not None else ""
    report = alptest.sanitizer_report(err)
    assert report is None, report
    return r.returncode, r.stdout, err


def ok(*args, **kw):
    rc, out, err = ctl(*args, **kw)
    assert rc == 0 and err == "", (args, rc, err)
    return out


def fails(status, message, *args, **kw):
    """The call ends with gRPC status `status` (a name): exit 10 + code and
    exactly `alpcrunctl: STATUS: message` on stderr, nothing on stdout."""
    rc, out, err = ctl(*args, **kw)
    assert (rc, err) == (EXIT[status], "alpcrunctl: %s: %s\n" % (status, message)), \
        (args, rc, err)
    assert out == b""
    return err


def usage_error(*args, **kw):
    rc, out, err = ctl(*args, **kw)
    assert rc == 2, (args, rc, err)
    assert "usage: alpcrunctl" in err and out == b"", err
    return err.splitlines()[0]


def stub_get(d, sid, level=None):
    return d.stub().GetSharedData(sd(sid, level), timeout=30)


# --- every command, and the messages of spec §4 ----------------------------------


def test_set_get_update_delete(daemon, tmp_path):
    s = daemon.addr
    f = tmp_path / "p0"
    f.write_bytes(b"level zero")
    assert ok("set", "job-1", "0", str(f), server=s) == b""
    assert ok("get", "job-1", server=s) == b"level zero"
    assert ok("get", "job-1", "0", server=s) == b"level zero"
    # What the daemon holds, seen by another client.
    r = stub_get(daemon, "job-1")
    assert (r.update_level, r.payload) == (0, b"level zero")

    assert ok("update", "job-1", "1", "-", input=b"level one", server=s) == b""
    assert ok("get", "job-1", "1", server=s) == b"level one"
    assert stub_get(daemon, "job-1").update_level == 1

    assert ok("delete", "job-1", server=s) == b""
    fails("NOT_FOUND", "shared data not found for session job-1", "get", "job-1", server=s)


def test_status_errors(daemon):
    s = daemon.addr
    ok("set", "e", "3", "-", input=b"abc", server=s)
    fails("NOT_FOUND", "shared data not found for session nope", "get", "nope", server=s)
    fails("NOT_FOUND", "shared data not found for session nope",
          "update", "nope", "1", "-", input=b"x", server=s)
    fails("NOT_FOUND", "shared data not found for session nope", "delete", "nope", server=s)
    fails("FAILED_PRECONDITION", "update level mismatch: expected 3, got 2",
          "get", "e", "2", server=s)
    fails("FAILED_PRECONDITION", "update level mismatch: expected 4, got 6",
          "update", "e", "6", "-", input=b"x", server=s)
    fails("ALREADY_EXISTS", "shared data already exists for session e at update level 3",
          "set", "e", "3", "-", input=b"other bytes", server=s)
    fails("ALREADY_EXISTS", "shared data already exists for session e at update level 3",
          "set", "e", "9", "-", input=b"abc", server=s)
    # A byte-identical retry is OK.
    ok("set", "e", "3", "-", input=b"abc", server=s)
    # The tombstone: a level not above the deleted one is refused.
    ok("delete", "e", server=s)
    fails("FAILED_PRECONDITION", "shared data for session e was deleted at update level 3; "
          "set update level 4 or higher", "set", "e", "2", "-", input=b"x", server=s)
    ok("set", "e", "4", "-", input=b"x", server=s)
    # INVALID_ARGUMENT from the server: a session id with a space.
    rc, out, err = ctl("get", "a b", server=s)
    assert rc == EXIT["INVALID_ARGUMENT"] and err.startswith(
        "alpcrunctl: INVALID_ARGUMENT: session_id must be printable ASCII"), err
    rc, out, err = ctl("set", "x" * 257, "0", "-", input=b"", server=s)
    assert rc == EXIT["INVALID_ARGUMENT"] and err.startswith(
        "alpcrunctl: INVALID_ARGUMENT: "), err


def test_health(daemon):
    assert ok("health", server=daemon.addr) == b"SERVING\n"
    assert ok("health", "alpcrun.v1.Cache", server=daemon.addr) == b"SERVING\n"
    fails("NOT_FOUND", "unknown service no.such.Service", "health", "no.such.Service",
          server=daemon.addr)


def test_health_not_serving_exits_3():
    # The daemon refuses new connections while it drains, so a small grpcio
    # server gives the other answers.
    from concurrent import futures
    answers = {"": alptest.health_pb2.HealthCheckResponse.NOT_SERVING,
               "u": alptest.health_pb2.HealthCheckResponse.UNKNOWN}

    def check(req, ctx):
        return alptest.health_pb2.HealthCheckResponse(status=answers[req.service])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=alptest.health_pb2.HealthCheckRequest.FromString,
            response_serializer=alptest.health_pb2.HealthCheckResponse.SerializeToString)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        addr = "127.0.0.1:%d" % port
        assert ctl("health", server=addr) == (3, b"NOT_SERVING\n", "")
        assert ctl("health", "u", server=addr) == (3, b"UNKNOWN\n", "")
    finally:
        server.stop(None)


def test_unavailable_closed_port():
    port = alptest.free_port()
    addr = "127.0.0.1:%d" % port
    fails("UNAVAILABLE", "%s unreachable: connection refused" % addr, "health", server=addr)
    fails("UNAVAILABLE", "%s unreachable: connection refused" % addr,
          "set", "s", "0", "-", input=b"x", server=addr)


def test_deadline_exceeded_against_silent_server():
    # A listener that never speaks HTTP/2: the call's own deadline ends it.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    try:
        addr = "127.0.0.1:%d" % ls.getsockname()[1]
        fails("DEADLINE_EXCEEDED", "deadline exceeded", "--timeout", "300ms", "get", "s",
              server=addr)
    finally:
        ls.close()


def default_port_busy():
    """Why 127.0.0.1:2337 cannot be taken here, or None. Binds as the
    daemon does (SO_REUSEADDR, then listen), so that only a port another
    process holds counts as busy."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 2337))
        s.listen(1)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return str(e)
        raise
    finally:
        s.close()
    return None


def test_default_server_is_central_default_listen(make_daemon):
    # No -s: 127.0.0.1:2337, the daemon's default listen address. Only
    # checked when that port is free to take here; once it is, a daemon
    # that does not start is a failure like any other.
    busy = default_port_busy()
    if busy:
        pytest.skip("127.0.0.1:2337 is in use on this host: %s" % busy)
    d = make_daemon("listen 127.0.0.1:2337\n")
    assert ok("health") == b"SERVING\n"
    d.stop()


def test_unix_socket(make_daemon, tmp_path):
    path = str(tmp_path / "alpcrund.sock")
    d = make_daemon("listen unix:%s\n" % path)
    wait_until(lambda: os.path.exists(path), 5, what="the unix socket")
    ok("set", "u", "0", "-", input=b"via unix", server="unix:" + path)
    assert ok("get", "u", server="unix:" + path) == b"via unix"
    assert d.alive()


# --- usage errors -----------------------------------------------------------------


@pytest.mark.parametrize("args,first", [
    ((), "alpcrunctl: no command"),
    (("frobnicate",), "alpcrunctl: unknown command: frobnicate"),
    (("--bogus", "health"), "alpcrunctl: unknown option: --bogus"),
    (("-s",), "alpcrunctl: option needs an argument: -s"),
    (("set", "s", "0"), "alpcrunctl: set: expected session, level and file"),
    (("set", "s", "0", "f", "extra"), "alpcrunctl: set: expected session, level and file"),
    (("update", "s", "x", "-"), "alpcrunctl: bad update level: x"),
    (("update", "s", "-1", "-"), "alpcrunctl: update: unknown option: -1"),
    (("update", "s", "--", "-1", "-"), "alpcrunctl: bad update level: -1"),
    (("set", "s", "4294967296", "-"), "alpcrunctl: bad update level: 4294967296"),
    (("set", "s", "0", "-", "--ttl", "soon"),
     "alpcrunctl: --ttl: expected a duration like 500ms, 30s, 10m or 1h: soon"),
    (("set", "s", "0", "-", "--ttl"), "alpcrunctl: set: option needs an argument: --ttl"),
    (("get",), "alpcrunctl: get: expected session [level]"),
    (("get", "s", "1", "2"), "alpcrunctl: get: expected session [level]"),
    (("get", "s", "--ttl", "1s"), "alpcrunctl: get: --ttl is not an option of this command"),
    (("delete",), "alpcrunctl: delete: expected session"),
    (("delete", "s", "-o", "f"), "alpcrunctl: delete: -o is not an option of this command"),
    (("health", "a", "b"), "alpcrunctl: health: expected at most a service name"),
    (("watch", "a", "b"), "alpcrunctl: watch: expected at most a session"),
    (("--timeout", "x", "health"),
     "alpcrunctl: --timeout: expected a duration like 500ms, 30s, 10m or 1h: x"),
    (("--max-message-size", "0", "health"), None),
    (("--ca", "ca.pem", "health"),
     "alpcrunctl: --ca, --cert, --key and --server-name need --tls"),
    (("--server-name", "x", "health"),
     "alpcrunctl: --ca, --cert, --key and --server-name need --tls"),
    (("--tls", "--cert", "c.pem", "health"), "alpcrunctl: --cert and --key go together"),
])
def test_usage_errors(args, first):
    # A closed port: a usage error must be reported before any call.
    line = usage_error(*args, server="127.0.0.1:%d" % alptest.free_port())
    if first is not None:
        assert line == first


def test_help():
    rc, out, err = ctl("--help")
    assert rc == 0 and out.startswith(b"usage: alpcrunctl") and err == ""


def test_local_errors(daemon, tmp_path):
    s = daemon.addr
    missing = str(tmp_path / "missing")
    rc, out, err = ctl("set", "s", "0", missing, server=s)
    assert (rc, err) == (1, "alpcrunctl: %s: No such file or directory\n" % missing)
    rc, out, err = ctl("set", "s", "0", str(tmp_path), server=s)
    assert (rc, err) == (1, "alpcrunctl: %s: Is a directory\n" % tmp_path)
    ok("set", "s", "0", "-", input=b"data", server=s)
    bad = str(tmp_path / "no" / "such" / "dir")
    rc, out, err = ctl("get", "s", "-o", bad, server=s)
    assert (rc, err) == (1, "alpcrunctl: %s: No such file or directory\n" % bad)
    rc, out, err = ctl("--api-key-file", missing, "health", server=s)
    assert (rc, err) == (1, "alpcrunctl: --api-key-file %s: No such file or "
                            "directory\n" % missing)
    rc, out, err = ctl("--tls", "--ca", missing, "health", server=s)
    assert rc == 1 and err.startswith("alpcrunctl: --tls: ") and missing in err, err
    # --tls against a cleartext server never falls back to cleartext: it
    # fails, locally (no TLS in this build) or at the handshake.
    rc, out, err = ctl("--tls", "health", server=s)
    assert rc in (1, EXIT["UNAVAILABLE"]) and out == b"", (rc, err)
    assert err.startswith("alpcrunctl: --tls: ") or \
        err.startswith("alpcrunctl: UNAVAILABLE: %s unreachable: " % s), err


def test_max_message_size(daemon):
    s = daemon.addr
    ok("set", "mm", "0", "-", input=b"x" * 5000, server=s)
    # The reply's size depends on the encoding of its remaining ttl.
    rc, out, err = ctl("--max-message-size", "4k", "get", "mm", server=s)
    assert rc == EXIT["RESOURCE_EXHAUSTED"] and out == b"", err
    assert re.fullmatch(r"alpcrunctl: RESOURCE_EXHAUSTED: reply of 50[0-9][0-9] bytes "
                        r"exceeds max_message_size 4096\n", err), err
    size = len(alptest.encode_shared(b"mm2", 0, b"x" * 5000))
    fails("RESOURCE_EXHAUSTED", "request of %d bytes exceeds max_message_size 4096" % size,
          "--max-message-size", "4k", "set", "mm2", "0", "-", input=b"x" * 5000, server=s)
    assert ok("--max-message-size", "5k", "get", "mm", server=s) == b"x" * 5000


def test_man_page_exit_codes_match():
    page = open(os.path.join(alptest.TOP_SRCDIR, "man", "alpcrunctl.1")).read()
    listed = {}
    for line in re.findall(r"^\.It (\d+ \w+ Ta \d+ \w+)$", page, re.M):
        for part in line.split(" Ta "):
            code, name = part.split()
            listed[name] = int(code)
    assert listed == EXIT


def test_get_output_file_untouched_on_error(daemon, tmp_path):
    out = tmp_path / "out"
    out.write_bytes(b"keep me")
    fails("NOT_FOUND", "shared data not found for session gone",
          "get", "gone", "-o", str(out), server=daemon.addr)
    assert out.read_bytes() == b"keep me"


# --- payloads ---------------------------------------------------------------------


def test_binary_payload_stdin_stdout(daemon):
    payload = bytes(range(256)) * 64 + b"\0\0\0" + bytes(range(255, -1, -1))
    ok("set", "bin", "0", "-", input=payload, server=daemon.addr)
    assert stub_get(daemon, "bin").payload == payload
    assert ok("get", "bin", server=daemon.addr) == payload
    # Larger than a pipe buffer and a read chunk, through stdin too.
    big = os.urandom(3 * MiB + 17)
    ok("update", "bin", "1", "-", input=big, server=daemon.addr)
    assert ok("get", "bin", "1", server=daemon.addr) == big


def test_empty_payload(daemon, tmp_path):
    f = tmp_path / "empty"
    f.write_bytes(b"")
    ok("set", "empty", "0", str(f), server=daemon.addr)
    assert ok("get", "empty", server=daemon.addr) == b""
    r = stub_get(daemon, "empty")
    assert (r.update_level, r.payload) == (0, b"")


@pytest.mark.timeout(300)
def test_big_file_round_trip(daemon, tmp_path):
    mib = alptest.big_mib(200)
    src = tmp_path / "big.in"
    dst = tmp_path / "big.out"
    data = alptest.stamped_payload(mib)
    src.write_bytes(data)
    # Not a terminal: no progress bar, stderr stays empty.
    ok("set", "big", "7", str(src), "--ttl", "5m", server=daemon.addr, timeout=240)
    ok("get", "big", "7", "-o", str(dst), server=daemon.addr, timeout=240)
    assert dst.stat().st_size == len(data)
    assert dst.read_bytes() == data
    del data


def test_ttl(daemon):
    s = daemon.addr
    ok("set", "t1", "0", "-", "--ttl", "20s", input=b"x", server=s)
    r = stub_get(daemon, "t1")
    assert 0 < alptest.ttl_seconds(r) <= 20
    # --ttl after the positional arguments or before them.
    ok("set", "--ttl", "1500ms", "t2", "0", "-", input=b"x", server=s)
    assert 0 < alptest.ttl_seconds(stub_get(daemon, "t2")) <= 1.5
    # Above max_ttl (default 10m): clamped, not refused.
    ok("set", "t3", "0", "-", "--ttl", "2h", input=b"x", server=s)
    assert 0 < alptest.ttl_seconds(stub_get(daemon, "t3")) <= 600
    # Update restarts the TTL from its own --ttl.
    ok("update", "t1", "1", "-", "--ttl", "1h", input=b"y", server=s)
    assert 20 < alptest.ttl_seconds(stub_get(daemon, "t1")) <= 600
    # And the entry does go away.
    wait_until(lambda: ctl("get", "t2", server=s)[0] == EXIT["NOT_FOUND"], 10,
               what="t2 to expire")


# --- the API key -------------------------------------------------------------------


def test_api_key(make_daemon, tmp_path):
    kf = tmp_path / "key"
    kf.write_text("s3cret\n")
    d = make_daemon("api_key_file %s\n" % kf)
    s = d.addr
    fails("UNAUTHENTICATED", "missing api_key metadata", "get", "k", server=s)
    fails("PERMISSION_DENIED", "invalid api_key", "get", "k", server=s, key="wrong")
    # The key from the environment, and from a file (which wins).
    ok("set", "k", "0", "-", input=b"keyed", server=s, key="s3cret")
    assert ok("--api-key-file", str(kf), "get", "k", server=s, key="wrong") == b"keyed"
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    rc, out, err = ctl("--api-key-file", str(wrong), "get", "k", server=s, key="s3cret")
    assert rc == EXIT["PERMISSION_DENIED"], err
    # Health needs no key.
    assert ok("health", server=s) == b"SERVING\n"


# --- node mode --------------------------------------------------------------------


def test_through_a_node(make_pair):
    central, node = make_pair()
    payload = bytes(range(256)) * 1000
    ok("set", "n1", "0", "-", input=payload, server=central.addr)
    assert ok("get", "n1", server=node.addr) == payload
    assert ok("get", "n1", "0", server=node.addr) == payload
    # Writes through the node reach central; the node serves the new level.
    ok("update", "n1", "1", "-", input=b"next", server=node.addr)
    assert stub_get(central, "n1").payload == b"next"
    assert ok("get", "n1", "1", server=node.addr) == b"next"
    fails("FAILED_PRECONDITION", "update level mismatch: expected 1, got 0",
          "get", "n1", "0", server=node.addr)
    fails("NOT_FOUND", "shared data not found for session none", "get", "none",
          server=node.addr)
    # Central gone: the node fails fast with its own message.
    central.stop()
    rc, out, err = ctl("get", "other", server=node.addr)
    assert rc == EXIT["UNAVAILABLE"] and err.startswith(
        "alpcrunctl: UNAVAILABLE: central cache unreachable: "), err


# --- the progress bar ---------------------------------------------------------------


def run_on_pty(args, input_path=None, timeout=120):
    """Run alpcrunctl with stderr on a pseudo-terminal (stdout to a pipe);
    (returncode, stdout bytes, what the terminal received)."""
    master, slave = pty.openpty()
    e = dict(os.environ)
    e.pop("METALCORE_API_KEY", None)
    stdin = open(input_path, "rb") if input_path else subprocess.DEVNULL
    p = subprocess.Popen([CTL] + list(args), stdin=stdin, stdout=subprocess.PIPE,
                         stderr=slave, env=e)
    os.close(slave)
    if input_path:
        stdin.close()
    tty = b""
    deadline = time.monotonic() + timeout
    out_chunks = []
    # Read both until the process is done and the terminal is closed.
    fds = [master, p.stdout.fileno()]
    while fds and time.monotonic() < deadline:
        ready, _, _ = select.select(fds, [], [], 1)
        for fd in ready:
            try:
                b = os.read(fd, 1 << 16)
            except OSError:         # EIO: the terminal's last writer left
                b = b""
            if not b:
                fds.remove(fd)
            elif fd == master:
                tty += b
            else:
                out_chunks.append(b)
    os.close(master)
    rc = p.wait(timeout=max(1, deadline - time.monotonic()))
    p.stdout.close()
    return rc, b"".join(out_chunks), tty.decode("utf-8", "replace")


@pytest.mark.timeout(240)
def test_progress_bar_on_a_terminal(daemon, tmp_path):
    mib = 24
    src = tmp_path / "in"
    src.write_bytes(alptest.stamped_payload(mib))
    rc, out, tty = run_on_pty(["-s", daemon.addr, "set", "pb", "0", str(src)])
    assert rc == 0, tty
    assert "100%" in tty and "24.0/24.0 MiB" in tty and tty.endswith("\r\n"), tty
    assert "alpcrunctl:" not in tty
    # Download, to stdout: the bar goes to the terminal, the bytes to stdout.
    rc, out, tty = run_on_pty(["-s", daemon.addr, "get", "pb"])
    assert rc == 0, tty
    assert out == src.read_bytes()
    assert "100%" in tty and "24.0/24.0 MiB" in tty, tty
    # The same payload with stderr not a terminal: no bar at all.
    rc, out, err = ctl("get", "pb", server=daemon.addr)
    assert rc == 0 and err == "" and len(out) == mib * MiB


def test_no_progress_bar_for_small_payloads(daemon, tmp_path):
    src = tmp_path / "in"
    # Exactly 8 MiB is not over; the reply message adds a few bytes of
    # other fields, so the download is checked a little below.
    src.write_bytes(os.urandom(8 * MiB))
    rc, out, tty = run_on_pty(["-s", daemon.addr, "set", "small", "0", str(src)])
    assert rc == 0 and tty == "", tty
    ok("update", "small", "1", "-", input=src.read_bytes()[:8 * MiB - 4096],
       server=daemon.addr)
    rc, out, tty = run_on_pty(["-s", daemon.addr, "get", "small"])
    assert rc == 0 and tty == "" and out == src.read_bytes()[:8 * MiB - 4096], tty


def test_error_on_a_terminal_ends_the_bar_line(daemon, tmp_path):
    src = tmp_path / "in"
    src.write_bytes(os.urandom(12 * MiB))
    ok("set", "dup", "0", "-", input=b"first", server=daemon.addr)
    rc, out, tty = run_on_pty(["-s", daemon.addr, "set", "dup", "0", str(src)])
    assert rc == EXIT["ALREADY_EXISTS"]
    # Whatever the bar drew, the message starts on a line of its own.
    assert ("alpcrunctl: ALREADY_EXISTS: shared data already exists for session dup "
            "at update level 0\r\n") in tty
    assert tty.startswith("alpcrunctl:") or "\r\nalpcrunctl: ALREADY_EXISTS" in tty, tty


# --- watch (the change feed) --------------------------------------------------------


def watch_supported(addr):
    rc, out, err = ctl("--timeout", "2s", "watch", "probe-session", server=addr)
    return rc != EXIT["UNIMPLEMENTED"]


def test_watch(daemon):
    s = daemon.addr
    assert watch_supported(s)
    ok("set", "w-old", "2", "-", input=b"x", server=s)
    e = dict(os.environ)
    e.pop("METALCORE_API_KEY", None)
    p = subprocess.Popen([CTL, "-s", s, "watch"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e)
    lines = []
    buf = bytearray()
    try:
        def read_line():
            # Unbuffered: select() must see every byte not yet taken.
            deadline = time.monotonic() + 10
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                r, _, _ = select.select([p.stdout], [], [], max(0, left))
                assert r, "no notice within 10 s; so far: %r" % lines
                chunk = os.read(p.stdout.fileno(), 4096)
                assert chunk, "watch ended early: %r %s" % (lines, p.stderr.read())
                buf.extend(chunk)
            i = buf.index(b"\n")
            lines.append(buf[:i].decode())
            del buf[:i + 1]
            return lines[-1]
        assert read_line().startswith("seq=1 kind=SNAPSHOT session=w-old level=2 ttl=")
        assert read_line() == "seq=2 kind=SNAPSHOT_END"
        ok("set", "w-new", "0", "-", input=b"y", server=s)
        assert read_line().startswith("seq=3 kind=SET session=w-new level=0 ttl=")
        ok("update", "w-new", "1", "-", input=b"z", server=s)
        assert read_line().startswith("seq=4 kind=UPDATE session=w-new level=1 ttl=")
        ok("delete", "w-new", server=s)
        assert read_line() == "seq=5 kind=DELETE session=w-new level=1"
        # Interrupting is the normal end.
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
        assert p.stderr.read() == b""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_watch_one_session_and_stream_end(make_daemon):
    d = make_daemon()
    assert watch_supported(d.addr)
    s = d.addr
    ok("set", "a", "0", "-", input=b"x", server=s)
    ok("set", "b", "0", "-", input=b"x", server=s)
    # A deadline ends the stream: DEADLINE_EXCEEDED after the snapshot of a.
    rc, out, err = ctl("--timeout", "1s", "watch", "a", server=s)
    lines = out.decode().splitlines()
    assert rc == EXIT["DEADLINE_EXCEEDED"], err
    assert [l.split(" ttl=")[0] for l in lines] == [
        "seq=1 kind=SNAPSHOT session=a level=0", "seq=2 kind=SNAPSHOT_END"], lines


# --- TLS ----------------------------------------------------------------------------


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client
    certificate, all signed by the CA."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=alpcrunctl test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 "extendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (d / (name + ".ext")).write_text(ext)
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + name, cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2",
                "-extfile", name + ".ext", cwd=d)
    return {k: str(d / k) for k in ("ca.pem", "server.pem", "server.key", "client.pem",
                                     "client.key")}


def tls_daemon(make_daemon, tmp_path, client_ca=False):
    """A daemon whose listener speaks TLS (requiring client certificates when
    client_ca)."""
    d = tmp_path / "pki"
    d.mkdir()
    c = make_certs(d)
    conf = "tls_cert %s\ntls_key %s\n" % (c["server.pem"], c["server.key"])
    if client_ca:
        conf += "tls_client_ca %s\n" % c["ca.pem"]
    daemon = make_daemon(conf)
    rc, out, err = ctl("--tls", "--ca", c["ca.pem"], "--cert", c["client.pem"], "--key",
                       c["client.key"], "health", server=daemon.addr)
    assert (rc, out, err) == (0, b"SERVING\n", ""), (rc, err)
    return daemon, c


def test_tls(make_daemon, tmp_path):
    d, c = tls_daemon(make_daemon, tmp_path)
    s = d.addr
    payload = os.urandom(MiB) + b"\0"
    ok("--tls", "--ca", c["ca.pem"], "set", "tls", "0", "-", input=payload, server=s)
    assert ok("--tls", "--ca", c["ca.pem"], "get", "tls", server=s) == payload
    # The name checked is the host of -s: localhost is in the certificate.
    port = s.rsplit(":", 1)[1]
    assert ok("--tls", "--ca", c["ca.pem"], "get", "tls",
              server="localhost:" + port) == payload
    # --server-name: the name checked instead (and sent as SNI).
    assert ok("--tls", "--ca", c["ca.pem"], "--server-name", "localhost", "get", "tls",
              server=s) == payload
    rc, out, err = ctl("--tls", "--ca", c["ca.pem"], "--server-name", "other.example",
                       "get", "tls", server=s)
    assert rc == EXIT["UNAVAILABLE"] and "hostname mismatch" in err, err
    # Not trusted without the CA; cleartext is refused by a TLS listener.
    rc, out, err = ctl("--tls", "get", "tls", server=s)
    assert rc == EXIT["UNAVAILABLE"] and err.startswith(
        "alpcrunctl: UNAVAILABLE: %s unreachable: " % s) and "verify" in err, err
    rc, out, err = ctl("get", "tls", server=s)
    assert rc == EXIT["UNAVAILABLE"], err


def test_mtls(make_daemon, tmp_path):
    d, c = tls_daemon(make_daemon, tmp_path, client_ca=True)
    s = d.addr
    mtls = ["--tls", "--ca", c["ca.pem"], "--cert", c["client.pem"], "--key", c["client.key"]]
    ok(*mtls, "set", "m", "0", "-", input=b"mutual", server=s)
    assert ok(*mtls, "get", "m", server=s) == b"mutual"
    # No client certificate: the handshake fails.
    rc, out, err = ctl("--tls", "--ca", c["ca.pem"], "get", "m", server=s)
    assert rc == EXIT["UNAVAILABLE"], err
    # A key that does not match the certificate is a local error.
    rc, out, err = ctl("--tls", "--ca", c["ca.pem"], "--cert", c["client.pem"], "--key",
                       c["server.key"], "get", "m", server=s)
    assert rc == 1 and err.startswith("alpcrunctl: --tls: "), err


# --- ls: the sessions held, from the change feed's snapshot -----------------------


def test_ls_table_json_and_prefix(daemon):
    s = daemon.addr
    ok("set", "model-b", "2", "-", input=b"y" * 3000, server=s)
    ok("set", "model-a", "7", "-", "--ttl", "90s", input=b"x" * 10, server=s)
    ok("set", "other", "0", "-", input=b"z", server=s)
    ok("delete", "other", server=s)                 # a tombstone: not listed
    ok("set", 'q"uote', "1", "-", input=b"q", server=s)
    lines = ok("ls", server=s).decode().splitlines()
    assert lines[0].split() == ["SESSION", "LEVEL", "BYTES", "TTL"]
    rows = [l.split() for l in lines[1:]]
    assert [r[:3] for r in rows] == [["model-a", "7", "10"], ["model-b", "2", "3000"],
                                     ['q"uote', "1", "1"]]        # sorted by id
    assert 0 < float(rows[0][3].rstrip("s")) <= 90
    j = json.loads(ok("ls", "model", "-o", "json", server=s))
    assert [(x["session"], x["level"], x["bytes"]) for x in j] == [
        ("model-a", 7, 10), ("model-b", 2, 3000)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", x["generation"]) for x in j)
    assert [x["session"] for x in json.loads(ok("ls", "-o", "json", server=s))][-1] == 'q"uote'
    assert ok("ls", "nothing-here", server=s).decode().splitlines()[1:] == []
    assert json.loads(ok("ls", "nothing-here", "-o", "json", server=s)) == []


def test_ls_refusals(make_pair):
    assert "ls: -o takes table or json: yaml" in usage_error("ls", "-o", "yaml")
    assert "ls: expected at most a prefix" in usage_error("ls", "a", "b")
    # a node without prefetch serves no change feed: said, not an empty list
    central, node = make_pair()
    rc, out, err = ctl("ls", server=node.addr)
    assert rc == EXIT["UNIMPLEMENTED"] and out == b"", (rc, err)
    assert err.startswith("alpcrunctl: UNIMPLEMENTED: "), err


# --- top: the status pages of daemons, live --------------------------------------


def stdout_on_pty(args, timeout=60):
    """Run alpcrunctl with stdout on a pseudo-terminal; (rc, what it got)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([CTL] + list(args), stdin=subprocess.DEVNULL, stdout=slave,
                         stderr=subprocess.PIPE)
    os.close(slave)
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 1)
        if not r:
            if p.poll() is not None:
                break
            continue
        try:
            b = os.read(master, 1 << 16)
        except OSError:
            break
        if not b:
            break
        got += b
    os.close(master)
    return p.wait(timeout=10), got.decode("utf-8", "replace")


def test_top_off_a_terminal_one_line_per_daemon(make_pair):
    central, node = make_pair()
    central.stub().SetSharedData(sd("t", 1, b"v"), timeout=10)
    mc, mn = "127.0.0.1:%d" % central.metrics_port, "127.0.0.1:%d" % node.metrics_port
    stop = threading.Event()

    def gets():
        st = node.stub()
        while not stop.is_set():
            st.GetSharedData(sd("t"), timeout=10)
    t = threading.Thread(target=gets, daemon=True)
    t.start()
    try:
        out = ok("top", "--interval", "300ms", "--count", "3", mc, mn, "127.0.0.1:1")
    finally:
        stop.set()
        t.join(10)
    lines = out.decode().splitlines()
    assert len(lines) == 9, lines                  # three daemons, three times
    assert "\033" not in out.decode()
    last = lines[-3:]
    assert last[0].startswith(mc + " central get/s=")
    assert last[1].startswith(mn + " node get/s=")
    assert last[2] == "127.0.0.1:1 unreachable: no answer"
    rate = float(re.search(r" get/s=(\d+)", last[1]).group(1))
    assert rate > 0 and " hit=" in last[1] and "entries=1" in last[1], last[1]


def test_top_on_a_terminal_redraws(make_pair):
    central, node = make_pair()
    rc, got = stdout_on_pty(["top", "--interval", "200ms", "--count", "2",
                             "127.0.0.1:%d" % central.metrics_port,
                             "127.0.0.1:%d" % node.metrics_port])
    assert rc == 0, got
    assert got.count("\033[H\033[2J") == 2                 # redrawn in place
    assert "DAEMON" in got and "get/s" in got and " node " in got, got


def test_top_refusals():
    assert "top: expected the metrics_listen address" in usage_error("top")
    assert "top: expected host:port" in usage_error("top", "nonsense")
    assert "top: --interval: at least 100ms" in usage_error("top", "--interval", "10ms",
                                                            "127.0.0.1:1")
    assert "top: --count" in usage_error("top", "--count", "0", "127.0.0.1:1")


def test_ls_on_a_terminal(daemon):
    ok("set", "tty-a", "3", "-", input=b"x" * 7, server=daemon.addr)
    rc, got = stdout_on_pty(["-s", daemon.addr, "ls"])
    assert rc == 0, got
    lines = [l.split() for l in got.replace("\r", "").splitlines()]
    assert lines[0] == ["SESSION", "LEVEL", "BYTES", "TTL"] and lines[1][:3] == ["tty-a", "3", "7"]
    assert "\033" not in got
