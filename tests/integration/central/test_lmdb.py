"""The LMDB backend end to end (spec §6): acknowledged writes survive kill -9
byte for byte while entries that expired meanwhile do not come back; a full
map refuses writes with RESOURCE_EXHAUSTED "store full" and a Delete makes
room again, even while a slow reader still holds a large entry; a second
daemon on the same lmdb_path refuses to start; and the event loop answers
Gets while large synced writes commit.

The §4 rules themselves run against this backend too: test_contract.py is
parametrized over both backends (conftest.py)."""
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest

import alptest
from alptest import GET, MiB, RawH2, encode_shared, grpc_frame, sd, wait_until

C = grpc.StatusCode


# Holds the environment at argv[1] open read-only until stdin closes;
# prints mdb_env_open's result.
HOLDER = r"""
import ctypes, sys
lib = ctypes.CDLL("liblmdb.so.0")
env = ctypes.c_void_p()
assert lib.mdb_env_create(ctypes.byref(env)) == 0
lib.mdb_env_set_maxdbs(env, 4)
print(lib.mdb_env_open(env, sys.argv[1].encode(), 0x20000, 0o640), flush=True)
sys.stdin.read()
"""


def lmdb_config(path, map_size="1g", extra=""):
    return ("backend lmdb\nlmdb_path %s\nlmdb_map_size %s\nlmdb_sync on\n%s"
            % (path, map_size, extra))


