#!/usr/bin/python3
"""bench/s3.py: backend s3 (issue 20) against a store on loopback, a
benchmark (not a test).

    /usr/bin/python3 bench/s3.py [--alpcrund PATH] [--rounds 5] [--size 64]
        [--store fakes3|URL --access-key AK --secret-key SK --bucket B]

The store is tests/integration/s3/fakes3.py run as a process of its own
(default), or any S3 endpoint given by URL (Ceph RGW from
tests/integration/s3/rgw-local). Every figure is a median over --rounds,
the configurations alternating within each round (the order swapped
every other round), with the CPU seconds of the daemon (and of fakes3)
beside the wall-clock:

  (a) 1 KiB GetSharedData served from the hot tier, h2load as bench/run
      does (16 connections x 32 streams; fewer requests where every Get
      asks the store): backend memory, backend s3 with s3_revalidate 0
      (every Get asks the store for the head, a 304), and with 1s;
  (b) a SIZE MiB SetSharedData (h2load -n 1 of a new session each time)
      against a plain curl PUT of the same bytes to the same store
      (--aws-sigv4, x-amz-content-sha256: UNSIGNED-PAYLOAD);
  (c) a SIZE MiB GetSharedData that misses the hot tier (a central whose
      max_memory keeps nothing) against a curl GET of the same object:
      time to the first and to the last byte of the payload (a lean
      HTTP/2 reader of our own, as lib.stream_get; curl's time to first
      byte is -w %{time_starttransfer}, both from a new connection).

Needs Debian's python3-grpcio, python3-protobuf, protobuf-compiler-grpc,
nghttp2-client (h2load) and curl.
"""
import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

FAKES3 = os.path.join(lib.TOP_SRCDIR, "tests", "integration", "s3", "fakes3.py")
AK, SK, BUCKET = "AKIDBENCH", "bench/secret", "alp-bench"


class Store:
    def __init__(self, work, url=None, ak=AK, sk=SK, bucket=BUCKET):
        self.proc = None
        self.ak, self.sk, self.bucket = ak, sk, bucket
        if url:
            self.url = url.rstrip("/")
            return
        pf = os.path.join(work, "fakes3.port")
        self.log = open(os.path.join(work, "fakes3.log"), "wb")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", FAKES3, "--listen", "127.0.0.1:0", "--port-file", pf,
             "--bucket", bucket, "--access-key", ak, "--secret-key", sk],
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while not os.path.exists(pf):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("fakes3 did not start")
            time.sleep(0.05)
        with open(pf) as f:
            self.url = "http://127.0.0.1:%d" % int(f.read())

    def cpu(self):
        return lib.cpu_seconds(self.proc.pid) if self.proc else float("nan")

    def curl(self, args):
        return subprocess.run(
            ["curl", "-sS", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
             "%s:%s" % (self.ak, self.sk), "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
             "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total}"] + args,
            capture_output=True, text=True, check=True).stdout.split()

    def put(self, key, path):
        return float(self.curl(["-T", path, "%s/%s/%s" % (self.url, self.bucket, key)])[1])

    def get(self, key):
        first, total = self.curl(["%s/%s/%s" % (self.url, self.bucket, key)])
        return float(first), float(total)

    def stop(self):
        if self.proc:
            lib.stop_proc(self.proc)


def s3_conf(work, store, more=""):
    cred = os.path.join(work, "s3.cred")
    with open(cred, "w") as f:
        f.write("access_key_id %s\nsecret_access_key %s\n" % (store.ak, store.sk))
    return ("backend s3\ns3_endpoint %s\ns3_bucket %s\ns3_prefix bench/\n"
            "s3_credentials %s\ns3_timeout 60s\nmax_message_size 300m\n%s"
            % (store.url, store.bucket, cred, more))


