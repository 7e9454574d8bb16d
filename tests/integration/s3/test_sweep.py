"""backend s3's sweeper of the bucket (s3sweep.c) with fakes3.py.

An expired entry is swept from the bucket (its head, level records and
payload objects gone) and reported once even with two centrals sweeping;
a Set racing the sweeper on one session keeps the new entry, the expiry
reported once; a tombstone is honoured until its time, then collected;
old payload objects no record names and old incomplete uploads are
collected, fresh ones and named ones are not; leases: one central holds
every shard while it lives, and another takes them over once the leases
of one killed with SIGKILL run out. Expiry times are wall-clock: waits
are on conditions, never fixed sleeps."""
import re
import signal

import grpc
import pytest

import fakes3
from alptest import sd, wait_until

C = grpc.StatusCode
AK, SK = "AKIDSWEEP", "sweep/secret+key"
BUCKET = "alp-sweep"
SWEEP = "sweep_interval 100ms\ns3_lease_time 2s\n"


@pytest.fixture
def store():
    s = fakes3.FakeS3(buckets=(BUCKET,), access_key=AK, secret_key=SK).start()
    yield s
    s.stop()


def central(make_daemon, tmp_path, store, name, more=SWEEP):
    d = tmp_path / name
    d.mkdir()
    cred = d / "s3.cred"
    cred.write_text("access_key_id %s\nsecret_access_key %s\n" % (AK, SK))
    return make_daemon("backend s3\ns3_endpoint %s\ns3_bucket %s\ns3_prefix p/\n"
                       "s3_credentials %s\ns3_retries 1\ns3_timeout 5s\nlog_level info\n%s"
                       % (store.url, BUCKET, cred, more))


def keys(store, prefix):
    return sorted(k for k in store.objects(BUCKET) if k.startswith(prefix))


def session_keys(store, sid):
    return keys(store, "p/s/%s/" % sid) + keys(store, "p/b/%s/" % sid)


def expired(*ds):
    return sum(d.metric("alpcrund_expired_total") for d in ds)


def holder(d):
    return d.wait_log(r'msg="s3 sweep: shards held" holder=([0-9a-f]{16}) shards=16',
                      timeout=10).group(1)


def lease_holders(store):
    out = {}
    for k, (body, _) in store.objects(BUCKET).items():
        if k.startswith("p/lease/"):
            out[k] = re.search(r"^holder ([0-9a-f]{16})$", body.decode(), re.M).group(1)
    return out