def payload_for(i, size):
    """Deterministic bytes of entry i: a digest chain, cheap to recompute."""
    seed = hashlib.sha256(b"crash-%d" % i).digest()
    return (seed * (size // len(seed) + 1))[:size]


@pytest.mark.timeout(300)
def test_kill9_keeps_every_acknowledged_write(make_daemon, tmp_path):
    path = str(tmp_path / "db")
    conf = lmdb_config(path)
    d = make_daemon(conf)
    stub = d.stub()
    # Entries whose TTL runs out while the daemon is down.
    short_until = time.monotonic() + 2
    for i in range(20):
        stub.SetSharedData(sd("short-%d" % i, 1, b"s" * 100, ttl=2), timeout=10)
    # A read, so that the dead process leaves a reader slot behind.
    assert stub.GetSharedData(sd("short-0"), timeout=10).payload == b"s" * 100

    acked = {}
    lock = threading.Lock()
    stop = threading.Event()
    next_i = iter(range(1000))

    def writer():
        s = d.stub()
        while not stop.is_set():
            with lock:
                i = next(next_i, None)
            if i is None:
                return
            body = payload_for(i, 1024 + (i * 7919) % (64 * 1024))
            try:
                s.SetSharedData(sd("crash-%d" % i, i % 5, body, ttl=600), timeout=30)
            except grpc.RpcError:
                return          # the daemon is gone
            with lock:
                acked[i] = body

    # Another process with the environment open (read-only, as mdb_stat
    # would be): LMDB then keeps its lock file as it is at the next start,
    # and the reader slot the killed daemon leaves must be cleared by it.
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "0"
    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    # Kill it mid-load: some writes acknowledged, others in flight.
    wait_until(lambda: len(acked) >= 400, 120, what="400 acknowledged writes")
    d.proc.send_signal(signal.SIGKILL)
    d.expect_exit = True
    d.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(60)
    with lock:
        done = dict(acked)
    assert 400 <= len(done) < 1000, len(done)

    # Past the short entries' expiry, while nothing runs.
    wait_until(lambda: time.monotonic() > short_until + 0.5, 10, what="short TTLs")
    d2 = make_daemon(conf)
    d2.wait_log(r"cleared stale LMDB reader slots", timeout=5)
    holder.stdin.close()
    holder.wait(10)
    s2 = d2.stub()
    for i, body in sorted(done.items()):
        r = s2.GetSharedData(sd("crash-%d" % i), timeout=10)
        assert r.update_level == i % 5
        assert r.payload == body, "crash-%d differs after kill -9" % i
    for i in range(20):
        with pytest.raises(grpc.RpcError) as ei:
            s2.GetSharedData(sd("short-%d" % i), timeout=10)
        assert ei.value.code() == C.NOT_FOUND
    # The expired ones are swept soon after start (sweep_interval 1s).
    d2.wait_metric(lambda m: m.value("alpcrund_expired_total") >= 20, timeout=10)
    # Writes in flight at the kill either landed whole or not at all.
    for i in range(1000):
        if i in done:
            continue
        try:
            r = s2.GetSharedData(sd("crash-%d" % i), timeout=10)
        except grpc.RpcError as e:
            assert e.code() == C.NOT_FOUND
            continue
        assert r.payload == payload_for(i, 1024 + (i * 7919) % (64 * 1024))


def fill_until_full(stub, prefix, size):
    """Set entries of `size` until one is refused; returns the stored keys
    and the refusal."""
    stored = []
    body = os.urandom(size)
    for i in range(1000):
        sid = "%s-%d" % (prefix, i)
        try:
            stub.SetSharedData(sd(sid, 1, body, ttl=600), timeout=30)
        except grpc.RpcError as e:
            return stored, body, e
        stored.append(sid)
    raise AssertionError("the store never filled up")


@pytest.mark.timeout(300)
def test_map_full_then_delete_makes_room(make_daemon, tmp_path):
    d = make_daemon(lmdb_config(str(tmp_path / "db"), map_size="16m"))
    stub = d.stub()
    large = alptest.stamped_payload(4)
    stub.SetSharedData(sd("large", 1, large, ttl=600), timeout=30)

    # A slow reader: the default 64 KiB window, never replenished, so the
    # reply of 4 MiB stalls with its lease (and snapshot) held.
    slow = RawH2(d.port, auto_window=False)
    sid = slow.start(GET)
    slow.send_data(sid, grpc_frame(encode_shared(b"large")), end_stream=True)
    st = slow.stream(sid)
    slow.wait(lambda: len(st.data) > 0, 10, "the first bytes of the large reply")

    stored, body, err = fill_until_full(stub, "fill", 1 * MiB)
    assert err.code() == C.RESOURCE_EXHAUSTED, err
    assert "store full" in err.details(), err.details()
    assert len(stored) >= 6
    d.wait_requests("SetSharedData", "RESOURCE_EXHAUSTED", 1)
    # Nothing of the refused write is visible.
    with pytest.raises(grpc.RpcError) as ei:
        stub.GetSharedData(sd("fill-%d" % len(stored)), timeout=10)
    assert ei.value.code() == C.NOT_FOUND
    # Reads are still served.
    assert stub.GetSharedData(sd(stored[0]), timeout=10).payload == body
    assert stub.GetSharedData(sd("large"), timeout=30).payload == large

    # A Delete is never refused, and makes room: writes work again, cycle
    # after cycle, while the slow reader still holds its lease on "large"
    # (its snapshot must not keep the pages freed since from being reused).
    for k in range(6):
        stub.DeleteSharedData(sd(stored[k]), timeout=10)
        stub.SetSharedData(sd("again-%d" % k, 1, body, ttl=600), timeout=30)
        with pytest.raises(grpc.RpcError) as ei:
            stub.SetSharedData(sd("one-more", 1, body, ttl=600), timeout=30)
        assert ei.value.code() == C.RESOURCE_EXHAUSTED
        assert "store full" in ei.value.details()
    assert st.grpc_status is None       # still stalled

    # The slow reader, reading at last, gets the original bytes.
    slow.auto_window = True
    slow.window_update(0, 16 * MiB)
    slow.window_update(sid, 16 * MiB)
    st = slow.finish(sid, timeout=60)
    assert st.grpc_status == 0, st
    msgs = st.messages
    assert len(msgs) == 1
    reply = alptest.cache_pb2.SharedData.FromString(msgs[0][1])
    assert reply.payload == large
    slow.close()
    # Deleting the large entry, now read, makes room for one more.
    stub.DeleteSharedData(sd("large"), timeout=10)
    stub.SetSharedData(sd("one-more", 1, body, ttl=600), timeout=30)
    assert d.alive()


def test_second_daemon_on_same_path_refused(make_daemon, tmp_path):
    conf = lmdb_config(str(tmp_path / "db"))
    d1 = make_daemon(conf)
    d1.stub().SetSharedData(sd("k", 1, b"v"), timeout=10)
    d2 = make_daemon(conf, start=False)
    d2.expect_exit = True
    with pytest.raises(Exception, match="exited with 1"):
        d2.start()
    assert d2.proc.returncode == 1
    log = d2.log()
    assert "in use by another alpcrund" in log, log
    assert "pid %d" % d1.pid in log, log
    assert str(tmp_path / "db") in log, log
    # The first one is undisturbed.
    assert d1.stub().GetSharedData(sd("k"), timeout=10).payload == b"v"
    d1.stub().SetSharedData(sd("k2", 1, b"v"), timeout=10)
    # Once it is gone, the path is free.
    d1.stop()
    d3 = make_daemon(conf)
    assert d3.stub().GetSharedData(sd("k2"), timeout=10).payload == b"v"


@pytest.mark.timeout(600)
def test_loop_answers_gets_during_synced_writes(make_daemon, tmp_path):
    n, size = 100, alptest.big_mib(16) * MiB
    d = make_daemon(lmdb_config(str(tmp_path / "db"), map_size="4g"))
    stub = d.stub()
    stub.SetSharedData(sd("other", 1, b"o" * 1000), timeout=10)
    big = os.urandom(size)
    left = iter(range(n))
    lock = threading.Lock()
    errors = []
    writing = threading.Event()
    finished = threading.Event()

    def writer():
        s = d.stub()
        while True:
            with lock:
                i = next(left, None)
            if i is None:
                return
            writing.set()
            try:
                s.SetSharedData(sd("big-%d" % i, 1, big, ttl=600), timeout=120)
            except grpc.RpcError as e:
                errors.append(e)
                return

    gets = []

    def reader():
        s = d.stub()
        writing.wait(30)
        while not finished.is_set():
            r = s.GetSharedData(sd("other"), timeout=30)
            assert r.payload == b"o" * 1000
            gets.append(time.monotonic())

    writers = [threading.Thread(target=writer) for _ in range(8)]
    rd = threading.Thread(target=reader)
    rd.start()
    t0 = time.monotonic()
    for t in writers:
        t.start()
    for t in writers:
        t.join(500)
    t1 = time.monotonic()
    finished.set()
    rd.join(60)
    assert not errors, errors[0]
    during = [t for t in gets if t0 <= t <= t1]
    # Answered while the writes committed (not how fast: just answered).
    assert len(during) >= 20, "only %d Gets answered during %.1f s of writes" % (
        len(during), t1 - t0)
    d.wait_requests("SetSharedData", "OK", n + 1, timeout=10)
    assert stub.GetSharedData(sd("big-%d" % (n - 1)), timeout=60).payload == big


def test_unusable_lmdb_path_refused(make_daemon, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("not a directory\n")
    d = make_daemon(lmdb_config(str(plain / "db")), start=False)
    d.expect_exit = True
    with pytest.raises(Exception, match="exited with 1"):
        d.start()
    log = d.log()
    assert "cannot open the backend" in log, log
    assert "%s: cannot create the directory" % (plain / "db") in log, log


@pytest.fixture
def small_fs(tmp_path):
    """A tmpfs of 8 MiB mounted for the test (root only: the suite runs as
    root in CI), unmounted after it."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % r.stderr.strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_resource_exhausted_and_recovers(make_daemon, small_fs):
    """A write the filesystem has no room for (LMDB reports the short write
    as EIO) is RESOURCE_EXHAUSTED "store full", not INTERNAL; what was
    stored stays readable byte for byte, the refused key holds nothing, and
    the same write goes through once space is back."""
    filler = small_fs / "filler"
    filler.write_bytes(b"f" * (3 * MiB))
    d = make_daemon(lmdb_config(str(small_fs / "db"), "64m"))
    s = d.stub()
    stored, refused = [], None
    for i in range(12):
        p = payload_for(i, MiB)
        try:
            s.SetSharedData(sd("fill-%d" % i, 1, p), timeout=20)
            stored.append(i)
        except grpc.RpcError as e:
            assert e.code() == C.RESOURCE_EXHAUSTED, (e.code(), e.details())
            assert e.details().startswith(
                "store full: no space left on the filesystem of lmdb_path"), e.details()
            refused = i
            break
    assert refused is not None and stored, "the filesystem never filled"
    for i in stored:
        assert s.GetSharedData(sd("fill-%d" % i), timeout=10).payload == payload_for(i, MiB)
    with pytest.raises(grpc.RpcError) as ei:
        s.GetSharedData(sd("fill-%d" % refused), timeout=10)
    assert ei.value.code() == C.NOT_FOUND
    filler.unlink()
    s.SetSharedData(sd("fill-%d" % refused, 1, payload_for(refused, MiB)), timeout=20)
    assert s.GetSharedData(sd("fill-%d" % refused), timeout=10).payload == \
        payload_for(refused, MiB)
    assert d.alive()