def timed_get(addr, body, head):
    """One GetSharedData on a fresh HTTP/2 connection: (seconds to the
    first payload byte (past the head bytes of the reply: its gRPC prefix
    and the fields before the payload), to the trailers, DATA bytes), from
    the request sent."""
    import hpack
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def frame(ftype, flags, sid, data):
        return struct.pack(">I", len(data))[1:] + struct.pack(">BBI", ftype, flags, sid) + data
    enc, dec = hpack.Encoder(), hpack.Decoder()
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
              frame(4, 0, 0, struct.pack(">HIHI", 4, 0x7fffffff, 5, 1 << 20)) +
              frame(8, 0, 0, struct.pack(">I", 0x7fffffff - 65535)))
    block = enc.encode([(":method", "POST"), (":scheme", "http"),
                        (":path", "/alpcrun.v1.Cache/GetSharedData"), (":authority", addr),
                        ("content-type", "application/grpc"), ("te", "trailers")])
    t0 = time.monotonic()
    s.sendall(frame(1, 4, 1, block) + frame(0, 1, 1, body))
    buf = bytearray(128 << 10)
    view = memoryview(buf)
    pend = b""              # a frame header or a header block in pieces
    skip = 0                # DATA bytes still to come: counted, not copied
    got, first, status = 0, None, None
    while True:
        k = s.recv_into(buf)
        if k == 0:
            raise lib.BenchFailed("timed_get: connection closed")
        pos = 0
        while pos < k:
            if skip:
                m = min(skip, k - pos)
                got += m
                skip -= m
                pos += m
                if first is None and got > head:
                    first = time.monotonic() - t0
                continue
            if len(pend) < 9:
                m = min(9 - len(pend), k - pos)
                pend += view[pos:pos + m].tobytes()
                pos += m
                continue
            ln = int.from_bytes(pend[:3], "big")
            if pend[3] == 0:
                skip = ln
                pend = b""
                continue
            if len(pend) < 9 + ln:
                m = min(9 + ln - len(pend), k - pos)
                pend += view[pos:pos + m].tobytes()
                pos += m
                if len(pend) < 9 + ln:
                    continue
            ftype, flags = pend[3], pend[4]
            payload = pend[9:]
            pend = b""
            if ftype == 1:
                hdrs = dict(dec.decode(payload))
                status = hdrs.get("grpc-status", status)
                if flags & 1:
                    took = time.monotonic() - t0
                    s.close()
                    if status != "0":
                        raise lib.BenchFailed("timed_get: grpc-status %s" % status)
                    return first, took, got
            elif ftype == 4 and not flags & 1:
                s.sendall(frame(4, 1, 0, b""))
            elif ftype in (3, 7):
                raise lib.BenchFailed("timed_get: reset by the server")


