#!/usr/bin/python3
"""bench/statuspoll.py: what the status page costs the requests it
watches, a benchmark (not a test).

    flock /tmp/alpcrund-bench.lock /usr/bin/python3 bench/statuspoll.py \\
        [--alpcrund ./alpcrund] [--sessions 100000] [--rounds 3] [--polls 10]

A central holding SESSIONS sessions; the 1 KiB Get latency at 1 x 1
(h2load --log-file, as bench/run's scenario 2) with nobody looking, and
while /status.json is asked POLLS times a second (ten operators with the
page open), in turns, the order swapped each round. Printed: p50, p99,
p99.9 and the slowest of each (medians over the rounds), and how long a
/status.json of that store took (median): the loop answers it in one
turn, so a Get that arrives meanwhile waits that long.
"""
import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402


class Poller(threading.Thread):
    def __init__(self, d, per_s):
        super().__init__(daemon=True)
        self.d, self.gap = d, 1.0 / per_s
        self.stop = threading.Event()
        self.took = []

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            st, body = self.d.http("/status.json")
            self.took.append(time.monotonic() - t0)
            if st != 200 or '"sessions_more"' not in body:
                raise SystemExit("/status.json answered %d" % st)
            self.stop.wait(max(0.0, self.gap - (time.monotonic() - t0)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpcrund", default=os.path.join(lib.TOP_SRCDIR, "alpcrund"))
    ap.add_argument("--sessions", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--polls", type=float, default=10.0, help="/status.json per second")
    ap.add_argument("--requests", type=int, default=50000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="alpcrund-statuspoll-")
    lib.gen_stubs(os.path.join(work, "gen"))
    d = lib.Daemon(args.alpcrund, work, "c")
    try:
        lib.bulk_set(d.addr, args.sessions, b"v", prefix="s")
        if d.ok("SetSharedData") != args.sessions:
            raise SystemExit("bulk_set: %d of %d stored" % (d.ok("SetSharedData"),
                                                            args.sessions))
        lib.stub(d.addr).SetSharedData(lib.sd("get1k", 1, os.urandom(1024)), timeout=10)
        get1k = lib.body_file(work, lib.sd("get1k", ttl=0))
        b1k = lib.get_reply_bounds("get1k", 1, 1024)
        logf = os.path.join(work, "lat.log")
        res = {"quiet": [], "polled": []}
        polls = []
        for r in range(args.rounds):
            for mode in (("quiet", "polled") if r % 2 == 0 else ("polled", "quiet")):
                p = Poller(d, args.polls) if mode == "polled" else None
                if p:
                    p.start()
                lib.h2load(d, get1k, 2000, 1, 1)
                lib.h2load(d, get1k, args.requests, 1, 1, log=logf, reply_bounds=b1k)
                if p:
                    p.stop.set()
                    p.join(30)
                    polls += p.took
                durs = lib.log_durations_us(logf)
                res[mode].append((lib.percentile(durs, 50), lib.percentile(durs, 99),
                                  lib.percentile(durs, 99.9), durs[-1]))
        print("central with %d sessions, 1 KiB Get at 1x1, %d requests, %d rounds "
              "(medians); /status.json %.0f/s while polled" % (args.sessions, args.requests,
                                                               args.rounds, args.polls))
        for mode in ("quiet", "polled"):
            print("  %-7s p50 %6.0f us   p99 %6.0f us   p99.9 %6.0f us   max %6.0f us" % (
                mode, *(lib.median([x[i] for x in res[mode]]) for i in range(4))))
        print("  /status.json of that store: %.1f ms (median of %d)" % (
            1000 * lib.median(polls), len(polls)))
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
