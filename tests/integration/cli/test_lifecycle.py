"""Spec §7 (signals: SIGTERM/SIGINT drain, SIGHUP reload) and §8 (logs,
/readyz during the drain).

A drain is held open deterministically: a raw HTTP/2 client asks for a
payload and grants no flow-control window beyond the initial 64 KiB, so the
reply is in flight, stalled, until the test opens the window."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import grpc
import pytest

from alptest import (ALPCRUND, GET, MiB, big_mib, health_pb2, RawH2, encode_shared, free_port, grpc_frame, sd,
                     stamped_payload, ttl_seconds, wait_until, SharedData)

LOG_LINE = re.compile(r'^ts=\S+ level=(debug|info|warn|error) msg=("[^"]*"|\S+)( \S+=.*)?$')


def hold_get(d, sid, expect_len):
    """Start a Get whose reply stalls on flow control; returns (h, stream)."""
    h = RawH2(d.port, auto_window=False)
    s = h.start(GET)
    h.send_data(s, grpc_frame(encode_shared(sid)), end_stream=True)
    st = h.stream(s)
    # the server fills the initial 65535-byte window and waits for more
    h.wait(lambda: len(st.data) >= 65535 or st.done, 10, "first 64 KiB of the reply")
    assert not st.done, "a %d-byte reply fit in the initial window?" % expect_len
    return h, st


def release(h, st, timeout=60):
    h.auto_window = True
    h.window_update(0, 1 << 30)
    h.window_update(st.id, 1 << 30)
    h.wait(lambda: st.done, timeout, "the rest of the reply")


def connect_refused_or_unserved(port):
    """True when a new connection to port is refused, or accepted by the
    kernel but not served (no SETTINGS within 1 s, or closed)."""
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
    except ConnectionRefusedError:
        return True
    try:
        c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        c.settimeout(1.0)
        return not c.recv(100)
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        return True
    finally:
        c.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("slow", [False, True], ids=["reads-at-once", "reads-after-final-goaway"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_drain_completes_large_get_in_flight(make_daemon, sig, slow):
    d = make_daemon()
    payload = stamped_payload(big_mib(96))
    d.stub().SetSharedData(sd("drain-big", 7, payload), timeout=120)
    d.close_channels()
    assert d.http_get("/readyz")[0] == 200
    h, st = hold_get(d, "drain-big", len(payload))
    try:
        d.signal(sig)
        # draining: not ready, live, no new connections; the held reply keeps it open
        wait_until(lambda: d.http_get("/readyz")[0] == 503, 5, what="/readyz 503 while draining")
        assert d.http_get("/healthz")[0] == 200
        wait_until(lambda: connect_refused_or_unserved(d.port), 5,
                   what="new connections refused while draining")
        if slow:
            # a slow client: the reply is still in flight after the drain's
            # final GOAWAY, well within shutdown_grace (30 s)
            h.wait(lambda: len(h.goaways) >= 2, 10, "the drain's final GOAWAY")
            assert d.alive()
            assert d.http_get("/readyz")[0] == 503
        release(h, st, 120)
        assert st.grpc_status == 0, st.trailers
        g = SharedData.FromString(st.messages[0][1])
        assert g.update_level == 7 and g.payload == payload
    finally:
        h.close()
    assert d.wait_exit(30) == 0


@pytest.mark.timeout(60)
def test_drain_sends_goaway_in_two_steps(make_daemon):
    d = make_daemon()
    d.stub().SetSharedData(sd("drain-ga", 1, os.urandom(MiB)), timeout=30)
    d.close_channels()
    h, st = hold_get(d, "drain-ga", MiB)
    try:
        d.signal(signal.SIGTERM)
        h.wait(lambda: len(h.goaways) >= 2, 10, "two GOAWAY frames")
        first, last = h.goaways[0], h.goaways[-1]
        assert first[0] == 2 ** 31 - 1, "first GOAWAY names last stream %d" % first[0]
        assert all(code == 0 for _, code, _ in h.goaways), h.goaways
        assert last[0] >= st.id, "final GOAWAY (last %d) drops our stream %d" % (last[0], st.id)
        assert last[0] < 2 ** 31 - 1
    finally:
        h.close()
    assert d.wait_exit(30) == 0


@pytest.mark.timeout(60)
def test_shutdown_grace_bounds_the_drain(make_daemon):
    d = make_daemon("shutdown_grace 1s")
    d.stub().SetSharedData(sd("grace", 1, os.urandom(MiB)), timeout=30)
    d.close_channels()
    h, st = hold_get(d, "grace", MiB)
    try:
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(15)
        elapsed = time.monotonic() - t0
    finally:
        h.close()
    assert rc == 0
    assert elapsed >= 0.8, "exited %.2fs after SIGTERM with a reply still in flight" % elapsed
    assert elapsed < 10


def test_drain_ends_watch_streams_with_unavailable(daemon):
    # §7: the drain ends watch streams with UNAVAILABLE; an open health Watch
    # neither survives the drain nor holds it for the grace period (30 s)
    it = daemon.health_stub().Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
    assert next(it).status == health_pb2.HealthCheckResponse.SERVING
    t0 = time.monotonic()
    daemon.signal(signal.SIGTERM)
    with pytest.raises(grpc.RpcError) as ei:
        for resp in it:          # a NOT_SERVING update may come first
            assert resp.status != health_pb2.HealthCheckResponse.SERVING
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
    assert daemon.wait_exit(25) == 0
    assert time.monotonic() - t0 < 10


def test_sigterm_with_idle_connections_exits_promptly(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("idle-exit", 1, b"x"), timeout=10)
    assert s.GetSharedData(sd("idle-exit"), timeout=10).payload == b"x"
    # the client's connection stays open and idle: it must not hold the drain
    t0 = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(25) == 0
    assert time.monotonic() - t0 < 10, "idle connection held the drain for the grace period"


# --- SIGHUP (§7) -------------------------------------------------------------------------

def _ttl_of_new_entry(d, n):
    s = d.stub()
    sid = "hup-%d-%d" % (n, time.monotonic_ns())
    s.SetSharedData(sd(sid, 1, b"x"), timeout=10)
    return ttl_seconds(s.GetSharedData(sd(sid), timeout=10))


def test_sighup_applies_live_values(make_daemon):
    d = make_daemon("default_ttl 100s\nmax_ttl 200s")
    assert _ttl_of_new_entry(d, 0) > 90
    s = d.stub()
    s.SetSharedData(sd("hup-old", 1, b"x"), timeout=10)
    d.write_config("default_ttl 5s\nmax_ttl 50s")
    d.signal(signal.SIGHUP)
    wait_until(lambda: _ttl_of_new_entry(d, 1) <= 5, 5, what="default_ttl 5s applied")
    s.SetSharedData(sd("hup-clamp", 1, b"x", ttl=150), timeout=10)
    assert 5 < ttl_seconds(s.GetSharedData(sd("hup-clamp"), timeout=10)) <= 50
    # entries already stored keep their own expiry
    assert ttl_seconds(s.GetSharedData(sd("hup-old"), timeout=10)) > 90
    assert d.alive()


def test_sighup_lowering_max_ttl_takes_default_ttl_down(make_daemon):
    """default_ttl left out follows max_ttl down on a reload (and at
    start): lowering max_ttl below default_ttl's 10m default is applied, not
    refused as a conflict; only values both given can conflict."""
    d = make_daemon("")
    assert _ttl_of_new_entry(d, 0) > 500
    start = len(d.log())
    d.write_config("max_ttl 20s")
    d.signal(signal.SIGHUP)
    wait_until(lambda: _ttl_of_new_entry(d, 1) <= 20, 5, what="max_ttl 20s applied")
    assert "default_ttl" not in d.log()[start:]
    assert d.alive()


def test_sighup_restart_only_change_is_logged(make_daemon):
    d = make_daemon("default_ttl 100s")
    new_port = free_port()
    start = len(d.log())
    d.write_config("default_ttl 100s\nlisten 127.0.0.1:%d" % new_port)
    d.signal(signal.SIGHUP)
    m = d.wait_log(r"^.*(listen.*restart|restart.*listen).*$", 5, start)
    assert "listen" in m.group(0)
    # not applied: still serving on the old port, nothing on the new one
    assert d.stub().SetSharedData(sd("still", 1, b"x"), timeout=10) is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", new_port), timeout=2).close()
    assert d.alive()


def test_sighup_mode_change_needs_a_restart(make_daemon):
    """A reload that names another mode is logged as needing a restart and
    changes nothing: a central keeps serving as a central (it used to
    switch to node mode's handlers and crash on the next call)."""
    d = make_daemon("default_ttl 100s")
    s = d.stub()
    s.SetSharedData(sd("before-hup", 1, b"c"), timeout=10)
    start = len(d.log())
    d.write_config("default_ttl 100s\nmode node\nupstream 127.0.0.1:%d" % free_port())
    d.signal(signal.SIGHUP)
    m = d.wait_log(r"^.*changes need a restart.*$", 5, start)
    assert "mode" in m.group(0)
    assert s.GetSharedData(sd("before-hup"), timeout=10).payload == b"c"
    s.SetSharedData(sd("after-hup", 1, b"d"), timeout=10)
    assert s.GetSharedData(sd("after-hup"), timeout=10).payload == b"d"
    assert d.alive()


def test_sighup_broken_file_changes_nothing(make_daemon):
    d = make_daemon("default_ttl 100s")
    conf = d.conf_path
    start = len(d.log())
    d.write_config("default_ttl 5s\n"           # 1: valid, must not be applied
                   "default_ttl banana\n"       # 2
                   "# a comment\n"              # 3
                   "no_such_directive 1\n"      # 4
                   "max_ttl 2x\n")              # 5
    d.signal(signal.SIGHUP)
    for line in (2, 4, 5):
        d.wait_log(r"%s:%d:" % (re.escape(conf), line), 5, start)
    log = d.log()[start:]
    assert not re.search(r"%s:(1|3):" % re.escape(conf), log), log
    assert "no_such_directive" in log and "max_ttl" in log
    assert _ttl_of_new_entry(d, 2) > 90, "a file with errors changed default_ttl"
    assert d.alive()
    # the same change in a clean file applies: the check above was not vacuous
    d.write_config("default_ttl 5s")
    d.signal(signal.SIGHUP)
    wait_until(lambda: _ttl_of_new_entry(d, 3) <= 5, 5, what="default_ttl 5s applied")


def test_log_lines_format(make_daemon):
    d = make_daemon()
    d.stub().SetSharedData(sd("log", 1, b"x"), timeout=10)
    d.write_config("no_such_directive 1")
    start = len(d.log())
    d.signal(signal.SIGHUP)
    d.wait_log(r"no_such_directive", 5, start)
    d.stop()
    lines = [ln for ln in d.log().splitlines() if ln.strip()]
    assert lines, "the daemon logged nothing"
    bad = [ln for ln in lines if not LOG_LINE.match(ln)]
    assert not bad, "log lines not in `ts=… level=… msg=…` form: %r" % bad[:5]


def test_log_target_file_reopened_on_sighup(make_daemon, tmp_path):
    logfile = tmp_path / "alpcrund-target.log"
    conf = "log_target %s\nlog_level info" % logfile
    d = make_daemon(conf)
    wait_until(lambda: logfile.exists(), 5, what="log file created")
    os.rename(logfile, str(logfile) + ".1")
    d.signal(signal.SIGHUP)
    wait_until(lambda: logfile.exists(), 5, what="log file reopened after SIGHUP")
    # a reload with an error logs it to the new file, not the renamed one
    d.write_config(conf + "\nno_such_directive 1")
    d.signal(signal.SIGHUP)
    wait_until(lambda: "no_such_directive" in logfile.read_text(), 5,
               what="error logged to the reopened file")
    assert "no_such_directive" not in open(str(logfile) + ".1").read()


def test_pid_file(make_daemon, tmp_path):
    pidf = tmp_path / "alpcrund.pid"
    d = make_daemon("pid_file %s" % pidf)
    wait_until(lambda: pidf.exists() and pidf.read_text().strip(), 5, what="pid file")
    assert int(pidf.read_text().strip()) == d.pid


# --- open files (§7, §11) -------------------------------------------------------------------

def _nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), (float("inf") if hard == "unlimited" else int(hard))
    raise AssertionError("no open-file limit for %d" % pid)


