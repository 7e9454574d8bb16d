#!/usr/bin/python3
"""bench/callgrind.py: instructions the daemon executes per 1 KiB
GetSharedData at 16 connections x 32 streams (callgrind's Ir of the whole
process, counters zeroed after a warm-up, divided by the requests). A
benchmark, not a test: the count is stable to about 1 % on a loaded
machine, where req/s is not (bench/README.md).

    bench/callgrind.py [--alpcrund PATH ...] [--requests N] [--rounds R]

Each PATH is measured R times, in turns; prints the median per PATH and the
ratio of every PATH to the first.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402


def measure(binary, workdir, tag, n):
    """Ir per Get of one daemon run under callgrind."""
    out = os.path.join(workdir, "cg-%s.out" % tag)
    prefix = ("valgrind --tool=callgrind --callgrind-out-file=%s "
              "--dump-instr=no --collect-jumps=no" % out)
    d = lib.Daemon(binary, workdir, "d-%s" % tag, wrap=prefix)
    try:
        sid = "cg-session"
        lib.stub(d.addr).SetSharedData(lib.sd(sid, 1, b"x" * 1024))
        body = lib.body_file(d.dir, lib.sd(sid, ttl=0), tag="get")
        lib.h2load(d, body, 2000, 16, 32)           # warm-up
        subprocess.run(["callgrind_control", "-z", str(d.pid)], check=True,
                       capture_output=True)
        lib.h2load(d, body, n, 16, 32)
        subprocess.run(["callgrind_control", "-d", str(d.pid)], check=True,
                       capture_output=True)
    finally:
        d.stop(remove=False)
    # callgrind_control -d wrote the counts since zeroing to out.1; the
    # file written at exit (out) holds only the stop.
    with open(out + ".1") as fh:
        for line in fh:
            if line.startswith("summary:"):
                return int(line.split()[1]) / n
    raise lib.BenchFailed("no callgrind summary in %s.1" % out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpcrund", action="append")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    bins = a.alpcrund or [os.environ.get("ALPCRUND", "./alpcrund")]
    work = tempfile.mkdtemp(prefix="callgrind.")
    lib.gen_stubs(os.path.join(work, "gen"))

    def one(path, tag):
        v = measure(path, work, tag, a.requests)
        print("run %s %s: %.0f Ir/Get" % (tag, path, v), flush=True)
        return v

    try:
        res = lib.in_turns(bins, a.rounds, one)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = lib.median(res[bins[0]])
    for b in bins:
        m = lib.median(res[b])
        print("%-40s median %8.0f Ir/Get  (%s)  %+.2f%% vs first" % (
            b, m, " ".join("%.0f" % v for v in res[b]), (m / base - 1) * 100))


if __name__ == "__main__":
    main()
