#!/usr/bin/python3
"""bench/backends.py: memory vs lmdb, a benchmark (not a test).

    /usr/bin/python3 bench/backends.py [--alpcrund PATH] [--dir DIR] [--quick]

Starts the daemon once per configuration on loopback, in a temporary
directory under --dir (default: the system's temporary directory; the LMDB
figures depend on the file system there), and reports:

  get_1k_rps      1 KiB GetSharedData req/s, h2load 16 connections x 32 streams
  get_64m_mbps    64 MiB GetSharedData MB/s, h2load 4 connections x 1 stream
  set_16m_mbps    16 MiB SetSharedData MB/s, 8 concurrent grpcio writers
  set_1k_w1_ops   1 KiB SetSharedData/s, 1 grpcio writer (one call at a
                  time), a new session per call
  set_1k_w16_ops  the same with 16 concurrent grpcio writers (in this one
                  Python process: the client's own ceiling shows here)
  set_h2_c1_ops   1 KiB SetSharedData/s from h2load, 1 connection x 1
                  stream: one call at a time, each answered only after its
                  commit
  set_h2_c16_ops  the same, 16 connections x 1 stream (16 writers, one
                  h2load process)

for memory, lmdb with lmdb_sync on and lmdb with lmdb_sync off; then the
group-commit gain (c16 / c1) with lmdb_sync on, which should be 4x or more:
with one writer every Set waits for its own fsync; with 16, the writer
thread commits the Sets that queued during one fsync in the next. h2load
repeats one request body, so after its first Set of a session the others
are retries (same level and payload: OK, the TTL restarts): each is still
a write through the writer thread, one small transaction with its fsync,
like a new Set.

h2load counts HTTP 200 as success even when grpc-status is not 0, so each
h2load run is checked against the daemon's own
alpcrund_requests_total{method=...,code="OK"} on /metrics. The gRPC-framed
request body for h2load's -d is 0x00, a big-endian u32 length and the
serialized SharedData (for a Get, just its session_id).

Needs Debian's python3-grpcio, python3-protobuf, protobuf-compiler-grpc
(protoc and grpc_python_plugin) and nghttp2-client (h2load).
"""
import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import (MiB, BenchFailed, Daemon, body_file, channel,  # noqa: E402
                 gen_stubs, get_reply_bounds, h2load, sd)


def h2load_set(d, msg, n, conns, workdir):
    """h2load SetSharedData of msg, conns connections x 1 stream (conns
    writers, each waiting for its answer before the next call); returns
    req/s; checks that every request was answered OK by the daemon's own
    counter."""
    path = body_file(workdir, msg, "set-" + msg.session_id)
    return h2load(d, path, n, conns, 1, method="SetSharedData", timeout=600).rps


def h2load_get(d, sid, size, n, conns, streams, workdir):
    """h2load GetSharedData of sid (a payload of size bytes), conns
    connections x streams streams in one h2load process; returns (req/s,
    MB/s) as h2load measured them; checks that every request was answered
    OK by the daemon's counter and carried the payload."""
    path = body_file(workdir, sd(sid, ttl=0), "get-" + sid)
    r = h2load(d, path, n, conns, streams, timeout=600,
               reply_bounds=get_reply_bounds(sid, 1, size))
    return r.rps, r.data_bytes / r.secs / 1e6


def run_writers(addr, writers, per_writer, payload, prefix):
    """writers threads, each on its own channel, per_writer Sets one at a
    time; returns (calls, seconds)."""
    from alpcrun.v1 import cache_pb2_grpc
    stubs = [cache_pb2_grpc.CacheStub(channel(addr)) for _ in range(writers)]
    for i, s in enumerate(stubs):        # connect first, not timed
        s.SetSharedData(sd("%s-warm-%d" % (prefix, i), 1, b"w"), timeout=60)
    errors = []
    go = threading.Barrier(writers + 1)

    def work(w):
        go.wait()
        try:
            for k in range(per_writer):
                stubs[w].SetSharedData(sd("%s-%d-%d" % (prefix, w, k), 1, payload),
                                       timeout=300)
        except Exception as e:      # noqa: BLE001 (reported below)
            errors.append(e)
    ts = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in ts:
        t.start()
    go.wait()
    t0 = time.monotonic()
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    if errors:
        raise SystemExit("Set failed: %s" % errors[0])
    return writers * per_writer, dt


