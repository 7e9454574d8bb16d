"""Centrals on one bucket (backend s3), against every store of the fixture
s3store: the bucket's incarnation is the store's identity, so every
central of it is one store to a node.

Three centrals under racing Sets, Updates and Deletes of the same sessions
(two clients on each, all at once), one central killed (SIGKILL) while a
round of writes is in flight (on the fake store the heads' commits are
slowed, so that they are mid-way): no (session, level) is ever shown with
two contents, a race has exactly one winner (at most one in the round of
the kill, whose dead racers' outcome is unknown), every acknowledged write
is read back the same from every central still running and from a central
started afterwards. A node whose upstream list is two centrals of a bucket
survives killing the one it uses: it fails over, fetches a level set
through the other, and keeps serving the copies it holds (one incarnation,
nothing dropped)."""
import json
import random
import signal
import threading
import time

import grpc
import pytest

from alptest import sd
from s3stores import rgw, s3store  # noqa: F401  (fixtures)

C = grpc.StatusCode
SESSIONS = ["race%d" % i for i in range(4)]
RACERS = 2            # clients per central
ROUNDS = 10
KILL_ROUND = 4        # the round during which a central dies


def central(make_daemon, tmp_path, s3store, name, more=""):
    d = tmp_path / name
    d.mkdir()
    cred = d / "s3.cred"
    cred.write_text("access_key_id %s\nsecret_access_key %s\n"
                    % (s3store.access_key, s3store.secret_key))
    return make_daemon("backend s3\ns3_endpoint %s\ns3_bucket %s\ns3_prefix c/\n"
                       "s3_credentials %s\ns3_retries 3\ns3_timeout 10s\n%s"
                       % (s3store.url, s3store.bucket, cred, more))


def call(fn, req):
    try:
        r = fn(req, timeout=30)
        return ("ok", r)
    except grpc.RpcError as e:
        return (e.code(), e.details())


def incarnation(stub, sid):
    try:
        _, c = stub.GetSharedData.with_call(sd(sid), timeout=15)
        md = c.initial_metadata()
    except grpc.RpcError as e:
        md = e.initial_metadata()
    return dict(md)["alpcrun-incarnation"]


class Book:
    """What the clients were told and what they read, by (session,
    level): never two contents."""

    def __init__(self):
        self.contents = {}

    def saw(self, sid, level, data, how):
        prev = self.contents.setdefault((sid, level), (data, how))
        assert prev[0] == data, "(%s, %d) shows two contents: %r (%s) and %r (%s)" % (
            sid, level, prev[0][:24], prev[1], data[:24], how)


def read_state(stub, sid, book, how):
    """(level, payload) of the session's entry, or None when there is
    none; recorded in the book."""
    code, r = call(stub.GetSharedData, sd(sid))
    if code == C.NOT_FOUND:
        return None
    assert code == "ok", (how, sid, code, r)
    book.saw(sid, r.update_level, r.payload, how)
    return (r.update_level, r.payload)


def racer_bytes(sid, level, who):
    return ("%s|%d|%s|" % (sid, level, who)).encode() * 64


def slow_heads(s3store, on):
    """On the fake store: the heads' commits take 400 ms (so that a kill
    lands mid-write), or no fault."""
    if s3store.name != "fake":
        return
    c = s3store.client()
    if on:
        body = json.dumps({"method": "PUT", "key": "/head$", "action": {"latency_ms": 400},
                           "count": -1}).encode()
        r = c.request("POST", "_fake", "faults", body=body)
    else:
        r = c.request("POST", "_fake", "reset", body=b"{}")
    assert r.status == 200, r


