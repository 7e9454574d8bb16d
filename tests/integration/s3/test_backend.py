"""backend s3 end to end: centrals serving from a bucket. The tests that
need no fault of the fake store run against every store of the fixture
s3store (fakes3.py and s3rver; Ceph RGW in the RGW stage); those of faults
against fakes3.py in the test's own process.

One central: Set, Get, Update and Delete through grpcio with the exact
messages of spec §4. Two centrals on one bucket: a Set on one is read on
the other, an Update racing on both has one winner and the loser gets the
§4 refusal, a Delete on one is honoured on the other, and both announce the
bucket's incarnation. Faults: a store answering 503 to writes fails the
write UNAVAILABLE naming the store's error; a lost reply of the head's
commit is resolved (the write succeeds, once); a payload changed in the
bucket behind the daemons' back is never served. The change feed lists
the bucket's heads and reports this central's writes. The client's
alpcrund_s3_* metrics show on /metrics; a node with backend s3 is a
configuration error."""
import json
import subprocess
import threading
import time

import grpc
import pytest

import alptest
import fakes3
from alptest import cache_pb2, sd
from s3stores import rgw, s3store, xml  # noqa: F401  (fixtures)

C = grpc.StatusCode
N = cache_pb2.SharedDataNotice
AK, SK = "AKIDBACKEND", "backend/secret+key"
BUCKET = "alp-backend"


@pytest.fixture
def store():
    s = fakes3.FakeS3(buckets=(BUCKET,), access_key=AK, secret_key=SK).start()
    yield s
    s.stop()


def where(store):
    """(url, bucket, access key, secret key) of the fault store or of a
    store of the fixture s3store."""
    if isinstance(store, fakes3.FakeS3):
        return store.url, BUCKET, AK, SK
    return store.url, store.bucket, store.access_key, store.secret_key


def s3_config(tmp_path, store, more=""):
    url, bucket, ak, sk = where(store)
    cred = tmp_path / "s3.cred"
    cred.write_text("access_key_id %s\nsecret_access_key %s\n" % (ak, sk))
    for default in ("s3_retries 1", "s3_timeout 5s"):
        if default.split()[0] + " " not in more:
            more = default + "\n" + more
    return ("backend s3\ns3_endpoint %s\ns3_bucket %s\ns3_prefix p/\n"
            "s3_credentials %s\n%s" % (url, bucket, cred, more))


def listed(s3store, prefix="p/"):
    """Every key under prefix, page after page."""
    c, keys, token = s3store.client(), [], None
    while True:
        q = {"list-type": "2", "prefix": prefix}
        if token:
            q["continuation-token"] = token
        r = c.request("GET", s3store.bucket, query=q)
        assert r.status == 200, r
        root = xml(r.body)
        keys += [e.text for e in root.iter("Key")]
        token = root.findtext("NextContinuationToken")
        if not token:
            return keys


def central(make_daemon, tmp_path, store, name, more=""):
    d = tmp_path / name
    d.mkdir()
    return make_daemon(s3_config(d, store, more))


def expect(fn, req, code, message=None, contains=None):
    with pytest.raises(grpc.RpcError) as e:
        fn(req, timeout=15)
    assert e.value.code() == code, (e.value.code(), e.value.details())
    if message is not None:
        assert e.value.details() == message
    if contains is not None:
        assert contains in e.value.details(), e.value.details()
    return e.value


def incarnation(stub, sid):
    _, call = stub.GetSharedData.with_call(sd(sid), timeout=10)
    return dict(call.initial_metadata())["alpcrun-incarnation"]