def get_1k(d, work, tag, n):
    from alpcrun.v1 import cache_pb2
    stub = lib.stub(d.addr)
    stub.SetSharedData(lib.sd("k1", 1, b"x" * 1024), timeout=60)
    stub.GetSharedData(lib.sd("k1"), timeout=60)
    body = lib.body_file(work, cache_pb2.SharedData(session_id="k1"), "get1k-" + tag)
    bounds = lib.get_reply_bounds("k1", 1, 1024)
    lib.h2load(d, body, n // 10, 16, 32, reply_bounds=bounds)      # warm-up
    c0 = lib.cpu_seconds(d.pid)
    r = lib.h2load(d, body, n, 16, 32, reply_bounds=bounds)
    return r.rps, (lib.cpu_seconds(d.pid) - c0) / n * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpcrund", default=os.path.join(lib.TOP_SRCDIR, "alpcrund"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n1k", type=int, default=200000)
    ap.add_argument("--n1k-ask", type=int, default=5000)
    ap.add_argument("--store", default="fakes3")
    ap.add_argument("--access-key", default=AK)
    ap.add_argument("--secret-key", default=SK)
    ap.add_argument("--bucket", default=BUCKET)
    ap.add_argument("--skip-1k", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="alpcrund-s3bench-")
    lib.gen_stubs(os.path.join(work, "gen"))
    from alpcrun.v1 import cache_pb2
    store = Store(work, None if a.store == "fakes3" else a.store, a.access_key,
                  a.secret_key, a.bucket)
    res = {}

    def add(k, v):
        res.setdefault(k, []).append(v)
    try:
        # (a) 1 KiB Gets from the hot tier.
        if not a.skip_1k:
            confs = [("memory", "backend memory\n", a.n1k),
                     ("s3 revalidate 0", s3_conf(work, store), a.n1k_ask),
                     ("s3 revalidate 1s", s3_conf(work, store, "s3_revalidate 1s\n"), a.n1k)]
            for r in range(a.rounds):
                for name, conf, n in (confs if r % 2 == 0 else confs[::-1]):
                    d = lib.Daemon(a.alpcrund, work, "a%d-%s" % (r, name.replace(" ", "")), conf)
                    try:
                        rps, cpu_us = get_1k(d, work, "%d" % r, n)
                    finally:
                        d.stop()
                    add(("1k", name, "req/s"), rps)
                    add(("1k", name, "daemon CPU us/req"), cpu_us)
        # (b) SIZE MiB Set vs curl PUT; (c) Get missing the hot tier vs curl GET.
        size = a.size * lib.MiB
        payload = os.urandom(lib.MiB) * a.size
        raw = os.path.join(work, "payload.bin")
        with open(raw, "wb") as f:
            f.write(payload)
        w = lib.Daemon(a.alpcrund, work, "writer", s3_conf(work, store))
        rd = lib.Daemon(a.alpcrund, work, "reader", s3_conf(work, store, "max_memory 1m\n"))
        try:
            for r in range(a.rounds):
                sid = "big%d" % r
                body = lib.body_file(work, cache_pb2.SharedData(
                    session_id=sid, update_level=1, payload=payload), "set")
                order = ["daemon", "curl"] if r % 2 == 0 else ["daemon", "curl"][::-1]
                for who in order:
                    if who == "daemon":
                        c0, s0 = lib.cpu_seconds(w.pid), store.cpu()
                        t0 = time.monotonic()
                        lib.h2load(w, body, 1, 1, 1, method="SetSharedData")
                        add(("set", "daemon", "s"), time.monotonic() - t0)
                        add(("set", "daemon", "daemon CPU s"), lib.cpu_seconds(w.pid) - c0)
                        add(("set", "daemon", "store CPU s"), store.cpu() - s0)
                    else:
                        s0 = store.cpu()
                        add(("set", "curl", "s"), store.put("plain/%s" % sid, raw))
                        add(("set", "curl", "store CPU s"), store.cpu() - s0)
                head = lib.get_reply_bounds(sid, 1, size)[1] - size
                gbody = lib.grpc_frame(cache_pb2.SharedData(session_id=sid).SerializeToString())
                for who in order:
                    if who == "daemon":
                        c0, s0 = lib.cpu_seconds(rd.pid), store.cpu()
                        first, last, got = timed_get(rd.addr, gbody, head)
                        if got < size:
                            raise lib.BenchFailed("a Get of %d bytes" % got)
                        add(("get", "daemon", "first byte s"), first)
                        add(("get", "daemon", "last byte s"), last)
                        add(("get", "daemon", "daemon CPU s"), lib.cpu_seconds(rd.pid) - c0)
                        add(("get", "daemon", "store CPU s"), store.cpu() - s0)
                    else:
                        s0 = store.cpu()
                        first, last = store.get("plain/%s" % sid)
                        add(("get", "curl", "first byte s"), first)
                        add(("get", "curl", "last byte s"), last)
                        add(("get", "curl", "store CPU s"), store.cpu() - s0)
                os.unlink(body)
        finally:
            w.stop(remove=False)
            rd.stop(remove=False)
    finally:
        store.stop()
    print("medians of %d rounds, store %s" % (a.rounds, a.store))
    for k in sorted(res, key=lambda k: ("1k set get".split().index(k[0]), k[1], k[2])):
        vals = res[k]
        print("%-4s %-18s %-20s %10.4f   (%s)" % (k[0], k[1], k[2], lib.median(vals),
                                              " ".join("%.4g" % v for v in vals)))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
