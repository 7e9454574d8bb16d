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
import http.client
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.path.join(HERE, ".."))
MiB = 1 << 20


def gen_stubs(outdir):
    subprocess.run(
        ["protoc", "-I" + os.path.join(TOP_SRCDIR, "proto"), "-I/usr/include",
         "--python_out=" + outdir, "--grpc_out=" + outdir,
         "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
         "alpcrun/v1/cache.proto"], check=True)
    sys.path.insert(0, outdir)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Daemon:
    def __init__(self, binary, workdir, name, extra):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.port, self.mport = free_port(), free_port()
        conf = os.path.join(self.dir, "alpcrund.conf")
        with open(conf, "w") as f:
            f.write("listen 127.0.0.1:%d\nmetrics_listen 127.0.0.1:%d\n"
                    "max_ttl 1h\ndefault_ttl 1h\nlog_level warn\n%s\n"
                    % (self.port, self.mport, extra.replace("@DIR@", self.dir)))
        self.log = open(os.path.join(self.dir, "alpcrund.log"), "wb")
        self.proc = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("alpcrund exited at start: see %s" % self.log.name)
            try:
                if self.http("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("alpcrund did not start")
            time.sleep(0.05)
        self.addr = "127.0.0.1:%d" % self.port

    def http(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.mport, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def ok(self, method):
        """alpcrund_requests_total{method=method,code="OK"}."""
        body = self.http("/metrics")[1]
        for line in body.splitlines():
            m = re.match(r'^alpcrund_requests_total\{([^}]*)\}\s+(\S+)', line)
            if m and 'method="%s"' % method in m.group(1) and \
                    'code="OK"' in m.group(1):
                return float(m.group(2))
        return 0.0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def channel(addr):
    import grpc
    return grpc.insecure_channel(addr, options=[
        ("grpc.max_send_message_length", 300 * MiB),
        ("grpc.max_receive_message_length", 300 * MiB),
        ("grpc.use_local_subchannel_pool", 1)])


def sd(sid, level=None, payload=b""):
    from alpcrun.v1 import cache_pb2
    m = cache_pb2.SharedData(session_id=sid, payload=payload)
    if level is not None:
        m.update_level = level
    m.ttl.seconds = 3600
    return m


def h2load_set(d, msg, n, conns, workdir):
    """h2load SetSharedData of msg, conns connections x 1 stream (conns
    writers, each waiting for its answer before the next call); returns
    req/s; checks that every request was answered OK by the daemon's own
    counter."""
    body = msg.SerializeToString()
    path = os.path.join(workdir, "set-%s.bin" % msg.session_id)
    with open(path, "wb") as f:
        f.write(struct.pack(">BI", 0, len(body)) + body)
    before = d.ok("SetSharedData")
    out = subprocess.run(
        ["h2load", "-n", str(n), "-c", str(conns), "-m", "1", "-d", path,
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "http://%s/alpcrun.v1.Cache/SetSharedData" % d.addr],
        capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    if out.returncode != 0 or not m:
        raise SystemExit("h2load failed:\n" + text)
    ok = d.ok("SetSharedData") - before
    if ok != n:
        raise SystemExit("h2load: %d SetSharedData requests, but the daemon "
                         "answered %d with grpc-status OK" % (n, ok))
    return float(m.group(1))


def h2load_get(d, sid, n, conns, streams, workdir):
    """h2load GetSharedData of sid, conns connections x streams streams in
    one h2load process; returns (req/s, MB/s) as h2load measured them;
    checks that every request was answered OK by the daemon's counter."""
    from alpcrun.v1 import cache_pb2
    body = cache_pb2.SharedData(session_id=sid).SerializeToString()
    path = os.path.join(workdir, "get-%s.bin" % sid)
    with open(path, "wb") as f:
        f.write(struct.pack(">BI", 0, len(body)) + body)
    before = d.ok("GetSharedData")
    out = subprocess.run(
        ["h2load", "-n", str(n), "-c", str(conns), "-m", str(streams), "-d", path,
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "http://%s/alpcrun.v1.Cache/GetSharedData" % d.addr],
        capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s, ([\d.]+)([KMG]?B)/s", text)
    if out.returncode != 0 or not m:
        raise SystemExit("h2load failed:\n" + text)
    ok = d.ok("GetSharedData") - before
    if ok != n:
        raise SystemExit("h2load: %d requests, but the daemon answered %d with "
                         "grpc-status OK" % (n, ok))
    scale = {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[m.group(5)]
    return float(m.group(3)), float(m.group(4)) * scale


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
        res["get_1k_rps"], _ = h2load_get(d, "get1k", n, 16, 32, workdir)
        stub.SetSharedData(sd("get64m", 1, os.urandom(64 * MiB)), timeout=120)
        _, res["get_64m_mbps"] = h2load_get(d, "get64m", 16 if quick else 64, 4, 1,
                                            workdir)
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
