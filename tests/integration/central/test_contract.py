"""Spec §4.1-§4.5: every semantic rule, with the exact status code and the
exact message text, through grpcio (and raw message bytes where the Python
protobuf API cannot write the input). Every test runs against each backend
(memory and lmdb: the all_backends mark, conftest.py)."""
import time

import grpc
import pytest

from alptest import (DELETE, GET, MAX_U32, SET, UPDATE, SharedData, encode_duration,
                     encode_shared, field_bytes, raw_unary, sd, ttl_seconds, wait_until)

C = grpc.StatusCode

pytestmark = pytest.mark.all_backends


def rpc_error(call, req, **kw):
    kw.setdefault("timeout", 10)
    with pytest.raises(grpc.RpcError) as ei:
        call(req, **kw)
    return ei.value


def expect(call, req, code, message=None, contains=None):
    e = rpc_error(call, req)
    assert e.code() == code, "got %s %r, expected %s" % (e.code(), e.details(), code)
    if message is not None:
        assert e.details() == message
    if contains is not None:
        assert contains in (e.details() or ""), \
            "%r does not name %r" % (e.details(), contains)
    return e


def not_found(sid):
    return "shared data not found for session %s" % sid


def exists(sid, level):
    return "shared data already exists for session %s at update level %d" % (sid, level)


def deleted(sid, n):
    return ("shared data for session %s was deleted at update level %d; "
            "set update level %d or higher" % (sid, n, n + 1))


def mismatch(expected, got):
    return "update level mismatch: expected %d, got %d" % (expected, got)


def exhausted(sid):
    return "update level exhausted for session %s" % sid


def get_ok(stub, sid, level=None):
    return stub.GetSharedData(sd(sid, level), timeout=10)


# --- required fields (§4.1-§4.4) ------------------------------------------------

def test_set_requires_session_id(daemon):
    s = daemon.stub()
    expect(s.SetSharedData, sd("", 1, b"x"), C.INVALID_ARGUMENT, contains="session_id")
    expect(s.SetSharedData, sd("", None, b""), C.INVALID_ARGUMENT)
    daemon.wait_requests("SetSharedData", "INVALID_ARGUMENT", 2)


def test_set_requires_update_level(daemon):
    s = daemon.stub()
    expect(s.SetSharedData, sd("lvl-missing", None, b"x"), C.INVALID_ARGUMENT,
           contains="update_level")
    # nothing was stored
    expect(s.GetSharedData, sd("lvl-missing"), C.NOT_FOUND, not_found("lvl-missing"))


def test_update_requires_session_id_and_update_level(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("u-req", 1, b"a"))
    expect(s.UpdateSharedData, sd("", 2, b"b"), C.INVALID_ARGUMENT, contains="session_id")
    expect(s.UpdateSharedData, sd("u-req", None, b"b"), C.INVALID_ARGUMENT,
           contains="update_level")
    r = get_ok(s, "u-req")
    assert (r.update_level, r.payload) == (1, b"a")
    daemon.wait_requests("UpdateSharedData", "INVALID_ARGUMENT", 2)


def test_get_and_delete_require_session_id(daemon):
    s = daemon.stub()
    expect(s.GetSharedData, sd("", 1), C.INVALID_ARGUMENT, contains="session_id")
    expect(s.DeleteSharedData, sd(""), C.INVALID_ARGUMENT, contains="session_id")
    daemon.wait_requests("GetSharedData", "INVALID_ARGUMENT", 1)
    daemon.wait_requests("DeleteSharedData", "INVALID_ARGUMENT", 1)


# --- SetSharedData (§4.1) ----------------------------------------------------------

def test_set_new_session_ok(daemon):
    s = daemon.stub()
    payload = bytes(range(256)) * 4
    r = s.SetSharedData(sd("new-1", 1, payload, ttl=60))
    assert r.ByteSize() == 0          # google.protobuf.Empty
    g = get_ok(s, "new-1")
    assert g.session_id == "new-1"
    assert g.HasField("update_level") and g.update_level == 1
    assert g.payload == payload
    daemon.wait_requests("SetSharedData", "OK", 1)
    daemon.wait_metric(lambda m: m.value("alpcrund_entries") == 1
                       and m.value("alpcrund_payload_bytes") >= len(payload))


def test_set_retry_identical_ok_and_restarts_ttl(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("retry-1", 1, b"same bytes", ttl=5))
    s.SetSharedData(sd("retry-1", 1, b"same bytes", ttl=100))
    g = get_ok(s, "retry-1")
    assert 5 < ttl_seconds(g) <= 100
    assert (g.update_level, g.payload) == (1, b"same bytes")
    daemon.wait_requests("SetSharedData", "OK", 2)


