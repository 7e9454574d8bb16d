"""Spec §4: a (session_id, update_level) names one content, everywhere and
always. The two ways around it that were found, reproduced against a real
central and a real node, with and without the change feed: a byte-identical
retry (or an Update) with a shorter ttl, and a central whose store was lost
(memory backend restarted, LMDB file replaced, LMDB backup restored). And
what carries the identity: the `alpcrun-incarnation` header of every
response, `alpcrun-generation` of a Get reply, both passed down by a node."""
import os
import shutil

import grpc
import pytest

from alptest import cache_pb2_grpc, health_pb2, health_pb2_grpc, sd, wait_until

C = grpc.StatusCode
PREFETCH = ["", "prefetch on\n"]
PREFETCH_IDS = ["no-prefetch", "prefetch"]


def call(fn, req, **kw):
    kw.setdefault("timeout", 30)
    try:
        return C.OK, fn(req, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()


def get_with_meta(stub, sid, level=None):
    """(reply, {header: value}) of a Get that must succeed."""
    r, c = stub.GetSharedData.with_call(sd(sid, level), timeout=30)
    return r, dict(c.initial_metadata())


def incarnation_changes(node):
    return node.metrics().value("alpcrund_upstream_incarnation_changes_total")


def ttl_s(r):
    return r.ttl.seconds + r.ttl.nanos / 1e9


# --- the identity on the wire ----------------------------------------------------


def test_every_response_names_the_store_and_a_get_its_content(make_daemon):
    d = make_daemon()
    s = d.stub()
    _, c = health_pb2_grpc.HealthStub(d.channel()).Check.with_call(
        health_pb2.HealthCheckRequest(), timeout=10)
    inc = dict(c.initial_metadata())["alpcrun-incarnation"]
    assert len(inc) == 16 and int(inc, 16) != 0
    s.SetSharedData(sd("id-1", 1, b"one"))
    r, meta = get_with_meta(s, "id-1")
    assert meta["alpcrun-incarnation"] == inc
    g1 = meta["alpcrun-generation"]
    assert len(g1) == 16 and int(g1, 16) != 0
    # A retry keeps the content's generation; the next level has another.
    s.SetSharedData(sd("id-1", 1, b"one"))
    assert get_with_meta(s, "id-1")[1]["alpcrun-generation"] == g1
    s.UpdateSharedData(sd("id-1", 2, b"two"))
    g2 = get_with_meta(s, "id-1")[1]["alpcrun-generation"]
    assert g2 != g1
    # Errors carry the incarnation too (Trailers-Only: grpcio shows its
    # one HEADERS frame as trailing metadata).
    with pytest.raises(grpc.RpcError) as e:
        s.GetSharedData(sd("id-none"), timeout=10)
    assert e.value.code() == C.NOT_FOUND
    meta = dict(e.value.initial_metadata() or ())
    meta.update(dict(e.value.trailing_metadata() or ()))
    assert meta["alpcrun-incarnation"] == inc
    # A memory store that starts again is another store.
    d.stop()
    d.start()
    _, meta = health_pb2_grpc.HealthStub(d.channel()).Check.with_call(
        health_pb2.HealthCheckRequest(), timeout=10)
    assert dict(meta.initial_metadata())["alpcrun-incarnation"] != inc


def test_lmdb_keeps_its_incarnation_across_a_restart(make_daemon, tmp_path):
    d = make_daemon("backend lmdb\nlmdb_path %s\nlmdb_map_size 64m\n" % (tmp_path / "db"))
    s = d.stub()
    s.SetSharedData(sd("keep", 3, b"kept"))
    _, meta = get_with_meta(s, "keep")
    d.stop()
    d.start()
    _, again = get_with_meta(d.stub(), "keep")
    assert again["alpcrun-incarnation"] == meta["alpcrun-incarnation"]
    assert again["alpcrun-generation"] == meta["alpcrun-generation"]


def test_a_node_passes_the_identity_down(make_pair):
    c, n = make_pair()
    c.stub().SetSharedData(sd("down", 4, b"four"))
    _, cm = get_with_meta(c.stub(), "down")
    _, miss = get_with_meta(n.stub(), "down")       # fetched
    _, hit = get_with_meta(n.stub(), "down")        # served from the copy
    for m in (miss, hit):
        assert m["alpcrun-incarnation"] == cm["alpcrun-incarnation"]
        assert m["alpcrun-generation"] == cm["alpcrun-generation"]


# --- broken promise 1: a shorter ttl ------------------------------------------------


@pytest.mark.parametrize("node_conf", PREFETCH, ids=PREFETCH_IDS)
def test_a_retry_with_a_shorter_ttl_cannot_free_the_level(make_pair, node_conf):
    c, n = make_pair(node=node_conf)
    cs, ns = c.stub(), n.stub()
    cs.SetSharedData(sd("short", 1, b"first bytes", ttl=60))
    assert ns.GetSharedData(sd("short"), timeout=30).payload == b"first bytes"
    # The retry answers OK, but the level lives as long as the copy the
    # node holds: a Set of other bytes at that level stays refused.
    cs.SetSharedData(sd("short", 1, b"first bytes", ttl=1))
    assert ttl_s(cs.GetSharedData(sd("short"), timeout=30)) > 50
    code, msg = call(cs.SetSharedData, sd("short", 1, b"other bytes"))
    assert code == C.ALREADY_EXISTS, (code, msg)
    # The same with an Update to a level with a shorter ttl, then a Delete.
    cs.UpdateSharedData(sd("short", 2, b"second", ttl=1))
    assert ns.GetSharedData(sd("short", 2), timeout=30).payload == b"second"
    assert ttl_s(cs.GetSharedData(sd("short"), timeout=30)) > 50
    cs.DeleteSharedData(sd("short"))
    code, msg = call(cs.SetSharedData, sd("short", 2, b"not second"))
    assert code == C.FAILED_PRECONDITION, (code, msg)
    code, msg = call(cs.SetSharedData, sd("short", 1, b"not first"))
    assert code == C.FAILED_PRECONDITION, (code, msg)


# --- broken promise 2: a central that forgot -----------------------------------------


def _forgetting_central_case(c, n, restart):
    cs = c.stub()
    cs.SetSharedData(sd("forgot", 1, b"old bytes"))
    ns = n.stub()
    assert ns.GetSharedData(sd("forgot", 1), timeout=30).payload == b"old bytes"
    assert ns.GetSharedData(sd("forgot"), timeout=30).payload == b"old bytes"
    before = incarnation_changes(n)
    restart()
    c.stub().SetSharedData(sd("forgot", 1, b"NEW BYTES"))

    # The node learns the new store at its reconnection (bounded by the
    # link's backoff); from then on no old copy is served.
    def served(level):
        code, r = call(n.stub().GetSharedData, sd("forgot", level))
        return code == C.OK and r.payload == b"NEW BYTES"
    wait_until(lambda: served(1), 15, what="the node to serve central's new level 1")
    assert served(None)
    assert incarnation_changes(n) == before + 1
    n.wait_log("central cache's store changed")


@pytest.mark.parametrize("node_conf", PREFETCH, ids=PREFETCH_IDS)
def test_a_central_restarted_empty_is_not_trusted_with_old_copies(make_pair, node_conf):
    c, n = make_pair(central="backend memory\n", node=node_conf)

    def restart():
        c.stop()
        c.start()
    _forgetting_central_case(c, n, restart)


@pytest.mark.parametrize("node_conf", PREFETCH, ids=PREFETCH_IDS)
def test_an_lmdb_file_replaced_is_another_store(make_pair, tmp_path, node_conf):
    a, b = tmp_path / "a", tmp_path / "b"
    conf = "backend lmdb\nlmdb_path %s\nlmdb_map_size 64m\n"
    c, n = make_pair(central=conf % a, node=node_conf)

    def restart():
        c.stop()
        c.write_config(conf % b)
        c.start()
    _forgetting_central_case(c, n, restart)


def test_a_restarted_lmdb_central_keeps_the_nodes_copies(make_pair, tmp_path):
    c, n = make_pair(central="backend lmdb\nlmdb_path %s\nlmdb_map_size 64m\n"
                     % (tmp_path / "db"))
    c.stub().SetSharedData(sd("stay", 1, b"bytes"))
    ns = n.stub()
    assert ns.GetSharedData(sd("stay"), timeout=30).payload == b"bytes"
    fetches = n.metrics().value("alpcrund_upstream_fetches_total")
    c.stop()
    c.start()
    n.wait_log("central cache's store unchanged", timeout=15)
    # Same store: the copy is still served, nothing fetched again.
    assert ns.GetSharedData(sd("stay"), timeout=30).payload == b"bytes"
    assert n.metrics().value("alpcrund_upstream_fetches_total") == fetches
    assert incarnation_changes(n) == 0


def test_a_restored_lmdb_backup_is_reconciled_by_generation(make_pair, tmp_path):
    """Same file, same incarnation, but an older state of it: the change
    feed's snapshot names another generation for the level the node holds,
    and the copy goes (without the feed this is not detected: alpcrund.8)."""
    db, backup = tmp_path / "db", tmp_path / "backup"
    c, n = make_pair(central="backend lmdb\nlmdb_path %s\nlmdb_map_size 64m\n" % db,
                     node="prefetch on\n")
    c.stop()
    shutil.copytree(db, backup)           # the store before the session
    c.start()
    n.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 1, timeout=15)
    c.stub().SetSharedData(sd("restored", 1, b"old bytes"))
    ns = n.stub()
    assert ns.GetSharedData(sd("restored"), timeout=30).payload == b"old bytes"
    c.stop()
    shutil.rmtree(db)
    shutil.copytree(backup, db)
    c.start()
    c.stub().SetSharedData(sd("restored", 1, b"NEW BYTES"))

    def served():
        code, r = call(n.stub().GetSharedData, sd("restored"))
        return code == C.OK and r.payload == b"NEW BYTES"
    wait_until(served, 15, what="the node to drop the copy of the old generation")
    assert incarnation_changes(n) == 0
