"""Spec §5 "Cut-through": while a node fetches a level, every waiter (its
own workers, and the nodes behind it) gets the bytes as they arrive, not
after the whole payload is stored; the stored copy and every forwarded one
are the same bytes; an upstream that fails half way fails every forwarded
stream with its status, and nothing partial is stored.

A throttled upstream: a fake central on a raw socket (hyper-h2, from
test_abuse_node) that sends a reply's first half, waits until the test
lets it go on, then sends the rest (or fails). In front of it node A, and
node B in front of A; grpcio workers on both. Loopback only; no timing in
the assertions: "before" is shown by the counters of what B received while
the fake holds the second half back.
"""
import socket
import threading

import grpc
import pytest

from alptest import (MiB, encode_duration, field_bytes, field_varint, free_port,
                     grpc_frame, sd, wait_until)
from test_abuse_node import Fake, H2Server

C = grpc.StatusCode
GET = "/alpcrun.v1.Cache/GetSharedData"
NODE = ("mode node\nbackend memory\nupstream %s\nupstream_keepalive 60s\n"
        "log_level debug\n")
RECEIVED = "alpcrund_upstream_received_bytes_total"


def reply_body(sid, level, payload, ttl=(600, 0)):
    """A Get reply as a central of this version writes it: the payload
    last (spec §3), so that a node knows every other field before it."""
    return (field_bytes(1, sid.encode()) + field_varint(2, level) +
            field_bytes(4, encode_duration(*ttl)) + field_bytes(3, payload))


def send(srv, sid, data):
    """DATA frames of at most the peer's frame size (the node's windows
    are far larger than these tests send)."""
    step = srv.conn.max_outbound_frame_size
    for i in range(0, len(data), step):
        assert srv.conn.local_flow_control_window(sid) >= len(data[i:i + step])
        srv.conn.send_data(sid, data[i:i + step])
        srv.flush()


class Throttled:
    """The fake central's script: the first Get gets the reply's head and
    half its payload, then waits for go; then the rest and OK, or with
    fail=(code, message) that status in trailers. Later Gets are answered
    whole at once."""

    def __init__(self, payload, fail=None, sid="big", level=1):
        self.msg = grpc_frame(reply_body(sid, level, payload))
        self.half = len(self.msg) - len(payload) // 2
        self.fail = fail
        self.gets = 0
        self.sent_half = threading.Event()
        self.go = threading.Event()

    def on_request(self, srv, sid, path):
        assert path == GET, path
        self.gets += 1
        srv.reply_headers(sid)
        if self.gets == 1:
            send(srv, sid, self.msg[:self.half])
            self.sent_half.set()
            assert self.go.wait(60), "the test never let the fake go on"
            if self.fail is not None:
                code, message = self.fail
                srv.conn.send_headers(sid, [("grpc-status", str(code)),
                                            ("grpc-message", message)],
                                      end_stream=True)
                srv.flush()
                return
        else:
            send(srv, sid, self.msg[:self.half])
        send(srv, sid, self.msg[self.half:])
        srv.conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        srv.flush()

    def handler(self, sock, fake):
        H2Server(sock, fake).run(self.on_request)


def tiers(make_daemon, script):
    """fake central <- node A <- node B."""
    port = free_port()
    fake = Fake(port, script.handler)
    a = make_daemon(NODE % ("127.0.0.1:%d" % port))
    b = make_daemon(NODE % a.addr)
    a.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 1, 15)
    b.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 1, 15)
    return fake, a, b


def start_get(d, sid, level, out):
    def run():
        try:
            out.append((C.OK, d.stub().GetSharedData(sd(sid, level), timeout=60)))
        except grpc.RpcError as e:
            out.append((e.code(), e.details()))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def counts(d):
    m = d.metrics()
    return {k: m.value(k) for k in ("alpcrund_upstream_fetches_total",
                                    "alpcrund_entries", "alpcrund_inflight_bytes",
                                    "alpcrund_coalesced_waits_total")}