def test_set_retry_never_shortens_the_ttl(daemon):
    # Spec §4: a copy handed out with 100 s may live that long, so the
    # level must not end (and be set again with other bytes) before.
    s = daemon.stub()
    s.SetSharedData(sd("retry-2", 4, b"p", ttl=100))
    s.SetSharedData(sd("retry-2", 4, b"p", ttl=3))
    assert 90 < ttl_seconds(get_ok(s, "retry-2")) <= 100
    s.UpdateSharedData(sd("retry-2", 4, b"p", ttl=2))
    assert 90 < ttl_seconds(get_ok(s, "retry-2")) <= 100


def test_update_never_ends_before_the_level_it_replaces(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("upd-short", 1, b"one", ttl=100))
    s.UpdateSharedData(sd("upd-short", 2, b"two", ttl=2))
    g = get_ok(s, "upd-short")
    assert (g.update_level, g.payload) == (2, b"two")
    assert 90 < ttl_seconds(g) <= 100
    # Deleted: the tombstone lasts as long.
    s.DeleteSharedData(sd("upd-short"))
    expect(s.SetSharedData, sd("upd-short", 1, b"other"), C.FAILED_PRECONDITION,
           "shared data for session upd-short was deleted at update level 2; "
           "set update level 3 or higher")


def test_set_different_payload_already_exists(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("ae-1", 1, b"first"))
    expect(s.SetSharedData, sd("ae-1", 1, b"second"), C.ALREADY_EXISTS, exists("ae-1", 1))
    # same length, one byte different: still a different payload
    expect(s.SetSharedData, sd("ae-1", 1, b"firsT"), C.ALREADY_EXISTS, exists("ae-1", 1))
    # a prefix of the stored payload is different too
    expect(s.SetSharedData, sd("ae-1", 1, b"firs"), C.ALREADY_EXISTS, exists("ae-1", 1))
    g = get_ok(s, "ae-1")
    assert (g.update_level, g.payload) == (1, b"first")
    daemon.wait_requests("SetSharedData", "ALREADY_EXISTS", 3)


def test_set_different_level_already_exists(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("ae-2", 7, b"x"))
    # higher, lower, and same payload at another level: the stored level is named
    expect(s.SetSharedData, sd("ae-2", 8, b"x"), C.ALREADY_EXISTS, exists("ae-2", 7))
    expect(s.SetSharedData, sd("ae-2", 6, b"y"), C.ALREADY_EXISTS, exists("ae-2", 7))
    expect(s.SetSharedData, sd("ae-2", 0, b"x"), C.ALREADY_EXISTS, exists("ae-2", 7))
    g = get_ok(s, "ae-2")
    assert (g.update_level, g.payload) == (7, b"x")
    daemon.wait_requests("SetSharedData", "ALREADY_EXISTS", 3)


def test_set_already_exists_names_level_after_update(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("ae-3", 1, b"a"))
    s.UpdateSharedData(sd("ae-3", 2, b"b"))
    expect(s.SetSharedData, sd("ae-3", 1, b"a"), C.ALREADY_EXISTS, exists("ae-3", 2))
    # the Set retry of the updated content is a retry
    s.SetSharedData(sd("ae-3", 2, b"b"))


# --- Delete and tombstones (§4, §4.1, §4.4) ------------------------------------------

def test_tombstone_same_level_other_payload_refused(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("tomb-1", 3, b"A"))
    s.DeleteSharedData(sd("tomb-1"))
    expect(s.GetSharedData, sd("tomb-1"), C.NOT_FOUND, not_found("tomb-1"))
    expect(s.SetSharedData, sd("tomb-1", 3, b"B"), C.FAILED_PRECONDITION, deleted("tomb-1", 3))
    # lower levels, whatever the payload
    expect(s.SetSharedData, sd("tomb-1", 2, b"A"), C.FAILED_PRECONDITION, deleted("tomb-1", 3))
    expect(s.SetSharedData, sd("tomb-1", 0, b"B"), C.FAILED_PRECONDITION, deleted("tomb-1", 3))
    expect(s.GetSharedData, sd("tomb-1"), C.NOT_FOUND, not_found("tomb-1"))
    daemon.wait_requests("SetSharedData", "FAILED_PRECONDITION", 3)
    daemon.wait_requests("DeleteSharedData", "OK", 1)


def test_tombstone_identical_set_revives(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("tomb-2", 3, b"content"))
    s.DeleteSharedData(sd("tomb-2"))
    s.SetSharedData(sd("tomb-2", 3, b"content"))
    g = get_ok(s, "tomb-2")
    assert (g.update_level, g.payload) == (3, b"content")
    # revived entry is a live entry: a different Set is ALREADY_EXISTS again
    expect(s.SetSharedData, sd("tomb-2", 3, b"other"), C.ALREADY_EXISTS, exists("tomb-2", 3))


