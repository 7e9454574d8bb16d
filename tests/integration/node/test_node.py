"""Spec §5 (node mode), §2, §7: a node cache in front of a central, both
real daemons driven by grpcio; coalescing against a fake central written
here (grpcio server) that holds its replies; faults (central killed,
restarted, stopped, replaced by a listener that never answers); LRU
eviction; auth on both hops; SIGHUP; several hosts in network namespaces."""
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from concurrent import futures

import grpc
import pytest

import alptest
from alptest import (ALPCRUND, GET, MiB, SharedData, cache_pb2_grpc,
                     encode_shared, grpc_frame, sd, wait_until)

C = grpc.StatusCode
OPTIONS = [("grpc.max_send_message_length", 300 * MiB),
           ("grpc.max_receive_message_length", 300 * MiB),
           ("grpc.use_local_subchannel_pool", 1)]


def call(fn, req, **kw):
    """(code, reply or details)."""
    kw.setdefault("timeout", 30)
    try:
        return C.OK, fn(req, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()


def get(stub, sid, level=None, **kw):
    return call(stub.GetSharedData, sd(sid, level), **kw)


def ok_get(stub, sid, level=None, **kw):
    code, r = get(stub, sid, level, **kw)
    assert code == C.OK, (sid, level, code, r)
    return r


def counters(node):
    m = node.metrics()
    return {k: m.value("alpcrund_" + k + "_total") for k in
            ("cache_hits", "cache_misses", "upstream_fetches", "coalesced_waits",
             "evictions")}


def delta(before, after):
    return {k: after[k] - before[k] for k in before}


def ttl_s(r):
    return r.ttl.seconds + r.ttl.nanos / 1e9


# --- the Get decision table (spec §5) -------------------------------------------


def test_get_nothing_held_level_given_fetches_and_stores(make_pair):
    central, node = make_pair()
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("t1", 4, b"four", ttl=60), timeout=10)
    before = counters(node)
    r = ok_get(ns, "t1", 4)
    assert (r.session_id, r.update_level, r.payload) == ("t1", 4, b"four")
    assert r.HasField("update_level")
    assert delta(before, counters(node))["upstream_fetches"] == 1
    # stored: the same Get is now a hit, and central is not asked
    r = ok_get(ns, "t1", 4)
    assert r.payload == b"four"
    d = delta(before, counters(node))
    assert d["upstream_fetches"] == 1 and d["cache_hits"] == 1 and d["cache_misses"] == 1
    assert node.metric("alpcrund_entries") == 1


def test_get_nothing_held_error_passed_through_nothing_stored(make_pair):
    central, node = make_pair()
    cs, ns = central.stub(), node.stub()
    # NOT_FOUND from central, passed through unchanged, not cached
    want = get(cs, "t2", 1)
    assert want[0] == C.NOT_FOUND
    before = counters(node)
    assert get(ns, "t2", 1) == want
    assert get(ns, "t2", 1) == want
    assert delta(before, counters(node))["upstream_fetches"] == 2
    # FAILED_PRECONDITION from central (it holds level 3): passed through
    cs.SetSharedData(sd("t2", 3, b"x"), timeout=10)
    want = get(cs, "t2", 5)
    assert want == (C.FAILED_PRECONDITION, "update level mismatch: expected 3, got 5")
    assert get(ns, "t2", 5) == want
    assert node.metric("alpcrund_entries") == 0


def test_get_held_same_level_served_locally(make_pair):
    central, node = make_pair()
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("t3", 0, b"zero"), timeout=10)
    ok_get(ns, "t3", 0)
    # central moves on behind the node's back: the node's copy of level 0
    # is still the right answer for level 0 (levels name immutable content)
    cs.UpdateSharedData(sd("t3", 1, b"one"), timeout=10)
    before = counters(node)
    r = ok_get(ns, "t3", 0)
    assert (r.update_level, r.payload) == (0, b"zero")
    d = delta(before, counters(node))
    assert d["upstream_fetches"] == 0 and d["cache_hits"] == 1


def test_get_held_older_level_fetches_newer_and_replaces(make_pair):
    central, node = make_pair()
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("t4", 1, b"one"), timeout=10)
    ok_get(ns, "t4", 1)
    cs.UpdateSharedData(sd("t4", 2, b"two"), timeout=10)
    before = counters(node)
    r = ok_get(ns, "t4", 2)
    assert (r.update_level, r.payload) == (2, b"two")
    assert delta(before, counters(node))["upstream_fetches"] == 1
    # level 2 replaced level 1: one entry, no-level Gets see 2, level 1 is
    # now older than what is held
    assert node.metric("alpcrund_entries") == 1
    assert ok_get(ns, "t4").update_level == 2
    assert get(ns, "t4", 1) == (C.FAILED_PRECONDITION,
                                "update level mismatch: expected 2, got 1")
    # an error for a newer level stores nothing and keeps what is held
    assert get(ns, "t4", 7)[0] == C.FAILED_PRECONDITION
    assert ok_get(ns, "t4", 2).payload == b"two"


def test_get_held_newer_level_refused_locally(make_pair):
    central, node = make_pair()
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("t5", 6, b"six"), timeout=10)
    ok_get(ns, "t5", 6)
    before = counters(node)
    assert get(ns, "t5", 2) == (C.FAILED_PRECONDITION,
                                "update level mismatch: expected 6, got 2")
    assert delta(before, counters(node))["upstream_fetches"] == 0
    node.wait_requests("GetSharedData", "FAILED_PRECONDITION", 1)


def test_get_no_level_held_served_locally(make_pair):
    central, node = make_pair()
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("t6", 0, b"a"), timeout=10)
    ok_get(ns, "t6")
    # staleness (spec §5): without the change feed the node serves the
    # newest level it knows until its copy expires
    cs.UpdateSharedData(sd("t6", 1, b"b"), timeout=10)
    before = counters(node)
    r = ok_get(ns, "t6")
    assert (r.update_level, r.payload) == (0, b"a")
    assert delta(before, counters(node))["upstream_fetches"] == 0


