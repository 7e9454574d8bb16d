"""Spec §5 "Tiers": a node with `prefetch on` serves WatchSharedData to the
nodes behind it (a snapshot of its copies, then live notices, central's
incarnation in each), so prefetch works at every tier; a node whose
upstream serves no feed says so (log, /readyz detail). Real daemons on
loopback: central -> node A -> node B, and grpcio clients."""
import queue
import threading

import grpc
import pytest

from alptest import cache_pb2, sd, wait_until

C = grpc.StatusCode
N = cache_pb2.SharedDataNotice
NODE = "mode node\nbackend memory\nupstream %s\n"
PREFETCH = "prefetch on\nlog_level debug\n"
NO_FEED = "prefetch: upstream serves no change feed"


def chain(make_daemon, central=""):
    """central -> A -> B, both nodes with prefetch on, both feeds up."""
    c = make_daemon(central)
    a = make_daemon(NODE % c.addr + PREFETCH)
    b = make_daemon(NODE % a.addr + PREFETCH)
    for d in (a, b):
        d.wait_log(r'msg="change feed snapshot received"', 30)
    return c, a, b


def watch(daemon, timeout=10):
    """A WatchSharedData stream on daemon, read by a thread into a queue."""
    q = queue.Queue()
    it = daemon.stub().WatchSharedData(cache_pb2.WatchRequest())

    def run():
        try:
            for n in it:
                q.put(n)
        except grpc.RpcError as e:
            q.put(e)
    threading.Thread(target=run, daemon=True).start()

    def next_notice(t=timeout):
        n = q.get(timeout=t)
        if isinstance(n, grpc.RpcError):
            raise AssertionError("the stream ended: %s %s" % (n.code(), n.details()))
        return n
    return it, q, next_notice


def get_meta(stub, sid, level=None):
    r, call = stub.GetSharedData.with_call(sd(sid, level), timeout=10)
    meta = dict(call.initial_metadata())
    return r, meta


def counters(d):
    m = d.metrics()
    return (m.value("alpcrund_cache_hits_total"),
            m.value("alpcrund_cache_misses_total"),
            m.value("alpcrund_upstream_fetches_total"))


def test_an_update_at_central_reaches_the_second_tier(make_daemon):
    c, a, b = chain(make_daemon)
    cs, bs = c.stub(), b.stub()
    cs.SetSharedData(sd("s", 1, b"one", ttl=300), timeout=10)
    cs.SetSharedData(sd("cold", 1, b"c", ttl=300), timeout=10)
    assert bs.GetSharedData(sd("s"), timeout=10).payload == b"one"
    assert counters(a) == (0, 1, 1)
    assert counters(b) == (0, 1, 1)
    mark_a, mark_b = len(a.log()), len(b.log())

    cs.UpdateSharedData(sd("s", 2, b"two"), timeout=10)
    cs.UpdateSharedData(sd("cold", 2, b"c2"), timeout=10)   # held nowhere
    a.wait_log(r'msg=prefetched session=s level=2', 30, mark_a)
    b.wait_log(r'msg=prefetched session=s level=2', 30, mark_b)
    # B's prefetch was a hit at A (A had fetched level 2 already)
    assert counters(a) == (1, 1, 2)
    assert counters(b) == (0, 1, 2)
    # A Get through B without a level: level 2, from B's own copy
    r = bs.GetSharedData(sd("s"), timeout=10)
    assert (r.update_level, r.payload) == (2, b"two")
    assert counters(b) == (1, 1, 2)
    # each tier fetched each level once; "cold" was fetched by nobody
    assert c.requests("GetSharedData", "OK") == 2
    assert a.metric("alpcrund_prefetches_total") == 1
    assert b.metric("alpcrund_prefetches_total") == 1

    # A Delete at central drops A's copy, then B's.
    b.wait_metric(lambda m: m.value("alpcrund_entries") == 1)
    cs.DeleteSharedData(sd("s"), timeout=10)
    b.wait_metric(lambda m: m.value("alpcrund_entries") == 0, timeout=30)
    with pytest.raises(grpc.RpcError) as e:
        bs.GetSharedData(sd("s"), timeout=10)
    assert e.value.code() == C.NOT_FOUND
    assert counters(b)[1] == 2          # a miss: nothing held any more


