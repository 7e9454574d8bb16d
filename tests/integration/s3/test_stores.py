"""The two S3 stores the tests of `backend s3` run against, tested on their
own: fakes3.py (ours, in memory) and npm's s3rver behind s3rver-wrap.js.

Both stores (fixture s3store, ids [fake] and [s3rver], each started from
its command line; with ALPCRUND_S3_STORES=rgw a one-host Ceph RGW started
by rgw-local instead, whose departures from S3 are asserted where they
are, so that backend s3 relies on none of them): conditional writes (If-None-Match: * and If-Match) and
exactly one winner of 8-way create and update races, multipart upload with
If-None-Match, ranged GET, listing by prefix with continuation, user
metadata, conditional delete, orphan uploads listed and aborted.

fakes3 alone: SigV4 (the published AWS vectors, the S3 documentation's
request accepted by the server, curl --aws-sigv4 interoperating, each
rejection), every fault action, every --mode misbehaving as described,
TLS, chunked bodies, Content-MD5, multipart rules, keep-alive, the control
endpoints and the module API.
"""
import base64
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

import fakes3

from s3stores import (AK, BUCKET, FAKES3, REGION, SK, list_uploads, rgw, s3store,  # noqa: F401
                      start_fake_cli, xml, xml_texts)

MIB = 1024 * 1024


def md5q(data):
    return '"%s"' % hashlib.md5(data).hexdigest()


@pytest.fixture
def fake():
    """fakes3 in this process, signing on, 5 MiB parts (as S3)."""
    f = fakes3.FakeS3(buckets=[BUCKET], access_key=AK, secret_key=SK, region=REGION).start()
    yield f
    f.stop()


def client_of(f):
    return fakes3.Client(f.url, AK, SK, REGION)


def if_match(store, etag):
    """The If-Match value for etag: Ceph RGW 16.2 compares If-Match with
    its ETags unquoted, and answers 412 to the quoted form HTTP defines
    (alpcrund's probe finds this and the client sends what the store
    takes)."""
    return etag.strip('"') if store.name == "rgw" else etag


def put(c, key, body, headers=None, **kw):
    return c.request("PUT", BUCKET, key, body=body, headers=headers, **kw)


def get(c, key, headers=None):
    return c.request("GET", BUCKET, key, headers=headers)


def race(c, n, make_request):
    """n requests sent at once on connections opened beforehand: the
    responses (status, body sent) in thread order. make_request(i, conn)."""
    conns = [c.connect() for _ in range(n)]
    barrier = threading.Barrier(n)
    out = [None] * n

    def run(i):
        barrier.wait(10)
        try:
            out[i] = make_request(i, conns[i])
        except Exception as e:        # noqa: BLE001 - the test reads it
            out[i] = e
    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    for cn in conns:
        cn.close()
    assert all(isinstance(r, fakes3.Response) for r in out), out
    return out


# ------------------------------------------------------------ both stores

def test_create_twice(s3store):
    c = s3store.client()
    r = put(c, "obj/create", b"first", {"If-None-Match": "*"})
    assert r.status == 200, r
    assert r.etag == md5q(b"first")
    r = put(c, "obj/create", b"second", {"If-None-Match": "*"})
    assert r.status == 412 and r.code == "PreconditionFailed", r
    r = get(c, "obj/create")
    assert (r.status, r.body) == (200, b"first")


def test_if_match_wrong(s3store):
    c = s3store.client()
    assert put(c, "obj/m", b"v1").status == 200
    r = put(c, "obj/m", b"v2", {"If-Match": md5q(b"something else")})
    assert r.status == 412 and r.code == "PreconditionFailed", r
    assert get(c, "obj/m").body == b"v1"


def test_if_match_on_missing_key(s3store):
    c = s3store.client()
    r = put(c, "obj/missing", b"v", {"If-Match": if_match(s3store, md5q(b"v"))})
    if s3store.name == "rgw":     # RGW: 412, as the design note says; AWS: 404
        assert r.status == 412 and r.code == "PreconditionFailed", r
    else:
        assert r.status == 404 and r.code == "NoSuchKey", r
    r = get(c, "obj/missing")
    assert r.status == 404 and r.code == "NoSuchKey", r


def test_if_match_right(s3store):
    c = s3store.client()
    old = put(c, "obj/cas", b"v1").etag
    if s3store.name == "rgw":     # the quoted form is refused: the quirk exists
        assert put(c, "obj/cas", b"v2", {"If-Match": old}).status == 412
    r = put(c, "obj/cas", b"v2", {"If-Match": if_match(s3store, old)})
    assert r.status == 200, r
    assert r.etag == md5q(b"v2") != old
    assert get(c, "obj/cas").body == b"v2"
    r = put(c, "obj/cas", b"v3", {"If-Match": if_match(s3store, old)})  # no longer holds
    assert r.status == 412, r
    assert get(c, "obj/cas").body == b"v2"


