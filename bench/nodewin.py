#!/usr/bin/python3
"""bench/nodewin.py: a node's fetch of a new level across a link with a
round trip, a benchmark (not a test). Needs root (ip netns, TUN).

    flock /tmp/alpcrund-bench.lock /usr/bin/python3 bench/nodewin.py \\
        --alpcrund A [--alpcrund B] [--rtt 4] [--rate GBIT] [--size 64] \\
        [--rounds 3] [--wmem MIB] [--rmem MIB]

Two network namespaces, central's host and the node's host, joined by
bench/delayline.c (built here with cc): a TUN device in each, every packet
handed over RTT/2 after it was sent (and paced to GBIT if given), as
`tc netem delay` would (this kernel has no sch_netem): a rack apart.
For each build in turns (the order swapped each round): central in its
namespace gets a new level of SIZE MiB over its own loopback (alpcrunctl),
then h2load (1 connection, 1 request) in the node's namespace Gets it from
the node: a miss, fetched across the link; again: a hit; and straight from
central across the link (h2load's windows are 1 GiB). fetch = SIZE /
(miss - hit): the node's upstream fetch without the reply on its loopback.
iperf3 -R (central sends) across the same link, one stream, is the
ceiling; it runs under the same socket buffer limits. --wmem and --rmem
raise net.ipv4.tcp_wmem's maximum in central's namespace and tcp_rmem's in
the node's (MiB; default: the kernel's, left alone).
Medians.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

C_ADDR, N_ADDR = "10.232.0.1", "10.232.0.2"
C_PORT, C_MPORT, N_PORT, N_MPORT = 2337, 9337, 3337, 9338


def sh(*args, check=True, timeout=60):
    return subprocess.run(list(args), capture_output=True, text=True,
                          check=check, timeout=timeout)


class Link:
    """Two namespaces joined by bench/delayline (TUN devices, a packet
    forwarded half a round trip after it was sent, each way)."""

    def __init__(self, rtt_ms, rate, wmem, rmem, work):
        tag = uuid.uuid4().hex[:6]
        self.c, self.n = "alpnw-c-" + tag, "alpnw-n-" + tag
        tc, tn = "tnwc-" + tag, "tnwn-" + tag
        self.made, self.line = [], None
        try:
            prog = os.path.join(work, "delayline")
            sh("cc", "-O2", "-Wall", "-pthread", "-o", prog, os.path.join(lib.HERE, "delayline.c"))
            for ns in (self.c, self.n):
                sh("ip", "netns", "add", ns)
                self.made.append(ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            args = [prog, self.c, tc, self.n, tn, str(int(rtt_ms * 1000))]
            if rate:
                args.append(str(int(rate * 1000)))
            self.line = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
            if self.line.stdout.readline().strip() != "ready":
                raise SystemExit("delayline did not start")
            for ns, dev, addr, peer in ((self.c, tc, C_ADDR, N_ADDR),
                                        (self.n, tn, N_ADDR, C_ADDR)):
                sh("ip", "-n", ns, "addr", "add", addr, "peer", peer, "dev", dev)
                sh("ip", "-n", ns, "link", "set", dev, "up")
            if wmem:
                self.sysctl(self.c, "net.ipv4.tcp_wmem", "4096 16384 %d" % (wmem << 20))
            if rmem:
                self.sysctl(self.n, "net.ipv4.tcp_rmem", "4096 131072 %d" % (rmem << 20))
            self.wmem = self.read(self.c, "net.ipv4.tcp_wmem")
            self.rmem = self.read(self.n, "net.ipv4.tcp_rmem")
        except BaseException:
            self.close()
            raise

    def sysctl(self, ns, key, value):
        sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "%s=%s" % (key, value))

    def read(self, ns, key):
        return sh("ip", "netns", "exec", ns, "sysctl", "-n", key).stdout.split()[-1]

    def connect_ms(self, port):
        """TCP connect time, node's host to central's: the round trip."""
        r = sh("ip", "netns", "exec", self.n, "curl", "-s", "-o", "/dev/null", "-w",
               "%{time_connect}", "http://%s:%d/" % (C_ADDR, port), check=False)
        return float(r.stdout or 0) * 1000

    def close(self):
        if self.line is not None:
            lib.stop_proc(self.line)
        for ns in self.made:
            sh("ip", "netns", "del", ns, check=False)


class NsDaemon:
    """alpcrund in a namespace; the interface lib.h2load needs."""

    def __init__(self, binary, ns, workdir, name, conf, port, mport, addr):
        self.ns, self.mport, self.addr = ns, mport, "%s:%d" % (addr, port)
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        path = os.path.join(self.dir, "alpcrund.conf")
        with open(path, "w") as f:
            f.write("metrics_listen 127.0.0.1:%d\nmax_ttl 1h\ndefault_ttl 1h\n"
                    "log_level warn\n%s" % (mport, conf))
        self.log = open(os.path.join(self.dir, "alpcrund.log"), "wb")
        # ip netns exec execs alpcrund: the pid is the daemon's
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, binary, "-c", path],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        deadline = time.monotonic() + 30
        while self.http("/readyz")[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("alpcrund not ready: see %s" % self.log.name)
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def http(self, path):
        r = sh("ip", "netns", "exec", self.ns, "curl", "-s", "-o", "-", "-w",
               "\n%{http_code}", "http://127.0.0.1:%d%s" % (self.mport, path),
               check=False)
        body, _, code = r.stdout.rpartition("\n")
        return int(code or 0), body

    def metric(self, name, **labels):
        return lib.metric_sum(self.http("/metrics")[1], name, **labels)

    def ok(self, method):
        return self.metric("alpcrund_requests_total", method=method, code="OK")

    def stop(self):
        lib.stop_proc(self.proc)
        self.log.close()


def run_one(binary, ctl, link, work, tag, size, payload_file):
    big = "max_message_size %dm\nmax_inflight_bytes 4g\n" % (size + 16)
    c = NsDaemon(binary, link.c, work, "c-" + tag, big + "listen 0.0.0.0:%d\n" % C_PORT,
                 C_PORT, C_MPORT, C_ADDR)
    n = None
    try:
        n = NsDaemon(binary, link.n, work, "n-" + tag, big +
                     "mode node\nlisten 127.0.0.1:%d\nupstream %s:%d\nmax_memory %dm\n"
                     % (N_PORT, C_ADDR, C_PORT, size * 4 + 64), N_PORT, N_MPORT,
                     "127.0.0.1")
        sh("ip", "netns", "exec", link.c, ctl, "-s", "127.0.0.1:%d" % C_PORT,
           "--max-message-size", "%dm" % (size + 16), "set", "lvl", "1", payload_file,
           "--ttl", "1h", timeout=120)
        body = lib.body_file(n.dir, lib.sd("lvl", ttl=0), tag="get")
        bounds = lib.get_reply_bounds("lvl", 1, size << 20)
        inn = ("ip", "netns", "exec", link.n)

        def timed(d):
            t0 = time.monotonic()
            lib.h2load(d, body, 1, 1, 1, reply_bounds=bounds, prefix=inn)
            return time.monotonic() - t0
        miss = timed(n)
        if n.metric("alpcrund_upstream_fetches_total") != 1:
            raise lib.BenchFailed("the node did not fetch exactly once")
        hit = timed(n)
        direct = timed(c)
        rtt = link.connect_ms(C_PORT)
    finally:
        if n is not None:
            n.stop()
        c.stop()
    mb = size * 1.048576
    return {"miss": mb / miss, "hit": mb / hit, "direct": mb / direct,
            "fetch": mb / max(miss - hit, 1e-6), "rtt": rtt}


def iperf3(link, secs):
    srv = subprocess.Popen(["ip", "netns", "exec", link.c, "iperf3", "-s", "-1",
                            "-B", C_ADDR], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            r = sh("ip", "netns", "exec", link.n, "iperf3", "-c", C_ADDR, "-R",
                   "-t", str(secs), "-J", check=False, timeout=secs + 30)
            if r.returncode == 0:
                return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 8e6
            time.sleep(0.1)
        raise lib.BenchFailed("iperf3 did not run:\n" + r.stdout[-1000:])
    finally:
        lib.stop_proc(srv)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpcrund", action="append")
    ap.add_argument("--alpcrunctl", default=os.path.join(lib.TOP_SRCDIR, "alpcrunctl"))
    ap.add_argument("--rtt", type=float, default=4.0, help="ms")
    ap.add_argument("--rate", type=float, default=0, help="Gbit/s (paced by delayline)")
    ap.add_argument("--size", type=int, default=64, help="MiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wmem", type=int, default=0, help="central's tcp_wmem max, MiB")
    ap.add_argument("--rmem", type=int, default=0, help="the node's tcp_rmem max, MiB")
    ap.add_argument("--iperf-secs", type=int, default=3)
    a = ap.parse_args()
    bins = a.alpcrund or [os.environ.get("ALPCRUND", "./alpcrund")]
    work = tempfile.mkdtemp(prefix="nodewin.")
    link = None
    try:
        lib.gen_stubs(os.path.join(work, "gen"))
        payload_file = os.path.join(work, "payload")
        with open(payload_file, "wb") as f:
            f.write(os.urandom(a.size << 20))
        link = Link(a.rtt, a.rate, a.wmem, a.rmem, work)
        ip = [iperf3(link, a.iperf_secs)]
        runs = lib.in_turns(bins, a.rounds, lambda b, tag: run_one(
            b, os.path.abspath(a.alpcrunctl), link, work, tag, a.size, payload_file))
        ip.append(iperf3(link, a.iperf_secs))
    finally:
        if link is not None:
            link.close()
        shutil.rmtree(work, ignore_errors=True)
    rtt = lib.median([x["rtt"] for b in bins for x in runs[b]])
    print("%d MiB level across delayline, RTT %g ms%s (TCP connect %.1f ms); "
          "central tcp_wmem max %s, node tcp_rmem max %s; %d rounds, medians" %
          (a.size, a.rtt, ", rate %g Gbit/s" % a.rate if a.rate else "", rtt,
           link.wmem, link.rmem, a.rounds))
    print("iperf3 -R, 1 stream, %d s: %.0f and %.0f MB/s (before and after)"
          % (a.iperf_secs, ip[0], ip[1]))
    for b in bins:
        med = lambda k: lib.median([x[k] for x in runs[b]])
        print("%-36s fetch %6.0f MB/s  miss %6.0f  hit %6.0f  direct %6.0f MB/s"
              % (b, med("fetch"), med("miss"), med("hit"), med("direct")))


if __name__ == "__main__":
    main()