def test_set_get_update_delete(make_daemon, tmp_path, s3store):
    d = central(make_daemon, tmp_path, s3store, "a")
    s = d.stub()
    s.SetSharedData(sd("s1", 3, b"three", 60), timeout=15)
    r = s.GetSharedData(sd("s1"), timeout=15)
    assert (r.update_level, r.payload) == (3, b"three")
    assert 50 < r.ttl.seconds <= 60
    # A retry of the same bytes is OK; other bytes are refused.
    s.SetSharedData(sd("s1", 3, b"three", 60), timeout=15)
    expect(s.SetSharedData, sd("s1", 4, b"four"), C.ALREADY_EXISTS,
           "shared data already exists for session s1 at update level 3")
    expect(s.GetSharedData, sd("s1", 2), C.FAILED_PRECONDITION,
           "update level mismatch: expected 3, got 2")
    expect(s.UpdateSharedData, sd("s1", 5, b"five"), C.FAILED_PRECONDITION,
           "update level mismatch: expected 4, got 5")
    s.UpdateSharedData(sd("s1", 4, b"four", 60), timeout=15)
    s.UpdateSharedData(sd("s1", 4, b"four", 60), timeout=15)   # a retry
    assert s.GetSharedData(sd("s1", 4), timeout=15).payload == b"four"
    s.DeleteSharedData(sd("s1"), timeout=15)
    expect(s.GetSharedData, sd("s1"), C.NOT_FOUND, "shared data not found for session s1")
    expect(s.DeleteSharedData, sd("s1"), C.NOT_FOUND, "shared data not found for session s1")
    expect(s.SetSharedData, sd("s1", 4, b"other"), C.FAILED_PRECONDITION,
           "shared data for session s1 was deleted at update level 4; "
           "set update level 5 or higher")
    s.SetSharedData(sd("s1", 4, b"four"), timeout=15)          # revives
    s.SetSharedData(sd("s2", 1, b"x" * 300000), timeout=15)
    assert s.GetSharedData(sd("s2"), timeout=15).payload == b"x" * 300000
    expect(s.UpdateSharedData, sd("nope", 1, b""), C.NOT_FOUND,
           "shared data not found for session nope")
    keys = set(listed(s3store))
    assert "p/incarnation" in keys and "p/s/s1/head" in keys and "p/s/s1/L/4" in keys
    assert any(k.startswith("p/b/s2/1-") for k in keys)


