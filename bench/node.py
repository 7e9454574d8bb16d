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
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import (MiB, BenchFailed, Daemon, body_file, gen_stubs,  # noqa: E402
                 get_reply_bounds, h2load, log_durations_us, percentile, sd, stub)


def measure(binary, work, quick=False, rounds=None):
    """Start a central and a node in work/ and return the figures above
    (a dict); raises BenchFailed when a run does not check out."""
    n_lat = 5000 if quick else 30000
    if rounds is None:
        rounds = 1 if quick else 5
    n_rps = 50000 if quick else 300000
    big_mib = 16 if quick else 64
    central = Daemon(binary, work, "central")
    node = Daemon(binary, work, "node", "mode node\nupstream %s\nmax_memory 2g\n"
                  "max_concurrent_streams 256\n" % central.addr)
    res = {}
    try:
        cs, ns = stub(central.addr), stub(node.addr)
        cs.SetSharedData(sd("hit", 1, os.urandom(1024)), timeout=10)
        ns.GetSharedData(sd("hit", 1), timeout=10)            # now held
        path = body_file(work, sd("hit", 1, ttl=0))
        small = get_reply_bounds("hit", 1, 1024)
        fetches0 = node.metric("alpcrund_upstream_fetches_total")

        # latency at 1 x 1, after a warm-up; node and central in turns,
        # the median of the rounds (other load on the machine shows less)
        lat = {"hit": [], "central": []}
        served = {"hit": [], "central": []}
        for _ in range(rounds):
            for name, d in (("hit", node), ("central", central)):
                h2load(d, path, 2000, 1, 1)
                log = os.path.join(work, "lat-%s.log" % name)
                s0 = d.metric("alpcrund_request_duration_seconds_sum",
                              method="GetSharedData")
                c0 = d.metric("alpcrund_request_duration_seconds_count",
                              method="GetSharedData")
                h2load(d, path, n_lat, 1, 1, log=log, reply_bounds=small)
                served[name].append(1e6 * (d.metric(
                    "alpcrund_request_duration_seconds_sum", method="GetSharedData") - s0) /
                    (d.metric("alpcrund_request_duration_seconds_count",
                              method="GetSharedData") - c0))
                durs = log_durations_us(log)
                lat[name].append([percentile(durs, p) for p in (50, 90, 99)])
        for name, runs in lat.items():
            for i, p in enumerate((50, 90, 99)):
                res["%s_p%d_us" % (name, p)] = sorted(r[i] for r in runs)[len(runs) // 2]
            res["%s_daemon_mean_us" % name] = sorted(served[name])[len(runs) // 2]

        # throughput at 16 x 32
        res["hit_1k_rps"] = h2load(node, path, n_rps, 16, 32, reply_bounds=small).rps
        res["central_1k_rps"] = h2load(central, path, n_rps, 16, 32,
                                       reply_bounds=small).rps
        if node.metric("alpcrund_upstream_fetches_total") != fetches0:
            raise BenchFailed("hits were fetched from central")

        # 64 workers, a big level the node does not hold
        big = os.urandom(MiB) * big_mib
        cs.SetSharedData(sd("big", 7, big), timeout=120)
        bpath = body_file(work, sd("big", 7, ttl=0))
        bigb = get_reply_bounds("big", 7, len(big))
        f0 = node.metric("alpcrund_upstream_fetches_total")
        c0 = node.metric("alpcrund_coalesced_waits_total")
        h0 = node.metric("alpcrund_cache_hits_total")
        r = h2load(node, bpath, 64, 64, 1, reply_bounds=bigb)
        res["miss_%dm_64w_s" % big_mib] = r.secs
        res["miss_fetches"] = node.metric("alpcrund_upstream_fetches_total") - f0
        res["miss_coalesced_waits"] = node.metric("alpcrund_coalesced_waits_total") - c0
        res["miss_late_hits"] = node.metric("alpcrund_cache_hits_total") - h0
        if res["miss_fetches"] != 1:
            raise BenchFailed("64 workers caused %d fetches" % res["miss_fetches"])
        if len(big) != node.metric("alpcrund_payload_bytes") - 1024:
            raise BenchFailed("the big level was not stored on the node")
        res["hit_%dm_64w_s" % big_mib] = h2load(node, bpath, 64, 64, 1,
                                                reply_bounds=bigb).secs
        res["central_%dm_64w_s" % big_mib] = h2load(central, bpath, 64, 64, 1,
                                                    reply_bounds=bigb).secs
    finally:
        node.stop()
        central.stop()
    return res


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
    try:
        gen_stubs(os.path.join(work, "gen"))
        res = measure(os.path.abspath(a.alpcrund), work, a.quick)
    except BenchFailed as e:
        raise SystemExit(str(e))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k in res)
    for k, v in res.items():
        print("%-*s  %s" % (width, k, ("%.3f" % v) if k.endswith("_s") else ("%.0f" % v)))


if __name__ == "__main__":
    main()
