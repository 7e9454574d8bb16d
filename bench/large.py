#!/usr/bin/python3
"""bench/large.py: large payloads through the daemon: UpdateSharedData and
GetSharedData of SIZE MiB from a grpcio client on loopback, for one or
more builds in turns (the order swapped each round), medians. A benchmark,
not a test.

    /usr/bin/python3 bench/large.py --alpcrund A [--alpcrund B] \\
        [--size 64] [--rounds 3] [--repeat 8] [--strace] [--tls]

Per build and operation: wall-clock MB/s (the Python client is part of
it), the daemon's CPU seconds per GiB (what the server costs, the figure
to compare), its minor page faults per GiB, and with --strace the
daemon's system calls per GiB (a separate run under strace -c -f, whose
time is not counted).
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
import lib  # noqa: E402


def minflt(pid):
    """Minor faults of every thread of pid (field 10 of /proc/pid/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def stub_for(d, cert):
    if cert is None:
        return lib.stub(d.addr)
    import grpc
    from alpcrun.v1 import cache_pb2_grpc
    with open(cert, "rb") as f:
        creds = grpc.ssl_channel_credentials(f.read())
    return cache_pb2_grpc.CacheStub(grpc.secure_channel(d.addr, creds, options=[
        ("grpc.max_send_message_length", 2000 * lib.MiB),
        ("grpc.max_receive_message_length", 2000 * lib.MiB)]))


def run_one(binary, work, tag, size, payloads, with_strace, repeat, tls):
    extra = "max_message_size %dm\nmax_inflight_bytes 4g\n" % (size * 2 + 16)
    if tls is not None:
        extra += "tls_cert %s\ntls_key %s\n" % tls
    d = lib.Daemon(binary, work, tag, extra=extra)
    res = {}
    try:
        st = stub_for(d, tls[0] if tls is not None else None)
        st.SetSharedData(lib.sd("big", 1, b"w"), timeout=60)
        level = 1
        for op in ("update", "get"):
            tr = None
            if with_strace:
                out = os.path.join(d.dir, "strace-%s.txt" % op)
                tr = subprocess.Popen(["strace", "-c", "-f", "-p", str(d.pid),
                                       "-o", out], stderr=subprocess.DEVNULL)
                time.sleep(0.5)
            c0, f0, t0 = lib.cpu_seconds(d.pid), minflt(d.pid), time.monotonic()
            for i in range(repeat):
                if op == "update":
                    level += 1
                    st.UpdateSharedData(lib.sd("big", level, payloads[0]),
                                        timeout=600)
                else:
                    r = st.GetSharedData(lib.sd("big", ttl=0), timeout=600)
                    if r.payload != payloads[0]:
                        raise lib.BenchFailed("Get returned other bytes")
            t1, c1, f1 = time.monotonic(), lib.cpu_seconds(d.pid), minflt(d.pid)
            gib = size * repeat / 1024.0
            res[op] = {"mbps": size * repeat * 1.048576 / (t1 - t0),
                       "cpu": (c1 - c0) / gib, "flt": (f1 - f0) / gib}
            if tr is not None:
                tr.terminate()
                tr.wait()
                calls = 0
                with open(out) as f:
                    for line in f:
                        m = re.match(r"^100\.00\s+\S+\s+(?:\S+\s+)?(\d+)\s", line)
                        if m:
                            calls = int(m.group(1))
                res[op]["sys"] = calls / gib
    finally:
        d.stop()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpcrund", action="append")
    ap.add_argument("--size", type=int, default=64, help="MiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--repeat", type=int, default=8,
                    help="operations per measurement")
    a = ap.parse_args()
    bins = a.alpcrund or [os.environ.get("ALPCRUND", "./alpcrund")]
    work = tempfile.mkdtemp(prefix="large.")
    lib.gen_stubs(os.path.join(work, "gen"))
    payloads = [os.urandom(a.size << 20)]
    tls = lib.make_cert(work) if a.tls else None
    try:
        runs = lib.in_turns(bins, a.rounds, lambda b, tag: run_one(
            b, work, "r" + tag, a.size, payloads, False, a.repeat, tls))
        if a.strace:
            for b in bins:
                s = run_one(os.path.abspath(b), work, "s-%d" % bins.index(b),
                            a.size, payloads, True, 1, tls)
                for op in s:
                    runs[b][0][op]["sys"] = s[op]["sys"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d MiB, %s, grpcio client, %d rounds of %d operations, medians" %
          (a.size, "TLS" if a.tls else "cleartext", a.rounds, a.repeat))
    for op in ("update", "get"):
        for b in bins:
            med = lambda k: lib.median([x[op][k] for x in runs[b]])
            sysc = runs[b][0][op].get("sys")
            print("%-6s %-40s %7.0f MB/s  %5.2f CPU s/GiB  %8.0f faults/GiB%s"
                  % (op, b, med("mbps"), med("cpu"), med("flt"),
                     "  %8.0f syscalls/GiB" % sysc if sysc is not None else ""))


if __name__ == "__main__":
    main()
