"""Issue 18: `upstream` lists with failover. A node in front of two real
centrals (both hold the data the test sets): it fails over to the second
when the first dies, returns to the first once it is back, and a fetch in
flight when the first stops answering is served by the second."""
import signal
import time

import grpc
import pytest

from alptest import sd, wait_until

C = grpc.StatusCode


def get(stub, sid, level=None, timeout=30):
    try:
        return C.OK, stub.GetSharedData(sd(sid, level), timeout=timeout)
    except grpc.RpcError as e:
        return e.code(), e.details()


def gets(central):
    return central.requests("GetSharedData", "OK")


def set_both(c1, c2, sid, level, payload):
    for c in (c1, c2):
        c.stub().SetSharedData(sd(sid, level, payload), timeout=10)


BIG = 256 * 1024      # a payload well above the messages around it


def rx(m, central):
    """Reply DATA bytes the node received from central (its series must
    be there)."""
    key = ("alpcrund_upstream_received_bytes_total",
           frozenset({("upstream", central.addr)}))
    assert key in m, "no %s{upstream=%s}" % (key[0], central.addr)
    return m[key]


def tx(m, central):
    return m.value("alpcrund_upstream_sent_bytes_total", upstream=central.addr)


def pair_of_centrals(make_daemon, node_extra=""):
    c1, c2 = make_daemon(""), make_daemon("")
    node = make_daemon("mode node\nbackend memory\nupstream %s %s\n"
                       "upstream_connect_timeout 1s\n%s" % (c1.addr, c2.addr, node_extra))
    return c1, c2, node


@pytest.mark.timeout(120)
def test_failover_to_the_second_and_back(make_daemon):
    c1, c2, node = pair_of_centrals(make_daemon)
    ns = node.stub()
    set_both(c1, c2, "f", 1, b"one")
    assert get(ns, "f", 1)[1].payload == b"one"
    assert gets(c1) == 1 and gets(c2) == 0
    m = node.metrics()
    assert m.value("alpcrund_upstream_target_up", upstream=c1.addr) == 1
    assert m.value("alpcrund_upstream_target_up", upstream=c2.addr) == 0

    # Bytes by upstream: a fetch of BIG through the first counts there
    # only, and so does a write of BIG forwarded to it.
    big = bytes(range(256)) * (BIG // 256)
    set_both(c1, c2, "fb", 1, big)
    assert get(ns, "fb", 1)[1].payload == big
    ns.SetSharedData(sd("fw", 1, big), timeout=10)
    m2 = node.metrics()
    assert rx(m2, c1) - rx(m, c1) >= BIG
    assert rx(m2, c2) == rx(m, c2) == 0
    assert tx(m2, c1) - tx(m, c1) >= BIG
    assert tx(m2, c2) == 0

    c1.kill()
    two = b"two" * (BIG // 3 + 1)
    c2.stub().SetSharedData(sd("f2", 1, two), timeout=10)
    m = node.metrics()
    t0 = time.monotonic()
    code, r = get(ns, "f2", 1, timeout=10)
    assert code == C.OK, (code, r)
    assert r.payload == two
    assert time.monotonic() - t0 < 5
    assert gets(c2) == 1
    # After the failover the reverse: the fetch's bytes came from the
    # second, none from the first (dead).
    m2 = node.metrics()
    assert rx(m2, c2) - rx(m, c2) >= len(two)
    assert rx(m2, c1) == rx(m, c1)
    node.wait_log(r"upstream failover.*upstream=%s from=%s" % (c2.addr, c1.addr))
    m = node.metrics()
    assert m.value("alpcrund_upstream_failovers_total", upstream=c2.addr) == 1
    assert m.value("alpcrund_upstream_target_up", upstream=c2.addr) == 1
    assert m.value("alpcrund_upstream_up") == 1

    # The first back on its port: the node returns to it, once.
    c1.start()
    set_both(c1, c2, "f3", 1, b"three")
    node.wait_log(r"upstream back to the first.*upstream=%s" % c1.addr, timeout=20)
    assert get(ns, "f3", 1)[1].payload == b"three"
    assert gets(c1) == 1
    time.sleep(2)
    m = node.metrics()
    assert m.value("alpcrund_upstream_returns_total", upstream=c1.addr) == 1
    assert m.value("alpcrund_upstream_failovers_total", upstream=c2.addr) == 1
    assert m.value("alpcrund_upstream_target_up", upstream=c1.addr) == 1

    # Back on the first, its bytes count there again, the second's stay.
    c1.stub().SetSharedData(sd("f4", 1, big), timeout=10)
    assert get(ns, "f4", 1)[1].payload == big
    m2 = node.metrics()
    assert rx(m2, c1) - rx(m, c1) >= BIG
    assert rx(m2, c2) == rx(m, c2)


@pytest.mark.timeout(120)
def test_fetch_in_flight_moves_to_the_second(make_daemon):
    c1, c2, node = pair_of_centrals(make_daemon, "upstream_keepalive 1s\n")
    ns = node.stub()
    set_both(c1, c2, "g", 1, b"one")
    assert get(ns, "g", 1)[1].payload == b"one"
    set_both(c1, c2, "g2", 1, b"two")
    c1.proc.send_signal(signal.SIGSTOP)     # accepts, never answers
    try:
        fut = ns.GetSharedData.future(sd("g2", 1), timeout=20)
        assert fut.result(timeout=25).payload == b"two"
        assert gets(c2) == 1
        node.wait_log(r"upstream failover.*upstream=%s" % c2.addr)
    finally:
        c1.proc.send_signal(signal.SIGCONT)


def test_whole_list_down_fails_fast(make_daemon):
    c1, c2, node = pair_of_centrals(make_daemon)
    ns = node.stub()
    c1.kill()
    c2.kill()
    node.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 0, 10)
    t0 = time.monotonic()
    code, msg = get(ns, "h", 1)
    assert code == C.UNAVAILABLE, (code, msg)
    assert msg.startswith("central cache unreachable: "), msg
    assert time.monotonic() - t0 < 3