def test_get_no_level_nothing_held_fetches_and_stores(make_pair):
    central, node = make_pair()
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("t7", 9, b"nine" * 3000), timeout=10)
    before = counters(node)
    r = ok_get(ns, "t7")
    assert (r.update_level, r.payload) == (9, b"nine" * 3000)
    r = ok_get(ns, "t7", 9)
    d = delta(before, counters(node))
    assert d["upstream_fetches"] == 1 and d["cache_hits"] == 1


def test_get_invalid_session_refused_locally(make_pair):
    central, node = make_pair()
    ns = node.stub()
    before = counters(node)
    assert get(ns, "") == (C.INVALID_ARGUMENT, "session_id is required")
    code, msg = get(ns, "a b")
    assert code == C.INVALID_ARGUMENT and "printable ASCII" in msg
    assert get(ns, "x" * 257)[0] == C.INVALID_ARGUMENT
    assert delta(before, counters(node))["upstream_fetches"] == 0


def test_ttl_of_a_copy_is_centrals_remaining_clamped_to_max_ttl(make_pair):
    central, node = make_pair(node="max_ttl 20s\ndefault_ttl 20s\n")
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("ttl-long", 0, b"x", ttl=300), timeout=10)
    cs.SetSharedData(sd("ttl-short", 0, b"y", ttl=8), timeout=10)
    r = ok_get(ns, "ttl-long")
    assert 19 < ttl_s(r) <= 20, r.ttl
    r = ok_get(ns, "ttl-short")
    assert 6 < ttl_s(r) <= 8, r.ttl
    # from the stored copy too
    r = ok_get(ns, "ttl-long")
    assert 18 < ttl_s(r) <= 20, r.ttl


def test_copy_expires_with_central_entry(make_pair):
    central, node = make_pair(node="sweep_interval 100ms\n")
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("exp", 0, b"x", ttl=1.5), timeout=10)
    assert ok_get(ns, "exp").payload == b"x"
    time.sleep(1.7)
    before = counters(node)
    assert get(ns, "exp")[0] == C.NOT_FOUND
    assert delta(before, counters(node))["upstream_fetches"] == 1


# --- write-through (spec §5 "Writes") ---------------------------------------------


def test_write_through_status_and_message_unchanged(make_pair):
    central, node = make_pair()
    cs, ns = central.stub(), node.stub()
    assert call(ns.SetSharedData, sd("w1", 1, b"p1"))[0] == C.OK
    assert ok_get(cs, "w1").payload == b"p1"
    cases = [
        ("SetSharedData", sd("w1", 1, b"other")),            # ALREADY_EXISTS
        ("SetSharedData", sd("w1")),                          # INVALID_ARGUMENT
        ("UpdateSharedData", sd("w1", 5, b"q")),              # FAILED_PRECONDITION
        ("UpdateSharedData", sd("nope", 1, b"q")),            # NOT_FOUND
        ("DeleteSharedData", sd("nope")),                     # NOT_FOUND
        ("SetSharedData", sd("bad id", 1, b"q")),             # INVALID_ARGUMENT
        ("SetSharedData", sd("w1", 1, b"q", ttl=(-1, 0))),    # INVALID_ARGUMENT
    ]
    for method, req in cases:
        via_node = call(getattr(ns, method), req)
        direct = call(getattr(cs, method), req)
        assert via_node[0] != C.OK, (method, req)
        assert via_node == direct, (method, req, via_node, direct)
    assert call(ns.UpdateSharedData, sd("w1", 2, b"p2"))[0] == C.OK
    assert call(ns.DeleteSharedData, sd("w1"))[0] == C.OK
    # the tombstone's message, from central, unchanged through the node
    via_node = call(ns.SetSharedData, sd("w1", 2, b"again"))
    assert via_node == (C.FAILED_PRECONDITION, "shared data for session w1 was deleted "
                        "at update level 2; set update level 3 or higher")
    node.wait_requests("SetSharedData", "FAILED_PRECONDITION", 1)


def test_write_through_drops_the_local_copy(make_pair):
    central, node = make_pair()
    cs, ns = central.stub(), node.stub()
    # Update through the node: the next no-level Get fetches level 1
    cs.SetSharedData(sd("d1", 0, b"zero"), timeout=10)
    assert ok_get(ns, "d1").update_level == 0
    assert call(ns.UpdateSharedData, sd("d1", 1, b"one"))[0] == C.OK
    before = counters(node)
    r = ok_get(ns, "d1")
    assert (r.update_level, r.payload) == (1, b"one")
    assert delta(before, counters(node))["upstream_fetches"] == 1
    # Delete through the node: dropped, the next Get finds nothing
    assert call(ns.DeleteSharedData, sd("d1"))[0] == C.OK
    assert get(ns, "d1")[0] == C.NOT_FOUND
    # Set through the node while the node holds an old copy: central
    # deleted it behind the node's back, the node still serves it (stale,
    # spec §5), and a Set through the node drops it
    cs.SetSharedData(sd("d2", 0, b"old"), timeout=10)
    assert ok_get(ns, "d2").payload == b"old"
    cs.DeleteSharedData(sd("d2"), timeout=10)
    assert ok_get(ns, "d2").payload == b"old"
    assert call(ns.SetSharedData, sd("d2", 1, b"new"))[0] == C.OK
    r = ok_get(ns, "d2")
    assert (r.update_level, r.payload) == (1, b"new")
    # a refused write drops nothing
    assert call(ns.UpdateSharedData, sd("d2", 9, b"x"))[0] == C.FAILED_PRECONDITION
    before = counters(node)
    assert ok_get(ns, "d2").payload == b"new"
    assert delta(before, counters(node))["upstream_fetches"] == 0