def test_create_race_one_winner(s3store):
    c = s3store.client()
    for rnd in range(6):
        key = "race/create-%d" % rnd
        bodies = [b"racer %d of round %d" % (i, rnd) for i in range(8)]
        out = race(c, 8, lambda i, cn: put(c, key, bodies[i], {"If-None-Match": "*"}, conn=cn))
        statuses = sorted(r.status for r in out)
        assert statuses == [200] + [412] * 7, (rnd, out)
        winner = next(i for i, r in enumerate(out) if r.status == 200)
        assert get(c, key).body == bodies[winner]


def test_update_race_one_winner(s3store):
    c = s3store.client()
    key = "race/update"
    etag = put(c, key, b"start").etag
    for rnd in range(6):
        bodies = [b"update %d of round %d" % (i, rnd) for i in range(8)]
        out = race(c, 8, lambda i, cn: put(c, key, bodies[i],
                                           {"If-Match": if_match(s3store, etag)}, conn=cn))
        statuses = sorted(r.status for r in out)
        if s3store.name == "rgw":
            # RGW 16.2 answers most losers of an If-Match race 500
            # UnknownError (its write was cancelled), not 412: still one
            # winner
            assert statuses.count(200) == 1 and set(statuses) <= {200, 412, 500}, (rnd, out)
        else:
            assert statuses == [200] + [412] * 7, (rnd, out)
        winner = next(i for i, r in enumerate(out) if r.status == 200)
        r = get(c, key)
        assert r.body == bodies[winner]
        assert r.etag == out[winner].etag == md5q(bodies[winner])
        etag = r.etag


def multipart(c, key, parts, headers=None):
    """Create, upload parts, complete: (upload id, complete response)."""
    r = c.request("POST", BUCKET, key, query={"uploads": ""})
    assert r.status == 200, r
    uid = re.search(rb"<UploadId>([^<]+)</UploadId>", r.body).group(1).decode()
    etags = []
    for n, data in enumerate(parts, 1):
        r = c.request("PUT", BUCKET, key, query={"partNumber": n, "uploadId": uid}, body=data)
        assert r.status == 200, r
        assert r.etag == md5q(data)
        etags.append(r.etag)
    xml = "<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
        "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (n, e.replace('"', "&quot;"))
        for n, e in enumerate(etags, 1))
    r = c.request("POST", BUCKET, key, query={"uploadId": uid}, body=xml.encode(), headers=headers)
    return uid, r


def test_multipart_complete_if_none_match(s3store):
    c = s3store.client()
    p1, p2 = os.urandom(5 * MIB), b"tail of the object"
    uid, r = multipart(c, "mp/obj", [p1, p2], {"If-None-Match": "*"})
    assert r.status == 200, r
    if s3store.name == "fake":
        want = '"%s-2"' % hashlib.md5(hashlib.md5(p1).digest() + hashlib.md5(p2).digest()).hexdigest()
        assert r.etag == want and want in r.body.decode().replace("&quot;", '"')
    g = get(c, "mp/obj")
    assert g.status == 200 and g.body == p1 + p2
    assert uid not in [u for _, u in list_uploads(c)]
    # A second upload to the same key, completed with If-None-Match: refused,
    # the first object kept, the upload left for the orphan collector.
    uid2, r = multipart(c, "mp/obj", [b"x" * (5 * MIB), b"y"], {"If-None-Match": "*"})
    if s3store.name == "rgw":
        # RGW 16.2 ignores the condition on a completion and overwrites:
        # backend s3 never completes an upload conditionally (payload
        # objects are written once under new names)
        assert r.status == 200, r
        assert get(c, "mp/obj").body == b"x" * (5 * MIB) + b"y"
        return
    assert r.status == 412 and r.code == "PreconditionFailed", r
    assert get(c, "mp/obj").body == p1 + p2
    assert ("mp/obj", uid2) in list_uploads(c)
    r = c.request("DELETE", BUCKET, "mp/obj", query={"uploadId": uid2})
    assert r.status == 204, r
    assert list_uploads(c) == []
    r = c.request("DELETE", BUCKET, "mp/obj", query={"uploadId": uid2})
    assert r.status == 404 and r.code == "NoSuchUpload", r


def test_uploads_listed_by_prefix_and_page(s3store):
    c = s3store.client()
    made = []
    for k in ("orphans/a", "orphans/b", "orphans/c", "elsewhere/d"):
        r = c.request("POST", BUCKET, k, query={"uploads": ""})
        assert r.status == 200, r
        made.append((k, re.search(rb"<UploadId>([^<]+)</UploadId>", r.body).group(1).decode()))
    assert sorted(list_uploads(c)) == sorted(made)
    assert sorted(list_uploads(c, prefix="orphans/")) == sorted(made[:3])
    first = list_uploads(c, **{"prefix": "orphans/", "max-uploads": 2})
    assert first == sorted(made[:3])[:2]
    rest = list_uploads(c, **{"prefix": "orphans/", "key-marker": first[-1][0],
                              "upload-id-marker": first[-1][1]})
    assert rest == sorted(made[:3])[2:]
    r = c.request("PUT", BUCKET, "orphans/a", query={"partNumber": 1, "uploadId": "no-such-upload"},
                  body=b"x")
    assert r.status == 404 and r.code == "NoSuchUpload", r