def test_tombstone_of_large_payloads(daemon):
    """Payloads from 256 KiB on are hashed off the loop (src/digest.c) for
    the Delete and for a Set at the tombstone's level: same rules."""
    s = daemon.stub()
    a = bytes(range(256)) * (4 * 4096)            # 4 MiB
    b = a[:-1] + b"\x00"                          # differs in the last byte
    s.SetSharedData(sd("tomb-big", 7, a), timeout=30)
    s.DeleteSharedData(sd("tomb-big"), timeout=30)
    expect(s.SetSharedData, sd("tomb-big", 7, b), C.FAILED_PRECONDITION,
           deleted("tomb-big", 7))
    s.SetSharedData(sd("tomb-big", 7, a), timeout=30)
    assert get_ok(s, "tomb-big").payload == a


def test_tombstone_when_the_entry_changes_while_the_delete_hashes(daemon):
    """An Update racing a Delete of a large entry: when both succeed the
    Update came first, and the tombstone names the updated content, not
    the content the Delete looked up. (Whichever came first, the outcome
    is checked; a small Update sent while 64 MiB are hashed usually lands
    first, which is the case this is for.)"""
    s = daemon.stub()
    a = bytes(range(256)) * (64 * 4096)           # 64 MiB: hashed for a while
    b = b"small, and in place before the hash of a is done"
    s.SetSharedData(sd("tomb-race", 1, a), timeout=30)
    fd = s.DeleteSharedData.future(sd("tomb-race"), timeout=30)
    fu = s.UpdateSharedData.future(sd("tomb-race", 2, b), timeout=30)
    fd.result()
    try:
        fu.result()
    except grpc.RpcError as e:       # the Delete came first
        assert e.code() == C.NOT_FOUND, e
        expect(s.SetSharedData, sd("tomb-race", 1, b), C.FAILED_PRECONDITION,
               deleted("tomb-race", 1))
        s.SetSharedData(sd("tomb-race", 1, a), timeout=30)
        return
    expect(s.SetSharedData, sd("tomb-race", 2, a), C.FAILED_PRECONDITION,
           deleted("tomb-race", 2))
    s.SetSharedData(sd("tomb-race", 2, b), timeout=30)
    assert get_ok(s, "tomb-race").payload == b


def test_tombstone_higher_level_ok(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("tomb-3", 3, b"A"))
    s.DeleteSharedData(sd("tomb-3"))
    s.SetSharedData(sd("tomb-3", 4, b"B"))
    g = get_ok(s, "tomb-3")
    assert (g.update_level, g.payload) == (4, b"B")


def test_tombstone_names_level_reached_by_updates(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("tomb-4", 1, b"one"))
    s.UpdateSharedData(sd("tomb-4", 2, b"two"))
    s.DeleteSharedData(sd("tomb-4"))
    expect(s.SetSharedData, sd("tomb-4", 2, b"TWO"), C.FAILED_PRECONDITION, deleted("tomb-4", 2))
    expect(s.SetSharedData, sd("tomb-4", 1, b"one"), C.FAILED_PRECONDITION, deleted("tomb-4", 2))
    s.SetSharedData(sd("tomb-4", 2, b"two"))       # identical: revive
    s.DeleteSharedData(sd("tomb-4"))
    s.SetSharedData(sd("tomb-4", 3, b"three"))


def test_tombstone_at_level_zero(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("tomb-0", 0, b"zero"))
    s.DeleteSharedData(sd("tomb-0"))
    expect(s.SetSharedData, sd("tomb-0", 0, b"ZERO"), C.FAILED_PRECONDITION, deleted("tomb-0", 0))
    s.SetSharedData(sd("tomb-0", 1, b"ZERO"))


def test_tombstone_at_max_level_names_n_plus_1(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("tomb-max", MAX_U32, b"m"))
    s.DeleteSharedData(sd("tomb-max"))
    # n+1 is 4294967296: the message must not wrap to 0
    expect(s.SetSharedData, sd("tomb-max", MAX_U32, b"M"), C.FAILED_PRECONDITION,
           deleted("tomb-max", MAX_U32))
    expect(s.SetSharedData, sd("tomb-max", 0, b"M"), C.FAILED_PRECONDITION,
           deleted("tomb-max", MAX_U32))


