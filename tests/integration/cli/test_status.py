"""Spec §8 "Status page": GET / on metrics_listen is one self-contained
HTML page, GET /status.json what it shows: role, version, uptime, the
store's figures, requests, and the sessions held (bounded: at most 1000
listed, the rest counted), never a payload byte; status_sessions off
hides the session ids (live on SIGHUP). Real daemon on loopback."""
import http.client
import json
import re
import signal

from alptest import sd, wait_until

SECRET = b"payload bytes never shown"


def status(d):
    st, body = d.http_get("/status.json")
    assert st == 200, (st, body)
    return json.loads(body), body


def request(d, method, path):
    c = http.client.HTTPConnection("127.0.0.1", d.metrics_port, timeout=5)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def test_central_status_lists_sessions_without_payloads(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("model-a", 3, SECRET, ttl=600), timeout=10)
    s.SetSharedData(sd('we"ird\\id', 0, b"x" * 5000, ttl=60), timeout=10)
    s.GetSharedData(sd("model-a"), timeout=10)
    j, body = status(daemon)
    assert j["role"] == "central" and j["backend"] in ("memory", "lmdb")
    assert re.fullmatch(r"\d+\.\d+\.\d+", j["version"])
    assert j["uptime_s"] >= 0
    assert j["store"]["entries"] == 2
    assert j["requests"]["SetSharedData"] == {"ok": 2, "errors": 0}
    assert j["requests"]["GetSharedData"]["ok"] == 1 and j["hits"] == 1
    got = {x["id"]: x for x in j["sessions"]}
    assert set(got) == {"model-a", 'we"ird\\id'}          # escaped and back
    assert got["model-a"]["level"] == 3 and got["model-a"]["bytes"] == len(SECRET)
    assert 0 < got["model-a"]["ttl_s"] <= 600
    assert got['we"ird\\id']["bytes"] == 5000 and got['we"ird\\id']["ttl_s"] <= 60
    assert j["sessions_more"] == 0
    assert SECRET.decode() not in body


def test_reads_per_session(daemon):
    """Each session's reads: Gets answered from the store since the entry
    was set (misses and refused Gets are no reads); an Update keeps the
    count, a Delete ends it."""
    import grpc
    s = daemon.stub()
    s.SetSharedData(sd("read-me", 1, b"v"), timeout=10)
    s.SetSharedData(sd("unread", 1, b"v"), timeout=10)
    for _ in range(3):
        s.GetSharedData(sd("read-me"), timeout=10)
    try:
        s.GetSharedData(sd("read-me", 9), timeout=10)   # a mismatch: no read
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    else:
        raise AssertionError("a Get at the wrong level was answered")

    def reads():
        return {x["id"]: x["reads"] for x in status(daemon)[0]["sessions"]}
    assert reads() == {"read-me": 3, "unread": 0}
    s.UpdateSharedData(sd("read-me", 2, b"w"), timeout=10)
    s.GetSharedData(sd("read-me"), timeout=10)
    assert reads()["read-me"] == 4
    s.DeleteSharedData(sd("read-me"), timeout=10)
    s.SetSharedData(sd("read-me", 3, b"x"), timeout=10)
    assert reads() == {"read-me": 0, "unread": 0}
    st, _, page = request(daemon, "GET", "/")
    assert b"'reads'" in page


def test_page_is_self_contained(daemon):
    st, headers, body = request(daemon, "GET", "/")
    assert st == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "status.json" in page
    # no outside asset: nothing fetched from another origin
    assert not re.search(r"(src|href)\s*=|https?://|@import", page), page[:200]
    st, headers, body = request(daemon, "HEAD", "/status.json")
    assert st == 200 and body == b""
    for method in ("POST", "PUT", "DELETE"):
        st, headers, _ = request(daemon, method, "/status.json")
        assert st == 405 and headers["Allow"] == "GET, HEAD", (method, st)
    assert request(daemon, "GET", "/status")[0] == 404