def test_write_through_large_payload(make_pair):
    central, node = make_pair()
    cs, ns = central.stub(), node.stub()
    big = alptest.stamped_payload(alptest.big_mib(64))
    assert call(ns.SetSharedData, sd("big", 0, big), timeout=120)[0] == C.OK
    assert cs.GetSharedData(sd("big"), timeout=120).payload == big
    assert ns.GetSharedData(sd("big", 0), timeout=120).payload == big
    # the payload bytes in flight (forwarded, fetched) went back to zero
    node.wait_metric(lambda m: m.value("alpcrund_inflight_bytes") == 0)


# --- eviction (spec §5 "Eviction") -------------------------------------------------


def test_lru_order_and_budget(make_pair):
    # 1 MiB budget: three entries of 300 KiB fit, a fourth evicts the least
    # recently used
    central, node = make_pair(node="max_memory 1m\n")
    cs, ns = central.stub(), node.stub()
    pay = {k: bytes([ord(k)]) * (300 * 1024) for k in "abcde"}
    for k, p in pay.items():
        cs.SetSharedData(sd("lru-" + k, 0, p), timeout=10)

    def g(k):
        assert ok_get(ns, "lru-" + k).payload == pay[k]

    for k in "abc":
        g(k)
    before = counters(node)
    g("a")                      # a is now the most recent: order b, c, a
    g("d")                      # evicts b
    d = delta(before, counters(node))
    assert d["upstream_fetches"] == 1 and d["evictions"] == 1 and d["cache_hits"] == 1
    before = counters(node)
    for k in "acd":
        g(k)                    # all held: order c... a, c, d
    d = delta(before, counters(node))
    assert d["upstream_fetches"] == 0 and d["cache_hits"] == 3
    before = counters(node)
    g("b")                      # fetched again, evicts a (least recent)
    d = delta(before, counters(node))
    assert d["upstream_fetches"] == 1 and d["evictions"] == 1
    before = counters(node)
    for k in "cdb":
        g(k)
    assert delta(before, counters(node))["upstream_fetches"] == 0
    g("a")
    assert delta(before, counters(node))["upstream_fetches"] == 1
    m = node.metrics()
    assert m.value("alpcrund_entries") == 3
    assert m.value("alpcrund_payload_bytes") == 3 * 300 * 1024


def test_oversize_entry_served_pass_through_not_stored(make_pair):
    central, node = make_pair(node="max_memory 1m\n")
    cs, ns = central.stub(), node.stub()
    big = os.urandom(2 * MiB)
    cs.SetSharedData(sd("huge", 3, big), timeout=10)
    cs.SetSharedData(sd("small", 0, b"s"), timeout=10)
    ok_get(ns, "small")
    before = counters(node)
    for _ in range(2):
        r = ok_get(ns, "huge")
        assert (r.update_level, r.payload) == (3, big)
    d = delta(before, counters(node))
    assert d["upstream_fetches"] == 2 and d["evictions"] == 0
    m = node.metrics()
    assert m.value("alpcrund_entries") == 1            # only "small"
    assert ok_get(ns, "small").payload == b"s"


def test_sighup_lower_max_memory_evicts(make_pair):
    conf = "max_memory %s\n"
    central, node = make_pair(node=conf % "4m")
    cs, ns = central.stub(), node.stub()
    for i in range(8):
        cs.SetSharedData(sd("h%d" % i, 0, b"%d" % i * (400 * 1024)), timeout=10)
        ok_get(ns, "h%d" % i)
    assert node.metric("alpcrund_entries") == 8
    node.write_config("mode node\nbackend memory\nupstream %s\n" % central.addr
                      + conf % "1m")
    node.signal(signal.SIGHUP)
    node.wait_log("msg=reloaded")
    m = node.wait_metric(lambda m: m.value("alpcrund_entries") <= 2)
    assert m.value("alpcrund_evictions_total") >= 6
    # the most recent ones stayed
    before = counters(node)
    ok_get(ns, "h7")
    assert delta(before, counters(node))["upstream_fetches"] == 0


# --- auth (spec §5 "Auth") ------------------------------------------------------------


def test_auth_on_the_node(make_pair, tmp_path):
    kf = tmp_path / "key"
    kf.write_text("node-and-central-key\n")
    central, node = make_pair(central="api_key_file %s\n" % kf,
                              node="api_key_file %s\n" % kf)
    cs, ns = central.stub(), node.stub()
    good = (("api_key", "node-and-central-key"),)
    cs.SetSharedData(sd("a1", 0, b"x"), metadata=good, timeout=10)
    assert get(ns, "a1")[0] == C.UNAUTHENTICATED
    assert get(ns, "a1", metadata=(("api_key", "wrong"),))[0] == C.PERMISSION_DENIED
    assert call(ns.SetSharedData, sd("a2", 0, b"y"))[0] == C.UNAUTHENTICATED
    assert counters(node)["upstream_fetches"] == 0
    # by default the node presents its own key to central
    assert ok_get(ns, "a1", metadata=good).payload == b"x"
    assert call(ns.SetSharedData, sd("a2", 0, b"y"), metadata=good)[0] == C.OK


def test_auth_with_a_long_key(make_pair, tmp_path):
    """Keys up to the key file's 4 KiB are compared whole: a 3000-byte key
    lets its holder in and not a caller presenting its first 256 bytes,
    and a node presenting it to central is let in too."""
    key = "".join("k%04d" % i for i in range(600))      # 3000 bytes
    kf = tmp_path / "key"
    kf.write_text(key + "\n")
    central, node = make_pair(central="api_key_file %s\n" % kf,
                              node="api_key_file %s\n" % kf)
    cs, ns = central.stub(), node.stub()
    good = (("api_key", key),)
    cs.SetSharedData(sd("long", 0, b"x"), metadata=good, timeout=10)
    for s in (cs, ns):
        assert get(s, "long", metadata=(("api_key", key[:256]),)) == \
            (C.PERMISSION_DENIED, "invalid api_key")
        assert get(s, "long", metadata=(("api_key", key + "x"),))[0] == C.PERMISSION_DENIED
    assert ok_get(ns, "long", metadata=good).payload == b"x"
    assert counters(node)["upstream_fetches"] == 1