def bench(binary, workdir, name, extra, quick):
    d = Daemon(binary, workdir, name, extra)
    from alpcrun.v1 import cache_pb2_grpc
    res = {}
    try:
        stub = cache_pb2_grpc.CacheStub(channel(d.addr))
        stub.SetSharedData(sd("get1k", 1, os.urandom(1024)), timeout=60)
        n = 50000 if quick else 200000
        res["get_1k_rps"], _ = h2load_get(d, "get1k", 1024, n, 16, 32, workdir)
        stub.SetSharedData(sd("get64m", 1, os.urandom(64 * MiB)), timeout=120)
        _, res["get_64m_mbps"] = h2load_get(d, "get64m", 64 * MiB,
                                            16 if quick else 64, 4, 1, workdir)
        big = os.urandom(16 * MiB)
        calls, dt = run_writers(d.addr, 8, 2 if quick else 8, big, "big")
        res["set_16m_mbps"] = calls * 16 / dt
        small = os.urandom(1024)
        calls, dt = run_writers(d.addr, 1, 100 if quick else 400, small, "w1")
        res["set_1k_w1_ops"] = calls / dt
        calls, dt = run_writers(d.addr, 16, 50 if quick else 200, small, "w16")
        res["set_1k_w16_ops"] = calls / dt
        n = 500 if quick else 2000
        res["set_h2_c1_ops"] = h2load_set(d, sd("h2-c1", 1, small), n, 1, workdir)
        res["set_h2_c16_ops"] = h2load_set(d, sd("h2-c16", 1, small), n * 8, 16,
                                           workdir)
    except BenchFailed as e:
        raise SystemExit(str(e))
    finally:
        d.stop()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpcrund", default=os.environ.get("ALPCRUND", "./alpcrund"))
    ap.add_argument("--dir", default=None, help="where the daemons keep their files")
    ap.add_argument("--quick", action="store_true", help="fewer requests")
    a = ap.parse_args()
    if not shutil.which("h2load"):
        raise SystemExit("h2load not found (Debian package nghttp2-client)")
    binary = os.path.abspath(a.alpcrund)
    workdir = tempfile.mkdtemp(prefix="alpcrund-bench.", dir=a.dir)
    try:
        gen_stubs(workdir)
        lmdb = "backend lmdb\nlmdb_path @DIR@/db\nlmdb_map_size 8g\n"
        configs = [("memory", "backend memory"),
                   ("lmdb-sync-on", lmdb + "lmdb_sync on"),
                   ("lmdb-sync-off", lmdb + "lmdb_sync off")]
        rows = {}
        for name, extra in configs:
            t0 = time.monotonic()
            rows[name] = bench(binary, workdir, name, extra, a.quick)
            print("# %s done in %.0f s" % (name, time.monotonic() - t0), flush=True)
        cols = ["get_1k_rps", "get_64m_mbps", "set_16m_mbps", "set_1k_w1_ops",
                "set_1k_w16_ops", "set_h2_c1_ops", "set_h2_c16_ops"]
        print("%-14s %s" % ("config", " ".join("%14s" % c for c in cols)))
        for name, _ in configs:
            print("%-14s %s" % (name, " ".join("%14.0f" % rows[name][c] for c in cols)))
        on = rows["lmdb-sync-on"]
        print("group commit (lmdb_sync on): h2load 16 writers %.0f Sets/s vs 1 "
              "writer %.0f Sets/s: %.1fx (grpcio: %.1fx)" % (
                  on["set_h2_c16_ops"], on["set_h2_c1_ops"],
                  on["set_h2_c16_ops"] / on["set_h2_c1_ops"],
                  on["set_1k_w16_ops"] / on["set_1k_w1_ops"]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
