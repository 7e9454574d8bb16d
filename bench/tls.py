#!/usr/bin/python3
"""bench/tls.py: TLS vs cleartext, a benchmark (not a test).

    /usr/bin/python3 bench/tls.py [--alpcrund PATH] [--quick] [--rounds N]

Starts the daemon (memory backend, loopback) once in cleartext and once
with tls_cert/tls_key (a P-256 certificate made here with the openssl
command), and reports for each:

  get_1k_rps     1 KiB GetSharedData req/s, h2load 16 connections x 32
                 streams (TLS: handshakes included, 16 of them)
  get_64m_mbps   64 MiB GetSharedData MB/s (MiB/s of reply DATA), h2load 4
                 connections x 1 stream

then the ratio TLS / cleartext of each. h2load (nghttp2 + OpenSSL, C) is
the client in both cases and negotiates what the daemon prefers (TLS 1.3,
AES-256-GCM here). Each figure is the best of --rounds runs (default 3),
cleartext and TLS runs interleaved, because the machine may be shared:
the best run is the one least disturbed by others. Every h2load run is
checked against the daemon's own alpcrund_requests_total{code="OK"} and
the reply bytes received (bench/lib.py).

Needs python3-grpcio, python3-protobuf, protobuf-compiler-grpc,
nghttp2-client (h2load) and the openssl command.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import (MiB, BenchFailed, Daemon, H2Result, body_file,  # noqa: E402
                 gen_stubs, get_reply_bounds, make_cert, sd, stub)


def h2load(d, scheme, body, n, conns, streams, bounds):
    """h2load against d over scheme (http or https), checked like
    lib.h2load: n requests answered OK by the daemon, reply bytes within
    bounds per reply. Returns an H2Result."""
    before = d.ok("GetSharedData")
    cmd = ["h2load", "-n", str(n), "-c", str(conns), "-m", str(streams), "-d", body,
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           "%s://%s/alpcrun.v1.Cache/GetSharedData" % (scheme, d.addr)]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    text = out.stdout + out.stderr
    if out.returncode != 0 or not re.search(r"requests: %d total.* %d succeeded"
                                            % (n, n), text):
        raise BenchFailed("h2load did not complete:\n" + text[-2000:])
    if scheme == "https" and "Application protocol: h2" not in text:
        raise BenchFailed("h2load over TLS did not negotiate h2:\n" + text[-2000:])
    if d.ok("GetSharedData") - before != n:
        raise BenchFailed("h2load: the daemon did not answer %d Gets OK" % n)
    r = H2Result(text, time.monotonic() - t0)
    lo, hi = bounds
    if not n * lo <= r.data_bytes <= n * hi:
        raise BenchFailed("h2load: %d replies carried %d DATA bytes" % (n, r.data_bytes))
    m = re.search(r"Cipher: (\S+)", text)
    r.cipher = m.group(1) if m else "-"
    m = re.search(r"TLS Protocol: (\S+)", text)
    r.proto = m.group(1) if m else "-"
    return r


def load(d, workdir):
    """The two sessions every run reads; returns {name: (body, bounds)}."""
    s = stub(d.addr) if not d.tls else None
    small, big = os.urandom(1024), os.urandom(64 * MiB)
    if s is None:
        import grpc
        from alpcrun.v1 import cache_pb2_grpc
        with open(d.cert, "rb") as f:
            creds = grpc.ssl_channel_credentials(f.read())
        ch = grpc.secure_channel(d.addr, creds, options=[
            ("grpc.max_send_message_length", 300 * MiB),
            ("grpc.max_receive_message_length", 300 * MiB)])
        s = cache_pb2_grpc.CacheStub(ch)
    s.SetSharedData(sd("k1", 1, small), timeout=60)
    s.SetSharedData(sd("m64", 1, big), timeout=300)
    return {
        "k1": (body_file(workdir, sd("k1", ttl=0), "k1-" + d.name),
               get_reply_bounds("k1", 1, len(small))),
        "m64": (body_file(workdir, sd("m64", ttl=0), "m64-" + d.name),
                get_reply_bounds("m64", 1, len(big))),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpcrund", default=os.environ.get("ALPCRUND", "./alpcrund"))
    ap.add_argument("--quick", action="store_true", help="fewer requests")
    ap.add_argument("--rounds", type=int, default=3, help="runs per figure; best kept")
    a = ap.parse_args()
    for tool in ("h2load", "openssl"):
        if not shutil.which(tool):
            raise SystemExit("%s not found" % tool)
    binary = os.path.abspath(a.alpcrund)
    workdir = tempfile.mkdtemp(prefix="alpcrund-bench-tls.")
    n_small = 50000 if a.quick else 200000
    n_big = 8 if a.quick else 32
    daemons = []
    try:
        gen_stubs(workdir)
        cert, key = make_cert(workdir)
        for name, extra in (("cleartext", ""),
                            ("tls", "tls_cert %s\ntls_key %s\n" % (cert, key))):
            d = Daemon(binary, workdir, name, "backend memory\nmax_memory 0\n" + extra)
            d.name, d.tls, d.cert = name, bool(extra), cert
            d.scheme = "https" if extra else "http"
            d.bodies = load(d, workdir)
            daemons.append(d)
        best = {(d.name, k): None for d in daemons for k in ("get_1k_rps", "get_64m_mbps")}
        info = {}
        for rnd in range(a.rounds):
            for d in daemons:
                body, bounds = d.bodies["k1"]
                r = h2load(d, d.scheme, body, n_small, 16, 32, bounds)
                key = (d.name, "get_1k_rps")
                best[key] = max(best[key] or 0, r.rps)
                body, bounds = d.bodies["m64"]
                r = h2load(d, d.scheme, body, n_big, 4, 1, bounds)
                key = (d.name, "get_64m_mbps")
                best[key] = max(best[key] or 0, r.mbps)
                info[d.name] = "%s %s" % (r.proto, r.cipher)
                print("# round %d %-9s get_1k_rps %8.0f  get_64m_mbps %7.0f" % (
                    rnd + 1, d.name, best[(d.name, "get_1k_rps")],
                    best[(d.name, "get_64m_mbps")]), flush=True)
        print("%-10s %12s %14s  %s" % ("config", "get_1k_rps", "get_64m_mbps", "TLS"))
        for d in daemons:
            print("%-10s %12.0f %14.0f  %s" % (d.name, best[(d.name, "get_1k_rps")],
                                               best[(d.name, "get_64m_mbps")],
                                               info[d.name] if d.tls else "-"))
        for k in ("get_1k_rps", "get_64m_mbps"):
            print("TLS / cleartext %-13s %.2f" % (k, best[("tls", k)] / best[("cleartext", k)]))
        print("(best of %d rounds each; the machine may be shared with other work: "
              "compare the ratio, not absolute figures)" % a.rounds)
    finally:
        for d in daemons:
            d.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
