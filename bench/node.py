#!/usr/bin/python3
"""bench/node.py: node mode figures, a benchmark (not a test).

    /usr/bin/python3 bench/node.py [--alpcrund PATH] [--quick]

Starts a central and a node in front of it on loopback and reports:

  hit_p50_us, hit_p99_us  latency of a 1 KiB GetSharedData hit on the node,
                          h2load 1 connection x 1 stream, from h2load's
                          --log-file (one line per request: start, status,
                          duration in microseconds), after a warm-up run;
                          the median of 5 rounds taken in turns with central
  central_p50_us, ...     the same against central, for comparison (the
                          client's own share of the time is in both)
  *_daemon_mean_us        the daemon's own mean for those requests, from
                          alpcrund_request_duration_seconds (HEADERS in to
                          reply queued)
  hit_1k_rps              1 KiB hits per second, h2load 16 connections x 32
                          streams
  central_1k_rps          the same against central, for comparison
  miss_64m_64w_s          seconds until 64 workers (h2load, 64 connections
                          started together) all received a 64 MiB level the
                          node did not hold: one fetch from central, 63
                          coalesced waits (or hits, for workers that came
                          after the copy was stored), 64 replies
  central_64m_64w_s       the same 64 x 64 MiB straight from central

h2load counts HTTP 200 as success even when grpc-status is not 0, so every
run is checked against the daemon's own alpcrund_requests_total{code="OK"}
(and the miss run against upstream_fetches_total and coalesced_waits_total).
The gRPC request body for h2load's -d is 0x00, a big-endian u32 length and
the serialized SharedData{session_id, update_level}.

Needs Debian's python3-grpcio, python3-protobuf, protobuf-compiler-grpc and
nghttp2-client (h2load). The goal for hit_p50_us is under 50 on loopback.
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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.path.join(HERE, ".."))
MiB = 1 << 20


def gen_stubs(outdir):
    os.makedirs(outdir, exist_ok=True)
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
    def __init__(self, binary, workdir, name, extra=""):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.port, self.mport = free_port(), free_port()
        conf = os.path.join(self.dir, "alpcrund.conf")
        with open(conf, "w") as f:
            f.write("listen 127.0.0.1:%d\nmetrics_listen 127.0.0.1:%d\n"
                    "max_ttl 1h\ndefault_ttl 1h\nlog_level warn\n%s\n"
                    % (self.port, self.mport, extra))
        self.log = open(os.path.join(self.dir, "alpcrund.log"), "wb")
        self.proc = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("alpcrund exited at start: see %s" % self.log.name)
            try:
                if self.http("/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("alpcrund did not become ready: see %s" % self.log.name)
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

    def metric(self, name, **labels):
        body = self.http("/metrics")[1]
        total = 0.0
        for line in body.splitlines():
            m = re.match(r'^([a-z_]+)(?:\{([^}]*)\})?\s+(\S+)', line)
            if not m or m.group(1) != name:
                continue
            lab = m.group(2) or ""
            if all('%s="%s"' % kv in lab for kv in labels.items()):
                total += float(m.group(3))
        return total

    def ok(self, method):
        return self.metric("alpcrund_requests_total", method=method, code="OK")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def sd(sid, level=None, payload=b""):
    from alpcrun.v1 import cache_pb2
    m = cache_pb2.SharedData(session_id=sid, payload=payload)
    if level is not None:
        m.update_level = level
    m.ttl.seconds = 3600
    return m


def stub(addr):
    import grpc
    from alpcrun.v1 import cache_pb2_grpc
    ch = grpc.insecure_channel(addr, options=[
        ("grpc.max_send_message_length", 300 * MiB),
        ("grpc.max_receive_message_length", 300 * MiB)])
    return cache_pb2_grpc.CacheStub(ch)


def body_file(workdir, sid, level):
    from alpcrun.v1 import cache_pb2
    m = cache_pb2.SharedData(session_id=sid)
    if level is not None:
        m.update_level = level
    body = m.SerializeToString()
    path = os.path.join(workdir, "get-%s.bin" % sid)
    with open(path, "wb") as f:
        f.write(struct.pack(">BI", 0, len(body)) + body)
    return path


def h2load(d, path, n, conns, streams, log=None):
    """h2load GetSharedData; returns (its output, wall seconds); checks that
    the daemon answered every request with grpc-status OK."""
    before = d.ok("GetSharedData")
    cmd = ["h2load", "-n", str(n), "-c", str(conns), "-m", str(streams), "-d", path,
           "-H", "content-type: application/grpc", "-H", "te: trailers"]
    if log:
        cmd += ["--log-file", log]
    cmd.append("http://%s/alpcrun.v1.Cache/GetSharedData" % d.addr)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - t0
    text = out.stdout + out.stderr
    if out.returncode != 0 or not re.search(r"requests: %d total.* %d succeeded" % (n, n),
                                            text):
        raise SystemExit("h2load failed:\n" + text)
    ok = d.ok("GetSharedData") - before
    if ok != n:
        raise SystemExit("h2load: %d requests, but the daemon answered %d with grpc-status OK"
                         % (n, ok))
    return text, took


def rps(text):
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    return float(m.group(3))


def finished_s(text):
    m = re.search(r"finished in ([\d.]+)(m?s)", text)
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpcrund", default=os.environ.get("ALPCRUND") or
                    os.path.join(os.getcwd(), "alpcrund"))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if not shutil.which("h2load"):
        raise SystemExit("h2load (Debian package nghttp2-client) is not installed")
    if not os.access(a.alpcrund, os.X_OK):
        raise SystemExit("no daemon at %s (--alpcrund)" % a.alpcrund)
    work = tempfile.mkdtemp(prefix="alpcrund-bench-node-")
    gen_stubs(os.path.join(work, "gen"))
    n_lat = 5000 if a.quick else 30000
    rounds = 1 if a.quick else 5
    n_rps = 50000 if a.quick else 300000
    big_mib = 16 if a.quick else 64
    central = Daemon(a.alpcrund, work, "central")
    node = Daemon(a.alpcrund, work, "node", "mode node\nupstream %s\nmax_memory 2g\n"
                  "max_concurrent_streams 256\n" % central.addr)
    res = {}
    try:
        cs, ns = stub(central.addr), stub(node.addr)
        cs.SetSharedData(sd("hit", 1, os.urandom(1024)), timeout=10)
        ns.GetSharedData(sd("hit", 1), timeout=10)            # now held
        path = body_file(work, "hit", 1)
        fetches0 = node.metric("alpcrund_upstream_fetches_total")

        # latency at 1 x 1, after a warm-up; node and central in turns,
        # the median of the rounds (other load on the machine shows less)
        lat = {"hit": [], "central": []}
        served = {"hit": [], "central": []}
        for _ in range(rounds):
            for name, d in (("hit", node), ("central", central)):
                h2load(d, path, 2000, 1, 1)
                log = os.path.join(work, "lat-%s.log" % name)
                s0 = d.metric("alpcrund_request_duration_seconds_sum", method="GetSharedData")
                c0 = d.metric("alpcrund_request_duration_seconds_count",
                              method="GetSharedData")
                h2load(d, path, n_lat, 1, 1, log=log)
                served[name].append(1e6 * (d.metric(
                    "alpcrund_request_duration_seconds_sum", method="GetSharedData") - s0) /
                    (d.metric("alpcrund_request_duration_seconds_count",
                              method="GetSharedData") - c0))
                durs = []
                with open(log) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 3:
                            durs.append(int(parts[2]))
                durs.sort()
                lat[name].append([percentile(durs, p) for p in (50, 90, 99)])
        for name, runs in lat.items():
            for i, p in enumerate((50, 90, 99)):
                res["%s_p%d_us" % (name, p)] = sorted(r[i] for r in runs)[len(runs) // 2]
            res["%s_daemon_mean_us" % name] = sorted(served[name])[len(runs) // 2]

        # throughput at 16 x 32
        text, _ = h2load(node, path, n_rps, 16, 32)
        res["hit_1k_rps"] = rps(text)
        text, _ = h2load(central, path, n_rps, 16, 32)
        res["central_1k_rps"] = rps(text)
        if node.metric("alpcrund_upstream_fetches_total") != fetches0:
            raise SystemExit("hits were fetched from central")

        # 64 workers, a big level the node does not hold
        big = os.urandom(MiB) * big_mib
        cs.SetSharedData(sd("big", 7, big), timeout=120)
        bpath = body_file(work, "big", 7)
        f0 = node.metric("alpcrund_upstream_fetches_total")
        c0 = node.metric("alpcrund_coalesced_waits_total")
        h0 = node.metric("alpcrund_cache_hits_total")
        text, took = h2load(node, bpath, 64, 64, 1)
        res["miss_%dm_64w_s" % big_mib] = finished_s(text)
        res["miss_fetches"] = node.metric("alpcrund_upstream_fetches_total") - f0
        res["miss_coalesced_waits"] = node.metric("alpcrund_coalesced_waits_total") - c0
        res["miss_late_hits"] = node.metric("alpcrund_cache_hits_total") - h0
        if res["miss_fetches"] != 1:
            raise SystemExit("64 workers caused %d fetches" % res["miss_fetches"])
        if len(big) != node.metric("alpcrund_payload_bytes") - 1024:
            raise SystemExit("the big level was not stored on the node")
        text, _ = h2load(node, bpath, 64, 64, 1)
        res["hit_%dm_64w_s" % big_mib] = finished_s(text)
        text, _ = h2load(central, bpath, 64, 64, 1)
        res["central_%dm_64w_s" % big_mib] = finished_s(text)
    finally:
        node.stop()
        central.stop()
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k in res)
    for k, v in res.items():
        print("%-*s  %s" % (width, k, ("%.3f" % v) if k.endswith("_s") else ("%.0f" % v)))


if __name__ == "__main__":
    main()
