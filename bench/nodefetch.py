#!/usr/bin/python3
"""bench/nodefetch.py: how fast a node fetches a new level from central,
a benchmark (not a test).

    /usr/bin/python3 bench/nodefetch.py --alpcrund A [--alpcrund B] \\
        [--size 64] [--rounds 3]

For each build in turns (the order swapped each round): a central and a
node in front of it on loopback; central gets a new level of SIZE MiB,
then one worker (h2load, 1 connection, a fast reader) asks the node for
it: a miss, so the node fetches it from central and then serves it. The
figures: the miss's wall-clock MB/s (fetch and reply, end to end), the
same Get straight from central for comparison, and the node's CPU
seconds per GiB of the miss. Medians.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402


def run_one(binary, work, tag, size, payload):
    big = "max_message_size %dm\nmax_inflight_bytes 4g\n" % (size + 16)
    c = lib.Daemon(binary, work, "c-" + tag, extra=big)
    n = None
    try:
        n = lib.Daemon(binary, work, "n-" + tag, extra=big +
                       "mode node\nupstream %s\nmax_memory %dm\n" %
                       ("127.0.0.1:%d" % c.port, size * 4 + 64))
        st = lib.stub(c.addr)
        st.SetSharedData(lib.sd("lvl", 1, payload), timeout=300)
        body = lib.body_file(n.dir, lib.sd("lvl", ttl=0), tag="get")
        bounds = lib.get_reply_bounds("lvl", 1, len(payload))
        c0 = lib.cpu_seconds(n.pid)
        t0 = time.monotonic()
        lib.h2load(n, body, 1, 1, 1, reply_bounds=bounds)
        miss = time.monotonic() - t0
        cpu = lib.cpu_seconds(n.pid) - c0
        if n.metric("alpcrund_upstream_fetches_total") != 1:
            raise lib.BenchFailed("the node did not fetch exactly once")
        t0 = time.monotonic()
        lib.h2load(c, body, 1, 1, 1, reply_bounds=bounds)
        direct = time.monotonic() - t0
    finally:
        if n is not None:
            n.stop()
        c.stop()
    mb = size * 1.048576
    return {"miss": mb / miss, "direct": mb / direct,
            "cpu": cpu / (size / 1024.0)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpcrund", action="append")
    ap.add_argument("--size", type=int, default=64, help="MiB")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    bins = a.alpcrund or [os.environ.get("ALPCRUND", "./alpcrund")]
    work = tempfile.mkdtemp(prefix="nodefetch.")
    lib.gen_stubs(os.path.join(work, "gen"))
    payload = os.urandom(a.size << 20)
    try:
        runs = lib.in_turns(bins, a.rounds, lambda b, tag: run_one(
            b, work, tag, a.size, payload))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d MiB level, node miss (fetch from central, then the reply) vs "
          "the same Get from central; h2load 1x1; %d rounds, medians" %
          (a.size, a.rounds))
    for b in bins:
        med = lambda k: lib.median([x[k] for x in runs[b]])
        print("%-40s miss %6.0f MB/s  direct %6.0f MB/s  node CPU %5.2f s/GiB"
              % (b, med("miss"), med("direct"), med("cpu")))


if __name__ == "__main__":
    main()