def test_tombstone_lives_until_deleted_entrys_expiry(daemon):
    s = daemon.stub()
    t0 = time.monotonic()
    s.SetSharedData(sd("tomb-exp", 5, b"old", ttl=2))
    s.DeleteSharedData(sd("tomb-exp"))
    expect(s.SetSharedData, sd("tomb-exp", 1, b"new"), C.FAILED_PRECONDITION,
           deleted("tomb-exp", 5))

    def set_ok():
        try:
            s.SetSharedData(sd("tomb-exp", 1, b"new"), timeout=5)
            return time.monotonic()
        except grpc.RpcError as e:
            assert e.code() == C.FAILED_PRECONDITION, e
            assert time.monotonic() - t0 < 4.5, "tombstone outlived the entry's expiry"
            return None
    t_ok = wait_until(set_ok, 5, interval=0.1, what="tombstone to expire")
    assert t_ok - t0 >= 1.8, "tombstone vanished %.2fs after a 2s entry was set" % (t_ok - t0)
    g = get_ok(s, "tomb-exp")
    assert (g.update_level, g.payload) == (1, b"new")


def test_expired_entry_leaves_no_tombstone(make_daemon):
    d = make_daemon("sweep_interval 100ms")
    s = d.stub()
    s.SetSharedData(sd("exp-nt", 9, b"old", ttl=1))
    wait_until(lambda: _is_not_found(s, "exp-nt"), 3, what="expiry")
    s.SetSharedData(sd("exp-nt", 1, b"new"))   # any level: no tombstone
    g = get_ok(s, "exp-nt")
    assert (g.update_level, g.payload) == (1, b"new")


def test_delete_not_found(daemon):
    s = daemon.stub()
    expect(s.DeleteSharedData, sd("nothing-here"), C.NOT_FOUND, not_found("nothing-here"))
    s.SetSharedData(sd("del-2", 1, b"x"))
    s.DeleteSharedData(sd("del-2"))
    # the tombstone is not a live entry
    expect(s.DeleteSharedData, sd("del-2"), C.NOT_FOUND, not_found("del-2"))
    daemon.wait_requests("DeleteSharedData", "NOT_FOUND", 2)
    daemon.wait_requests("DeleteSharedData", "OK", 1)
    daemon.wait_metric(lambda m: m.value("alpcrund_entries") == 0)


# --- UpdateSharedData (§4.2) ----------------------------------------------------------

def test_update_not_found(daemon):
    s = daemon.stub()
    expect(s.UpdateSharedData, sd("upd-nf", 1, b"x"), C.NOT_FOUND, not_found("upd-nf"))
    s.SetSharedData(sd("upd-nf2", 1, b"x"))
    s.DeleteSharedData(sd("upd-nf2"))
    expect(s.UpdateSharedData, sd("upd-nf2", 2, b"y"), C.NOT_FOUND, not_found("upd-nf2"))
    daemon.wait_requests("UpdateSharedData", "NOT_FOUND", 2)


def test_update_next_level_replaces_and_resets_ttl(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("upd-1", 1, b"one", ttl=3))
    s.UpdateSharedData(sd("upd-1", 2, b"two", ttl=100))
    g = get_ok(s, "upd-1")
    assert (g.update_level, g.payload) == (2, b"two")
    assert 90 < ttl_seconds(g) <= 100
    s.UpdateSharedData(sd("upd-1", 3, b"three", ttl=200))
    g = get_ok(s, "upd-1")
    assert (g.update_level, g.payload) == (3, b"three")
    assert 100 < ttl_seconds(g) <= 200
    daemon.wait_requests("UpdateSharedData", "OK", 2)


def test_update_retry_identical_ok_restarts_ttl(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("upd-2", 1, b"one", ttl=5))
    s.UpdateSharedData(sd("upd-2", 2, b"two", ttl=5))
    s.UpdateSharedData(sd("upd-2", 2, b"two", ttl=100))
    g = get_ok(s, "upd-2")
    assert (g.update_level, g.payload) == (2, b"two")
    assert 5 < ttl_seconds(g) <= 100
    daemon.wait_requests("UpdateSharedData", "OK", 2)


def test_update_mismatch(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("upd-3", 1, b"one"))
    s.UpdateSharedData(sd("upd-3", 2, b"two"))
    # current level, other payload: not a retry
    expect(s.UpdateSharedData, sd("upd-3", 2, b"TWO"), C.FAILED_PRECONDITION, mismatch(3, 2))
    expect(s.UpdateSharedData, sd("upd-3", 4, b"four"), C.FAILED_PRECONDITION, mismatch(3, 4))
    expect(s.UpdateSharedData, sd("upd-3", 1, b"one"), C.FAILED_PRECONDITION, mismatch(3, 1))
    expect(s.UpdateSharedData, sd("upd-3", 0, b"x"), C.FAILED_PRECONDITION, mismatch(3, 0))
    g = get_ok(s, "upd-3")
    assert (g.update_level, g.payload) == (2, b"two")
    daemon.wait_requests("UpdateSharedData", "FAILED_PRECONDITION", 4)