def test_auth_upstream_key(make_pair, tmp_path):
    ck, nk, uk = tmp_path / "central", tmp_path / "node", tmp_path / "upstream"
    ck.write_text("central-key")
    nk.write_text("node-key")
    uk.write_text("central-key")
    central, node = make_pair(central="api_key_file %s\n" % ck,
                              node="api_key_file %s\nupstream_api_key_file %s\n" % (nk, uk))
    cs, ns = central.stub(), node.stub()
    cmd, nmd = (("api_key", "central-key"),), (("api_key", "node-key"),)
    cs.SetSharedData(sd("u1", 0, b"x"), metadata=cmd, timeout=10)
    assert ok_get(ns, "u1", metadata=nmd).payload == b"x"
    assert call(ns.UpdateSharedData, sd("u1", 1, b"y"), metadata=nmd)[0] == C.OK
    # a wrong upstream key: central's PERMISSION_DENIED, passed through
    uk.write_text("not-the-key")
    node.signal(signal.SIGHUP)
    node.wait_log("msg=reloaded")
    direct = get(cs, "u2", metadata=(("api_key", "not-the-key"),))
    assert direct == (C.PERMISSION_DENIED, "invalid api_key")
    assert get(ns, "u2", metadata=nmd) == direct
    assert call(ns.SetSharedData, sd("u2", 0, b"z"), metadata=nmd) == direct
    # the node's own callers still need the node's key
    assert get(ns, "u2", metadata=cmd) == (C.PERMISSION_DENIED, "invalid api_key")


def test_node_wrong_upstream_key_at_start(make_pair, tmp_path):
    ck, uk = tmp_path / "central", tmp_path / "upstream"
    ck.write_text("central-key")
    uk.write_text("wrong-key")
    central, node = make_pair(central="api_key_file %s\n" % ck,
                              node="upstream_api_key_file %s\n" % uk)
    assert get(node.stub(), "v1") == (C.PERMISSION_DENIED, "invalid api_key")
    assert call(node.stub().DeleteSharedData, sd("v1")) == (C.PERMISSION_DENIED,
                                                           "invalid api_key")


# --- coalescing (spec §5 "Coalescing") ------------------------------------------------


class FakeCentral:
    """A central cache written here with grpcio: it counts GetSharedData
    calls and holds each one until .release is set; .answer(req) gives
    (None, SharedData) or (StatusCode, message)."""

    def __init__(self, answer, port=0):
        self.answer = answer
        self.calls = []
        self.active_at_answer = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                  options=OPTIONS[:2])
        handler = grpc.method_handlers_generic_handler("alpcrun.v1.Cache", {
            "GetSharedData": grpc.unary_unary_rpc_method_handler(
                self._get, request_deserializer=SharedData.FromString,
                response_serializer=SharedData.SerializeToString)})
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:%d" % port)
        self.server.start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def _get(self, req, ctx):
        with self.lock:
            self.calls.append(req)
        self.release.wait(120)
        status, value = self.answer(req)
        self.active_at_answer.append(ctx.is_active())
        if status is not None:
            ctx.abort(status, value)
        return value

    def stop(self):
        self.release.set()
        self.server.stop(0)


@pytest.fixture
def fake_central():
    fakes = []

    def factory(answer, port=0):
        f = FakeCentral(answer, port)
        fakes.append(f)
        return f
    yield factory
    for f in fakes:
        f.stop()


def workers(node, n, req, per_channel=50, **kw):
    """n concurrent Gets on ceil(n / per_channel) connections: futures."""
    out, stub = [], None
    for i in range(n):
        if i % per_channel == 0:
            stub = cache_pb2_grpc.CacheStub(node.channel())
        out.append(stub.GetSharedData.future(req, **kw))
    return out


def outcome(fut, timeout=60):
    try:
        return C.OK, fut.result(timeout=timeout)
    except grpc.RpcError as e:
        return e.code(), e.details()


@pytest.mark.timeout(120)
def test_coalescing_200_waiters_one_fetch(make_daemon, fake_central):
    payload = os.urandom(3 * MiB + 17)
    fake = fake_central(lambda req: (None, SharedData(
        session_id=req.session_id, update_level=req.update_level, payload=payload,
        ttl={"seconds": 60})))
    node = make_daemon("mode node\nupstream %s\n" % fake.addr)
    futs = workers(node, 200, sd("co", 11))
    node.wait_metric(lambda m: m.value("alpcrund_coalesced_waits_total") >= 199, 30)
    assert len(fake.calls) == 1
    fake.release.set()
    results = [outcome(f) for f in futs]
    assert all(code == C.OK for code, _ in results), [r for r in results if r[0] != C.OK][:3]
    assert all(r.payload == payload and r.update_level == 11 and r.session_id == "co"
               for _, r in results)
    assert len(fake.calls) == 1
    assert fake.calls[0].session_id == "co" and fake.calls[0].update_level == 11
    m = node.metrics()
    assert m.value("alpcrund_upstream_fetches_total") == 1
    assert m.value("alpcrund_coalesced_waits_total") == 199
    assert m.value("alpcrund_cache_misses_total") == 200
    # stored: the next Get is a hit
    assert ok_get(node.stub(), "co", 11).payload == payload
    assert len(fake.calls) == 1