def test_two_centrals_share_one_store(make_daemon, tmp_path, s3store):
    a = central(make_daemon, tmp_path, s3store, "a")
    b = central(make_daemon, tmp_path, s3store, "b")
    sa, sb = a.stub(), b.stub()
    sa.SetSharedData(sd("shared", 1, b"one"), timeout=15)
    assert sb.GetSharedData(sd("shared"), timeout=15).payload == b"one"
    assert incarnation(sa, "shared") == incarnation(sb, "shared")

    # An Update racing on both: one winner, the loser refused as §4 says.
    for level in range(2, 8):
        results = {}

        def upd(name, stub):
            try:
                stub.UpdateSharedData(sd("shared", level, name.encode() * 4),
                                      timeout=15)
                results[name] = "ok"
            except grpc.RpcError as e:
                results[name] = (e.code(), e.details())
        ts = [threading.Thread(target=upd, args=(n, st)) for n, st in
              (("a", sa), ("b", sb))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        oks = [n for n, r in results.items() if r == "ok"]
        assert len(oks) == 1, results
        loser = [r for r in results.values() if r != "ok"][0]
        assert loser == (C.FAILED_PRECONDITION, "update level mismatch: expected %d, got %d"
                         % (level + 1, level)), results
        winner = oks[0].encode() * 4
        assert sa.GetSharedData(sd("shared"), timeout=15).payload == winner
        assert sb.GetSharedData(sd("shared", level), timeout=15).payload == winner

    # A Delete on one is honoured on the other.
    sb.DeleteSharedData(sd("shared"), timeout=15)
    expect(sa.GetSharedData, sd("shared"), C.NOT_FOUND)
    expect(sa.SetSharedData, sd("shared", 7, b"other"), C.FAILED_PRECONDITION,
           "shared data for session shared was deleted at update level 7; "
           "set update level 8 or higher")


def test_store_errors_on_writes_are_unavailable(make_daemon, tmp_path, store):
    d = central(make_daemon, tmp_path, store, "a")
    s = d.stub()
    store.faults({"method": "PUT", "key": r"^p/", "action": {"status": 503, "code": "SlowDown"},
                  "count": -1})
    e = expect(s.SetSharedData, sd("w", 1, b"v"), C.UNAVAILABLE)
    assert "s3 store: PUT" in e.details() and "HTTP 503 SlowDown" in e.details(), e.details()
    store.faults(clear=True)
    s.SetSharedData(sd("w", 1, b"v"), timeout=15)
    assert s.GetSharedData(sd("w"), timeout=15).payload == b"v"


def test_lost_reply_of_the_head_commit_is_resolved(make_daemon, tmp_path, store):
    d = central(make_daemon, tmp_path, store, "a")
    s = d.stub()
    s.SetSharedData(sd("lost", 1, b"one"), timeout=15)
    store.faults({"method": "PUT", "key": r"^p/s/lost/head$", "action": "lose_reply"})
    s.UpdateSharedData(sd("lost", 2, b"two"), timeout=15)
    assert store.stats()["faults_applied"] == 1
    assert s.GetSharedData(sd("lost", 2), timeout=15).payload == b"two"
    # Applied once: the next level is 3.
    expect(s.UpdateSharedData, sd("lost", 2, b"again"), C.FAILED_PRECONDITION,
           "update level mismatch: expected 3, got 2")


def test_changed_payload_is_never_served(make_daemon, tmp_path, s3store):
    a = central(make_daemon, tmp_path, s3store, "a")
    a.stub().SetSharedData(sd("evil", 1, b"the right bytes"), timeout=15)
    blob = [k for k in listed(s3store) if k.startswith("p/b/evil/1-")]
    assert len(blob) == 1
    r = s3store.client().request("PUT", s3store.bucket, blob[0], body=b"the wrong bytes")
    assert r.status == 200, r
    b = central(make_daemon, tmp_path, s3store, "b")   # holds no copy of its own
    e = expect(b.stub().GetSharedData, sd("evil"), C.UNAVAILABLE)
    assert "store lookup failed" in e.details()
    b.wait_log("not the record's: not served", timeout=5)


def test_s3_metrics(make_daemon, tmp_path, s3store):
    d = central(make_daemon, tmp_path, s3store, "a")
    s = d.stub()
    s.SetSharedData(sd("m", 1, b"v"), timeout=15)
    s.GetSharedData(sd("m"), timeout=15)
    st, text = d.http_get("/metrics")
    assert st == 200
    for fam in ("alpcrund_s3_requests_total", "alpcrund_s3_retries_total",
                "alpcrund_s3_request_duration_seconds"):
        assert fam in str(text), fam
    assert d.metric("alpcrund_s3_requests_total", op="PUT", result="2xx") >= 3
    assert d.metric("alpcrund_s3_requests_total", op="GET", result="2xx") >= 1


def test_node_with_backend_s3_is_refused(tmp_path):
    p = tmp_path / "n.conf"
    p.write_text("mode node\nupstream 127.0.0.1:9\nbackend s3\n"
                 "s3_endpoint http://127.0.0.1:9\ns3_bucket abc\n")
    r = subprocess.run([alptest.ALPCRUND, "-t", "-c", str(p)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert "3: backend s3 is not supported with mode node" in r.stderr, r.stderr


def watch(stub, sid=""):
    """A WatchSharedData stream's notices up to SNAPSHOT_END, and the
    stream (to read on)."""
    it = stub.WatchSharedData(cache_pb2.WatchRequest(session_id=sid), timeout=30)
    out = []
    for n in it:
        out.append(n)
        if n.kind == N.SNAPSHOT_END:
            return out, it
    raise AssertionError("the stream ended before SNAPSHOT_END: %r" % out)


def test_change_feed_over_the_bucket(make_daemon, tmp_path, s3store):
    """The snapshot of every session lists the bucket's heads (written by
    another central too), one session's snapshot is its head, and a write
    through this central is a live notice with its ttl."""
    a = central(make_daemon, tmp_path, s3store, "a")
    b = central(make_daemon, tmp_path, s3store, "b")
    for i in range(150):                      # more than a page of heads
        a.stub().SetSharedData(sd("w%03d" % i, i + 1, b"v" * (i % 7), 60), timeout=15)
    a.stub().SetSharedData(sd("gone", 1, b"x", 60), timeout=15)
    a.stub().DeleteSharedData(sd("gone"), timeout=15)
    snap, _ = watch(b.stub())
    got = {n.session_id: (n.update_level, n.size) for n in snap if n.kind == N.SNAPSHOT}
    assert got == {"w%03d" % i: (i + 1, i % 7) for i in range(150)}
    one, it = watch(b.stub(), "w007")
    assert [(n.kind, n.session_id, n.update_level) for n in one] == \
        [(N.SNAPSHOT, "w007", 8), (N.SNAPSHOT_END, "", 0)]
    b.stub().UpdateSharedData(sd("w007", 9, b"nine", 60), timeout=15)
    n = next(it)
    assert (n.kind, n.session_id, n.update_level, n.size) == (N.UPDATE, "w007", 9, 4)
    assert 50 < n.ttl.seconds <= 60


def status_s3(d):
    st, body = d.http_get("/status.json")
    assert st == 200
    return json.loads(body)["s3"]


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    try:
        return fn(*a, **kw), time.monotonic() - t0
    except grpc.RpcError as e:
        return e, time.monotonic() - t0


def test_store_down_refuses_writes_at_once_and_hits_go_on(make_daemon, tmp_path, store):
    """A store that answers every request 503: Gets of the sessions this
    central holds go on from its hot tier, writes fail UNAVAILABLE naming
    the store's error; after 3 failed requests in a row the store is down:
    writes refused at once, /readyz ready with a line saying so, the
    gauges, the status page. Back: writes go again."""
    d = central(make_daemon, tmp_path, store, "a")
    s = d.stub()
    s.SetSharedData(sd("hot", 1, b"held", 300), timeout=15)
    assert d.http_get("/readyz") == (200, "ready\n")
    m = d.metrics()
    assert m.value("alpcrund_s3_store_up") == 1 and m.value("alpcrund_s3_store_state") == 0
    info = status_s3(d)
    assert (info["endpoint"], info["bucket"], info["prefix"], info["state"], info["last_error"]) == \
        (store.url, BUCKET, "p/", "up", None)

    store.faults({"key": "", "action": {"status": 503, "code": "SlowDown"}, "count": -1})
    # The head request fails: the head as last validated answers.
    assert s.GetSharedData(sd("hot", 1), timeout=15).payload == b"held"
    d.wait_log("s3 store lookup failed, answered from the hot tier")
    assert status_s3(d)["state"] == "degraded"
    st, body = d.http_get("/readyz")
    assert st == 200 and body.startswith("ready\ns3 store degraded: GET s/hot/head: "
                                         "HTTP 503 SlowDown"), body
    e = expect(s.SetSharedData, sd("w1", 1, b"v"), C.UNAVAILABLE)
    assert e.details().startswith("s3 store: GET s/w1/head: HTTP 503 SlowDown"), e.details()
    expect(s.SetSharedData, sd("w2", 1, b"v"), C.UNAVAILABLE)
    # Three in a row: down. Writes and Gets of sessions not held no longer
    # wait on the store.
    info = status_s3(d)
    assert info["state"] == "down" and info["failed_in_a_row"] >= 3, info
    assert "HTTP 503 SlowDown" in info["last_error"], info
    e, took = timed(s.SetSharedData, sd("w3", 1, b"v"), timeout=15)
    assert e.code() == C.UNAVAILABLE and took < 0.5, (e, took)
    assert e.details().startswith("s3 store down (") and "HTTP 503 SlowDown" in e.details(), \
        e.details()
    r, took = timed(s.GetSharedData, sd("hot"), timeout=15)
    assert r.payload == b"held" and took < 0.5, (r, took)
    e, took = timed(s.GetSharedData, sd("cold"), timeout=15)
    assert (e.code(), e.details()) == (C.UNAVAILABLE, "store lookup failed") and took < 0.5
    m = d.metrics()
    assert m.value("alpcrund_s3_store_up") == 0 and m.value("alpcrund_s3_store_state") == 2
    st, body = d.http_get("/readyz")
    assert st == 200 and body.startswith(
        "ready\ns3 store down (writes refused, Gets from this central's copies): "), body
    assert "HTTP 503 SlowDown" in body, body
    d.wait_log("s3 store down")

    # Back: the probe of a down store finds it within a second or two.
    store.faults(clear=True)
    d.wait_metric(lambda m: m.value("alpcrund_s3_store_up") == 1, 10)
    assert status_s3(d)["state"] == "degraded"    # a failure within 30 s
    s.SetSharedData(sd("w3", 1, b"v"), timeout=15)
    assert s.GetSharedData(sd("w3"), timeout=15).payload == b"v"
    assert d.metric("alpcrund_s3_store_state") == 1


def test_slow_store_fails_writes_by_its_deadline_and_hits_go_on(make_daemon, tmp_path, store):
    """A store slower than s3_timeout: a write fails UNAVAILABLE naming the
    timeout, a Get of a session held is answered from the hot tier."""
    d = central(make_daemon, tmp_path, store, "a", "s3_timeout 500ms\ns3_retries 0\n")
    s = d.stub()
    s.SetSharedData(sd("hot", 1, b"held", 300), timeout=15)
    store.faults({"key": "", "action": {"latency_ms": 2000}, "count": -1})
    assert s.GetSharedData(sd("hot"), timeout=15).payload == b"held"
    e = expect(s.SetSharedData, sd("w", 1, b"v"), C.UNAVAILABLE)
    assert e.details().startswith("s3 store: GET s/w/head: timed out: "), e.details()
    assert status_s3(d)["last_error"].startswith("GET s/w/head: timed out: ")
    store.faults(clear=True)
