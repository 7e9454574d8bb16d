"""Spec §1, §7 (max_message_size 260m: "a 256 MiB payload fits"): a 256 MiB
payload round trip through grpcio with only the channel's message size
limits raised, byte for byte."""
import time

import grpc
import pytest

from alptest import MiB, big_mib, sd, stamped_payload, ttl_seconds

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
