"""backend s3 with large payloads (issue 20): a Set past twice
s3_part_size goes up as a multipart upload (its parts counted in
fakes3.py's stats, none left pending; a part answered 500 is retried, a
part failing for good aborts the upload and fails the Set UNAVAILABLE
naming it), without a second copy of the payload in the daemon (its
VmHWM); a Get that misses the hot tier is served as the payload arrives
from the store (a first byte at the client while the store holds the
rest back), checked on the way (a payload changed in the bucket ends the
reply with an error status, never OK), and concurrent Gets share one
store GET."""
import grpc
import pytest

from alptest import (GET, MiB, big_mib, cache_pb2, encode_shared, grpc_frame, rss_bytes, sd,
                     stamped_payload, wait_until)
from test_backend import BUCKET, central, expect, store  # noqa: F401 (fixture)

C = grpc.StatusCode
# No sweep during these tests: its lease objects would count among the
# PUTs they count (tests/integration/s3/test_sweep.py is about sweeping).
PARTS = "s3_part_size 8m\nsweep_interval 1h\n"


def by_op(store, op):
    return store.stats()["by_op"].get(op, 0)


def blobs(store, sid):
    return [k for k in store.objects(BUCKET) if k.startswith("p/b/%s/" % sid)]


@pytest.mark.timeout(300)
def test_multipart_set_and_get(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a", PARTS)
    size = big_mib(64) * MiB
    payload = stamped_payload(size // MiB)
    store.reset(stats=True)
    a.stub().SetSharedData(sd("big", 1, payload, 60), timeout=120)
    nparts = size // (8 * MiB)
    assert by_op(store, "CreateMultipartUpload") == 1
    assert by_op(store, "UploadPart") == nparts
    assert by_op(store, "CompleteMultipartUpload") == 1
    assert by_op(store, "PutObject") == 2          # the level record, the head
    assert store.uploads(BUCKET) == {}
    [key] = blobs(store, "big")
    assert store.objects(BUCKET)[key][0] == payload
    # From the hot tier, and from the store on another central.
    assert a.stub().GetSharedData(sd("big", 1), timeout=120).payload == payload
    b = central(make_daemon, tmp_path, store, "b", PARTS)
    r = b.stub().GetSharedData(sd("big"), timeout=120)
    assert (r.update_level, r.payload == payload) == (1, True)
    # Below twice the part size: one PUT.
    store.reset(stats=True)
    a.stub().SetSharedData(sd("mid", 1, payload[:16 * MiB], 60), timeout=120)
    assert by_op(store, "UploadPart") == 0 and by_op(store, "PutObject") == 3
    assert b.stub().GetSharedData(sd("mid"), timeout=120).payload == payload[:16 * MiB]


@pytest.mark.timeout(400)
def test_200mib_set_keeps_one_copy(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a", PARTS)
    size = big_mib(200) * MiB
    payload = stamped_payload(size // MiB)
    store.reset(stats=True)
    a.stub().SetSharedData(sd("huge", 1, payload, 60), timeout=300)
    assert by_op(store, "UploadPart") == (size + 8 * MiB - 1) // (8 * MiB)
    assert store.uploads(BUCKET) == {}
    # The request's buffer is the one copy: uploaded from, and kept.
    hwm = rss_bytes(a.pid, "VmHWM")
    assert hwm < 2.5 * size, "VmHWM %d MiB for a %d MiB Set" % (hwm >> 20, size >> 20)
    assert a.stub().GetSharedData(sd("huge"), timeout=300).payload == payload


@pytest.mark.timeout(300)
def test_a_part_answered_500_is_retried(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a", PARTS)
    payload = stamped_payload(big_mib(32))
    store.reset(stats=True)
    store.faults({"method": "PUT", "op": "UploadPart", "action": {"status": 500}})
    a.stub().SetSharedData(sd("retry", 1, payload, 60), timeout=120)
    assert store.stats()["faults_applied"] == 1
    assert by_op(store, "UploadPart") == len(payload) // (8 * MiB) + 1
    assert store.uploads(BUCKET) == {}
    b = central(make_daemon, tmp_path, store, "b", PARTS)
    assert b.stub().GetSharedData(sd("retry"), timeout=120).payload == payload


@pytest.mark.timeout(300)
def test_a_part_failing_for_good_aborts_the_upload(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a", PARTS)
    payload = stamped_payload(big_mib(32))
    store.reset(stats=True)
    store.faults({"method": "PUT", "op": "UploadPart", "action": {"status": 500},
                  "count": -1})
    e = expect(a.stub().SetSharedData, sd("fail", 1, payload, 60), C.UNAVAILABLE)
    assert "s3 store: PUT part " in e.details() and "HTTP 500 InternalError" in e.details(), \
        e.details()
    wait_until(lambda: by_op(store, "AbortMultipartUpload") == 1, 15, what="the abort")
    assert store.uploads(BUCKET) == {}
    assert blobs(store, "fail") == [] and by_op(store, "CompleteMultipartUpload") == 0
    expect(a.stub().GetSharedData, sd("fail"), C.NOT_FOUND)
    # Nothing was left half-written: the Set succeeds once the store does.
    store.faults(clear=True)
    a.stub().SetSharedData(sd("fail", 1, payload, 60), timeout=120)
    assert a.stub().GetSharedData(sd("fail"), timeout=120).payload == payload


def count_payload_gets(store, sid, first=None):
    """fakes3's faults_applied counts the GETs of sid's payload object from
    here on (a no-op rule behind first, the rule to apply once)."""
    store.reset(stats=True)
    rules = [first] if first else []
    store.faults(rules + [{"method": "GET", "key": r"^p/b/%s/" % sid,
                           "action": {"latency_ms": 0}, "count": -1}])


@pytest.mark.timeout(300)
def test_a_get_missing_the_hot_tier_streams_and_is_shared(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a", PARTS)
    size = big_mib(32) * MiB
    payload = stamped_payload(size // MiB)
    a.stub().SetSharedData(sd("stream", 1, payload, 60), timeout=120)
    b = central(make_daemon, tmp_path, store, "b", PARTS)   # holds no copy
    count_payload_gets(store, "stream", {"method": "GET", "key": r"^p/b/stream/",
                                         "action": {"hold_after_bytes": size // 2}})
    with b.raw() as h:
        sid = h.start(GET)
        h.send_data(sid, grpc_frame(encode_shared(b"stream")), end_stream=True)
        st = h.stream(sid)
        wait_until(lambda: store.stats()["holding"] == 1, 30, what="the store holding")
        # Bytes of the payload reach the client while the store still
        # holds its second half back: served as it arrives.
        h.wait(lambda: len(st.data) > MiB, 30, "payload bytes at the client")
        assert store.stats()["holding"] == 1 and not st.done
        # Gets that come meanwhile join the one store GET, and get the
        # bytes so far at once.
        joined = []
        for _ in range(3):
            j = h.start(GET)
            h.send_data(j, grpc_frame(encode_shared(b"stream")), end_stream=True)
            joined.append(h.stream(j))
        h.wait(lambda: all(len(j.data) > MiB for j in joined), 30, "bytes at the joiners")
        assert store.stats()["holding"] == 1
        store.release()
        for s_ in [st] + joined:
            h.finish(s_.id, 120)
    for s_ in [st] + joined:
        assert s_.grpc_status == 0, s_.trailers
        [(flag, body)] = s_.messages
        r = cache_pb2.SharedData.FromString(body)
        assert (r.update_level, r.payload == payload) == (1, True)
        assert 50 < r.ttl.seconds <= 60
    assert store.stats()["faults_applied"] == 1        # one store GET of the payload
    # Kept: the next Get is served from the hot tier.
    assert b.stub().GetSharedData(sd("stream"), timeout=60).payload == payload
    assert store.stats()["faults_applied"] == 1


@pytest.mark.timeout(300)
def test_a_payload_changed_in_the_bucket_is_never_answered_ok(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a", PARTS)
    payload = stamped_payload(big_mib(32))
    a.stub().SetSharedData(sd("bad", 1, payload, 60), timeout=120)
    a.stub().SetSharedData(sd("long", 1, payload, 60), timeout=120)
    [bad] = blobs(store, "bad")
    [long] = blobs(store, "long")
    # Its last byte changed (the first ones go out before the check), and
    # one byte more than its record says.
    store.put_object(BUCKET, bad, payload[:-1] + bytes([payload[-1] ^ 1]))
    store.put_object(BUCKET, long, payload + b"x")
    b = central(make_daemon, tmp_path, store, "b", PARTS)
    for sid, why in (("bad", "whose SHA-256 is not the record's: not served"),
                     ("long", "more bytes than the record's")):
        count_payload_gets(store, sid)
        for _ in range(2):                  # nothing kept: fetched again
            e = expect(b.stub().GetSharedData, sd(sid), C.UNAVAILABLE)
            assert "store lookup failed" in e.details() and why in e.details(), e.details()
        assert store.stats()["faults_applied"] == 2
        with b.raw() as h:
            st = h.unary(GET, encode_shared(sid.encode()), timeout=60)
            assert st.grpc_status == 14 and st.data_frames > 0, st


def count_head_gets(store, sid):
    """fakes3's faults_applied counts GETs of sid's head from here on."""
    store.reset(stats=True)
    store.faults({"method": "GET", "key": r"^p/s/%s/head$" % sid,
                  "action": {"latency_ms": 0}, "count": -1})


@pytest.mark.timeout(120)
def test_revalidation_window(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a")
    every = central(make_daemon, tmp_path, store, "every")       # s3_revalidate 0
    trusting = central(make_daemon, tmp_path, store, "trusting", "s3_revalidate 1h\n")
    a.stub().SetSharedData(sd("rv", 1, b"one", 60), timeout=15)
    for d in (every, trusting):
        assert d.stub().GetSharedData(sd("rv"), timeout=15).payload == b"one"
    # 0: every Get asks the store for the head, and sees an Update made
    # on another central at once.
    count_head_gets(store, "rv")
    for _ in range(3):
        assert every.stub().GetSharedData(sd("rv"), timeout=15).payload == b"one"
    assert store.stats()["faults_applied"] == 3
    # Within the window: the head is not asked, the hot tier answers (and
    # an Update through another central is not seen yet: the trade-off).
    count_head_gets(store, "rv")
    for _ in range(5):
        assert trusting.stub().GetSharedData(sd("rv"), timeout=15).payload == b"one"
    assert store.stats()["faults_applied"] == 0
    a.stub().UpdateSharedData(sd("rv", 2, b"two", 60), timeout=15)
    count_head_gets(store, "rv")
    r = every.stub().GetSharedData(sd("rv"), timeout=15)
    assert (r.update_level, r.payload) == (2, b"two")
    assert trusting.stub().GetSharedData(sd("rv"), timeout=15).payload == b"one"
    assert store.stats()["faults_applied"] == 1
    # Its own writes confirm the head too; a write still reads the store's.
    trusting.stub().UpdateSharedData(sd("rv", 3, b"three", 60), timeout=15)
    count_head_gets(store, "rv")
    r = trusting.stub().GetSharedData(sd("rv"), timeout=15)
    assert (r.update_level, r.payload) == (3, b"three")
    assert store.stats()["faults_applied"] == 0
    r = every.stub().GetSharedData(sd("rv"), timeout=15)
    assert (r.update_level, r.payload) == (3, b"three")


@pytest.mark.timeout(120)
def test_revalidation_window_passes(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a")
    b = central(make_daemon, tmp_path, store, "b", "s3_revalidate 1s\n")
    a.stub().SetSharedData(sd("short", 1, b"one", 60), timeout=15)
    assert b.stub().GetSharedData(sd("short"), timeout=15).payload == b"one"
    a.stub().UpdateSharedData(sd("short", 2, b"two", 60), timeout=15)
    # Seen once the window passed (a condition, not a time).
    wait_until(lambda: b.stub().GetSharedData(sd("short"), timeout=15).payload == b"two",
               30, what="the Update seen after s3_revalidate")