def test_update_level_exhausted(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("upd-max", MAX_U32, b"last"))
    expect(s.UpdateSharedData, sd("upd-max", 0, b"wrap"), C.FAILED_PRECONDITION,
           exhausted("upd-max"))
    expect(s.UpdateSharedData, sd("upd-max", MAX_U32, b"other"), C.FAILED_PRECONDITION,
           exhausted("upd-max"))
    expect(s.UpdateSharedData, sd("upd-max", 5, b"x"), C.FAILED_PRECONDITION,
           exhausted("upd-max"))
    g = get_ok(s, "upd-max")
    assert (g.update_level, g.payload) == (MAX_U32, b"last")


def test_update_to_max_level_then_exhausted(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("upd-max2", MAX_U32 - 1, b"a"))
    s.UpdateSharedData(sd("upd-max2", MAX_U32, b"b"))
    assert get_ok(s, "upd-max2").update_level == MAX_U32
    expect(s.UpdateSharedData, sd("upd-max2", 0, b"c"), C.FAILED_PRECONDITION,
           exhausted("upd-max2"))


def test_update_retry_at_max_level_is_ok(daemon):
    # §4.2: level == current with identical payload is a retry, whatever current is
    s = daemon.stub()
    s.SetSharedData(sd("upd-max3", MAX_U32 - 1, b"a"))
    s.UpdateSharedData(sd("upd-max3", MAX_U32, b"b"))
    s.UpdateSharedData(sd("upd-max3", MAX_U32, b"b"))


# --- level 0 is a level (§3, §4) ---------------------------------------------------------

def test_level_zero_is_a_real_level(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("lz", 0, b"zero"))
    g = get_ok(s, "lz")
    assert g.HasField("update_level") and g.update_level == 0
    assert get_ok(s, "lz", 0).payload == b"zero"
    expect(s.GetSharedData, sd("lz", 1), C.FAILED_PRECONDITION, mismatch(0, 1))
    # retry at level 0 is a retry, not an absent level
    s.SetSharedData(sd("lz", 0, b"zero"))
    s.UpdateSharedData(sd("lz", 1, b"one"))
    assert get_ok(s, "lz", 1).payload == b"one"


def test_get_level_zero_on_level_one_is_mismatch(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("lz1", 1, b"one"))
    expect(s.GetSharedData, sd("lz1", 0), C.FAILED_PRECONDITION, mismatch(1, 0))
    # the same request without a level succeeds
    assert get_ok(s, "lz1").payload == b"one"


def test_level_zero_on_the_wire_is_present(daemon):
    # Explicit presence: field 2 with value 0 is on the wire (2 bytes) and
    # must be read as level 0, not absent.
    ch = daemon.channel()
    setc, getc = raw_unary(ch, SET), raw_unary(ch, GET)
    setc(encode_shared("lzw", 1, b"x"), timeout=10)
    e = rpc_error(getc, encode_shared("lzw", 0))
    assert e.code() == C.FAILED_PRECONDITION and e.details() == mismatch(1, 0)
    e = rpc_error(setc, encode_shared("lzw2", None, b"x"))
    assert e.code() == C.INVALID_ARGUMENT and "update_level" in e.details()
    setc(encode_shared("lzw2", 0, b"x"), timeout=10)


# --- GetSharedData (§4.3) ------------------------------------------------------------------

def test_get_not_found(daemon):
    s = daemon.stub()
    expect(s.GetSharedData, sd("get-nf"), C.NOT_FOUND, not_found("get-nf"))
    expect(s.GetSharedData, sd("get-nf", 3), C.NOT_FOUND, not_found("get-nf"))
    daemon.wait_requests("GetSharedData", "NOT_FOUND", 2)


def test_get_level_mismatch(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("get-mm", 5, b"five"))
    expect(s.GetSharedData, sd("get-mm", 4), C.FAILED_PRECONDITION, mismatch(5, 4))
    expect(s.GetSharedData, sd("get-mm", 6), C.FAILED_PRECONDITION, mismatch(5, 6))
    expect(s.GetSharedData, sd("get-mm", MAX_U32), C.FAILED_PRECONDITION, mismatch(5, MAX_U32))
    daemon.wait_requests("GetSharedData", "FAILED_PRECONDITION", 3)