def test_open_file_limit_raised_to_fit_max_connections(make_daemon):
    if not shutil.which("prlimit"):
        pytest.skip("prlimit (util-linux) is not installed")
    hard = _nofile(os.getpid())[1]
    if hard < 20000:
        pytest.skip("hard open-file limit %s is below what the test needs" % hard)
    # Debian's default soft limit is 1024; start the daemon at 256
    d = make_daemon("max_connections 10000", prefix=["prlimit", "--nofile=256:"])
    soft, _ = _nofile(d.pid)
    assert soft >= 10000, "soft open-file limit %d for max_connections 10000" % soft


def test_refuses_to_start_when_open_files_cannot_fit(tmp_path):
    if not (shutil.which("prlimit") and shutil.which("setpriv")):
        pytest.skip("prlimit and setpriv (util-linux) are needed")
    conf = tmp_path / "fd.conf"
    conf.write_text("listen 127.0.0.1:%d\nmetrics_listen 127.0.0.1:%d\nmax_connections 10000\n"
                    % (free_port(), free_port()))
    # no CAP_SYS_RESOURCE and a hard limit of 256: the limit cannot be raised
    p = subprocess.run(["setpriv", "--bounding-set=-sys_resource", "--inh-caps=-sys_resource",
                        "prlimit", "--nofile=256:256", ALPCRUND, "-c", str(conf)],
                       capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    if "setpriv:" in p.stderr or "prlimit:" in p.stderr:
        pytest.skip("cannot drop CAP_SYS_RESOURCE here: %s" % p.stderr.strip())
    assert p.returncode != 0, p.stdout + p.stderr
    assert re.search(r"open.file|nofile|RLIMIT", p.stdout + p.stderr, re.I), p.stdout + p.stderr
