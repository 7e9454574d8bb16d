"""Limits of spec §4.6 not covered elsewhere: the memory backend's
max_memory (store full), a stored entry larger than max_message_size
after a reload, and the request header list bound."""
import re
import signal

import grpc
import pytest

from alptest import GET, encode_shared, sd

KIB = 1024


def test_store_full_refuses_whole_and_delete_makes_room(make_daemon):
    # 1 MiB budget: payload + key + 128 bytes per record.
    d = make_daemon("max_memory 1m")
    s = d.stub()
    block = b"p" * (200 * KIB)
    stored = []
    with pytest.raises(grpc.RpcError) as e:
        for i in range(10):
            s.SetSharedData(sd("full-%d" % i, 1, block), timeout=10)
            stored.append(i)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.details().startswith("store full"), e.value.details()
    assert 3 <= len(stored) < 10
    refused = "full-%d" % len(stored)
    # Nothing half-written: the refused session does not exist, the others
    # are intact.
    with pytest.raises(grpc.RpcError) as e:
        s.GetSharedData(sd(refused), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    for i in stored:
        assert s.GetSharedData(sd("full-%d" % i), timeout=10).payload == block
    # An Update that grows past the budget is refused and keeps level 1.
    with pytest.raises(grpc.RpcError) as e:
        s.UpdateSharedData(sd("full-0", 2, block * 2), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    got = s.GetSharedData(sd("full-0"), timeout=10)
    assert got.update_level == 1 and got.payload == block
    assert d.requests("SetSharedData", "RESOURCE_EXHAUSTED") == 1
    # A Delete makes room again.
    s.DeleteSharedData(sd("full-1"), timeout=10)
    s.SetSharedData(sd(refused, 1, block), timeout=10)
    assert s.GetSharedData(sd(refused), timeout=10).payload == block


def test_entry_larger_than_a_lowered_max_message_size(make_daemon):
    """max_message_size lowered by SIGHUP below an entry already stored: a
    Get of it is refused with RESOURCE_EXHAUSTED naming the reply's size,
    the entry is kept (raising the limit again serves it), and smaller
    entries are served meanwhile."""
    d = make_daemon("max_message_size 1m")
    s = d.stub()
    big = b"b" * (300 * KIB)
    s.SetSharedData(sd("big", 1, big), timeout=10)
    s.SetSharedData(sd("small", 1, b"s"), timeout=10)
    d.write_config("max_message_size 64k")
    mark = len(d.log())
    d.signal(signal.SIGHUP)
    d.wait_log(r"msg=reloaded", 10, mark)
    with pytest.raises(grpc.RpcError) as e:
        s.GetSharedData(sd("big"), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    reply = len(s.GetSharedData(sd("small"), timeout=10).SerializeToString())
    assert reply < 64 * KIB
    m = re.fullmatch(r"reply of (\d+) bytes exceeds max_message_size",
                     e.value.details())
    assert m, e.value.details()
    d.write_config("max_message_size 1m")
    mark = len(d.log())
    d.signal(signal.SIGHUP)
    d.wait_log(r"msg=reloaded", 10, mark)
    got = s.GetSharedData(sd("big"), timeout=10)
    assert got.payload == big
    # the size named is the reply's (its ttl's nanos may take other bytes)
    assert abs(int(m.group(1)) - len(got.SerializeToString())) <= 4


def test_header_list_over_16k_resets_only_that_stream(daemon):
    daemon.stub().SetSharedData(sd("hdr", 1, b"ok"), timeout=10)
    with daemon.raw() as h:
        big = h.stream(h.new_stream_id())
        h.send_headers(big.id, h.request_headers(GET) + [("x-pad", "v" * (20 * KIB))],
                       never_index=True)
        h.wait(lambda: big.done, 5, "reset of the oversized header block")
        assert big.reset is not None, big
        assert not h.goaways and not h.closed
        # The same connection still serves a normal request.
        st = h.unary(GET, encode_shared(b"hdr"))
        assert st.grpc_status == 0, st
    # Under the bound is fine.
    with daemon.raw() as h:
        st = h.unary(GET, encode_shared(b"hdr"), extra=[("x-pad", "v" * (8 * KIB))])
        assert st.grpc_status == 0, st