def test_get_reply_fields(daemon):
    s = daemon.stub()
    payload = bytes((i * 7 + 3) & 0xFF for i in range(10000))
    s.SetSharedData(sd("get-f", 42, payload, ttl=30))
    for level in (None, 42):
        g = get_ok(s, "get-f", level)
        assert g.session_id == "get-f"
        assert g.HasField("update_level") and g.update_level == 42
        assert g.payload == payload
        assert g.HasField("ttl")
        assert 0 <= g.ttl.nanos < 1000000000 and g.ttl.seconds >= 0
        assert 0 < ttl_seconds(g) <= 30
        assert ttl_seconds(g) > 25


def test_get_empty_payload(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("get-empty", 1, b""))
    g = get_ok(s, "get-empty")
    assert g.payload == b"" and g.update_level == 1
    expect(s.SetSharedData, sd("get-empty", 1, b"\x00"), C.ALREADY_EXISTS, exists("get-empty", 1))


def test_get_does_not_extend_ttl(daemon):
    s = daemon.stub()
    t0 = time.monotonic()
    s.SetSharedData(sd("get-ttl", 1, b"x", ttl=2))
    prev = None
    while True:
        try:
            g = s.GetSharedData(sd("get-ttl"), timeout=5)
        except grpc.RpcError as e:
            assert e.code() == C.NOT_FOUND
            break
        r = ttl_seconds(g)
        assert r <= 2
        if prev is not None:
            assert r <= prev + 0.002, "remaining ttl grew from %.3f to %.3f" % (prev, r)
        prev = r
        assert time.monotonic() - t0 < 3.0, "entry still readable 3s after a 2s ttl"
        time.sleep(0.05)
    assert time.monotonic() - t0 >= 1.8
    assert prev is not None


# --- session_id validation (§4) ---------------------------------------------------------

