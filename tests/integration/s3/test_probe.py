"""backend s3's start-up probe (src/s3/s3probe.c) through `alpcrund -t`
and a start of the daemon, against the fake S3 store of fakes3.py: a
correct store passes; each broken mode fails with a message naming what it
got wrong; bad credentials, an unreachable or silent store, TLS and the
store's CA, a throttling store and a lost reply; the configuration errors
of backend s3."""
import os
import re
import socket
import subprocess
import time

import pytest

import alptest
import fakes3  # the fake store, tests/integration/s3/fakes3.py
from s3stores import rgw, s3store  # noqa: F401  (fixtures)

AK, SK = "AKIDPROBE", "probe/secret+key"
BUCKET = "alp-probe"


def run(args, env=None, timeout=60):
    """alpcrund with args, no AWS_* of the caller's: (rc, output, seconds)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.pop("METALCORE_API_KEY", None)
    e.update(env or {})
    t0 = time.monotonic()
    p = subprocess.run([alptest.ALPCRUND] + args, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL, env=e)
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


def creds(tmp_path, ak=AK, sk=SK, extra=""):
    p = tmp_path / "s3.cred"
    p.write_text("# test credentials\naccess_key_id %s\nsecret_access_key = %s\n%s"
                 % (ak, sk, extra))
    return str(p)


def conf(tmp_path, endpoint, more="", cred=True, prefix="t/"):
    text = "backend s3\ns3_endpoint %s\ns3_bucket %s\n" % (endpoint, BUCKET)
    if prefix:
        text += "s3_prefix %s\n" % prefix
    if cred:
        text += "s3_credentials %s\n" % creds(tmp_path)
    text += more
    p = tmp_path / "alpcrund.conf"
    p.write_text(text)
    return str(p)


@pytest.fixture
def store():
    s = fakes3.FakeS3(buckets=(BUCKET,), access_key=AK, secret_key=SK).start()
    yield s
    s.stop()


def check(tmp_path, endpoint, more="", **kw):
    return run(["-t", "-c", conf(tmp_path, endpoint, more, **kw)])


def test_correct_store_passes(tmp_path, store):
    rc, out, _ = check(tmp_path, store.url)
    assert rc == 0, out
    assert "s3 store at %s/%s: conditional writes honoured" % (store.url, BUCKET) in out
    assert "configuration OK" in out
    # Every scratch key deleted, all of them were under the prefix.
    assert store.objects(BUCKET) == {}
    st = store.stats()
    assert st["by_method"].get("PUT", 0) >= 4 + 16, st
    assert st["by_method"].get("DELETE", 0) == 3, st


def test_store_that_takes_if_match_only_unquoted(tmp_path):
    """A store that refuses the quoted ETag in If-Match and takes it bare
    (Ceph RGW 16): the probe finds out, sends it bare from then on, and the
    races still have one winner each; the message says so."""
    with fakes3.FakeS3(buckets=(BUCKET,), access_key=AK, secret_key=SK,
                       mode="bare-if-match") as s:
        rc, out, _ = check(tmp_path, s.url)
        assert rc == 0, out
        assert "with one winner each); If-Match ETags are sent unquoted, the only form it takes" \
            in out, out
        assert s.objects(BUCKET) == {}


def test_store_that_refuses_its_own_etag_fails(tmp_path):
    """A store whose If-Match never matches (quoted or not) fails, naming
    the check."""
    with fakes3.FakeS3(buckets=(BUCKET,), access_key=AK, secret_key=SK) as s:
        honoured = s._precondition

        def never_matches(cur, headers, key):
            if headers.get("If-Match") is not None and cur is not None:
                return fakes3.S3Error(412, "PreconditionFailed", "never", Condition="If-Match")
            return honoured(cur, headers, key)
        s._precondition = never_matches
        rc, out, _ = check(tmp_path, s.url)
    assert rc == 1, out
    assert re.search(r'a PUT with the ETag "[0-9a-f]{32}" of the key t/\.probe/[0-9a-f]{16}/create '
                     r"in If-Match answered HTTP 412 PreconditionFailed: never \(also with the "
                     r"ETag unquoted\); it does not honour If-Match", out), out


def test_probe_passes_on_each_store(tmp_path, s3store):
    """The probe against each store of the suites (fakes3, s3rver, and in
    the RGW stage Ceph RGW): passes, and leaves nothing behind."""
    cred = tmp_path / "store.cred"
    cred.write_text("access_key_id %s\nsecret_access_key %s\n"
                    % (s3store.access_key, s3store.secret_key))
    path = tmp_path / "store.conf"
    path.write_text("backend s3\ns3_endpoint %s\ns3_bucket %s\ns3_prefix t/\n"
                    "s3_credentials %s\n" % (s3store.url, s3store.bucket, cred))
    rc, out, _ = run(["-t", "-c", str(path)])
    assert rc == 0, out
    assert "conditional writes honoured" in out, out
    if s3store.name == "rgw":
        assert "If-Match ETags are sent unquoted" in out, out
    listed = s3store.client().request("GET", s3store.bucket, query={"list-type": "2"})
    assert listed.status == 200 and b"<Key>" not in listed.body, listed


def test_racers_race_side_by_side(tmp_path, store):
    """Each racer on a connection of its own, opened for it (none ahead on
    the warm connection of the steps before), all 8 in flight at once: the
    store holds every racing PUT until 8 are held together (a probe that
    sent them one after the other would see them answered 500)."""
    store.faults({"method": "PUT", "key": "race$", "action": {"gather": 8}, "count": -1})
    rc, out, _ = check(tmp_path, store.url, "s3_timeout 30s\n")
    assert rc == 0, out
    st = store.stats()
    assert st["faults_applied"] == 16 and "500" not in st["by_status"], st
    # The steps before on one kept connection, then 8 and 8 fresh ones.
    assert st["connections"] >= 1 + 2 * 8, st


def test_probe_without_prefix_and_env_credentials(tmp_path, store):
    path = conf(tmp_path, store.url, cred=False, prefix=None)
    rc, out, _ = run(["-t", "-c", path],
                     env={"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK})
    assert rc == 0, out
    assert store.objects(BUCKET) == {}


BROKEN = {
    "ignore-conditions":
        r"a second create \(PUT If-None-Match: \*\) of the key t/\.probe/[0-9a-f]{16}/create "
        r"succeeded; it does not honour If-None-Match",
    "ifmatch-missing-succeeds":
        r"a PUT with If-Match to the missing key t/\.probe/[0-9a-f]{16}/missing succeeded "
        r"and created it; it does not honour If-Match on missing keys",
    "racy":
        r"[2-8] of 8 racing creates of one key succeeded; it does not honour "
        r"If-None-Match under races",
}


@pytest.mark.parametrize("mode", sorted(BROKEN))
def test_broken_store_fails_naming_what(tmp_path, mode):
    with fakes3.FakeS3(buckets=(BUCKET,), access_key=AK, secret_key=SK, mode=mode) as s:
        rc, out, _ = check(tmp_path, s.url)
        assert rc == 1, out
        assert re.search(r"alpcrund: s3 store at %s/%s: %s" % (re.escape(s.url), BUCKET,
                                                              BROKEN[mode]), out), out
        assert "configuration OK" not in out
        # What the probe made is gone again.
        assert s.objects(BUCKET) == {}, s.objects(BUCKET)


def test_bad_secret_names_the_403_code(tmp_path, store):
    path = conf(tmp_path, store.url)
    with open(path, "a") as f:
        f.write("")
    creds(tmp_path, sk="wrong")
    rc, out, _ = run(["-t", "-c", path])
    assert rc == 1, out
    assert "HTTP 403 SignatureDoesNotMatch" in out, out
    assert "a create (PUT If-None-Match: *) of the new key" in out


def test_unknown_access_key_names_the_403_code(tmp_path, store):
    path = conf(tmp_path, store.url)
    creds(tmp_path, ak="AKIDNOBODY")
    rc, out, _ = run(["-t", "-c", path])
    assert rc == 1, out
    assert "HTTP 403 InvalidAccessKeyId" in out, out


def test_wrong_region_is_a_clear_error(tmp_path, store):
    rc, out, _ = check(tmp_path, store.url, "s3_region eu-west-3\n")
    assert rc == 1, out
    assert "HTTP 400 AuthorizationHeaderMalformed" in out, out


def test_refused_store_fails_fast(tmp_path):
    port = alptest.free_port()
    rc, out, secs = check(tmp_path, "http://127.0.0.1:%d" % port,
                          "s3_timeout 3s\ns3_retries 2\n")
    assert rc == 1, out
    assert "cannot connect" in out, out
    assert "after 3 attempts" in out, out
    assert secs < 3, (secs, out)


def test_silent_store_fails_within_the_deadline(tmp_path):
    # A listener that never accepts: the connection is made, no reply comes.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    try:
        rc, out, secs = check(tmp_path, "http://127.0.0.1:%d" % ls.getsockname()[1],
                              "s3_timeout 1s\n")
    finally:
        ls.close()
    assert rc == 1, out
    assert "timed out" in out, out
    assert 0.9 < secs < 4, (secs, out)


def test_tls_store_with_its_ca(tmp_path, pki):
    tls = (pki.path("server.pem"), pki.path("server.key"))
    with fakes3.FakeS3(buckets=(BUCKET,), access_key=AK, secret_key=SK, tls=tls) as s:
        assert s.url.startswith("https://")
        rc, out, _ = check(tmp_path, s.url, "s3_ca_file %s\n" % pki.path("ca.pem"))
        assert rc == 0, out
        assert "conditional writes honoured" in out
        # Another CA: the certificate is not trusted.
        rc, out, _ = check(tmp_path, s.url, "s3_ca_file %s\n" % pki.path("ca2.pem"))
        assert rc == 1, out
        assert re.search(r"TLS \(.*certificate", out), out
        # The system's trust store does not know the test CA either.
        rc, out, _ = check(tmp_path, s.url)
        assert rc == 1, out
        assert re.search(r"TLS \(.*certificate", out), out


def test_slowdown_is_retried(tmp_path, store):
    store.faults({"method": "PUT", "key": "create$",
                  "action": {"status": 503, "code": "SlowDown"}, "count": 2})
    rc, out, _ = check(tmp_path, store.url)
    assert rc == 0, out
    assert store.stats()["faults_applied"] == 2
    assert store.stats()["by_status"].get("503", 0) == 2, store.stats()


def test_slowdown_beyond_the_retries_fails(tmp_path, store):
    store.faults({"method": "PUT", "key": "create$",
                  "action": {"status": 503, "code": "SlowDown"}, "count": -1})
    rc, out, _ = check(tmp_path, store.url, "s3_retries 1\n")
    assert rc == 1, out
    assert "HTTP 503 SlowDown" in out and "after 2 attempts" in out, out


@pytest.mark.parametrize("key", ["create$", "race$"])
def test_lost_reply_is_resolved(tmp_path, store, key):
    """A write applied whose reply is lost is retried and answered 412: the
    probe takes it for its own (create) or reads the key back (race)."""
    store.faults({"method": "PUT", "key": key, "action": "lose_reply", "count": 1})
    rc, out, _ = check(tmp_path, store.url)
    assert rc == 0, out
    assert store.stats()["faults_applied"] == 1
    assert store.objects(BUCKET) == {}


def test_daemon_start_probes_then_serves(tmp_path, store, make_daemon):
    d = make_daemon(open(conf(tmp_path, store.url)).read())
    log = d.log()
    assert "s3 store probed" in log and "conditional writes honoured" in log, log
    assert "backend=s3" in log, log
    assert store.stats()["requests"] > 0


def test_daemon_start_refuses_a_broken_store(tmp_path):
    with fakes3.FakeS3(buckets=(BUCKET,), access_key=AK, secret_key=SK, mode="racy") as s:
        rc, out, _ = run(["-c", conf(tmp_path, s.url)])
    assert rc == 1, out
    assert re.search(r'msg="s3 store refused" error="s3 store at .*racing creates', out), out
    assert "listening" not in out


# --- configuration errors ----------------------------------------------------------

@pytest.mark.parametrize("text,want", [
    ("backend s3\ns3_bucket abc\n",
     "1: backend s3: needs s3_endpoint (the store's http:// or https:// URL)"),
    ("backend s3\ns3_endpoint http://127.0.0.1:9\n", "1: backend s3: needs s3_bucket"),
    ("backend s3\ns3_bucket abc\ns3_endpoint 127.0.0.1:9000\n",
     "3: s3_endpoint: 127.0.0.1:9000: not an http:// or https:// URL"),
    ("backend s3\ns3_bucket abc\ns3_endpoint http://h/bucket\n",
     "no path or query after host[:port]"),
    ("s3_bucket abc\n", "1: s3_bucket: needs backend s3"),
])
def test_config_errors(tmp_path, text, want):
    p = tmp_path / "c.conf"
    p.write_text(text)
    rc, out, _ = run(["-t", "-c", str(p)])
    assert rc == 1, out
    assert want in out, out
    assert "configuration has errors" in out


def test_no_credentials(tmp_path, store):
    rc, out, _ = check(tmp_path, store.url, cred=False)
    assert rc == 1, out
    assert ("backend s3: no credentials: set s3_credentials, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment") in out, out
    assert store.stats()["requests"] == 0


def test_bad_credentials_file(tmp_path, store):
    path = conf(tmp_path, store.url)
    (tmp_path / "s3.cred").write_text("access_key_id %s\n" % AK)
    rc, out, _ = run(["-t", "-c", path])
    assert rc == 1, out
    assert "s3_credentials %s: no secret_access_key line" % (tmp_path / "s3.cred") in out
    (tmp_path / "s3.cred").write_text("access_key_id %s\nsecret %s\n" % (AK, SK))
    rc, out, _ = run(["-t", "-c", path])
    assert rc == 1, out
    assert "line 2: unknown name secret" in out, out
    # An AWS file of several profiles: not one set of keys silently
    # overriding another.
    (tmp_path / "s3.cred").write_text(
        "[default]\naws_access_key_id %s\naws_secret_access_key %s\n"
        "[other]\naws_access_key_id AKIDOTHER\naws_secret_access_key x\n" % (AK, SK))
    rc, out, _ = run(["-t", "-c", path])
    assert rc == 1, out
    assert "line 5: aws_access_key_id given twice" in out, out
    os.unlink(tmp_path / "s3.cred")
    rc, out, _ = run(["-t", "-c", path])
    assert rc == 1, out
    assert "No such file or directory" in out, out


def test_session_token_is_sent(tmp_path, store):
    """A session token goes along, signed: the fake checks every x-amz-*
    header is signed, so a token outside the signature fails."""
    path = conf(tmp_path, store.url)
    creds(tmp_path, extra="session_token FQoGZXIvYXdzEXAMPLE/token=\n")
    rc, out, _ = run(["-t", "-c", path])
    assert rc == 0, out
