#!/usr/bin/python3
"""bench/fanout.py: a new level reaching every host, by topology; a
benchmark (not a test). Needs root (ip netns, veth, tc tbf).

    flock /tmp/alpcrund-bench.lock /usr/bin/python3 bench/fanout.py \\
        [--alpcrund ./alpcrund] [--alpcrunctl ./alpcrunctl] [--hosts 8] \\
        [--rate 200] [--size 16] [--rounds 3] [--topologies star,chain,tree,kill] \\
        [--kill-node K]

Hosts in network namespaces around a switch namespace (a bridge), each on
its own full-duplex link of RATE Mbit/s (tc tbf on both ends of its veth):
host 0 runs the central cache, hosts 1..N a node each. A topology says
each node's upstream: star (every node's is central), chain (node i's is
node i-1, node 1's central), tree (two levels: about sqrt(N) nodes under
central, the others spread under them), kill (the chain, each node's
fallback upstream its grandparent: node i-2, central for node 2; node K,
the middle one unless --kill-node, is killed with SIGKILL once the chain
is connected, and the workers of the live hosts ask). For each topology
and round: a new level of SIZE MiB is set on central (alpcrunctl on its
own host), then at once a worker on every node host asks its local node
for that level (alpcrunctl get -o /dev/null, all spawned first, then let go
at once from a gate); the
time until the last host has the whole level is the figure. T1 is one host alone (star,
only host 1 asks). Printed: T1, each topology's time-to-last-host (median
over the rounds, and the ratio to T1), and per chain hop the time it adds;
for kill also the time from the kill until node K+1 is up on its
fallback. Nodes run without prefetch: the workers' misses pull the level
down.
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

PORT, MPORT = 2337, 9337


def sh(*args, check=True, timeout=60):
    return subprocess.run(list(args), capture_output=True, text=True,
                          check=check, timeout=timeout)


class Net:
    """hosts+1 namespaces on a bridge in a switch namespace, each link
    shaped to rate Mbit/s both ways."""

    def __init__(self, hosts, rate):
        tag = uuid.uuid4().hex[:6]
        self.sw = "alpfo-sw-" + tag
        self.ns = ["alpfo-h%d-%s" % (i, tag) for i in range(hosts + 1)]
        self.made = []
        try:
            sh("ip", "netns", "add", self.sw)
            self.made.append(self.sw)
            sh("ip", "-n", self.sw, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.sw, "link", "set", "br0", "up")
            for i, ns in enumerate(self.ns):
                sh("ip", "netns", "add", ns)
                self.made.append(ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                sh("ip", "-n", self.sw, "link", "add", "p%d" % i, "type", "veth",
                   "peer", "name", "eth0", "netns", ns)
                sh("ip", "-n", self.sw, "link", "set", "p%d" % i, "master", "br0")
                sh("ip", "-n", self.sw, "link", "set", "p%d" % i, "up")
                sh("ip", "-n", ns, "addr", "add", self.addr(i) + "/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                for where, dev in ((ns, "eth0"), (self.sw, "p%d" % i)):
                    sh("tc", "-n", where, "qdisc", "add", "dev", dev, "root", "tbf",
                       "rate", "%dmbit" % rate, "burst", "256kb", "latency", "100ms")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def addr(i):
        return "10.233.0.%d" % (i + 1)

    def close(self):
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made = []


def upstreams(topology, hosts):
    """Host indices of each node's upstreams, in the order tried (index 0:
    central)."""
    if topology == "star":
        return {i: [0] for i in range(1, hosts + 1)}
    if topology == "chain":
        return {i: [i - 1] for i in range(1, hosts + 1)}
    if topology == "kill":
        # The grandparent as the fallback: the child of a dead node skips
        # one hop and the chain goes on below it. Node 1's parent is
        # central already.
        return {i: [i - 1] + ([i - 2] if i >= 2 else []) for i in range(1, hosts + 1)}
    if topology == "tree":
        k = max(1, int(round(hosts ** 0.5)))
        up = {i: [0] for i in range(1, k + 1)}
        for j, i in enumerate(range(k + 1, hosts + 1)):
            up[i] = [1 + j % k]
        return up
    raise SystemExit("unknown topology %s" % topology)


class Cluster:
    def __init__(self, args, net, work, topology):
        self.args, self.net, self.procs = args, net, {}
        hosts = len(net.ns) - 1
        size_cap = "%dm" % (args.size * 2 + 16)
        conf = os.path.join(work, "central.conf")
        with open(conf, "w") as f:
            f.write("listen %s:%d\nlisten 127.0.0.1:%d\nmetrics_listen 127.0.0.1:%d\n"
                    "max_message_size %s\nlog_level warn\n"
                    % (net.addr(0), PORT, PORT, MPORT, size_cap))
        self.start(0, conf)
        self.ups = upstreams(topology, hosts)
        for i in sorted(self.ups):
            conf = os.path.join(work, "node%d.conf" % i)
            # upstream_timeout: the default 30 s is near the star's last
            # fetch at 32 hosts (23 s: central's link carries every copy).
            # upstream_connect_timeout: a parent killed in a namespace
            # that lives on refuses at once; 1 s bounds one that does not
            # answer at all.
            with open(conf, "w") as f:
                f.write("mode node\nlisten %s:%d\nlisten 127.0.0.1:%d\n"
                        "metrics_listen 127.0.0.1:%d\nupstream %s\n"
                        "upstream_timeout %ds\nupstream_connect_timeout 1s\n"
                        "max_message_size %s\nmax_memory %dm\nlog_level warn\n"
                        % (net.addr(i), PORT, PORT, MPORT,
                           " ".join("%s:%d" % (net.addr(u), PORT) for u in self.ups[i]),
                           args.deadline, size_cap, args.size * 4 + 64))
            self.start(i, conf)
        for i in range(hosts + 1):
            self.wait_up(i)
        # Every node's link up on its first upstream, so that no level
        # races a connect: a node started before its parent listens is on
        # its fallback at first, and back only after a probe (0.5 s).
        for i in sorted(self.ups):
            self.wait_for(lambda: self.on_upstream(i, 0),
                          "node %d's link did not come up on host %d" % (i, self.ups[i][0]))

    def start(self, i, conf):
        # ip netns exec execs the daemon: the Popen is alpcrund itself.
        p = subprocess.Popen(["ip", "netns", "exec", self.net.ns[i], self.args.alpcrund,
                              "-c", conf], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs[i] = p

    def ctl(self, i, *argv, **kw):
        return subprocess.run(["ip", "netns", "exec", self.net.ns[i], self.args.alpcrunctl,
                               "-s", "127.0.0.1:%d" % PORT, "--timeout", "120s"]
                              + list(argv), capture_output=True, **kw)

    def wait_up(self, i):
        self.wait_for(lambda: self.ctl(i, "health").returncode == 0,
                      "host %d did not come up" % i)

    @staticmethod
    def wait_for(ok, why, secs=30):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            if ok():
                return
            time.sleep(0.05)
        raise SystemExit(why)

    def scrape(self, i, path):
        """GET http://127.0.0.1:MPORT/path in host i's namespace: the body
        on 200, else None."""
        r = subprocess.run(["ip", "netns", "exec", self.net.ns[i], "curl", "-sf",
                            "-m", "5", "http://127.0.0.1:%d/%s" % (MPORT, path)],
                           capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else None

    def kill(self, i):
        p = self.procs[i]
        p.kill()
        p.wait()
        if self.ctl(i, "health").returncode == 0:
            raise SystemExit("node %d still answers after SIGKILL" % i)

    def on_upstream(self, i, j):
        """Is node i's link up on its upstream j (0: the first)?"""
        body = self.scrape(i, "metrics") or ""
        want = 'alpcrund_upstream_target_up{upstream="%s:%d"} 1' % (
            self.net.addr(self.ups[i][j]), PORT)
        return any(line.strip() == want for line in body.splitlines())

    def close(self):
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def one_level(cl, level, payload, hosts):
    """Set level on central; workers on hosts fetch it at once. Seconds
    until each host had it (None: it failed)."""
    r = cl.ctl(0, "set" if level == 1 else "update", "fanout", str(level), payload)
    if r.returncode != 0:
        raise SystemExit("set failed: %s" % r.stderr.decode())
    # Each worker is spawned first and waits at a gate (a line on its
    # stdin), then all are let go at once: spawning 32 `ip netns exec` one
    # after another takes a good part of a second on two cores, a skew
    # that hosts of their own would not have. What is left is the exec of
    # alpcrunctl, in parallel.
    procs = {i: subprocess.Popen(["ip", "netns", "exec", cl.net.ns[i], "sh", "-c",
                                  'read go && exec "$@"', "worker", cl.args.alpcrunctl,
                                  "-s", "127.0.0.1:%d" % PORT,
                                  "--timeout", "%ds" % cl.args.deadline,
                                  "get", "fanout", str(level), "-o", "/dev/null"],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
             for i in hosts}
    time.sleep(0.2 + 0.02 * len(procs))     # every shell at its read
    t0 = time.monotonic()
    for p in procs.values():
        p.stdin.write(b"go\n")
        p.stdin.flush()
    done = {}
    while len(done) < len(procs):
        for i, p in procs.items():
            if i not in done and p.poll() is not None:
                done[i] = time.monotonic() - t0 if p.returncode == 0 else None
                if p.returncode != 0:
                    sys.stderr.write("host %d: %s" % (i, p.stderr.read().decode()))
        time.sleep(0.002)
    return done


def kill_rounds(args, net, work, payload):
    """The kill topology: per round a fresh chain, node K killed once it
    is connected, then the level for the live hosts. (runs, failover
    seconds per round: from the kill until node K+1 is up on its
    fallback; None without a node K+1)."""
    k = args.kill_node
    live = [i for i in range(1, args.hosts + 1) if i != k]
    runs, failovers = [], []
    for _ in range(args.rounds):
        # Fresh each round: the kill comes before every round's level.
        cl = Cluster(args, net, work, "kill")
        try:
            t = time.monotonic()
            cl.kill(k)
            if k < args.hosts:
                # The level is set once the child has failed over: the
                # figure is the fan-out around a dead node, the failover
                # itself is reported apart.
                cl.wait_for(lambda: cl.on_upstream(k + 1, 1),
                            "node %d did not fail over to host %d within 30 s"
                            % (k + 1, k - 1))
                failovers.append(time.monotonic() - t)
            done = one_level(cl, 1, payload, live)
            if any(v is None for v in done.values()):
                raise SystemExit("kill: a live host failed to get the level")
            runs.append(done)
        finally:
            cl.close()
    return runs, failovers or None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alpcrund", default=os.path.join(lib.TOP_SRCDIR, "alpcrund"))
    ap.add_argument("--alpcrunctl", default=os.path.join(lib.TOP_SRCDIR, "alpcrunctl"))
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--rate", type=int, default=200, help="Mbit/s per host link")
    ap.add_argument("--size", type=int, default=16, help="MiB per level")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--topologies", default="star,chain,tree",
                    help="of star, chain, tree, kill")
    ap.add_argument("--kill-node", type=int,
                    help="kill: the node killed (default: the middle of the chain)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for top in args.topologies.split(","):
        upstreams(top, 1)
    if args.kill_node is None:
        args.kill_node = (args.hosts + 1) // 2
    if not 1 <= args.kill_node <= args.hosts:
        raise SystemExit("--kill-node: 1..%d" % args.hosts)
    wire_s = args.size * 8 * 1.048576 / args.rate
    # The nodes' upstream_timeout and the workers' deadline: the star's
    # last host waits for every copy over central's one link, so it grows
    # with the hosts.
    args.deadline = int(60 + 4 * args.hosts * wire_s)
    if os.geteuid() != 0:
        raise SystemExit("fanout.py needs root (ip netns, tc)")
    for tool in (args.alpcrund, args.alpcrunctl):
        if not os.access(tool, os.X_OK):
            raise SystemExit("%s: not executable (build first)" % tool)
    work = tempfile.mkdtemp(prefix="alpfo-")
    payload = os.path.join(work, "level")
    with open(payload, "wb") as f:
        f.write(os.urandom(args.size << 20))
    net = Net(args.hosts, args.rate)
    results, failovers = {}, None
    try:
        tops = ["T1"] + args.topologies.split(",")
        for top in tops:
            if top == "kill":
                results[top], failovers = kill_rounds(args, net, work, payload)
                continue
            cl = Cluster(args, net, work, "star" if top == "T1" else top)
            try:
                hosts = [1] if top == "T1" else list(range(1, args.hosts + 1))
                runs = []
                for level in range(1, args.rounds + 1):
                    done = one_level(cl, level, payload, hosts)
                    if any(v is None for v in done.values()):
                        raise SystemExit("%s: a host failed to get level %d" % (top, level))
                    runs.append(done)
                results[top] = runs
            finally:
                cl.close()
    finally:
        net.close()
        shutil.rmtree(work, ignore_errors=True)
    t1 = lib.median([r[1] for r in results["T1"]])
    out = {"hosts": args.hosts, "rate_mbit": args.rate, "size_mib": args.size,
           "rounds": args.rounds, "T1_s": round(t1, 3), "topologies": {}}
    print("%d hosts, %d Mbit/s links, %d MiB level, %d rounds (medians); "
          "the level's time on one link: %.2f s" % (args.hosts, args.rate, args.size,
                                                    args.rounds, wire_s))
    label = {t: t for t in args.topologies.split(",")}
    if "kill" in label:
        label["kill"] = "chain, node %d killed" % args.kill_node
    w = max(6, *(len(v) for v in label.values()))
    print("%-*s %10s %8s" % (w, "", "last host", "x T1"))
    print("%-*s %9.2fs %8.2f" % (w, "T1", t1, 1.0))
    for top in args.topologies.split(","):
        last = lib.median([max(r.values()) for r in results[top]])
        row = {"last_host_s": round(last, 3), "x_T1": round(last / t1, 2),
               "rounds_s": [round(max(r.values()), 3) for r in results[top]]}
        extra = ""
        if top == "chain":
            per = [lib.median([r[i] for r in results[top]]) for i in range(1, args.hosts + 1)]
            hops = [per[i] - per[i - 1] for i in range(1, len(per))]
            row["per_host_s"] = [round(v, 3) for v in per]
            row["per_hop_s"] = round(lib.median(hops), 3) if hops else 0.0
            extra = "  (per hop %.2f s)" % row["per_hop_s"]
        if top == "kill":
            # per_host_s: null for the dead node.
            row["killed"] = args.kill_node
            row["per_host_s"] = [None if i == args.kill_node else
                                 round(lib.median([r[i] for r in results[top]]), 3)
                                 for i in range(1, args.hosts + 1)]
            row["failover_s"] = failovers and round(lib.median(failovers), 3)
            if failovers:
                extra = "  (node %d on its fallback %.2f s after the kill)" % (
                    args.kill_node + 1, row["failover_s"])
        out["topologies"][top] = row
        print("%-*s %9.2fs %8.2f%s" % (w, label[top], last, last / t1, extra))
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
