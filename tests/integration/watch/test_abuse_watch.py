"""Abuse on the change feed (WatchSharedData on central, spec §5; issue #9):
watch streams opened and reset by the thousand, in bursts (before the
snapshot starts) and one by one in the middle of a snapshot walk (a scan
cursor open in the backend), while writes make live notices. A watcher
that never reads is test_watch.py's (test_hundred_watchers_one_never_reading).

While the attack runs a prober asks /healthz and Gets "victim" every 50 ms
on a connection of its own (the loop never stalled); afterwards no watcher
is left (alpcrund_watchers 0, alpcrund_watch_queued_bytes 0),
alpcrund_inflight_bytes is back at its baseline, and a new watcher gets the
whole snapshot, in order.
"""
import contextlib
import threading

import grpc
import pytest
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame

import alptest
from alptest import (GetProber, PROBE_LIMIT, RawH2, cache_pb2, cache_pb2_grpc,
                     grpc_frame, sd, wait_until)

# Every test here is an abuse case (-m abuse, pytest.ini), run once per backend.
pytestmark = [pytest.mark.abuse, pytest.mark.all_backends]

N = cache_pb2.SharedDataNotice
WATCH = "/alpcrun.v1.Cache/WatchSharedData"
PAYLOAD = b"still served " * 16
SESSIONS = 2000


class Writer(threading.Thread):
    """Sets new sessions in a loop: live notices for every watcher."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.stop = threading.Event()
        self.writes = 0

    def run(self):
        ch = grpc.insecure_channel(self.d.addr, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = cache_pb2_grpc.CacheStub(ch)
        try:
            while not self.stop.is_set():
                stub.SetSharedData(sd("live-%d" % self.writes, 0, b"v"), timeout=10)
                self.writes += 1
                self.stop.wait(0.01)
        finally:
            ch.close()


@contextlib.contextmanager
def attacked(d):
    p, w = GetProber(d, PAYLOAD), Writer(d)
    p.start()
    w.start()
    try:
        yield p
        # at least two rounds, however quickly the attack went
        wait_until(lambda: p.rounds >= 2, 30, what="the prober to run")
    finally:
        w.stop.set()
        p.stop.set()
        w.join(30)
        p.join(30)
    assert p.rounds > 0 and w.writes > 0
    assert not p.failures, "the daemon stopped answering during the attack: %s" % p.failures[:5]
    assert p.worst < PROBE_LIMIT, "a probe took %.2fs" % p.worst


def watch_headers(h):
    return h.request_headers(WATCH)


def whole_snapshot(d, expect):
    """A new watcher: SNAPSHOT of every session, then SNAPSHOT_END, seq 1.."""
    stub = d.stub()
    got = []
    for n in stub.WatchSharedData(cache_pb2.WatchRequest(), timeout=60):
        got.append(n)
        if n.kind == N.SNAPSHOT_END:
            break
    assert [n.seq for n in got] == list(range(1, len(got) + 1))
    names = {n.session_id for n in got if n.kind == N.SNAPSHOT}
    assert expect <= names, sorted(expect - names)[:5]


@pytest.mark.timeout(300)
def test_thousand_watch_streams_opened_and_reset(make_daemon):
    d = make_daemon("max_concurrent_streams 256\nwatch_buffer 64k\n")
    stub = d.stub()
    stub.SetSharedData(sd("victim", 1, PAYLOAD), timeout=10)
    # a snapshot long enough that resets land in the middle of its walk
    names = {"victim"}
    for i in range(SESSIONS):
        stub.SetSharedData(sd("snap-%05d" % i, 0, b"s" * 40), timeout=10)
        names.add("snap-%05d" % i)
    d.close_channels()
    d.wait_metric(lambda m: m.value("alpcrund_watchers") == 0, 5)
    baseline = d.metric("alpcrund_inflight_bytes")
    body = grpc_frame(b"")              # WatchRequest{}: every session
    opened = 0
    with attacked(d):
        # 1. bursts: HEADERS, the request, RST_STREAM(CANCEL), 125 per
        # connection on 4 connections, in one write each. nghttp2 may answer
        # a burst with GOAWAY (its rapid-reset mitigation): fine.
        for _ in range(4):
            with RawH2(d.port) as h:
                hdrs = watch_headers(h)
                burst = bytearray()
                for _ in range(125):
                    sid = h.new_stream_id()
                    f = HeadersFrame(sid, data=h.encoder.encode(hdrs))
                    f.flags.add("END_HEADERS")
                    burst += f.serialize()
                    burst += DataFrame(sid, data=body, flags=["END_STREAM"]).serialize()
                    burst += RstStreamFrame(sid, error_code=8).serialize()
                    opened += 1
                h.send(bytes(burst))
                with contextlib.suppress(alptest.Closed, OSError):
                    h.pump(0.5)
        # 2. one by one on 4 connections: every other one reset once its
        # snapshot has begun (a scan cursor open in the backend), the others
        # at once
        conns = [RawH2(d.port) for i in range(4)]
        try:
            for i in range(500):
                h = conns[i % 4]
                if h.closed or h.goaways:
                    h.close()
                    h = conns[i % 4] = RawH2(d.port)
                sid = h.start(WATCH)
                h.send_data(sid, body, end_stream=True)
                if i % 2 == 0:
                    st = h.stream(sid)
                    try:
                        h.wait(lambda: st.data or st.done, 10, "the snapshot to begin")
                    except AssertionError:
                        if not (h.closed or h.goaways):
                            raise
                        continue
                h.rst(sid)
                opened += 1
        finally:
            for h in conns:
                h.close()
    assert opened >= 1000
    # nothing left behind
    d.wait_metric(lambda m: m.value("alpcrund_watchers") == 0, 20)
    d.wait_metric(lambda m: m.value("alpcrund_watch_queued_bytes") == 0, 20)
    d.wait_metric(lambda m: m.value("alpcrund_inflight_bytes") == baseline, 20)
    # still a working feed
    whole_snapshot(d, names)
    assert d.stub().GetSharedData(sd("victim"), timeout=10).payload == PAYLOAD
