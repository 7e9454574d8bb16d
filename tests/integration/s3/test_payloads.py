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
import threading

import grpc
import pytest

from alptest import MiB, big_mib, rss_bytes, sd, stamped_payload, wait_until
from test_backend import BUCKET, central, expect, store  # noqa: F401 (fixture)

C = grpc.StatusCode
PARTS = "s3_part_size 8m\n"


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