def test_many_sessions_are_capped_and_counted(daemon):
    s = daemon.stub()
    futures = [s.SetSharedData.future(sd("s%05d" % i, 1, b"v"), timeout=30)
               for i in range(2500)]
    for f in futures:
        f.result()
    j, _ = status(daemon)
    assert len(j["sessions"]) == 1000
    assert len({x["id"] for x in j["sessions"]}) == 1000
    assert j["sessions_more"] == 1500
    assert j["store"]["entries"] == 2500


def test_session_list_off_hides_ids_live_on_sighup(make_daemon):
    d = make_daemon("status_sessions off\n")
    d.stub().SetSharedData(sd("secret-session", 1, b"v"), timeout=10)
    j, body = status(d)
    assert j["sessions"] is None and j["store"]["entries"] == 1
    assert "secret-session" not in body
    d.write_config("status_sessions on\n")
    mark = len(d.log())
    d.signal(signal.SIGHUP)
    d.wait_log(r'msg=reloaded', 10, mark)
    wait_until(lambda: status(d)[0]["sessions"] is not None, 10, what="the list back")
    assert [x["id"] for x in status(d)[0]["sessions"]] == ["secret-session"]


def test_a_hundred_thousand_sessions_all_accounted_for(daemon):
    """100,000 sessions: /status.json and the page answer, every session
    shown or counted, while Gets keep being served."""
    s = daemon.stub()
    for base in range(0, 100000, 2000):
        fs = [s.SetSharedData.future(sd("k%06d" % i, 1, b"v"), timeout=60)
              for i in range(base, base + 2000)]
        for f in fs:
            f.result()
    j, _ = status(daemon)
    assert j["store"]["entries"] == 100000
    assert len(j["sessions"]) + j["sessions_more"] == 100000
    assert len(j["sessions"]) == 1000
    st, _, body = request(daemon, "GET", "/")
    assert st == 200 and b"status.json" in body
    assert s.GetSharedData(sd("k099999"), timeout=10).payload == b"v"


def test_watchers_and_children(make_daemon):
    """Central's page lists who watches its feed (a node by its id, a
    plain client as null); a node with prefetch lists the nodes behind
    it."""
    from alptest import cache_pb2
    c = make_daemon()
    a = make_daemon("mode node\nbackend memory\nupstream %s\nprefetch on\n" % c.addr)
    b = make_daemon("mode node\nbackend memory\nupstream %s\nprefetch on\n" % a.addr)
    for d in (a, b):
        d.wait_log(r'msg="change feed snapshot received"', 30)
    it = c.stub().WatchSharedData(cache_pb2.WatchRequest(session_id="only-this"),
                                  timeout=30)
    next(it)
    ida, idb = status(a)[0]["node_id"], status(b)[0]["node_id"]
    assert ida and idb and ida != idb

    def by_node(d):
        return {w["node_id"]: w for w in status(d)[0]["watchers"]}
    wait_until(lambda: set(by_node(c)) == {ida, None}, 10, what="central's two watchers")
    w = by_node(c)
    assert w[ida]["session"] is None and w[ida]["in_snapshot"] is False
    assert w[None]["session"] == "only-this" and w[None]["notices"] >= 1
    # each by its connection's address
    assert re.fullmatch(r"127\.0\.0\.1:\d+", w[ida]["peer"]), w[ida]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", w[None]["peer"]), w[None]
    assert w[ida]["peer"] != w[None]["peer"]
    assert set(by_node(a)) == {idb} and by_node(a)[idb]["via"].endswith(idb)
    assert status(b)[0]["watchers"] == []
    it.cancel()
    # a node counts the reads it answers from its copies
    c.stub().SetSharedData(sd("on-b", 1, b"v"), timeout=10)
    assert b.stub().GetSharedData(sd("on-b"), timeout=10).payload == b"v"  # fetched
    assert [x["id"] for x in status(b)[0]["sessions"]] == ["on-b"]
    for _ in range(2):
        assert b.stub().GetSharedData(sd("on-b"), timeout=10).payload == b"v"
    assert status(b)[0]["sessions"][0]["reads"] == 2