BAD_IDS = [
    pytest.param(b"a" * 257, id="257-bytes"),
    pytest.param(b"a b", id="space"),
    pytest.param(b" ", id="only-space"),
    pytest.param(b"a\tb", id="tab"),
    pytest.param(b"a\nb", id="newline"),
    pytest.param(b"a\x01b", id="ctrl-01"),
    pytest.param(b"a\x7fb", id="DEL"),
    pytest.param(b"a\x00b", id="embedded-NUL"),
    pytest.param(b"ab\x00", id="trailing-NUL"),
    pytest.param(b"\xc3\xa9t\xc3\xa9", id="non-ascii-utf8"),
    pytest.param(b"a\xffb", id="byte-ff"),
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_session_id_invalid(daemon, bad):
    ch = daemon.channel()
    for path, level, method in ((SET, 1, "SetSharedData"), (UPDATE, 2, "UpdateSharedData"),
                                (GET, None, "GetSharedData"), (DELETE, None, "DeleteSharedData")):
        e = rpc_error(raw_unary(ch, path), encode_shared(bad, level, b"p"))
        assert e.code() == C.INVALID_ARGUMENT, (path, e.code(), e.details())
    for method in ("SetSharedData", "UpdateSharedData", "GetSharedData", "DeleteSharedData"):
        daemon.wait_requests(method, "INVALID_ARGUMENT", 1)
    daemon.wait_metric(lambda m: m.value("alpcrund_entries") == 0)


def test_session_id_256_bytes_ok(daemon):
    s = daemon.stub()
    sid = "".join(chr(0x21 + i % 94) for i in range(256))
    assert len(sid.encode()) == 256
    s.SetSharedData(sd(sid, 1, b"x"))
    s.UpdateSharedData(sd(sid, 2, b"y"))
    g = get_ok(s, sid)
    assert g.session_id == sid and g.payload == b"y"
    s.DeleteSharedData(sd(sid))


def test_session_id_every_printable_char_ok(daemon):
    s = daemon.stub()
    sid = "".join(chr(c) for c in range(0x21, 0x7F))     # '!' .. '~'
    s.SetSharedData(sd(sid, 1, b"x"))
    assert get_ok(s, sid).session_id == sid
    s.SetSharedData(sd("x", 1, b"one byte id"))
    assert get_ok(s, "x").payload == b"one byte id"


def test_session_id_nul_does_not_truncate(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("abc", 1, b"abc data"))
    ch = daemon.channel()
    for path in (GET, DELETE):
        e = rpc_error(raw_unary(ch, path), encode_shared(b"abc\x00def"))
        assert e.code() == C.INVALID_ARGUMENT
    e = rpc_error(raw_unary(ch, SET), encode_shared(b"abc\x00", 1, b"abc data"))
    assert e.code() == C.INVALID_ARGUMENT
    assert get_ok(s, "abc").payload == b"abc data"


# --- TTL (§4.5) -----------------------------------------------------------------------------

def test_ttl_absent_or_zero_uses_default_ttl(make_daemon):
    d = make_daemon("default_ttl 2s\nmax_ttl 1h")
    s = d.stub()
    s.SetSharedData(sd("ttl-abs", 1, b"x"))
    s.SetSharedData(sd("ttl-zero", 1, b"x", ttl=(0, 0)))
    # a zero Duration written explicitly on the wire (field 4 present, empty)
    raw_unary(d.channel(), SET)(encode_shared("ttl-zero-wire", 1, b"x", ttl=(0, 0)), timeout=10)
    for sid in ("ttl-abs", "ttl-zero", "ttl-zero-wire"):
        r = ttl_seconds(get_ok(s, sid))
        assert 0 < r <= 2, (sid, r)
    # An Update without ttl has default_ttl too (here no earlier than
    # the level it replaces: spec §4).
    s.UpdateSharedData(sd("ttl-abs", 2, b"y"))
    assert 0 < ttl_seconds(get_ok(s, "ttl-abs")) <= 2


def test_ttl_default_is_600s(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("ttl-def", 1, b"x"))
    assert 590 < ttl_seconds(get_ok(s, "ttl-def")) <= 600
    s.SetSharedData(sd("ttl-big", 1, b"x", ttl=100000))
    assert 590 < ttl_seconds(get_ok(s, "ttl-big")) <= 600     # max_ttl 600s


@pytest.mark.parametrize("ttl", [
    pytest.param((-1, 0), id="negative-seconds"),
    pytest.param((-5, -1), id="negative-both"),
    pytest.param((0, -1), id="negative-nanos"),
    pytest.param((0, 1000000000), id="nanos-1e9"),
    pytest.param((5, 1500000000), id="nanos-1.5e9"),
    pytest.param((0, -1000000000), id="nanos-minus-1e9"),
])
def test_ttl_invalid(daemon, ttl):
    s = daemon.stub()
    expect(s.SetSharedData, sd("ttl-bad", 1, b"x", ttl=ttl), C.INVALID_ARGUMENT)
    expect(s.GetSharedData, sd("ttl-bad"), C.NOT_FOUND, not_found("ttl-bad"))
    s.SetSharedData(sd("ttl-bad", 1, b"x", ttl=50))
    expect(s.UpdateSharedData, sd("ttl-bad", 2, b"y", ttl=ttl), C.INVALID_ARGUMENT)
    g = get_ok(s, "ttl-bad")
    assert g.update_level == 1 and ttl_seconds(g) > 40
    daemon.wait_requests("SetSharedData", "INVALID_ARGUMENT", 1)
    daemon.wait_requests("UpdateSharedData", "INVALID_ARGUMENT", 1)


def test_ttl_nanos_in_range_ok(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("ttl-ns", 1, b"x", ttl=(3, 999999999)))
    assert 3 < ttl_seconds(get_ok(s, "ttl-ns")) <= 4


def test_ttl_above_max_is_clamped(make_daemon):
    d = make_daemon("default_ttl 2s\nmax_ttl 3s")
    s = d.stub()
    s.SetSharedData(sd("ttl-clamp", 1, b"x", ttl=100))
    r = ttl_seconds(get_ok(s, "ttl-clamp"))
    assert 0 < r <= 3
    s.UpdateSharedData(sd("ttl-clamp", 2, b"y", ttl=(10 ** 11, 0)))
    r = ttl_seconds(get_ok(s, "ttl-clamp"))
    assert 0 < r <= 3
    d.wait_requests("SetSharedData", "OK", 1)


def test_ttl_subsecond(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("ttl-sub", 1, b"x", ttl=(0, 800000000)))
    r = ttl_seconds(get_ok(s, "ttl-sub"))
    assert 0 < r <= 0.8
    wait_until(lambda: _is_not_found(s, "ttl-sub"), 2.5, what="0.8s entry to expire")


def _is_not_found(stub, sid):
    try:
        stub.GetSharedData(sd(sid), timeout=5)
        return False
    except grpc.RpcError as e:
        assert e.code() == C.NOT_FOUND, (e.code(), e.details())
        assert e.details() == not_found(sid)
        return True


def test_expired_entry_invisible_at_once(make_daemon):
    # The sweeper runs once an hour here: the read path alone must hide it.
    d = make_daemon("sweep_interval 1h")
    s = d.stub()
    t0 = time.monotonic()
    s.SetSharedData(sd("exp-1", 1, b"x", ttl=1))
    assert get_ok(s, "exp-1").payload == b"x"
    wait_until(lambda: _is_not_found(s, "exp-1"), 3, interval=0.02, what="expired entry")
    assert time.monotonic() - t0 < 1.5
    assert time.monotonic() - t0 >= 0.9
    expect(s.UpdateSharedData, sd("exp-1", 2, b"y"), C.NOT_FOUND, not_found("exp-1"))
    expect(s.DeleteSharedData, sd("exp-1"), C.NOT_FOUND, not_found("exp-1"))


def test_sweeper_frees_expired_entries(make_daemon):
    d = make_daemon("sweep_interval 500ms")
    s = d.stub()
    for i in range(20):
        s.SetSharedData(sd("sw-%d" % i, 1, b"y" * 1000, ttl=1))
    s.SetSharedData(sd("sw-keep", 1, b"k" * 10, ttl=60))
    d.wait_metric(lambda m: m.value("alpcrund_entries") == 21, 2)
    t0 = time.monotonic()
    m = d.wait_metric(lambda m: m.value("alpcrund_entries") == 1, 4)
    assert time.monotonic() - t0 < 3.5
    assert m.value("alpcrund_expired_total") == 20
    assert 10 <= m.value("alpcrund_payload_bytes") < 20000
    assert get_ok(s, "sw-keep").payload == b"k" * 10


def test_requests_total_adds_up(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("cnt", 1, b"a"))                       # Set OK
    s.SetSharedData(sd("cnt", 1, b"a"))                       # Set OK (retry)
    rpc_error(s.SetSharedData, sd("cnt", 1, b"b"))            # Set ALREADY_EXISTS
    s.UpdateSharedData(sd("cnt", 2, b"b"))                    # Update OK
    rpc_error(s.UpdateSharedData, sd("cnt", 5, b"b"))         # Update FAILED_PRECONDITION
    rpc_error(s.UpdateSharedData, sd("none", 5, b"b"))        # Update NOT_FOUND
    get_ok(s, "cnt")                                          # Get OK
    rpc_error(s.GetSharedData, sd("cnt", 1))                  # Get FAILED_PRECONDITION
    rpc_error(s.GetSharedData, sd("none"))                    # Get NOT_FOUND
    s.DeleteSharedData(sd("cnt"))                             # Delete OK
    rpc_error(s.DeleteSharedData, sd("cnt"))                  # Delete NOT_FOUND
    rpc_error(s.SetSharedData, sd("cnt", 1, b"z"))            # Set FAILED_PRECONDITION
    want = {
        ("SetSharedData", "OK"): 2, ("SetSharedData", "ALREADY_EXISTS"): 1,
        ("SetSharedData", "FAILED_PRECONDITION"): 1,
        ("UpdateSharedData", "OK"): 1, ("UpdateSharedData", "FAILED_PRECONDITION"): 1,
        ("UpdateSharedData", "NOT_FOUND"): 1,
        ("GetSharedData", "OK"): 1, ("GetSharedData", "FAILED_PRECONDITION"): 1,
        ("GetSharedData", "NOT_FOUND"): 1,
        ("DeleteSharedData", "OK"): 1, ("DeleteSharedData", "NOT_FOUND"): 1,
    }
    cache_methods = {"SetSharedData", "UpdateSharedData", "GetSharedData", "DeleteSharedData"}

    def table(m):
        out = {}
        for (n, lab), v in m.items():
            lab = dict(lab)
            if n == "alpcrund_requests_total" and lab.get("method") in cache_methods and v:
                out[(lab["method"], lab["code"])] = v
        return out
    m = daemon.wait_metric(lambda m: sum(table(m).values()) >= sum(want.values()))
    assert table(m) == want
    # the duration histogram counts the same requests, by method
    for method in cache_methods:
        n = sum(v for (meth, _), v in want.items() if meth == method)
        assert m.value("alpcrund_request_duration_seconds_count", method=method) == n, method


def test_ttl_given_twice_merges_as_protobuf_says(daemon):
    # An embedded message given twice merges, each field the last given
    # (as grpc-go and grpcio decode it): ttl {seconds: 40} then
    # ttl {nanos: 5} is 40 s and 5 ns, not the 5 ns alone (protobuf-c 1.4
    # keeps the last ttl whole, and 5 ns would expire at once).
    ch = daemon.channel()
    setc, getc = raw_unary(ch, SET), raw_unary(ch, GET)
    msg = encode_shared("ttl2", 1, b"x", ttl=(40, 0)) + \
        field_bytes(4, encode_duration(0, 5))
    setc(msg, timeout=10)
    g = SharedData.FromString(getc(encode_shared("ttl2"), timeout=10))
    assert g.payload == b"x"
    assert 30 < g.ttl.seconds <= 40, g.ttl
