"""Issue 18: no loops. Every call a node sends upstream carries alpcrun-via,
the ids of the nodes it passed through; a node that finds its own id there
refuses the call with FAILED_PRECONDITION at once (not at a deadline) and
logs the loop."""
import re
import time

import grpc
import pytest

import alptest
from alptest import sd

C = grpc.StatusCode


def call(fn, req, timeout=20):
    try:
        return C.OK, fn(req, timeout=timeout)
    except grpc.RpcError as e:
        return e.code(), e.details()


def test_two_nodes_upstream_of_each_other(make_daemon):
    pa, pb = alptest.free_port(), alptest.free_port()
    a = make_daemon("mode node\nbackend memory\nlisten 127.0.0.1:%d\n"
                    "upstream 127.0.0.1:%d\nnode_id node-a\n" % (pa, pb))
    b = make_daemon("mode node\nbackend memory\nlisten 127.0.0.1:%d\n"
                    "upstream 127.0.0.1:%d\nnode_id node-b\n" % (pb, pa))
    a.wait_log(r'msg="upstream up"', timeout=10)
    b.wait_log(r'msg="upstream up"', timeout=10)
    t0 = time.monotonic()
    code, msg = call(a.stub().GetSharedData, sd("loop-1"))
    took = time.monotonic() - t0
    assert code == C.FAILED_PRECONDITION, (code, msg)
    assert msg == "request loop: node node-a is already on the path node-a,node-b"
    assert took < 5, took
    # A write loops too, from the other side.
    code, msg = call(b.stub().SetSharedData, sd("loop-1", 1, b"x"))
    assert code == C.FAILED_PRECONDITION, (code, msg)
    assert msg == "request loop: node node-b is already on the path node-b,node-a"
    a.wait_log(r'msg="request loop refused.*node_id=node-a via="node-a,node-b"')
    b.wait_log(r'msg="request loop refused.*node_id=node-b via="node-b,node-a"')
    # A burst is logged once.
    for i in range(20):
        call(a.stub().GetSharedData, sd("loop-%d" % i))
    assert len(re.findall(r"request loop refused", a.log())) <= 2


def test_node_upstream_itself_by_another_name_refused_at_start(make_daemon):
    p = alptest.free_port()
    d = make_daemon("mode node\nbackend memory\nlisten 127.0.0.1:%d\n"
                    "upstream localhost:%d\n" % (p, p), start=False)
    d.expect_exit = True
    with pytest.raises(Exception, match="exited with 1 during start-up"):
        d.start()
    assert d.returncode == 1
    assert "upstream: localhost:%d (127.0.0.1) is this node's own listen address " \
        "127.0.0.1:%d" % (p, p) in d.log()


def test_chain_central_node_node(make_daemon):
    c = make_daemon("")
    n1 = make_daemon("mode node\nbackend memory\nupstream %s\nnode_id n1\n"
                     "log_level debug\n" % c.addr)
    n2 = make_daemon("mode node\nbackend memory\nupstream %s\nnode_id n2\n"
                     % n1.addr)
    code, r = call(c.stub().SetSharedData, sd("chain", 1, b"payload"))
    assert code == C.OK, r
    n2.wait_log(r'msg="upstream up"', timeout=10)
    code, r = call(n2.stub().GetSharedData, sd("chain", 1))
    assert code == C.OK, r
    assert r.payload == b"payload"
    # n1 saw the path n2 sent.
    n1.wait_log(r'msg="request path" via="n2"')
    # A write through both.
    code, r = call(n2.stub().UpdateSharedData, sd("chain", 2, b"two"))
    assert code == C.OK, r
    code, r = call(n2.stub().GetSharedData, sd("chain", 2))
    assert code == C.OK and r.payload == b"two", (code, r)
