"""Node mode hardening against a hostile or broken central (issue #9, spec
§5 "Upstream link" and `prefetch on`), beyond test_abuse_node.py, whose
fake central and frame (hostile, probed, recovered) these tests reuse:

- a change-feed notice is small: one announced at 200 MiB ends the watch
  (RESOURCE_EXHAUSTED) before anything is allocated or counted in flight,
  and the node watches again;
- a feed that sends a whole snapshot and breaks the stream at once is not
  resubscribed every 100 ms: the node's delays (from its own log) grow;
- a reply whose content-type is not gRPC is never parsed as gRPC messages:
  UNKNOWN (or its HTTP status's mapping), the stream reset with CANCEL;
- /readyz follows the reason of the latest failed attempt, and the node
  logs each new reason once, not once per attempt.

No timing in the assertions.
"""
import re
import struct

import h2.events
import pytest

import alptest
from alptest import MiB, grpc_frame, wait_until
from test_abuse_node import (C, H2Server, miss, probed, recovered,  # noqa: F401
                             recv_until_closed, hostile)

# Every test here is an abuse case: -m abuse selects them (pytest.ini).
pytestmark = pytest.mark.abuse

WATCH = "/alpcrun.v1.Cache/WatchSharedData"
N = alptest.cache_pb2.SharedDataNotice


def notice(**kw):
    return grpc_frame(N(**kw).SerializeToString())


def not_found(srv, sid):
    srv.conn.send_headers(sid, [(":status", "200"),
                                ("content-type", "application/grpc"),
                                ("grpc-status", "5"),
                                ("grpc-message", "not here")], end_stream=True)


def snapshot():
    """The node's one copy listed (so that reconciliation keeps it)."""
    return (notice(session_id="victim", update_level=1, kind=N.SNAPSHOT, seq=1) +
            notice(kind=N.SNAPSHOT_END, seq=2))


def feed_retries(log, message):
    """The node's resubscribe delays after streams that ended so."""
    return [int(m.group(1)) for m in re.finditer(
        r'change feed (?:lost, resubscribing|unavailable)\W.*message="%s" '
        r'retry_ms=(\d+)' % re.escape(message), log)]


# --- the change feed -------------------------------------------------------------


@pytest.mark.timeout(120)
def test_oversize_notice_ends_the_watch(hostile):
    announced = alptest.big_mib(200) * MiB
    watches = []

    def on_request(srv, sid, path):
        if path != WATCH:
            not_found(srv, sid)
            return
        watches.append(sid)
        srv.reply_headers(sid)
        # a snapshot, then a notice announced at 200 MiB that never comes
        srv.conn.send_data(sid, snapshot() + struct.pack(">BI", 0, announced) +
                           b"n" * 100)

    def handler(sock, fake):
        H2Server(sock, fake).run(on_request)
    central, node, fake = hostile(handler, "prefetch on\n")
    with probed(node):
        wait_until(lambda: len(watches) >= 2, 30, what="the node to watch again")
        log = node.log()
        assert ('status=RESOURCE_EXHAUSTED message="reply of %d bytes exceeds '
                'max_message_size 65536"' % announced) in log, node.log_tail()
        # nothing was allocated or counted for it
        assert node.metric("alpcrund_inflight_bytes") == node.baseline
        assert node.metric("alpcrund_upstream_up") == 1
    recovered(central, node, fake)


@pytest.mark.timeout(150)
def test_snapshot_then_reset_backs_off(hostile):
    watches = []

    def on_request(srv, sid, path):
        if path != WATCH:
            not_found(srv, sid)
            return
        watches.append(sid)
        srv.reply_headers(sid)
        srv.conn.send_data(sid, snapshot())
        srv.conn.reset_stream(sid, error_code=2)

    def handler(sock, fake):
        H2Server(sock, fake).run(on_request)
    central, node, fake = hostile(handler, "prefetch on\n")
    reason = "stream reset: INTERNAL_ERROR"
    with probed(node):
        # doubling (+-20%) up to 5 s, from wherever the failed watches
        # while central was away left it: never back to 100 ms
        wait_until(lambda: any(x >= 4000 for x in feed_retries(node.log(), reason)),
                   60, what="the resubscribe backoff to reach its cap")
        delays = feed_retries(node.log(), reason)
        capped = next(i for i, x in enumerate(delays) if x >= 4000)
        assert capped >= 1, delays
        assert all(b > a for a, b in zip(delays, delays[1:capped + 1])), delays
        assert "change feed snapshot received" in node.log()
        # one watch per delay, not a spin
        assert len(watches) <= len(delays) + 2, (len(watches), delays)
    recovered(central, node, fake)


# --- replies that are not gRPC -----------------------------------------------------


HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n" * 200


@pytest.mark.timeout(120)
def test_reply_with_a_non_grpc_content_type(hostile):
    statuses = ["200", "502"]
    resets = []

    def on_request(srv, sid, path):
        st = statuses.pop(0) if statuses else "200"
        srv.conn.send_headers(sid, [(":status", st), ("content-type", "text/html")])
        # the start of an HTML page, and the stream left open: read as
        # gRPC, "<html" would be a message of 1752460652 bytes
        srv.conn.send_data(sid, HTML[:8000])

    def handler(sock, fake):
        srv = H2Server(sock, fake)
        real = srv.conn.receive_data

        def receive(data):
            events = real(data)
            resets.extend(e.error_code for e in events
                          if isinstance(e, h2.events.StreamReset))
            return events
        srv.conn.receive_data = receive
        srv.run(on_request)
    central, node, fake = hostile(handler)
    with probed(node):
        assert miss(node, "h1") == (
            C.UNKNOWN, 'reply is not gRPC (content-type "text/html")')
        assert miss(node, "h2") == (
            C.UNAVAILABLE, 'HTTP status 502, reply is not gRPC (content-type '
            '"text/html")')
        # the node stopped the body (CANCEL), the link stays up
        wait_until(lambda: len(resets) >= 2, 10, what="the node to reset both streams")
        assert resets[:2] == [8, 8], resets
        assert node.metric("alpcrund_upstream_up") == 1
        assert node.metric("alpcrund_inflight_bytes") == node.baseline
    recovered(central, node, fake)


# --- /readyz follows the reason ------------------------------------------------------


def node_downs(log, reason):
    """The node's own "upstream down" lines (not h2client's debug ones)."""
    return [line for line in log.splitlines()
            if "upstream down" in line and "upstream=" in line and
            'reason="%s"' % reason in line]


@pytest.mark.timeout(120)
def test_readyz_follows_a_new_down_reason(hostile):
    def handler(sock, fake):
        # accepts, and never says a word: no HTTP/2 handshake
        recv_until_closed(sock, fake)
    central, node, fake = hostile(handler)
    reason = "no HTTP/2 handshake within 1s"
    with probed(node):
        def readyz():
            st, body = node.http_get("/readyz")
            return (st, body.strip()) == (503, "central cache unreachable: " + reason)
        wait_until(readyz, 20, interval=0.1, what="/readyz to give the new reason")
        first = fake.accepted
        wait_until(lambda: fake.accepted >= first + 3, 30,
                   what="the node to try again, failing alike")
        # logged once, not once per attempt
        assert len(node_downs(node.log(), reason)) == 1, node.log_tail()
        code, msg = miss(node, "r1")
        assert (code, msg) == (C.UNAVAILABLE, "central cache unreachable: " + reason)
    recovered(central, node, fake)