@pytest.mark.timeout(120)
def test_coalescing_held_error_reaches_every_waiter_and_is_not_cached(make_daemon,
                                                                      fake_central):
    fake = fake_central(lambda req: (C.NOT_FOUND, "shared data not found for session %s"
                                     % req.session_id))
    node = make_daemon("mode node\nupstream %s\n" % fake.addr)
    futs = workers(node, 200, sd("gone"))
    node.wait_metric(lambda m: m.value("alpcrund_coalesced_waits_total") >= 199, 30)
    fake.release.set()
    results = [outcome(f) for f in futs]
    assert set(results) == {(C.NOT_FOUND, "shared data not found for session gone")}
    assert len(fake.calls) == 1
    assert not fake.calls[0].HasField("update_level")
    # NOT_FOUND is not cached: the next Get asks central again
    assert get(node.stub(), "gone")[0] == C.NOT_FOUND
    assert len(fake.calls) == 2


@pytest.mark.timeout(120)
def test_coalescing_keys_are_session_and_level(make_daemon, fake_central):
    fake = fake_central(lambda req: (None, SharedData(
        session_id=req.session_id, update_level=req.update_level if
        req.HasField("update_level") else 42, payload=b"p-%d" % req.update_level)))
    node = make_daemon("mode node\nupstream %s\n" % fake.addr)
    futs = {k: workers(node, 10, sd("k", k), per_channel=10) for k in (1, 2, None)}
    futs["other"] = workers(node, 10, sd("k2", 1), per_channel=10)
    node.wait_metric(lambda m: m.value("alpcrund_coalesced_waits_total") >= 36, 30)
    wait_until(lambda: len(fake.calls) >= 4, 10, what="four fetches")
    assert node.metric("alpcrund_upstream_fetches_total") == 4
    fake.release.set()
    for k, fs in futs.items():
        res = [outcome(f) for f in fs]
        assert all(c == C.OK for c, _ in res), res
        want = {1: 1, 2: 2, None: 42, "other": 1}[k]
        assert {r.update_level for _, r in res} == {want}


@pytest.mark.timeout(120)
def test_coalescing_waiter_deadline_and_leaving_waiter(make_daemon, fake_central):
    payload = b"held" * 1000
    fake = fake_central(lambda req: (None, SharedData(
        session_id=req.session_id, update_level=5, payload=payload)))
    node = make_daemon("mode node\nupstream %s\nupstream_timeout 30s\n" % fake.addr)
    futs = workers(node, 20, sd("dl", 5))
    node.wait_metric(lambda m: m.value("alpcrund_coalesced_waits_total") >= 19, 30)
    # a waiter with a short grpc-timeout, on a raw connection that does
    # not cancel by itself: the node's own deadline answers it
    with node.raw() as h2:
        t0 = time.monotonic()
        st = h2.unary(GET, encode_shared("dl", 5),
                      extra=[("grpc-timeout", "800m")], timeout=10)
        took = time.monotonic() - t0
    assert st.grpc_status == 4, st        # DEADLINE_EXCEEDED from the node
    assert 0.6 < took < 5, took
    # a grpcio waiter with a short timeout, and one that leaves (cancel)
    short = cache_pb2_grpc.CacheStub(node.channel()).GetSharedData.future(
        sd("dl", 5), timeout=0.5)
    leaving = cache_pb2_grpc.CacheStub(node.channel()).GetSharedData.future(sd("dl", 5))
    node.wait_metric(lambda m: m.value("alpcrund_coalesced_waits_total") >= 21, 30)
    assert outcome(short)[0] == C.DEADLINE_EXCEEDED
    leaving.cancel()
    node.wait_metric(lambda m: m.value("alpcrund_requests_total", method="GetSharedData",
                                       code="CANCELLED") >= 1, 10)
    assert len(fake.calls) == 1
    fake.release.set()
    results = [outcome(f) for f in futs]
    assert all(c == C.OK and r.payload == payload for c, r in results), results[:2]
    # the fetch itself was never cancelled
    assert len(fake.calls) == 1 and fake.active_at_answer == [True]


@pytest.mark.timeout(120)
def test_late_result_does_not_overwrite_a_newer_level(make_daemon, fake_central):
    # a fetch without level is held; meanwhile level 8 is fetched and
    # stored; the held answer (level 7) arrives late and must not replace it
    gate = {}

    def answer(req):
        if req.HasField("update_level"):
            return None, SharedData(session_id=req.session_id, update_level=8,
                                    payload=b"eight")
        gate["old"].wait(60)
        return None, SharedData(session_id=req.session_id, update_level=7,
                                payload=b"seven")
    gate["old"] = threading.Event()
    fake = fake_central(answer)
    fake.release.set()
    node = make_daemon("mode node\nupstream %s\n" % fake.addr)
    old = cache_pb2_grpc.CacheStub(node.channel()).GetSharedData.future(sd("late"))
    wait_until(lambda: len(fake.calls) == 1, 10)
    assert ok_get(node.stub(), "late", 8).payload == b"eight"
    gate["old"].set()
    code, r = outcome(old)
    assert code == C.OK and (r.update_level, r.payload) == (7, b"seven")
    r = ok_get(node.stub(), "late")
    assert (r.update_level, r.payload) == (8, b"eight")
    assert len(fake.calls) == 2


# --- faults (spec §5 "Upstream link", §8 /readyz) ---------------------------------------


def readyz(node):
    return node.http_get("/readyz")