@pytest.mark.timeout(120)
def test_child_gets_bytes_before_its_parent_holds_the_level(make_daemon):
    payload = bytes(range(256)) * (4 * MiB // 256)
    script = Throttled(payload)
    fake, a, b = tiers(make_daemon, script)
    a0, b0 = counts(a), counts(b)
    out = []
    t = start_get(b, "big", 1, out)
    assert script.sent_half.wait(30), "the fetch never reached the fake central"
    # B has the head and half the payload, through A, while A holds no
    # copy yet: A passes bytes on as they arrive.
    b.wait_metric(lambda m: m.value(RECEIVED, upstream=a.addr) >= len(payload) // 2, 20)
    assert counts(a)["alpcrund_entries"] == a0["alpcrund_entries"]
    assert counts(b)["alpcrund_entries"] == b0["alpcrund_entries"]
    assert not out, out
    script.go.set()
    t.join(60)
    code, r = out[0]
    assert code == C.OK, (code, r)
    assert r.update_level == 1 and r.payload == payload
    assert 0 < r.ttl.seconds <= 600
    # One fetch per tier; each holds the same bytes, now served as hits.
    for d, before in ((a, a0), (b, b0)):
        after = counts(d)
        assert after["alpcrund_upstream_fetches_total"] == \
            before["alpcrund_upstream_fetches_total"] + 1
        assert after["alpcrund_entries"] == before["alpcrund_entries"] + 1
        assert d.stub().GetSharedData(sd("big", 1), timeout=10).payload == payload
        assert counts(d)["alpcrund_upstream_fetches_total"] == \
            after["alpcrund_upstream_fetches_total"]
        d.wait_metric(lambda m, b=before: m.value("alpcrund_inflight_bytes") ==
                      b["alpcrund_inflight_bytes"], 15)
    assert script.gets == 1
    fake.close()


@pytest.mark.timeout(120)
def test_upstream_failing_half_way_fails_every_forwarded_stream(make_daemon):
    payload = b"\x5a" * (4 * MiB)
    script = Throttled(payload, fail=(14, "central going away"))
    fake, a, b = tiers(make_daemon, script)
    a0, b0 = counts(a), counts(b)
    out = []
    threads = [start_get(b, "big", 1, out) for _ in range(3)]
    assert script.sent_half.wait(30), "the fetch never reached the fake central"
    threads += [start_get(a, "big", 1, out) for _ in range(2)]
    # Every worker waits on the one fetch of its node (B's fetch is one
    # more waiter on A), and has half the payload on its way.
    b.wait_metric(lambda m: m.value("alpcrund_coalesced_waits_total") ==
                  b0["alpcrund_coalesced_waits_total"] + 2, 20)
    a.wait_metric(lambda m: m.value("alpcrund_coalesced_waits_total") ==
                  a0["alpcrund_coalesced_waits_total"] + 2, 20)
    b.wait_metric(lambda m: m.value(RECEIVED, upstream=a.addr) >= len(payload) // 2, 20)
    script.go.set()
    for t in threads:
        t.join(60)
    # The upstream's status, through both tiers; never a short payload.
    assert sorted(out, key=repr) == [(C.UNAVAILABLE, "central going away")] * 5, out
    # Nothing partial stored, nothing left in flight.
    for d, before in ((a, a0), (b, b0)):
        assert counts(d)["alpcrund_entries"] == before["alpcrund_entries"]
        d.wait_metric(lambda m, b=before: m.value("alpcrund_inflight_bytes") ==
                      b["alpcrund_inflight_bytes"], 15)
    # The next Get fetches again, and gets the whole level.
    r = b.stub().GetSharedData(sd("big", 1), timeout=30)
    assert r.payload == payload
    assert script.gets == 2
    fake.close()


@pytest.mark.timeout(120)
def test_a_reply_with_its_payload_first_is_passed_on_whole(make_daemon):
    """An upstream that writes the ttl after the payload (protobuf's field
    order; an older central) cannot be cut through: the node waits for the
    whole reply, and serves it all the same."""
    payload = b"older central " * 10000
    msg = grpc_frame(field_bytes(1, b"old") + field_varint(2, 3) +
                     field_bytes(3, payload) + field_bytes(4, encode_duration(60, 0)))

    def on_request(srv, sid, path):
        srv.reply_headers(sid)
        send(srv, sid, msg)
        srv.conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        srv.flush()
    port = free_port()
    fake = Fake(port, lambda sock, f: H2Server(sock, f).run(on_request))
    a = make_daemon(NODE % ("127.0.0.1:%d" % port))
    r = a.stub().GetSharedData(sd("old", 3), timeout=30)
    assert r.update_level == 3 and r.payload == payload and 0 < r.ttl.seconds <= 60
    assert a.stub().GetSharedData(sd("old", 3), timeout=10).payload == payload
    assert a.metric("alpcrund_upstream_fetches_total") == 1
    fake.close()


# --- a fetch under way when its upstream is lost (spec §5 "Failover") -----------

INC, GEN = "00000000000000aa", "00000000000000bb"


def identity_headers(srv, sid, gen=GEN):
    srv.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                ("alpcrun-incarnation", INC), ("alpcrun-generation", gen)])


def lost_and_next(make_daemon, payload, next_gen):
    """Upstream 1 sends half a level, then vanishes (its connection and
    listener closed, as a killed host's); upstream 2 holds the level with
    generation next_gen. Node A's upstream list is both; node B is behind
    A; a worker on each is half way through the level when upstream 1
    goes. Returns (a, b, outcomes)."""
    msg = grpc_frame(reply_body("big", 1, payload))
    half = len(msg) - len(payload) // 2
    go = threading.Event()

    def first(srv, sid, path):
        identity_headers(srv, sid)
        send(srv, sid, msg[:half])
        assert go.wait(60)
        srv.fake.lsock.close()
        srv.sock.shutdown(socket.SHUT_RDWR)
        srv.sock.close()

    def second(srv, sid, path):
        identity_headers(srv, sid, next_gen)
        send(srv, sid, msg)
        srv.conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        srv.flush()
    p1, p2 = free_port(), free_port()
    f1 = Fake(p1, lambda sock, f: H2Server(sock, f).run(first))
    f2 = Fake(p2, lambda sock, f: H2Server(sock, f).run(second))
    up1 = "127.0.0.1:%d" % p1
    a = make_daemon(NODE % (up1 + " 127.0.0.1:%d" % p2))
    b = make_daemon(NODE % a.addr)
    # (bounds generous: a loaded machine runs the whole suite beside it)
    a.wait_metric(lambda m: m.value("alpcrund_upstream_target_up", upstream=up1) == 1, 40)
    b.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 1, 40)
    out = []
    threads = [start_get(a, "big", 1, out), start_get(b, "big", 1, out)]
    # Both workers' replies are under way, half the level sent on.
    b.wait_metric(lambda m: m.value(RECEIVED, upstream=a.addr) >= len(payload) // 2, 40)
    go.set()
    for t in threads:
        t.join(60)
    f1.close()
    f2.close()
    return a, b, out


@pytest.mark.timeout(120)
def test_fetch_under_way_moves_to_the_next_upstream(make_daemon):
    payload = bytes(range(251)) * (4 * MiB // 251)
    a, b, out = lost_and_next(make_daemon, payload, GEN)
    assert [c for c, _ in out] == [C.OK, C.OK], out
    assert all(r.payload == payload for _, r in out)
    assert 'msg="upstream lost during a fetch: sent again"' in a.log()
    # Stored once, from the second upstream's answer; B fetched once.
    assert a.metric("alpcrund_upstream_fetches_total") == 2
    assert b.metric("alpcrund_upstream_fetches_total") == 1
    assert a.stub().GetSharedData(sd("big", 1), timeout=10).payload == payload


@pytest.mark.timeout(120)
def test_fetch_under_way_never_mixes_two_contents(make_daemon):
    """The next upstream holds another content under the same level (a
    store that is not the one the first bytes came from): the replies
    already under way fail rather than end with bytes of both."""
    payload = b"\xa5" * (4 * MiB)
    a, b, out = lost_and_next(make_daemon, payload, "00000000000000cc")
    msg = ("the upstream was lost during the fetch, and the next one holds "
           "another content for this level")
    assert out == [(C.UNAVAILABLE, msg)] * 2, out
    assert a.metric("alpcrund_entries") == 0 and b.metric("alpcrund_entries") == 0


@pytest.mark.timeout(120)
def test_status_page_shows_the_fetch_in_flight(make_daemon):
    """Spec §8: a node's /status.json lists its upstreams and every fetch
    in flight, with bytes received of total, while the level arrives."""
    import json
    payload = b"\x11" * (4 * MiB)
    script = Throttled(payload)
    fake, a, b = tiers(make_daemon, script)
    out = []
    t = start_get(b, "big", 1, out)
    assert script.sent_half.wait(30)

    def fetch_of(d):
        st, body = d.http_get("/status.json")
        assert st == 200
        j = json.loads(body)
        return j, [f for f in j["fetches"] if f["session"] == "big"]
    total = len(script.msg) - 5
    wait_until(lambda: fetch_of(a)[1] and fetch_of(a)[1][0]["received"] >= len(payload) // 2,
               20, what="A's fetch half way in its status")
    j, (f,) = fetch_of(a)
    assert j["role"] == "node" and j["node_id"]
    assert f["level"] == 1 and f["total"] == total and f["received"] < total
    assert f["waiters"] == 1 and f["queued"] is False and f["rate_bps"] > 0
    assert [u["address"] for u in j["upstreams"]] == [fake_addr(fake)]
    assert j["upstreams"][0]["up"] is True and j["link"] == "up"
    # B, behind A, shows its own fetch of the same level from A
    jb, (fb,) = fetch_of(b)
    assert jb["upstreams"][0]["address"] == a.addr and fb["total"] >= total
    script.go.set()
    t.join(60)
    assert out[0][0] == C.OK
    wait_until(lambda: not fetch_of(a)[1] and not fetch_of(b)[1], 10,
               what="the fetches gone from the status")
    assert [x["id"] for x in fetch_of(a)[0]["sessions"]] == ["big"]
    fake.close()


def fake_addr(fake):
    return "127.0.0.1:%d" % fake.lsock.getsockname()[1]