def test_expired_entry_is_swept_and_reported_once(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a")
    b = central(make_daemon, tmp_path, store, "b")
    a.stub().SetSharedData(sd("keep", 1, b"k", 60), timeout=15)
    a.stub().SetSharedData(sd("e", 1, b"one", 1), timeout=15)
    b.stub().UpdateSharedData(sd("e", 2, b"two", 1), timeout=15)
    assert len(session_keys(store, "e")) == 5    # head, 2 records, 2 payloads
    wait_until(lambda: session_keys(store, "e") == [], 15, what="e swept")
    wait_until(lambda: expired(a, b) >= 1, 5, what="the expiry reported")
    assert expired(a, b) == 1
    with pytest.raises(grpc.RpcError) as e:
        b.stub().GetSharedData(sd("e"), timeout=15)
    assert e.value.code() == C.NOT_FOUND
    assert a.stub().GetSharedData(sd("keep"), timeout=15).payload == b"k"
    assert "p/s/keep/head" in keys(store, "p/s/")
    # A Set after the collection starts the session anew.
    a.stub().SetSharedData(sd("e", 1, b"again", 60), timeout=15)
    assert b.stub().GetSharedData(sd("e"), timeout=15).payload == b"again"
    assert expired(a, b) == 1


def test_set_racing_the_sweeper_keeps_the_new_entry(make_daemon, tmp_path, store):
    d = central(make_daemon, tmp_path, store, "a")
    s = d.stub()
    s.SetSharedData(sd("race", 1, b"old", 1), timeout=15)
    # The sweeper's move of the head and the Set's commit, held until both
    # are in flight: one wins, the other reads again.
    store.faults({"method": "PUT", "key": r"^p/s/race/head$", "action": {"gather": 2},
                  "count": 2})

    def gone():
        try:
            s.GetSharedData(sd("race"), timeout=15)
            return False
        except grpc.RpcError as e:
            return e.code() == C.NOT_FOUND
    wait_until(gone, 10, what="race expired")
    s.SetSharedData(sd("race", 1, b"new", 60), timeout=15)
    assert store.stats()["faults_applied"] == 2
    assert s.GetSharedData(sd("race"), timeout=15).payload == b"new"
    wait_until(lambda: expired(d) >= 1, 5, what="the expiry reported")
    assert expired(d) == 1
    body = store.objects(BUCKET)["p/s/race/head"][0].decode()
    assert "state live\n" in body
    # Passes later, still there.
    d.wait_log("s3 sweep: orphans looked for", timeout=10)
    assert s.GetSharedData(sd("race"), timeout=15).payload == b"new"
    assert len(keys(store, "p/b/race/")) >= 1


def test_tombstone_is_honoured_then_collected(make_daemon, tmp_path, store):
    d = central(make_daemon, tmp_path, store, "a")
    s = d.stub()
    s.SetSharedData(sd("t", 3, b"three", 2), timeout=15)
    s.DeleteSharedData(sd("t"), timeout=15)
    with pytest.raises(grpc.RpcError) as e:
        s.SetSharedData(sd("t", 3, b"other"), timeout=15)
    assert e.value.code() == C.FAILED_PRECONDITION
    assert "state deleted\n" in store.objects(BUCKET)["p/s/t/head"][0].decode()
    wait_until(lambda: session_keys(store, "t") == [], 15, what="t collected")
    assert expired(d) == 0                  # tombstones expire silently
    s.SetSharedData(sd("t", 1, b"one"), timeout=15)
    assert s.GetSharedData(sd("t"), timeout=15).payload == b"one"


def upload(store, key):
    r = fakes3.Client(store.url, AK, SK).request("POST", BUCKET, key, query={"uploads": None})
    assert r.status == 200, r
    return re.search(rb"<UploadId>([^<]+)</UploadId>", r.body).group(1).decode()


def test_orphans_are_collected_after_the_grace(make_daemon, tmp_path, store):
    d = central(make_daemon, tmp_path, store, "a")
    s = d.stub()
    s.SetSharedData(sd("named", 1, b"named", 600), timeout=15)
    named = keys(store, "p/b/named/")
    store.put_object(BUCKET, "p/b/orph/1-00000000000000aa", b"lost")
    old_up = upload(store, "p/b/orph/2-00000000000000bb")
    store.age(7200)                         # past the grace of 1h
    store.put_object(BUCKET, "p/b/fresh/1-00000000000000cc", b"young")
    new_up = upload(store, "p/b/fresh/1-00000000000000dd")

    wait_until(lambda: keys(store, "p/b/orph/") == [] and old_up not in store.uploads(BUCKET),
               15, what="old orphans collected")
    at = len(d.log())
    d.wait_log("s3 sweep: orphans looked for", timeout=15, start=at)
    assert keys(store, "p/b/fresh/") == ["p/b/fresh/1-00000000000000cc"]
    assert new_up in store.uploads(BUCKET)
    assert keys(store, "p/b/named/") == named
    assert s.GetSharedData(sd("named"), timeout=15).payload == b"named"


def test_leases_one_holder_and_takeover(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a")
    ha = holder(a)
    b = central(make_daemon, tmp_path, store, "b")
    wait_until(lambda: len(lease_holders(store)) == 16, 10, what="16 leases")
    a.stub().SetSharedData(sd("k1", 1, b"v", 1), timeout=15)
    wait_until(lambda: session_keys(store, "k1") == [], 15, what="k1 swept")
    # Every shard is a's while it lives: b sweeps none.
    assert set(lease_holders(store).values()) == {ha}
    assert "s3 sweep: shards held" not in b.log()
    wait_until(lambda: expired(a) == 1, 5, what="k1 reported")
    assert expired(b) == 0

    a.signal(signal.SIGKILL)
    a.wait_exit()
    b.stub().SetSharedData(sd("k2", 1, b"v", 1), timeout=15)
    hb = holder(b)                          # once a's leases ran out
    assert hb != ha
    wait_until(lambda: set(lease_holders(store).values()) == {hb}, 10, what="b holds all")
    wait_until(lambda: session_keys(store, "k2") == [], 15, what="k2 swept")
    wait_until(lambda: expired(b) == 1, 5, what="k2 reported")


def test_a_stopped_central_gives_its_leases_up(make_daemon, tmp_path, store):
    a = central(make_daemon, tmp_path, store, "a", more="sweep_interval 100ms\n")
    ha = holder(a)
    a.stop()
    for body in (v[0].decode() for k, v in store.objects(BUCKET).items()
                 if k.startswith("p/lease/")):
        assert "holder %s\nuntil_ms 0\n" % ha in body, body