@pytest.mark.timeout(120)
def test_central_killed_then_restarted(make_pair, perf):
    central, node = make_pair(node="upstream_timeout 30s\n")
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("k1", 0, b"kept"), timeout=10)
    assert ok_get(ns, "k1").payload == b"kept"
    assert readyz(node) == (200, "ready\n")
    assert node.metric("alpcrund_upstream_up") == 1
    central.kill()                                        # kill -9
    node.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 0, 10)
    st, body = readyz(node)
    assert st == 503 and body.startswith("central cache unreachable: "), (st, body)
    # hits are served
    for _ in range(20):
        assert ok_get(ns, "k1").payload == b"kept"
    # misses fail fast with UNAVAILABLE, far below upstream_timeout
    worst = 0
    for i in range(5):
        t0 = time.monotonic()
        code, msg = get(ns, "miss-%d" % i)
        worst = max(worst, time.monotonic() - t0)
        assert code == C.UNAVAILABLE, (code, msg)
        assert msg.startswith("central cache unreachable: "), msg
    assert worst < 5, worst
    perf("miss while central is down answered in %.0f ms (worst of 5)" % (worst * 1000))
    # writes too
    code, msg = call(ns.SetSharedData, sd("k2", 0, b"x"))
    assert code == C.UNAVAILABLE and msg.startswith("central cache unreachable: ")
    # central back on the same port: the link recovers without a restart
    central.start()
    central.stub().SetSharedData(sd("k3", 0, b"back"), timeout=10)
    t0 = time.monotonic()
    wait_until(lambda: get(ns, "k3")[0] == C.OK, 20, interval=0.1,
               what="a miss to succeed again")
    perf("link recovered %.1f s after central restarted" % (time.monotonic() - t0))
    assert ok_get(ns, "k3").payload == b"back"
    wait_until(lambda: readyz(node)[0] == 200, 10)
    assert node.metric("alpcrund_upstream_up") == 1


@pytest.mark.timeout(120)
def test_silent_central_detected_by_ping(make_pair):
    central, node = make_pair(node="upstream_keepalive 1s\nupstream_timeout 30s\n"
                              "upstream_connect_timeout 1s\n")
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("s1", 0, b"hit"), timeout=10)
    assert ok_get(ns, "s1").payload == b"hit"
    central.proc.send_signal(signal.SIGSTOP)             # accepts, never answers
    try:
        t0 = time.monotonic()
        code, msg = get(ns, "s2", timeout=25)
        took = time.monotonic() - t0
        assert code in (C.DEADLINE_EXCEEDED, C.UNAVAILABLE), (code, msg)
        assert took < 10, took
        # hits keep flowing, fast
        t0 = time.monotonic()
        for _ in range(50):
            assert ok_get(ns, "s1").payload == b"hit"
        assert time.monotonic() - t0 < 5
        node.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 0, 10)
        st, body = readyz(node)
        assert st == 503 and "central cache unreachable: " in body, (st, body)
        # a write forwarded with the caller's grpc-timeout: the node's own
        # deadline (a raw client that does not cancel by itself)
        with node.raw() as h2:
            t0 = time.monotonic()
            s = h2.unary("/alpcrun.v1.Cache/SetSharedData",
                         encode_shared("s3", 0, b"x"),
                         extra=[("grpc-timeout", "700m")], timeout=10)
            assert s.grpc_status in (4, 14), s
            assert time.monotonic() - t0 < 5
    finally:
        central.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: get(ns, "s4")[0] == C.NOT_FOUND, 30, interval=0.2,
               what="the link to come back")
    wait_until(lambda: readyz(node)[0] == 200, 10)


@pytest.mark.timeout(120)
def test_central_replaced_by_listener_that_never_answers(make_pair):
    central, node = make_pair(node="upstream_keepalive 1s\nupstream_timeout 30s\n"
                              "upstream_connect_timeout 1s\n")
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("q1", 0, b"hit"), timeout=10)
    assert ok_get(ns, "q1").payload == b"hit"
    port = central.port
    central.kill()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(64)
    accepted = []
    stop = threading.Event()

    def acceptor():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(lsock.accept()[0])   # and never a byte back
            except socket.timeout:
                pass
    th = threading.Thread(target=acceptor, daemon=True)
    th.start()
    try:
        node.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 0, 10)
        for i in range(3):
            t0 = time.monotonic()
            code, msg = get(ns, "q-miss-%d" % i, timeout=25)
            assert code in (C.DEADLINE_EXCEEDED, C.UNAVAILABLE), (code, msg)
            assert time.monotonic() - t0 < 10
            assert ok_get(ns, "q1").payload == b"hit"
        wait_until(lambda: accepted, 10, what="the node to connect")
        st, body = readyz(node)
        assert st == 503 and "central cache unreachable: " in body, (st, body)
    finally:
        stop.set()
        th.join(5)
        for s in accepted:
            s.close()
        lsock.close()


class HeldReplyCentral:
    """A central that speaks HTTP/2 by hand (hyper-h2) so that a test can
    stop it in the middle of a reply: it records each request's stream and
    runs, on its own thread, the actions a test queues (.do)."""

    def __init__(self):
        import h2.config
        import h2.connection
        import h2.events
        self.ev = h2.events
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False))
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.requests = []
        self.actions = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.lsock.getsockname()[1]

    def do(self, fn):
        with self.lock:
            self.actions.append(fn)

    def _run(self):
        self.lsock.settimeout(0.05)
        while not self.stop_ev.is_set():
            try:
                sock = self.lsock.accept()[0]
                break
            except socket.timeout:
                pass
        else:
            return
        self.sock = sock
        sock.settimeout(0.02)
        self.conn.initiate_connection()
        sock.sendall(self.conn.data_to_send())
        while not self.stop_ev.is_set():
            with self.lock:
                acts, self.actions = self.actions, []
            for fn in acts:
                fn(self.conn)
            try:
                data = sock.recv(65536)
                if not data:
                    return
                for e in self.conn.receive_data(data):
                    if isinstance(e, self.ev.RequestReceived):
                        with self.lock:
                            self.requests.append(e.stream_id)
            except socket.timeout:
                pass
            out = self.conn.data_to_send()
            if out:
                sock.sendall(out)

    def close(self):
        self.stop_ev.set()
        self.th.join(5)
        if getattr(self, "sock", None) is not None:
            self.sock.close()
        self.lsock.close()


