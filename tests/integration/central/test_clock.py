"""Spec §4: expiry runs on the monotonic clock. The daemon runs under
libfaketime with its wall clock stepped two days forward, then two days
back, while entries live: they neither expire early nor outlive their TTL.
(The LMDB backend's wall-clock expiry across a restart has its own test in
test_lmdb.py.)"""
import os
import signal
import time

import grpc
import pytest

from alptest import sd, ttl_seconds, wait_until

C = grpc.StatusCode
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def step_wall_clock(d, stamp, offset, day):
    """Set the daemon's wall clock offset and see it in its log: SIGHUP
    logs a line stamped with the (faked) wall clock."""
    with open(stamp, "w") as f:
        f.write(offset)
    start = len(d.log())
    d.signal(signal.SIGHUP)
    m = d.wait_log(r'^ts=(\d{4}-\d\d-\d\d)T\S+ level=info msg=reloading ', 5, start)
    assert m.group(1) == day, "the daemon's wall clock reads %s, not %s" % (m.group(1), day)


def test_stepping_the_wall_clock_moves_no_expiry(make_daemon, tmp_path):
    assert os.path.exists(LIBFAKETIME), "libfaketime is not installed (scripts/install-deps)"
    stamp = tmp_path / "faketime"
    stamp.write_text("+0")
    env = {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(stamp),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        # under AddressSanitizer: libfaketime is preloaded before it
        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0",
    }
    d = make_daemon("max_ttl 1h", env=env)
    s = d.stub()
    day = lambda delta: time.strftime("%Y-%m-%d", time.gmtime(time.time() + delta))
    s.SetSharedData(sd("long", 1, b"l", ttl=600), timeout=10)
    t_short = time.monotonic()
    s.SetSharedData(sd("short", 1, b"s", ttl=4), timeout=10)

    # Two days forward: nothing expires with it.
    step_wall_clock(d, stamp, "+2d", day(2 * 86400))
    assert ttl_seconds(s.GetSharedData(sd("long"), timeout=10)) > 590
    assert s.GetSharedData(sd("short"), timeout=10).payload == b"s"

    # Two days back: "short" still expires about 4 s after its Set.
    step_wall_clock(d, stamp, "-2d", day(-2 * 86400))

    def gone():
        try:
            s.GetSharedData(sd("short"), timeout=10)
            return False
        except grpc.RpcError as e:
            assert e.code() == C.NOT_FOUND, e
            return True
    wait_until(gone, 15, what="short expired")
    took = time.monotonic() - t_short
    assert 3.9 <= took < 12, "short (ttl 4 s) expired %.1f s after its Set" % took
    assert 580 < ttl_seconds(s.GetSharedData(sd("long"), timeout=10)) <= 600
    assert d.alive()