def test_ranged_get(s3store):
    c = s3store.client()
    data = bytes(range(256)) * 4
    assert put(c, "range/obj", data).status == 200
    r = get(c, "range/obj", {"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20], r
    assert r.header("Content-Range") == "bytes 10-19/1024"
    r = get(c, "range/obj", {"Range": "bytes=1000-"})
    assert r.status == 206 and r.body == data[1000:], r
    assert r.header("Content-Range") == "bytes 1000-1023/1024"
    r = get(c, "range/obj")
    assert r.status == 200 and r.body == data


def test_list_prefix_and_continuation(s3store):
    c = s3store.client()
    keys = ["list/k%02d" % i for i in range(7)]
    for k in keys + ["lisp/other", "zzz/other"]:
        assert put(c, k, k.encode()).status == 200
    seen, token, pages = [], None, 0
    while True:
        q = {"list-type": "2", "prefix": "list/", "max-keys": "3"}
        if token:
            q["continuation-token"] = token
        r = c.request("GET", BUCKET, query=q)
        assert r.status == 200, r
        root = xml(r.body)
        page = [e.text for e in root.iter("Key")]
        assert len(page) <= 3
        seen += page
        pages += 1
        if root.findtext("IsTruncated") == "false":
            assert root.find("NextContinuationToken") is None
            break
        token = root.findtext("NextContinuationToken")
        assert token and pages < 10
    assert seen == keys and pages == 3
    sizes = xml_texts(c.request("GET", BUCKET, query={"list-type": "2", "prefix": "lisp/"}).body, "Size")
    assert sizes == [str(len(b"lisp/other"))]


def test_metadata_round_trip(s3store):
    c = s3store.client()
    r = put(c, "meta/obj", b"payload", {"x-amz-meta-incarnation": "0123abcd",
                                        "x-amz-meta-level": "7", "Content-Type": "application/x-alp"})
    assert r.status == 200, r
    for method in ("HEAD", "GET"):
        r = c.request(method, BUCKET, "meta/obj")
        assert r.status == 200, r
        assert r.header("x-amz-meta-incarnation") == "0123abcd"
        assert r.header("x-amz-meta-level") == "7"
        assert r.header("Content-Type") == "application/x-alp"
        assert r.etag == md5q(b"payload")
        assert r.body == (b"payload" if method == "GET" else b"")
    r = c.request("HEAD", BUCKET, "meta/none")
    assert r.status == 404


def test_delete_if_match(s3store):
    c = s3store.client()
    etag = put(c, "del/obj", b"v").etag
    r = c.request("DELETE", BUCKET, "del/obj", headers={"If-Match": md5q(b"other")})
    if s3store.name == "rgw":
        # RGW 16.2 ignores If-Match on DELETE: backend s3 never deletes
        # conditionally (a session's head is never deleted, only moved)
        assert r.status == 204, r
        assert get(c, "del/obj").status == 404
        return
    assert r.status == 412, r
    assert get(c, "del/obj").status == 200
    r = c.request("DELETE", BUCKET, "del/obj", headers={"If-Match": etag})
    assert r.status == 204, r
    assert get(c, "del/obj").status == 404
    r = c.request("DELETE", BUCKET, "del/obj")          # S3: deleting nothing is fine
    assert r.status == 204, r


# ------------------------------------------------------------ SigV4

EX_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
VECTORS = [     # AWS's SigV4 test suite: (name, method, target, headers, body, signature)
    ("get-vanilla", "GET", "/", [], b"",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     [], b"", "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
    ("get-vanilla-query-order-key-case", "GET", "/?Param2=value2&Param1=value1", [], b"",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("get-vanilla-query-order-value", "GET", "/?Param1=value2&Param1=value1", [], b"",
     "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"),
    ("get-vanilla-utf8-query", "GET", "/?\u1234=bar".encode().decode("latin-1"), [], b"",
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
    ("get-header-value-order", "GET", "/", [("My-Header1", v) for v in ("value4", "value1", "value3", "value2")],
     b"", "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"),
    ("get-header-key-duplicate", "GET", "/", [("My-Header1", v) for v in ("value2", "value2", "value1")],
     b"", "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
    ("get-header-value-trim", "GET", "/", [("My-Header1", " value1"), ("My-Header2", '"a   b   c"')], b"",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
    ("post-x-www-form-urlencoded", "POST", "/", [("Content-Type", "application/x-www-form-urlencoded")],
     b"Param1=value1", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
]


@pytest.mark.parametrize("name,method,target,headers,body,want", VECTORS, ids=[v[0] for v in VECTORS])
def test_sigv4_known_answers(name, method, target, headers, body, want):
    date = "20150830T123600Z"
    pairs = [("Host", "example.amazonaws.com")] + headers + [("X-Amz-Date", date)]
    path, _, query = target.partition("?")
    signed = sorted({n.lower() for n, _ in pairs})
    creq = fakes3.canonical_request(method, path, query, pairs, signed, hashlib.sha256(body).hexdigest())
    sts = fakes3.string_to_sign(date, "20150830/us-east-1/service/aws4_request", creq)
    assert fakes3.signature(EX_SECRET, "20150830", "us-east-1", "service", sts) == want
    if name == "get-vanilla":
        h = fakes3.sign_headers("GET", "/", {"Host": "example.amazonaws.com"}, "AKIDEXAMPLE", EX_SECRET,
                                "us-east-1", service="service", amz_date=date)
        assert h["Authorization"] == ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                                      "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + want)


# The S3 documentation's GET Object example (Signature Version 4, header
# authentication): its request, byte for byte, and its signature.
S3DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
S3DOC_SIG = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


def s3doc_request(port, sig):
    return ("GET /test.txt HTTP/1.1\r\nHost: examplebucket.s3.amazonaws.com\r\nRange: bytes=0-9\r\n"
            "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\r\n"
            "x-amz-date: 20130524T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 "
            "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=%s\r\n"
            "Connection: close\r\n\r\n" % sig).encode()


def raw_exchange(port, data, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out


def test_server_verifies_the_s3_documentation_example():
    # The server's clock at the example's date. Its path is /test.txt
    # (virtual-hosted style): path-style reads the bucket "test.txt", which
    # does not exist, so a verified signature answers 404 NoSuchBucket.
    t = time.mktime(time.strptime("20130524T000300Z", "%Y%m%dT%H%M%SZ")) - time.timezone
    with fakes3.FakeS3(access_key="AKIAIOSFODNN7EXAMPLE", secret_key=S3DOC_SECRET, clock=lambda: t) as f:
        out = raw_exchange(f.port, s3doc_request(f.port, S3DOC_SIG))
        assert out.startswith(b"HTTP/1.1 404 ") and b"<Code>NoSuchBucket</Code>" in out, out
        bad = S3DOC_SIG[:-1] + ("0" if S3DOC_SIG[-1] != "0" else "1")
        out = raw_exchange(f.port, s3doc_request(f.port, bad))
        assert out.startswith(b"HTTP/1.1 403 ") and b"<Code>SignatureDoesNotMatch</Code>" in out, out
        assert b"<CanonicalRequest>GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9" in out


def curl(url, *args, user="%s:%s" % (AK, SK), data=None):
    """curl --aws-sigv4 (Debian's curl adds no x-amz-content-sha256 itself,
    and signs the query as written: the tests write it in canonical order,
    a lone name with its '='). (status, headers text, body)."""
    cmd = ["curl", "-sS", "--aws-sigv4", "aws:amz:%s:s3" % REGION, "--user", user,
           "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-D", "-", "-o", "/dev/stderr",
           "-w", "\n%{http_code}"] + list(args) + [url]
    if data is not None:
        cmd[1:1] = ["--data-binary", "@-"]
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    head, _, code = p.stdout.rpartition(b"\n")
    return int(code), head.decode(), p.stderr


def test_curl_aws_sigv4_interoperates(fake):
    u = "%s/%s/curl/obj" % (fake.url, BUCKET)
    st, head, _ = curl(u, "-X", "PUT", "-H", "x-amz-meta-via: curl", "-H", "If-None-Match: *", data=b"by curl")
    assert st == 200, head
    st, head, body = curl(u)
    assert (st, body) == (200, b"by curl") and "x-amz-meta-via: curl" in head
    st, head, _ = curl(u, "-I")
    assert st == 200 and "ETag: %s" % md5q(b"by curl") in head
    st, _, body = curl("%s/%s?list-type=2&max-keys=5&prefix=curl%%2F" % (fake.url, BUCKET))
    assert st == 200 and b"<Key>curl/obj</Key>" in body
    st, _, body = curl("%s/%s/curl/mp?uploads=" % (fake.url, BUCKET), "-X", "POST")
    assert st == 200 and b"<UploadId>" in body
    st, _, body = curl("%s/%s?uploads=" % (fake.url, BUCKET))
    assert st == 200 and b"<Key>curl/mp</Key>" in body
    st, _, _ = curl(u, "-X", "DELETE")
    assert st == 204
    assert "curl/obj" not in fake.objects(BUCKET)
    st, _, body = curl(u, user="%s:wrong" % AK)
    assert st == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body


def test_signature_rejections(fake):
    c = client_of(fake)
    assert put(c, "sig/ok", b"x").status == 200
    assert put(c, "sig/unsigned", b"x", payload="unsigned").status == 200
    cases = []
    bad = fakes3.Client(fake.url, AK, SK + "x", REGION)
    cases.append(("wrong secret", put(bad, "sig/a", b"x"), 403, "SignatureDoesNotMatch"))
    other = fakes3.Client(fake.url, "AKOTHER", SK, REGION)
    cases.append(("wrong access key", put(other, "sig/a", b"x"), 403, "InvalidAccessKeyId"))
    region = fakes3.Client(fake.url, AK, SK, "eu-west-1")
    cases.append(("wrong region", put(region, "sig/a", b"x"), 400, "AuthorizationHeaderMalformed"))
    cases.append(("no x-amz-content-sha256", put(c, "sig/a", b"x", payload=None), 400, "InvalidRequest"))
    cases.append(("body hash mismatch",
                  put(c, "sig/a", b"x", payload=hashlib.sha256(b"y").hexdigest()), 400,
                  "XAmzContentSHA256Mismatch"))
    cases.append(("anonymous", put(c, "sig/a", b"x", sign=False), 403, "AccessDenied"))
    # An x-amz-meta header added after signing.
    target = "/%s/sig/a" % BUCKET
    hdrs = {"Host": "127.0.0.1:%d" % fake.port, "Content-Length": "1",
            "x-amz-content-sha256": hashlib.sha256(b"x").hexdigest()}
    hdrs.update(fakes3.sign_headers("PUT", target, hdrs, AK, SK, REGION,
                                    payload_hash=hdrs["x-amz-content-sha256"]))
    hdrs["x-amz-meta-late"] = "1"
    cn = c.connect()
    cn.request("PUT", target, body=b"x", headers=hdrs)
    r = cn.getresponse()
    cases.append(("unsigned x-amz header", fakes3.Response(r.status, {}, r.read()), 403, "AccessDenied"))
    cn.close()
    # A request signed 20 minutes ago (and one 10 minutes ago, accepted).
    for minutes, want in ((20, (403, "RequestTimeTooSkewed")), (10, (200, None))):
        hdrs = {"Host": "127.0.0.1:%d" % fake.port, "Content-Length": "1",
                "x-amz-content-sha256": hashlib.sha256(b"x").hexdigest()}
        hdrs.update(fakes3.sign_headers("PUT", target, hdrs, AK, SK, REGION, payload_hash=hdrs[
            "x-amz-content-sha256"], amz_date=fakes3.amz_now(time.time() - minutes * 60)))
        cn = c.connect()
        cn.request("PUT", target, body=b"x", headers=hdrs)
        r = cn.getresponse()
        cases.append(("signed %d min ago" % minutes, fakes3.Response(r.status, {}, r.read()), *want))
        cn.close()
    for what, r, status, code in cases:
        assert (r.status, r.code) == (status, code), (what, r)
    assert set(fake.objects(BUCKET)) == {"sig/ok", "sig/unsigned", "sig/a"}


# ------------------------------------------------------------ faults

def control(f, method, path, obj=None):
    data = None if obj is None else json.dumps(obj).encode()
    req = urllib.request.Request(f.url + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("status,code", [(503, "SlowDown"), (500, "InternalError"),
                                         (409, "ConditionalRequestConflict")])
def test_fault_status(fake, status, code):
    c = client_of(fake)
    rules = control(fake, "POST", "/_fake/faults",
                    [{"method": "PUT", "key": "^f/obj$", "action": {"status": status, "code": code}}])
    assert len(rules) == 1
    r = put(c, "f/obj", b"v", {"If-None-Match": "*"})
    assert (r.status, r.code) == (status, code), r
    assert "f/obj" not in fake.objects(BUCKET)            # answered without applying
    assert control(fake, "GET", "/_fake/faults") == []    # count 1, spent
    r = put(c, "f/obj", b"v", {"If-None-Match": "*"})
    assert r.status == 200, r
    st = control(fake, "GET", "/_fake/stats")
    assert st["by_status"][str(status)] == 1 and st["by_status"]["200"] == 1
    assert st["faults_applied"] == 1


def test_fault_lose_reply(fake):
    c = client_of(fake)
    fake.faults({"method": "PUT", "key": "^f/lost$", "action": "lose_reply"})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        put(c, "f/lost", b"committed", {"If-None-Match": "*"})
    data, md = fake.objects(BUCKET)["f/lost"]         # applied all the same
    assert data == b"committed" and md["etag"] == md5q(b"committed")
    r = put(c, "f/lost", b"retry", {"If-None-Match": "*"})
    assert r.status == 412, r                           # what a retrying client then sees
    assert fake.stats()["by_status"]["lost"] == 1


def test_fault_cut_after_bytes(fake):
    c = client_of(fake)
    fake.faults({"method": "PUT", "key": "^f/cut$", "action": {"cut_after_bytes": 1000}})
    body = os.urandom(200000)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        put(c, "f/cut", body)
    assert "f/cut" not in fake.objects(BUCKET)
    st = fake.stats()
    assert st["by_status"] == {"cut": 1} and st["bytes_in"] == 1000
    assert put(c, "f/cut", body).status == 200
    assert fake.objects(BUCKET)["f/cut"][0] == body


def test_fault_latency_and_filters(fake):
    c = client_of(fake)
    assert put(c, "f/slow", b"v").status == 200
    fake.faults({"method": "GET", "key": "^f/slow$", "action": {"latency_ms": 700}, "count": 2})
    assert put(c, "f/slow", b"w").status == 200         # another method: not delayed, not spent
    assert get(c, "f/other").status == 404              # another key: likewise
    assert fake.faults()[0]["count"] == 2
    for _ in range(2):
        t0 = time.monotonic()
        r = get(c, "f/slow")
        assert r.status == 200 and r.body == b"w"
        assert time.monotonic() - t0 >= 0.7
    assert fake.faults() == []
    assert fake.stats()["faults_applied"] == 2


def test_fault_stall_body(fake):
    fake.put_object(BUCKET, "f/stall", b"s" * 5000)
    fake.faults({"method": "GET", "key": "stall", "action": {"stall_ms": 1500}})
    target = "/%s/f/stall" % BUCKET
    hdrs = {"Host": "127.0.0.1:%d" % fake.port, "x-amz-content-sha256": fakes3.EMPTY_SHA256}
    hdrs.update(fakes3.sign_headers("GET", target, hdrs, AK, SK, REGION))
    s = socket.create_connection(("127.0.0.1", fake.port), timeout=10)
    t0 = time.monotonic()
    s.sendall(("GET %s HTTP/1.1\r\n" % target + "".join("%s: %s\r\n" % kv for kv in hdrs.items())
               + "\r\n").encode())
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
    t_head = time.monotonic() - t0
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 5000" in head
    assert body == b""
    while len(body) < 5000:
        b = s.recv(65536)
        assert b
        body += b
    t_body = time.monotonic() - t0
    s.close()
    assert t_head < 1.0 and t_body >= 1.5 and body == b"s" * 5000, (t_head, t_body)


def test_fault_counts_and_op_filter(fake):
    c = client_of(fake)
    fake.faults([{"op": "UploadPart", "action": {"status": 503, "code": "SlowDown"}, "count": -1},
                 {"method": "*", "key": "^f/two$", "action": {"status": 500}, "count": 2}])
    assert [put(c, "f/two", b"v").status for _ in range(3)] == [500, 500, 200]
    r = c.request("POST", BUCKET, "f/mp", query={"uploads": ""})
    assert r.status == 200, r
    uid = re.search(rb"<UploadId>([^<]+)</UploadId>", r.body).group(1).decode()
    for n in range(1, 4):
        r = c.request("PUT", BUCKET, "f/mp", query={"partNumber": n, "uploadId": uid}, body=b"p")
        assert (r.status, r.code) == (503, "SlowDown"), r
    assert fake.uploads(BUCKET)[uid] == ("f/mp", {})
    assert [r["count"] for r in fake.faults()] == [-1]
    bad = [{"action": "explode"}, {"method": "PATCH", "action": "lose_reply"},
           {"action": {"latency_ms": -1}}, {"action": "lose_reply", "count": 0}]
    for rule in bad:
        with pytest.raises(urllib.error.HTTPError) as e:
            control(fake, "POST", "/_fake/faults", [rule])
        assert e.value.code == 400
    control(fake, "POST", "/_fake/reset", {})
    assert fake.faults() == [] and "f/two" in fake.objects(BUCKET)
    control(fake, "POST", "/_fake/reset", {"objects": True, "stats": True})
    assert fake.objects(BUCKET) == {} and fake.uploads(BUCKET) == {}
    assert fake.stats()["requests"] == 0


def test_stats_and_keep_alive(fake):
    c = client_of(fake)
    cn = c.connect()
    for i in range(20):
        assert c.request("PUT", BUCKET, "ka/%d" % i, body=b"0123456789", conn=cn).status == 200
    for i in range(20):
        assert c.request("GET", BUCKET, "ka/%d" % i, conn=cn).body == b"0123456789"
    cn.close()
    st = fake.stats()
    assert st["connections"] == 1 and st["requests"] == 40
    assert st["by_method"] == {"PUT": 20, "GET": 20}
    assert st["by_op"] == {"PutObject": 20, "GetObject": 20}
    assert st["by_status"] == {"200": 40}
    assert st["bytes_in"] == 200 and st["bytes_out"] == 200


# ------------------------------------------------------------ modes

def racers_won(c, key, n=8):
    out = race(c, n, lambda i, cn: put(c, key, b"racer %d" % i, {"If-None-Match": "*"}, conn=cn))
    assert all(r.status in (200, 412) for r in out), out
    return sum(r.status == 200 for r in out)


def test_mode_ignore_conditions(tmp_path):
    s = start_fake_cli(tmp_path, "--mode", "ignore-conditions")
    try:
        c = s.client()
        assert put(c, "m/a", b"1", {"If-None-Match": "*"}).status == 200
        assert put(c, "m/a", b"2", {"If-None-Match": "*"}).status == 200
        assert put(c, "m/a", b"3", {"If-Match": md5q(b"nothing")}).status == 200
        assert put(c, "m/b", b"4", {"If-Match": md5q(b"nothing")}).status == 200
        _, r = multipart(c, "m/a", [b"5"], {"If-None-Match": "*"})
        assert r.status == 200, r
        assert get(c, "m/a").body == b"5" and get(c, "m/b").body == b"4"
    finally:
        s.stop()


def test_mode_ifmatch_missing_succeeds(tmp_path):
    s = start_fake_cli(tmp_path, "--mode", "ifmatch-missing-succeeds")
    try:
        c = s.client()
        r = put(c, "m/new", b"created by If-Match", {"If-Match": md5q(b"anything")})
        assert r.status == 200, r
        assert get(c, "m/new").body == b"created by If-Match"
        assert put(c, "m/new", b"x", {"If-Match": md5q(b"anything")}).status == 412
        assert put(c, "m/new", b"x", {"If-None-Match": "*"}).status == 412
        assert get(c, "m/new").body == b"created by If-Match"
    finally:
        s.stop()


def test_mode_bare_if_match(tmp_path):
    s = start_fake_cli(tmp_path, "--mode", "bare-if-match")
    try:
        c = s.client()
        etag = put(c, "b/obj", b"v1").etag
        assert put(c, "b/obj", b"v2", {"If-Match": etag}).status == 412   # quoted: refused
        r = put(c, "b/obj", b"v2", {"If-Match": etag.strip('"')})
        assert r.status == 200, r
        assert put(c, "b/obj", b"v3", {"If-Match": etag.strip('"')}).status == 412
        assert get(c, "b/obj").body == b"v2"
        r = put(c, "b/missing", b"v", {"If-Match": etag.strip('"')})
        assert r.status == 412 and r.code == "PreconditionFailed", r
        assert put(c, "b/obj", b"x", {"If-None-Match": "*"}).status == 412
    finally:
        s.stop()


def test_mode_racy(tmp_path):
    s = start_fake_cli(tmp_path, "--mode", "racy")
    try:
        c = s.client()
        assert put(c, "m/seq", b"1", {"If-None-Match": "*"}).status == 200
        assert put(c, "m/seq", b"2", {"If-None-Match": "*"}).status == 412
        etag = get(c, "m/seq").etag
        assert put(c, "m/seq", b"3", {"If-Match": md5q(b"other")}).status == 412
        assert put(c, "m/seq", b"3", {"If-Match": etag}).status == 200
        wins = [racers_won(c, "m/race-%d" % i) for i in range(3)]
        assert all(w >= 2 for w in wins), wins
    finally:
        s.stop()


def test_mode_switched_live(fake):
    c = client_of(fake)
    assert racers_won(c, "live/a") == 1
    control(fake, "POST", "/_fake/mode", {"mode": "racy"})
    assert racers_won(c, "live/b") >= 2
    control(fake, "POST", "/_fake/mode", {"mode": "correct"})
    assert racers_won(c, "live/c") == 1
    with pytest.raises(urllib.error.HTTPError):
        control(fake, "POST", "/_fake/mode", {"mode": "sloppy"})


# ------------------------------------------------------------ fakes3 alone

def test_get_conditions_and_suffix_range(fake):
    c = client_of(fake)
    etag = put(c, "g/obj", b"0123456789").etag
    r = get(c, "g/obj", {"If-None-Match": etag})
    assert r.status == 304 and r.body == b"" and r.etag == etag
    assert get(c, "g/obj", {"If-None-Match": md5q(b"x")}).status == 200
    r = get(c, "g/obj", {"If-Match": md5q(b"x")})
    assert (r.status, r.code) == (412, "PreconditionFailed")
    assert get(c, "g/obj", {"If-Match": etag}).status == 200
    r = get(c, "g/obj", {"Range": "bytes=-3"})
    assert r.status == 206 and r.body == b"789" and r.header("Content-Range") == "bytes 7-9/10"
    r = get(c, "g/obj", {"Range": "bytes=10-"})
    assert (r.status, r.code) == (416, "InvalidRange")
    r = put(c, "g/obj", b"x", {"If-None-Match": etag})
    assert (r.status, r.code) == (501, "NotImplemented")


def test_multipart_rules(fake):
    c = client_of(fake)
    uid, r = multipart(c, "mpr/small", [b"a" * 100, b"b"])
    assert (r.status, r.code) == (400, "EntityTooSmall"), r
    assert uid in fake.uploads(BUCKET)
    xml = ("<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>%s</ETag></Part>"
           "<Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part></CompleteMultipartUpload>"
           % (md5q(b"b"), md5q(b"a" * 100)))
    r = c.request("POST", BUCKET, "mpr/small", query={"uploadId": uid}, body=xml.encode())
    assert (r.status, r.code) == (400, "InvalidPartOrder"), r
    xml = ("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part>"
           "</CompleteMultipartUpload>" % md5q(b"not the part"))
    r = c.request("POST", BUCKET, "mpr/small", query={"uploadId": uid}, body=xml.encode())
    assert (r.status, r.code) == (400, "InvalidPart"), r
    r = c.request("GET", BUCKET, "mpr/small", query={"uploadId": uid})
    assert r.status == 200 and xml_texts(r.body, "PartNumber") == ["1", "2"]
    etag_a = md5q(b"a" * 100)
    xml = ("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part>"
           "</CompleteMultipartUpload>" % etag_a)
    fake.put_object(BUCKET, "mpr/small", b"existing")
    r = c.request("POST", BUCKET, "mpr/small", query={"uploadId": uid}, body=xml.encode(),
                  headers={"If-Match": md5q(b"other")})
    assert (r.status, r.code) == (412, "PreconditionFailed"), r
    r = c.request("POST", BUCKET, "mpr/small", query={"uploadId": uid}, body=xml.encode(),
                  headers={"If-Match": md5q(b"existing")})
    assert r.status == 200, r
    assert fake.objects(BUCKET)["mpr/small"][0] == b"a" * 100 and fake.uploads(BUCKET) == {}
    r = c.request("POST", BUCKET, "mpr/small", query={"uploadId": uid}, body=xml.encode())
    assert (r.status, r.code) == (404, "NoSuchUpload"), r


def test_uploads_aged(fake):
    c = client_of(fake)
    r = c.request("POST", BUCKET, "old/upload", query={"uploads": ""}, headers={"x-amz-meta-a": "1"})
    assert r.status == 200
    before = xml_texts(c.request("GET", BUCKET, query={"uploads": ""}).body, "Initiated")[0]
    control(fake, "POST", "/_fake/age", {"seconds": 86400 * 2})
    after = xml_texts(c.request("GET", BUCKET, query={"uploads": ""}).body, "Initiated")[0]
    parse = lambda s: time.mktime(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S"))   # noqa: E731
    assert round(parse(before) - parse(after)) == 86400 * 2


def test_content_md5_and_chunked_body(fake):
    c = client_of(fake)
    good = base64.b64encode(hashlib.md5(b"body").digest()).decode()
    assert put(c, "b/md5", b"body", {"Content-MD5": good}).status == 200
    r = put(c, "b/md5", b"tampered", {"Content-MD5": good})
    assert (r.status, r.code) == (400, "BadDigest")
    r = put(c, "b/md5", b"body", {"Content-MD5": "not base64!"})
    assert (r.status, r.code) == (400, "InvalidDigest")
    assert fake.objects(BUCKET)["b/md5"][0] == b"body"
    # A chunked body, signed with its SHA-256, on a kept-alive connection.
    data = os.urandom(300000)
    target = "/%s/b/chunked" % BUCKET
    hdrs = {"Host": "127.0.0.1:%d" % fake.port, "Transfer-Encoding": "chunked",
            "x-amz-content-sha256": hashlib.sha256(data).hexdigest()}
    hdrs.update(fakes3.sign_headers("PUT", target, hdrs, AK, SK, REGION,
                                    payload_hash=hdrs["x-amz-content-sha256"]))
    cn = c.connect()
    cn.request("PUT", target, body=iter([data[:1000], data[1000:70000], data[70000:]]), headers=hdrs,
               encode_chunked=True)
    r = cn.getresponse()
    assert r.status == 200, r.read()
    r.read()
    assert c.request("GET", BUCKET, "b/chunked", conn=cn).body == data
    cn.close()


def test_tls(pki):
    with fakes3.FakeS3(buckets=[BUCKET], access_key=AK, secret_key=SK,
                       tls=(pki.path("server.pem"), pki.path("server.key"))) as f:
        assert f.url.startswith("https://")
        c = client_of(f)
        r = put(c, "tls/obj", b"over TLS", {"If-None-Match": "*"})
        assert r.status == 200, r
        assert get(c, "tls/obj").body == b"over TLS"
        p = subprocess.run(["curl", "-sS", "--cacert", pki.path("ca.pem"), "--aws-sigv4",
                            "aws:amz:us-east-1:s3", "--user", "%s:%s" % (AK, SK), "-H",
                            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                            "https://localhost:%d/%s/tls/obj" % (f.port, BUCKET)],
                           capture_output=True, timeout=30)
        assert p.stdout == b"over TLS", p.stderr


def test_buckets_and_listing_details(fake):
    c = client_of(fake)
    assert c.request("HEAD", BUCKET).status == 200
    assert c.request("HEAD", "nobucket").status == 404
    r = c.request("PUT", "nobucket", "k", body=b"x")
    assert (r.status, r.code) == (404, "NoSuchBucket")
    assert c.request("PUT", "newbucket").status == 200
    assert c.request("HEAD", "newbucket").status == 200
    assert "newbucket" in xml_texts(c.request("GET").body, "Name")
    for k in ("d/a/1", "d/a/2", "d/b", "d/c/1", "d/e"):
        put(c, k, b"v")
    r = c.request("GET", BUCKET, query={"list-type": "2", "prefix": "d/", "delimiter": "/", "max-keys": "2"})
    root = xml(r.body)
    assert [e.text for e in root.iter("Key")] == ["d/b"]
    assert [e.findtext("Prefix") for e in root.iter("CommonPrefixes")] == ["d/a/"]
    tok = root.findtext("NextContinuationToken")
    r = c.request("GET", BUCKET, query={"list-type": "2", "prefix": "d/", "delimiter": "/",
                                        "continuation-token": tok})
    root = xml(r.body)
    assert [e.text for e in root.iter("Key")] == ["d/e"]
    assert [e.findtext("Prefix") for e in root.iter("CommonPrefixes")] == ["d/c/"]
    r = c.request("DELETE", BUCKET)
    assert (r.status, r.code) == (409, "BucketNotEmpty")
    # A key that needs encoding in the path and in the signature.
    odd = "odd key/ü+=&?.txt"
    assert put(c, odd, b"odd").status == 200
    assert get(c, odd).body == b"odd" and odd in fake.objects(BUCKET)


def test_cli_port_file_and_signals(tmp_path):
    s = start_fake_cli(tmp_path, "--mode", "correct")
    assert s.proc.poll() is None
    assert not list(tmp_path.glob("*.tmp.*"))           # renamed into place
    r = fakes3.Client(s.url).request("GET", BUCKET, "x")
    assert (r.status, r.code) == (403, "AccessDenied")
    s.proc.terminate()
    assert s.proc.wait(10) == 0
    s.stop()