@pytest.mark.timeout(120)
def test_fetch_bytes_count_against_max_inflight_from_the_reply_prefix(make_daemon):
    """A fetch's reply counts against max_inflight_bytes from its 5-byte
    prefix on, not from its last byte: while central is in the middle of a
    40 MiB reply the node's gauge shows it, a second miss waits for room
    (not sent), and everything returns to 0 when the reply is cut off."""
    fake = HeldReplyCentral()
    try:
        node = make_daemon("mode node\nupstream %s\nmax_inflight_bytes 32m\n"
                           % fake.addr)
        ns = node.stub()
        announced = 40 * MiB
        first = ns.GetSharedData.future(sd("big", 1), timeout=60)
        sid1 = wait_until(lambda: fake.requests and fake.requests[0], 20,
                          what="the first fetch to reach central")
        hdrs = [(":status", "200"), ("content-type", "application/grpc")]

        def start_reply(conn):
            conn.send_headers(sid1, hdrs)
            conn.send_data(sid1, grpc_frame(b"\x00" * 1024, length=announced))
        fake.do(start_reply)
        node.wait_metric(lambda m: m.value("alpcrund_inflight_bytes") >= announced, 20)

        second = ns.GetSharedData.future(sd("other", 1), timeout=60)
        node.wait_metric(lambda m: m.value("alpcrund_cache_misses_total") == 2, 20)
        m = node.metrics()
        assert m.value("alpcrund_upstream_fetches_total") == 1
        assert len(fake.requests) == 1

        fake.do(lambda conn: conn.reset_stream(sid1, error_code=2))
        code, msg = outcome(first)
        assert code == C.INTERNAL, (code, msg)
        sid2 = wait_until(lambda: len(fake.requests) == 2 and fake.requests[1], 20,
                          what="the waiting fetch to go out once there is room")
        fake.do(lambda conn: conn.send_headers(sid2, hdrs + [
            ("grpc-status", "5"), ("grpc-message", "no such session")],
            end_stream=True))
        assert outcome(second) == (C.NOT_FOUND, "no such session")
        node.wait_metric(lambda m: m.value("alpcrund_inflight_bytes") == 0, 20)
    finally:
        fake.close()


# --- configuration and SIGHUP ------------------------------------------------------------


def check(tmp_path, text):
    p = tmp_path / "t.conf"
    p.write_text(text)
    r = subprocess.run([ALPCRUND, "-t", "-v", "-c", str(p)], capture_output=True,
                       text=True, timeout=20)
    return r.returncode, r.stdout + r.stderr, str(p)


def test_config_node_defaults_and_lmdb_refused(tmp_path):
    rc, out, _ = check(tmp_path, "mode node\n")
    assert rc == 0, out
    for line in ("mode node", "listen 127.0.0.1:3337", "max_memory 1g",
                 "upstream 127.0.0.1:2337", "upstream_timeout 30s",
                 "upstream_connect_timeout 3s", "upstream_keepalive 10s"):
        assert re.search(r"^%s$" % line, out, re.M), (line, out)
    rc, out, path = check(tmp_path, "mode node\n# comment\nbackend lmdb\n")
    assert rc == 1
    assert "%s:3: backend lmdb is not supported with mode node" % path in out, out
    rc, out, path = check(tmp_path, "backend lmdb\nmode node\n")
    assert rc == 1
    assert "%s:2: backend lmdb is not supported with mode node" % path in out, out
    # TLS options need upstream_tls; the change feed is accepted
    rc, out, path = check(tmp_path, "mode node\nupstream_cert /c\nprefetch on\n")
    assert rc == 1
    assert "%s:2: upstream_cert: needs upstream_tls on" % path in out, out
    assert "prefetch" not in out, out
    rc, out, _ = check(tmp_path, "mode node\nprefetch on\nprefetch_concurrency 8\n")
    assert rc == 0, out


def test_node_defaults_at_run_time(make_daemon):
    d = make_daemon("mode node\n")
    assert d.wait_log("msg=ready .*mode=node")
    assert re.search(r"max_memory=1073741824", d.log()), d.log_tail()
    # nothing listens on the default upstream here: not ready, and why
    st, body = d.http_get("/readyz")
    assert st == 503 and body.startswith("central cache "), (st, body)


@pytest.mark.timeout(120)
def test_sighup_upstream_timeout_live_upstream_restart_only(make_daemon, fake_central):
    fake = fake_central(lambda req: (None, SharedData(session_id=req.session_id,
                                                      update_level=1)))
    base = "mode node\nupstream %s\n" % fake.addr
    node = make_daemon(base + "upstream_timeout 30s\n")
    node.write_config(base + "upstream_timeout 1s\nupstream_keepalive 2s\n")
    node.signal(signal.SIGHUP)
    node.wait_log("msg=reloaded")
    t0 = time.monotonic()
    code, msg = get(node.stub(), "slow", timeout=20)
    took = time.monotonic() - t0
    assert code == C.DEADLINE_EXCEEDED, (code, msg)
    assert 0.8 < took < 5, took
    # upstream needs a restart: logged, and the link stays where it was
    node.write_config("mode node\nupstream 127.0.0.1:1\nupstream_timeout 1s\n")
    node.signal(signal.SIGHUP)
    node.wait_log(r'msg="changes need a restart" directives="upstream"')
    assert node.metric("alpcrund_upstream_up") == 1


@pytest.mark.timeout(120)
def test_sighup_keepalive_live(make_pair):
    # 60 s PINGs would take two minutes to find a silent central; after
    # SIGHUP with 1 s, a few seconds
    central, node = make_pair(node="upstream_keepalive 60s\nupstream_timeout 60s\n")
    cs, ns = central.stub(), node.stub()
    cs.SetSharedData(sd("ka", 0, b"x"), timeout=10)
    ok_get(ns, "ka")
    node.write_config("mode node\nbackend memory\nupstream %s\nupstream_keepalive 1s\n"
                      "upstream_timeout 60s\nupstream_connect_timeout 1s\n" % central.addr)
    node.signal(signal.SIGHUP)
    node.wait_log("msg=reloaded")
    central.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        code, msg = get(ns, "ka-miss", timeout=50)
        assert code == C.UNAVAILABLE, (code, msg)
        assert "no PING answer within 1s" in msg, msg
        assert time.monotonic() - t0 < 10
        assert ok_get(ns, "ka").payload == b"x"
    finally:
        central.proc.send_signal(signal.SIGCONT)


