"""Spec §1, §7 (max_message_size 260m: "a 256 MiB payload fits"): a 256 MiB
payload round trip through grpcio with only the channel's message size
limits raised, byte for byte."""
import time

import grpc
import pytest

from alptest import (SANITIZED, MiB, big_mib, cache_pb2_grpc, rss_bytes, sd, stamped_payload,
                     ttl_seconds)

SIZE_MIB = big_mib(256)     # 32 under sanitizers


def first_difference(a, b):
    if len(a) != len(b):
        return "length %d != %d" % (len(a), len(b))
    for off in range(0, len(a), MiB):
        if a[off:off + MiB] != b[off:off + MiB]:
            for j in range(off, min(off + MiB, len(a))):
                if a[j] != b[j]:
                    return "first difference at byte %d (block %d)" % (j, j // MiB)
    return None


@pytest.mark.timeout(400)
def test_256mib_round_trip(daemon, perf):
    payload = stamped_payload(SIZE_MIB)
    assert len(payload) == SIZE_MIB * MiB
    s = daemon.stub()
    t0 = time.monotonic()
    s.SetSharedData(sd("large-256", 1, payload, ttl=120), timeout=300)
    t_set = time.monotonic() - t0
    t0 = time.monotonic()
    g = s.GetSharedData(sd("large-256", 1), timeout=300)
    t_get = time.monotonic() - t0
    assert g.update_level == 1 and g.session_id == "large-256"
    assert 0 < ttl_seconds(g) <= 120
    got = g.payload
    if got != payload:
        raise AssertionError("%d MiB payload came back different: %s"
                             % (SIZE_MIB, first_difference(got, payload)))
    perf("%d MiB SetSharedData %.2f s (%.0f MiB/s), GetSharedData %.2f s (%.0f MiB/s)"
         % (SIZE_MIB, t_set, SIZE_MIB / t_set, t_get, SIZE_MIB / t_get))
    daemon.wait_metric(lambda m: m.value("alpcrund_payload_bytes") >= SIZE_MIB * MiB)
    # an identical retry of the whole payload is compared byte for byte and accepted
    t0 = time.monotonic()
    s.SetSharedData(sd("large-256", 1, payload, ttl=120), timeout=300)
    perf("%d MiB SetSharedData identical retry %.2f s" % (SIZE_MIB, time.monotonic() - t0))
    daemon.wait_requests("SetSharedData", "OK", 2)
    # the last byte differs: not a retry
    other = payload[:-1] + bytes([payload[-1] ^ 1])
    del payload, got, g
    with pytest.raises(grpc.RpcError) as ei:
        s.SetSharedData(sd("large-256", 1, other, ttl=120), timeout=300)
    assert ei.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert ei.value.details() == \
        "shared data already exists for session large-256 at update level 1"
    daemon.wait_requests("GetSharedData", "OK", 1)


@pytest.mark.timeout(900)
def test_1gib_level_through_a_node_byte_exact(make_pair, perf):
    """A 1 GiB level (max_message_size 1100m, spec §7 allows up to 2g):
    uploaded to central, read back from central and, through a node that
    fetches it once, by a worker: every byte in place. Each daemon holds
    the level in one buffer: its peak resident size grows by at most 1.1x
    the payload (and 8 MiB of slack for the allocator and the loop's
    buffers), where two payload-sized buffers per upload would show 2x
    (checked in the normal build; under sanitizers the allocator is
    AddressSanitizer's)."""
    size = big_mib(1024)
    conf = "max_message_size 1100m\nmax_inflight_bytes 4g\n"
    c, n = make_pair(central=conf, node=conf + "max_memory 3g\n")
    opts = [("grpc.max_send_message_length", 1100 * MiB),
            ("grpc.max_receive_message_length", 1100 * MiB),
            ("grpc.use_local_subchannel_pool", 1)]
    chans = [grpc.insecure_channel(d.addr, options=opts) for d in (c, n)]
    try:
        one_gib_round_trip(size, c, n, *(cache_pb2_grpc.CacheStub(ch) for ch in chans),
                           perf)
    finally:
        for ch in chans:
            ch.close()


def one_gib_round_trip(size, c, n, cs, ns, perf):
    payload = stamped_payload(size)
    base = {d.pid: rss_bytes(d.pid) for d in (c, n)}
    t0 = time.monotonic()
    cs.SetSharedData(sd("gib", 7, payload, ttl=300), timeout=600)
    t_up = time.monotonic() - t0
    t0 = time.monotonic()
    g = cs.GetSharedData(sd("gib", 7), timeout=600)
    t_get = time.monotonic() - t0
    if g.payload != payload:
        raise AssertionError("central: %s" % first_difference(g.payload, payload))
    del g
    t0 = time.monotonic()
    g = ns.GetSharedData(sd("gib", 7), timeout=600)
    t_node = time.monotonic() - t0
    assert (g.session_id, g.update_level) == ("gib", 7)
    if g.payload != payload:
        raise AssertionError("node: %s" % first_difference(g.payload, payload))
    assert n.metric("alpcrund_upstream_fetches_total") == 1
    perf("%d MiB SetSharedData %.1f s, Get from central %.1f s, Get through "
         "a node that fetched it %.1f s" % (size, t_up, t_get, t_node))
    for name, d in (("central", c), ("node", n)):
        grew = rss_bytes(d.pid, "VmHWM") - base[d.pid]
        perf("%s: peak RSS grew by %.0f MiB (%.2fx the payload)"
             % (name, grew / MiB, grew / (size * MiB)))
        # Under AddressSanitizer freed memory sits in its quarantine and
        # every block carries redzones: the bound is the real allocator's.
        if not SANITIZED:
            assert grew <= 1.1 * size * MiB + 8 * MiB, \
                "%s: peak RSS grew by %.0f MiB for a %d MiB level" % (name, grew / MiB, size)