def test_a_node_serves_the_feed_of_its_copies(make_daemon):
    c = make_daemon()
    a = make_daemon(NODE % c.addr + PREFETCH)
    a.wait_log(r'msg="change feed snapshot received"', 30)
    cs, as_ = c.stub(), a.stub()
    cs.SetSharedData(sd("s1", 1, b"a", ttl=300), timeout=10)
    cs.SetSharedData(sd("s2", 3, b"b", ttl=300), timeout=10)
    cs.SetSharedData(sd("notheld", 1, b"x", ttl=300), timeout=10)
    gens = {}
    for sid in ("s1", "s2"):
        _, meta = get_meta(as_, sid)
        gens[sid] = int(meta["alpcrun-generation"], 16)
        inc = int(meta["alpcrun-incarnation"], 16)
    _, cmeta = get_meta(cs, "s1")
    assert inc == int(cmeta["alpcrun-incarnation"], 16)    # central's, passed down

    it, q, nxt = watch(a)
    snap = []
    while True:
        n = nxt()
        snap.append(n)
        if n.kind == N.SNAPSHOT_END:
            break
    # only the node's copies, with central's generation and incarnation
    got = {(n.session_id, n.update_level, n.generation, n.incarnation)
           for n in snap if n.kind == N.SNAPSHOT}
    assert got == {("s1", 1, gens["s1"], inc), ("s2", 3, gens["s2"], inc)}
    assert [n.seq for n in snap] == [1, 2, 3]
    assert snap[-1].incarnation == inc
    assert all(0 < n.ttl.seconds <= 300 for n in snap[:2])

    # live: central updates s1, A prefetches it, and says so
    cs.UpdateSharedData(sd("s1", 2, b"a2"), timeout=10)
    n = nxt(30)
    assert (n.kind in (N.SET, N.UPDATE), n.session_id, n.update_level, n.seq,
            n.incarnation) == (True, "s1", 2, 4, inc)
    _, cmeta = get_meta(cs, "s1", 2)
    assert n.generation == int(cmeta["alpcrun-generation"], 16) != gens["s1"]
    # central deletes s2: A drops its copy and says so
    cs.DeleteSharedData(sd("s2"), timeout=10)
    n = nxt(30)
    assert (n.kind, n.session_id, n.update_level, n.seq, n.incarnation) == \
        (N.DELETE, "s2", 3, 5, inc)
    # a session A does not hold makes no notice on A
    cs.UpdateSharedData(sd("notheld", 2, b"y"), timeout=10)
    with pytest.raises(queue.Empty):
        q.get(timeout=1.5)
    it.cancel()
    wait_until(lambda: a.metric("alpcrund_watchers") == 0, 10,
               what="the watcher to go")


def test_a_node_without_prefetch_serves_no_feed(make_pair):
    _, n = make_pair()
    it, _, nxt = watch(n)
    with pytest.raises(AssertionError) as e:
        nxt()
    assert "UNIMPLEMENTED" in str(e.value) and "prefetch on" in str(e.value)


def test_an_upstream_without_the_feed_is_said(make_daemon):
    c = make_daemon()
    a = make_daemon(NODE % c.addr)                       # no prefetch: no feed
    b = make_daemon(NODE % a.addr + PREFETCH)
    b.wait_log(r'msg="upstream serves no change feed', 30)
    c.stub().SetSharedData(sd("s", 1, b"one", ttl=300), timeout=10)
    assert b.stub().GetSharedData(sd("s"), timeout=10).payload == b"one"
    # ready (it serves), with the detail; said once, however many retries
    st, body = b.http_get("/readyz")
    assert st == 200 and body.startswith("ready\n" + NO_FEED), body
    wait_until(lambda: b.log().count("change feed unavailable") >= 4, 30,
               what="the node to ask again")
    assert b.log().count("upstream serves no change feed") == 1
    # A gets its feed: B's next attempt finds it, and the detail goes
    mark = len(b.log())
    a.stop()
    a.write_config(NODE % c.addr + PREFETCH)
    a.start()
    b.wait_log(r'msg="change feed available upstream now"', 30, mark)
    assert b.http_get("/readyz") == (200, "ready\n")


def test_a_new_central_store_restarts_the_feed_below(make_daemon):
    c, a, b = chain(make_daemon, "backend memory\n")
    c.stub().SetSharedData(sd("f", 1, b"old bytes", ttl=300), timeout=10)
    assert b.stub().GetSharedData(sd("f"), timeout=10).payload == b"old bytes"
    mark = len(b.log())
    c.stop()
    c.start()                                   # memory: another store
    c.stub().SetSharedData(sd("f", 1, b"NEW BYTES", ttl=300), timeout=10)
    # A learns it and ends B's stream; B resubscribes, learns it from the
    # snapshot and no longer serves its old copy
    b.wait_log(r"message=\"the central cache's store changed\"", 30, mark)
    b.wait_log(r"central cache's store changed: copies", 30, mark)
    wait_until(lambda: b.stub().GetSharedData(sd("f"), timeout=10).payload ==
               b"NEW BYTES", 15, what="B to serve the new store's level 1")