# --- several hosts: network namespaces joined by veth ------------------------------------


def _ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), capture_output=True, text=True,
                          check=check, timeout=20)


def netns_capable():
    """Can this process do with network namespaces what
    test_multi_host_namespaces does: add them, enter one (ip netns exec),
    link two with a veth pair, address it and bring it up? Each step is
    tried once on namespaces of its own, removed after; (False, why) names
    the first that failed. A root that may add namespaces but not enter
    them (a chroot) fails here, not in the test."""
    if subprocess.run(["sh", "-c", "command -v ip"], capture_output=True).returncode:
        return False, "ip (iproute2) is not installed"
    tag = uuid.uuid4().hex[:8]
    a, b = "alp-pa-" + tag, "alp-pb-" + tag
    va, vb = "vpa-" + tag, "vpb-" + tag
    steps = [
        ("netns", "add", a),
        ("netns", "add", b),
        ("-n", a, "link", "set", "lo", "up"),
        ("netns", "exec", a, "true"),
        ("link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b),
        ("-n", a, "addr", "add", "10.231.0.1/24", "dev", va),
        ("-n", b, "addr", "add", "10.231.0.2/24", "dev", vb),
        ("-n", a, "link", "set", va, "up"),
        ("-n", b, "link", "set", vb, "up"),
    ]
    try:
        for args in steps:
            r = _ip(*args, check=False)
            if r.returncode != 0:
                return False, "ip %s: %s" % (" ".join(args),
                                             r.stderr.strip() or "exit %d" % r.returncode)
        return True, ""
    finally:
        # the veth pair goes with its namespaces
        for n in (a, b):
            _ip("netns", "del", n, check=False)


NS_CLIENT = r'''
import sys, json
sys.path.insert(0, %(gen)r)
import grpc
from alpcrun.v1 import cache_pb2, cache_pb2_grpc
what, addr, sid, level = sys.argv[1:5]
stub = cache_pb2_grpc.CacheStub(grpc.insecure_channel(addr))
m = cache_pb2.SharedData(session_id=sid)
if level != "-":
    m.update_level = int(level)
try:
    if what == "set":
        m.payload = b"from-central"
        stub.SetSharedData(m, timeout=20)
        print(json.dumps(["OK"]))
    else:
        r = stub.GetSharedData(m, timeout=20)
        print(json.dumps(["OK", r.update_level, r.payload.decode()]))
except grpc.RpcError as e:
    print(json.dumps([e.code().name, e.details()]))
'''


@pytest.mark.timeout(180)
def test_multi_host_namespaces(tmp_path):
    ok, why = netns_capable()
    if not ok:
        pytest.skip("multi-host test: %s" % why)
    tag = uuid.uuid4().hex[:6]
    ns = {"c": "alp-c-" + tag, "n1": "alp-n1-" + tag, "n2": "alp-n2-" + tag}
    procs = []
    client = tmp_path / "client.py"
    client.write_text(NS_CLIENT % {"gen": alptest.GEN})
    import json

    def run_client(where, addr, sid, level="-", what="get"):
        r = subprocess.run(["ip", "netns", "exec", ns[where], "/usr/bin/python3",
                            str(client), what, addr, sid, level], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def start(where, text):
        conf = tmp_path / ("%s.conf" % where)
        conf.write_text(text)
        log = open(tmp_path / ("%s.log" % where), "wb")
        p = subprocess.Popen(["ip", "netns", "exec", ns[where], ALPCRUND, "-c", str(conf)],
                             stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        procs.append(p)
        return p
    try:
        for n in ns.values():
            _ip("netns", "add", n)
            _ip("-n", n, "link", "set", "lo", "up")
        # central's host has one link to each node's host
        for i, k in ((1, "n1"), (2, "n2")):
            a, b = "vc%d-%s" % (i, tag), "vn%d-%s" % (i, tag)
            _ip("link", "add", a, "netns", ns["c"], "type", "veth", "peer", "name", b,
                "netns", ns[k])
            _ip("-n", ns["c"], "addr", "add", "10.231.%d.1/24" % i, "dev", a)
            _ip("-n", ns[k], "addr", "add", "10.231.%d.2/24" % i, "dev", b)
            _ip("-n", ns["c"], "link", "set", a, "up")
            _ip("-n", ns[k], "link", "set", b, "up")
        start("c", "listen 0.0.0.0:2337\n")
        for i, k in ((1, "n1"), (2, "n2")):
            start(k, "mode node\nlisten 127.0.0.1:3337\nupstream 10.231.%d.1:2337\n"
                  "upstream_keepalive 1s\nupstream_connect_timeout 1s\n" % i)

        def central_up():
            return run_client("c", "127.0.0.1:2337", "none")[0] == "NOT_FOUND"
        wait_until(central_up, 30, interval=0.3, what="central in its namespace")
        # a client on central's host sets; workers on each node host get
        assert run_client("c", "127.0.0.1:2337", "mh", "3", what="set") == ["OK"]
        for k in ("n1", "n2"):
            wait_until(lambda: run_client(k, "127.0.0.1:3337", "mh", "3")[0] == "OK", 30,
                       interval=0.3, what="node %s to fetch" % k)
            assert run_client(k, "127.0.0.1:3337", "mh") == ["OK", 3, "from-central"]
        # cut node 2's link: its copy is still served, its misses fail fast
        _ip("-n", ns["n2"], "link", "set", "vn2-%s" % tag, "down")
        assert run_client("n2", "127.0.0.1:3337", "mh") == ["OK", 3, "from-central"]
        res = run_client("n2", "127.0.0.1:3337", "other")
        assert res[0] in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), res
        # node 1 is unaffected
        assert run_client("n1", "127.0.0.1:3337", "other")[0] == "NOT_FOUND"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        for n in ns.values():
            _ip("netns", "del", n, check=False)