@pytest.mark.timeout(400)
def test_racing_writes_with_a_central_killed(make_daemon, tmp_path, s3store):
    cs = [central(make_daemon, tmp_path, s3store, n) for n in "abc"]
    # Separate channels, so that each racer's call goes out on its own.
    clients = [(ci, "%s%d" % ("abc"[ci], k), cs[ci].stub()) for ci in range(3)
               for k in range(RACERS)]
    book = Book()
    alive = {0, 1, 2}
    state = {sid: None for sid in SESSIONS}      # (level, payload) or None
    top = {sid: 0 for sid in SESSIONS}           # the highest level tried
    after_kill = False

    for rnd in range(ROUNDS):
        plan = {}
        for sid in SESSIONS:
            if state[sid] is None:
                # New levels only: a level a dead racer may have taken
                # (its record written, its head not) is never set again.
                plan[sid] = ("set", top[sid] + 1)
            elif after_kill or rnd % 4 == 3:
                plan[sid] = ("delete", state[sid][0])
            else:
                plan[sid] = ("update", state[sid][0] + 1)
            if plan[sid][0] != "delete":
                top[sid] = max(top[sid], plan[sid][1])
        after_kill = False
        results = {}
        go = threading.Barrier(len(clients) * len(SESSIONS) + (rnd == KILL_ROUND))

        def race(ci, who, stub, sid, op, level):
            go.wait()
            if op == "set":
                out = call(stub.SetSharedData, sd(sid, level, racer_bytes(sid, level, who), 120))
            elif op == "update":
                out = call(stub.UpdateSharedData, sd(sid, level, racer_bytes(sid, level, who), 120))
            else:
                out = call(stub.DeleteSharedData, sd(sid))
            results[(sid, who)] = (ci, out)

        if rnd == KILL_ROUND:
            slow_heads(s3store, True)
        threads = [threading.Thread(target=race, args=(ci, who, stub, sid) + plan[sid])
                   for ci, who, stub in clients for sid in SESSIONS]
        for t in threads:
            t.start()
        if rnd == KILL_ROUND:
            go.wait()
            time.sleep(0.2 if s3store.name == "fake" else random.uniform(0.01, 0.1))
            cs[2].signal(signal.SIGKILL)
            alive.discard(2)
            after_kill = True
        for t in threads:
            t.join(60)
            assert not t.is_alive(), "a racer still waits after 60 s"
        if rnd == KILL_ROUND:
            slow_heads(s3store, False)
            clients = [c for c in clients if c[0] in alive]

        for sid in SESSIONS:
            op, level = plan[sid]
            mine = {who: out for (s, who), (ci, out) in results.items() if s == sid}
            unknown = {who for (s, who), (ci, out) in results.items()
                       if s == sid and ci not in alive}
            oks = [who for who, out in mine.items() if out[0] == "ok" and who not in unknown]
            losers = {who: out for who, out in mine.items() if out[0] != "ok" and who not in unknown}
            for who in oks:
                if op != "delete":
                    book.saw(sid, level, racer_bytes(sid, level, who), "acknowledged to " + who)
            # The losers were refused as spec section 4 says.
            for who, (code, msg) in losers.items():
                if op == "set":
                    want = (C.ALREADY_EXISTS, "shared data already exists for session %s at "
                            "update level %d" % (sid, level))
                elif op == "update":
                    want = (C.FAILED_PRECONDITION, "update level mismatch: expected %d, got %d"
                            % (level + 1, level))
                else:
                    want = (C.NOT_FOUND, "shared data not found for session %s" % sid)
                assert (code, msg) == want, (rnd, sid, who, code, msg)
            assert len(oks) <= 1, (rnd, sid, plan[sid], mine)
            if not unknown:
                assert len(oks) == 1, (rnd, sid, plan[sid], mine)

            # Every central still running reads the same, and the winner.
            seen = [read_state(cs[ci].stub(), sid, book, "read on %s" % "abc"[ci])
                    for ci in sorted(alive)]
            assert all(x == seen[0] for x in seen), (sid, seen)
            now = seen[0]
            if oks:
                want = None if op == "delete" else (level, racer_bytes(sid, level, oks[0]))
                assert now == want, (rnd, sid, plan[sid], now, oks)
            else:
                # Only a dead racer may have won, or nobody.
                allowed = [state[sid]]
                if op == "delete":
                    allowed.append(None)
                else:
                    allowed += [(level, racer_bytes(sid, level, w)) for w in unknown]
                assert now in allowed, (rnd, sid, plan[sid], now)
            state[sid] = now

    # A central started now on the bucket reads every session as the
    # others do, and all of them name one incarnation.
    d = central(make_daemon, tmp_path, s3store, "d")
    for sid in SESSIONS:
        for name, c in (("a", cs[0]), ("b", cs[1]), ("d", d)):
            assert read_state(c.stub(), sid, book, "read on " + name) == state[sid], (name, sid)
    incs = {incarnation(c.stub(), SESSIONS[0]) for c in (cs[0], cs[1], d)}
    assert len(incs) == 1, incs
    assert sum(1 for s in state.values() if s is not None) >= 1


@pytest.mark.timeout(180)
def test_node_fails_over_between_centrals_of_one_bucket(make_daemon, tmp_path, s3store):
    a = central(make_daemon, tmp_path, s3store, "a")
    b = central(make_daemon, tmp_path, s3store, "b")
    node = make_daemon("mode node\nbackend memory\nupstream %s %s\n"
                       "upstream_connect_timeout 1s\n" % (a.addr, b.addr))
    ns = node.stub()
    a.stub().SetSharedData(sd("old", 1, b"old bytes", 300), timeout=15)
    a.stub().SetSharedData(sd("moving", 1, b"one", 300), timeout=15)
    assert ns.GetSharedData(sd("old", 1), timeout=15).payload == b"old bytes"
    assert ns.GetSharedData(sd("moving", 1), timeout=15).payload == b"one"
    assert a.requests("GetSharedData", "OK") == 2 and b.requests("GetSharedData", "OK") == 0
    st, body = node.http_get("/status.json")
    inc = json.loads(body)["incarnation"]
    assert inc and inc == incarnation(b.stub(), "old")
    assert node.metric("alpcrund_entries") == 2
    b_gets = b.requests("GetSharedData", "OK")      # the incarnation asked just now

    a.signal(signal.SIGKILL)
    a.wait_exit(10)
    b.stub().UpdateSharedData(sd("moving", 2, b"two", 300), timeout=15)
    r = ns.GetSharedData(sd("moving", 2), timeout=15)
    assert r.payload == b"two"
    node.wait_log(r"upstream failover.*upstream=%s from=%s" % (b.addr, a.addr))
    assert b.requests("GetSharedData", "OK") == b_gets + 1
    # The copy fetched through the dead central is still served, not
    # fetched again: the other central names the same store.
    assert ns.GetSharedData(sd("old", 1), timeout=15).payload == b"old bytes"
    assert ns.GetSharedData(sd("old"), timeout=15).payload == b"old bytes"
    assert b.requests("GetSharedData", "OK") == b_gets + 1
    m = node.metrics()
    assert m.value("alpcrund_entries") == 2
    assert m.value("alpcrund_upstream_incarnation_changes_total") == 0
    assert m.value("alpcrund_upstream_target_up", upstream=b.addr) == 1
    assert "store changed" not in node.log()
    st, body = node.http_get("/status.json")
    assert json.loads(body)["incarnation"] == inc
