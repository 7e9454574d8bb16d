"""Spec §3 (authentication) and §7 (api_key_file, METALCORE_API_KEY, SIGHUP)."""
import signal

import grpc
import pytest

from alptest import health_pb2, sd, wait_until

C = grpc.StatusCode
HC = health_pb2.HealthCheckRequest
SERVING = health_pb2.HealthCheckResponse.SERVING
KEY = "k3y-Alpha-0123456789"


def key_md(key):
    return (("api_key", key),)


def calls(stub, n):
    """One call of each Cache method, on session auth-<n>."""
    sid = "auth-%s" % n
    return [
        ("SetSharedData", lambda md: stub.SetSharedData(sd(sid, 1, b"v"), metadata=md, timeout=10)),
        ("UpdateSharedData", lambda md: stub.UpdateSharedData(sd(sid, 2, b"w"), metadata=md, timeout=10)),
        ("GetSharedData", lambda md: stub.GetSharedData(sd(sid), metadata=md, timeout=10)),
        ("DeleteSharedData", lambda md: stub.DeleteSharedData(sd(sid), metadata=md, timeout=10)),
    ]


def code_of(fn, md):
    try:
        fn(md)
        return C.OK
    except grpc.RpcError as e:
        return e.code()


def write_key(path, key):
    with open(path, "w") as f:
        f.write(key)


@pytest.fixture
def keyed(make_daemon, tmp_path):
    kf = tmp_path / "api.key"
    write_key(kf, KEY)
    return make_daemon("api_key_file %s" % kf), kf


def test_missing_key_unauthenticated(keyed):
    d, _ = keyed
    s = d.stub()
    for method, fn in calls(s, 1):
        assert code_of(fn, None) == C.UNAUTHENTICATED, method
        d.wait_requests(method, "UNAUTHENTICATED", 1)
    # other metadata is not a key
    assert code_of(calls(s, 1)[2][1], (("x-api-key", KEY),)) == C.UNAUTHENTICATED


@pytest.mark.parametrize("wrong", [
    "wrong", KEY[:-1], KEY + "x", KEY.upper(), KEY[:-1] + "0", "x" * len(KEY)],
    ids=["other", "prefix", "longer", "case", "last-char", "same-length"])
def test_wrong_key_permission_denied(keyed, wrong):
    d, _ = keyed
    s = d.stub()
    for method, fn in calls(s, 2):
        assert code_of(fn, key_md(wrong)) == C.PERMISSION_DENIED, method
        d.wait_requests(method, "PERMISSION_DENIED", 1)
    # nothing was written by the refused calls
    assert code_of(calls(s, 2)[2][1], key_md(KEY)) == C.NOT_FOUND


def test_empty_key_is_refused(keyed):
    d, _ = keyed
    code = code_of(calls(d.stub(), 3)[2][1], key_md(""))
    assert code in (C.UNAUTHENTICATED, C.PERMISSION_DENIED)


def test_right_key_works(keyed):
    d, _ = keyed
    s = d.stub()
    results = [code_of(fn, key_md(KEY)) for _, fn in calls(s, 4)]
    assert results == [C.OK] * 4
    d.wait_requests("DeleteSharedData", "OK", 1)


def test_auth_checked_before_arguments(keyed):
    d, _ = keyed
    s = d.stub()
    with pytest.raises(grpc.RpcError) as ei:
        s.SetSharedData(sd("bad id", None, b""), timeout=10)
    assert ei.value.code() == C.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as ei:
        s.GetSharedData(sd("does-not-exist"), metadata=key_md("nope"), timeout=10)
    assert ei.value.code() == C.PERMISSION_DENIED


def test_health_is_exempt(keyed):
    d, _ = keyed
    h = d.health_stub()
    assert h.Check(HC(service=""), timeout=10).status == SERVING
    assert h.Check(HC(service="alpcrun.v1.Cache"), timeout=10).status == SERVING
    assert h.Check(HC(), metadata=key_md("wrong"), timeout=10).status == SERVING
    it = h.Watch(HC(), timeout=10)
    assert next(it).status == SERVING
    it.cancel()


def test_key_from_environment(make_daemon):
    d = make_daemon(env={"METALCORE_API_KEY": "env-key-42"})
    s = d.stub()
    get = calls(s, 5)[2][1]
    assert code_of(get, None) == C.UNAUTHENTICATED
    assert code_of(get, key_md("wrong")) == C.PERMISSION_DENIED
    assert [code_of(fn, key_md("env-key-42")) for _, fn in calls(s, 5)] == [C.OK] * 4
    assert d.health_stub().Check(HC(), timeout=10).status == SERVING


def test_key_file_wins_over_environment(make_daemon, tmp_path):
    kf = tmp_path / "file.key"
    write_key(kf, "file-key")
    d = make_daemon("api_key_file %s" % kf, env={"METALCORE_API_KEY": "env-key"})
    get = calls(d.stub(), 6)[2][1]
    assert code_of(get, key_md("env-key")) == C.PERMISSION_DENIED
    assert code_of(get, key_md("file-key")) == C.NOT_FOUND


def test_no_key_configured_needs_no_metadata(daemon):
    s = daemon.stub()
    assert [code_of(fn, None) for _, fn in calls(s, 7)] == [C.OK] * 4
    assert code_of(calls(s, 8)[0][1], key_md("anything")) == C.OK


def test_sighup_reloads_key_file(keyed):
    d, kf = keyed
    s = d.stub()
    get = calls(s, 9)[2][1]
    assert code_of(get, key_md(KEY)) == C.NOT_FOUND
    write_key(kf, "new-key-after-hup")
    d.signal(signal.SIGHUP)
    wait_until(lambda: code_of(get, key_md("new-key-after-hup")) == C.NOT_FOUND, 5,
               what="new key accepted after SIGHUP")
    assert code_of(get, key_md(KEY)) == C.PERMISSION_DENIED
    assert code_of(get, None) == C.UNAUTHENTICATED
    assert d.alive()
