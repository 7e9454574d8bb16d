#!/usr/bin/python3
"""bench/bigload.py: large payloads against grpc-go (issue 16). A benchmark,
not a test.

    bench/bigload.py [--alpcrund PATH] [--sizes 64m,1g] [--rounds 3]
        [--big-rounds 1] [--n 3] [--transports clear,tls]
        [--backends memory,lmdb] [--no-strace] [--no-1k] [--quick]

One grpc-go client (bench/goref/client) against alpcrund (memory and LMDB
backends) and against a minimal grpc-go server of the same service
(bench/goref/server: a map under a mutex), cleartext and TLS (a P-256
certificate made with openssl in a temporary directory), the servers in
turns (the order swapped each round), medians. Per payload size,
transport and server, a fresh server takes one untimed Set (and Delete)
of the payload size, then three phases:

  set     N Sets of new sessions (each deleted after, untimed)
  update  a Set of one byte at level 0, then Updates to levels 1..N
  get     N Gets of what update left, checked byte for byte

Per phase: MB/s (10^6 payload bytes a second, the client's time of the
calls alone), the server's CPU seconds per GiB of payload (all its
threads, /proc/PID/task/*/schedstat read just before and just after each
call, the client waiting meanwhile: its deletes, checks and payload
making are not counted), its peak resident set growth during a call
(VmHWM after it minus VmRSS before, the peak reset with
/proc/PID/clear_refs), as a multiple of one payload, and, from a
separate pass (one operation per phase, sizes up to --strace-max) under
strace -c -f, its system calls per GiB. Then 1 KiB Gets over TLS from
64 callers on 4 connections (the grpc-go client, --callers, --conns):
req/s and the server's CPU microseconds per Get.

Every client call must return OK and every Get the level and bytes
stored (the client exits 1 otherwise); alpcrund's
alpcrund_requests_total{method,code} must have grown by exactly the calls
made, all OK. A measurement that does not check out is printed FAILED,
with the reason under the table, and the exit status is 1.

The Go programs are built on the first run into a cache directory
(--gocache, default ~/.cache/alpcrund-bench) with Debian's Go packages,
offline: golang-go, golang-google-grpc-dev,
golang-github-golang-protobuf-1-5-dev, golang-google-protobuf-dev,
protoc-gen-go and protoc-gen-go-grpc (scripts/install-deps).
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import MiB, GiB, BenchFailed, median  # noqa: E402

GOREF = os.path.join(lib.HERE, "goref")
PROTO = os.path.join(lib.TOP_SRCDIR, "proto")


# --- the Go programs -----------------------------------------------------------

def build_goref(cache):
    """Build bench/goref's server and client (GOPATH mode against
    /usr/share/gocode, no network) into cache/goref-HASH/bin, HASH over
    their sources and the .proto; returns that bin directory."""
    srcs = [os.path.join(GOREF, p, "main.go") for p in ("server", "client")]
    srcs.append(os.path.join(PROTO, "alpcrun", "v1", "cache.proto"))
    h = hashlib.sha256()
    for p in srcs:
        with open(p, "rb") as f:
            h.update(f.read())
    root = os.path.join(cache, "goref-" + h.hexdigest()[:12])
    bindir = os.path.join(root, "bin")
    if all(os.access(os.path.join(bindir, b), os.X_OK) for b in ("server", "client")):
        return bindir
    for tool, pkg in (("go", "golang-go"), ("protoc-gen-go", "protoc-gen-go"),
                      ("protoc-gen-go-grpc", "protoc-gen-go-grpc")):
        if not shutil.which(tool):
            raise SystemExit("%s not found (Debian package %s; scripts/install-deps)"
                             % (tool, pkg))
    tmp = tempfile.mkdtemp(prefix="goref.", dir=cache)
    try:
        return _build(tmp, root)
    except subprocess.CalledProcessError as e:
        raise SystemExit("building bench/goref failed: %s" % e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(tmp, root):
    pkg = "alpcrund/bench/goref"
    src = os.path.join(tmp, "src", pkg)
    for p in ("server", "client"):
        os.makedirs(os.path.join(src, p))
        shutil.copy(os.path.join(GOREF, p, "main.go"), os.path.join(src, p))
    m = "Malpcrun/v1/cache.proto=%s/cachepb" % pkg
    subprocess.run(["protoc", "-I" + PROTO, "-I/usr/include",
                    "--go_out=" + os.path.join(tmp, "src"), "--go_opt=" + m,
                    "--go-grpc_out=" + os.path.join(tmp, "src"), "--go-grpc_opt=" + m,
                    "alpcrun/v1/cache.proto"], check=True)
    env = dict(os.environ, GO111MODULE="off", GOFLAGS="",
               GOPATH=tmp + ":/usr/share/gocode",
               GOCACHE=os.path.join(os.path.dirname(root), "gocache"))
    os.makedirs(os.path.join(tmp, "bin"))
    subprocess.run(["go", "build", "-o", os.path.join(tmp, "bin") + "/",
                    pkg + "/server", pkg + "/client"], check=True, env=env, cwd=tmp)
    shutil.rmtree(root, ignore_errors=True)
    os.rename(tmp, root)
    return os.path.join(root, "bin")


class GoRef:
    """bench/goref/server on a free loopback port, cleartext or TLS."""

    def __init__(self, bindir, tls):
        self.port = lib.free_port()
        self.addr = "127.0.0.1:%d" % self.port
        cmd = [os.path.join(bindir, "server"), "-listen", self.addr]
        if tls:
            cmd += ["-cert", tls[0], "-key", tls[1]]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
        lib.wait_port(self.port, self.proc, what="grpc-go reference server")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        lib.stop_proc(self.proc)


def client(bindir, addr, tls, *args, sample=None, timeout=900):
    """Run the grpc-go client; its JSON summary (last line). With sample
    (a function of "ready" or "done"), the client runs with -step and
    sample is called before and after each timed call, the client
    waiting meanwhile. A client that exits non-zero (a call not OK, a Get
    not byte-exact) raises BenchFailed."""
    cmd = [os.path.join(bindir, "client"), "-addr", addr]
    if tls:
        cmd += ["-ca", tls[0]]
    cmd += [str(a) for a in args]
    if sample:
        cmd.append("-step")
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    last = ""
    try:
        for line in p.stdout:
            word = line.split(" ", 1)[0]
            if sample and word in ("ready", "done"):
                sample(word)
                p.stdin.write("\n")
                p.stdin.flush()
            elif line.strip():
                last = line
        err = p.stderr.read()
        rc = p.wait(timeout)
    except (subprocess.TimeoutExpired, BrokenPipeError):
        p.kill()
        p.wait()
        err, rc = "timed out or broken pipe", -1
    if rc != 0:
        raise BenchFailed("client %s: %s" % (" ".join(cmd[3:]),
                                             (err.strip() or "exit %d" % rc)[-500:]))
    return json.loads(last)


# --- measurements ----------------------------------------------------------------

def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise SystemExit("no %s for pid %d" % (field, pid))


def cpu_ns(pid):
    """CPU time of every thread of pid, in seconds, from
    /proc/PID/task/*/schedstat (nanoseconds: /proc/PID/stat counts clock
    ticks of 10 ms, coarse around one 64 MiB call); time of threads that
    have exited is lost, so only differences over live threads count."""
    total = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total / 1e9


def reset_peak(pid):
    """Reset VmHWM to the current RSS (Linux 4.0+, clear_refs 5)."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
    except OSError:
        pass        # the peak then counts from the start: an upper bound


def strace_calls(path):
    """The total of calls of strace -c's summary."""
    with open(path) as f:
        for line in f:
            m = re.match(r"^100\.00\s+\S+\s+(?:\S+\s+)?(\d+)\s", line)
            if m:
                return int(m.group(1))
    raise BenchFailed("no summary in %s" % path)


# (method, calls) that alpcrund must have answered OK per phase of n
def expected(op, n):
    return {"set": {"SetSharedData": n, "DeleteSharedData": n},
            "update": {"SetSharedData": 1, "UpdateSharedData": n},
            "get": {"GetSharedData": n},
            "get1k": {"SetSharedData": 1, "GetSharedData": n}}[op]


def counted(srv, op, n, before):
    """For alpcrund: the requests_total counters since before must be
    exactly the calls of op, all OK."""
    if not hasattr(srv, "ok"):
        return
    for method, calls in expected(op, n).items():
        ok = srv.ok(method) - before[method][0]
        total = srv.metric("alpcrund_requests_total", method=method) - before[method][1]
        if ok != calls or total != calls:
            raise BenchFailed("%s: %d %s calls made, alpcrund answered %d, %d OK"
                              % (op, calls, method, total, ok))


def counters(srv, op, n):
    if not hasattr(srv, "ok"):
        return None
    return {m: (srv.ok(m), srv.metric("alpcrund_requests_total", method=m))
            for m in expected(op, n)}


def phases(srv, bindir, tls, size, n, tag, trace=None):
    """set, update and get of n x size on a fresh server; per phase
    {mbps, cpu (s/GiB), rss (peak growth / size)} or, with trace (a
    directory), {sys (calls/GiB)} from strace -c -f."""
    res = {}
    sid = "big-" + tag
    # untimed: a fresh process's first upload of this size costs more
    # (new pages), as the first of a series would on any server
    client(bindir, srv.addr, tls, "-op", "set", "-size", size, "-n", 1,
           "-session", "warm-" + tag)
    for op in ("set", "update", "get"):
        before = counters(srv, op, n)
        tr = None
        if trace:
            out = os.path.join(trace, "strace-%s-%s.txt" % (tag, op))
            tr = subprocess.Popen(["strace", "-c", "-f", "-p", str(srv.pid), "-o", out],
                                  stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        acc = {"cpu": 0.0, "peak": 0}

        def sample(word):
            if word == "ready":
                reset_peak(srv.pid)
                acc["rss0"] = status_kib(srv.pid, "VmRSS")
                acc["cpu0"] = cpu_ns(srv.pid)
            else:
                acc["cpu"] += cpu_ns(srv.pid) - acc["cpu0"]
                acc["peak"] = max(acc["peak"], status_kib(srv.pid, "VmHWM") - acc["rss0"])
        j = client(bindir, srv.addr, tls, "-op", op, "-size", size, "-n", n,
                   "-session", sid, "-level", n, sample=None if trace else sample)
        if tr is not None:
            tr.terminate()
            tr.wait()
        if j["bytes"] != n * size or j["n"] != n:
            raise BenchFailed("%s: the client moved %d bytes in %d calls, not %d in %d"
                              % (op, j["bytes"], j["n"], n * size, n))
        counted(srv, op, n, before)
        gib = n * size / GiB
        if tr is not None:
            res[op] = {"sys": strace_calls(out) / gib}
        else:
            res[op] = {"mbps": j["mbps"], "cpu": acc["cpu"] / gib,
                       "rss": acc["peak"] / size}
    return res


def get1k(srv, bindir, tls, n, conns, callers):
    before = counters(srv, "get1k", n + conns)
    cpu0 = lib.cpu_seconds(srv.pid)
    j = client(bindir, srv.addr, tls, "-op", "get1k", "-n", n, "-conns", conns,
               "-callers", callers, "-session", "k1")
    cpu = lib.cpu_seconds(srv.pid) - cpu0
    counted(srv, "get1k", n + conns, before)     # n timed + one warm-up per conn
    return {"rps": j["rps"], "cpu_us": 1e6 * cpu / (n + conns + 1)}


# --- the run ---------------------------------------------------------------------

def parse_size(s):
    m = re.match(r"^(\d+)([kmg])$", s.strip().lower())
    if not m:
        raise SystemExit("--sizes: %r is not N{k,m,g}" % s)
    return int(m.group(1)) << {"k": 10, "m": 20, "g": 30}[m.group(2)]


def size_name(size):
    return "%d GiB" % (size >> 30) if size >= GiB else "%d MiB" % (size >> 20)


# goals of issue 16: x grpc-go on MB/s, and server CPU s/GiB (memory backend)
RATIO_GOALS = {("update", "clear"): 2.0, ("update", "tls"): 2.0, ("get", "tls"): 2.0}
CPU_GOALS = {("get", "clear"): 0.35, ("get", "tls"): 0.6, ("update", "clear"): 0.6,
             ("set", "clear"): 0.6, ("update", "tls"): 0.9, ("set", "tls"): 0.9}


def measure(binary, work, bindir, sizes, rounds_for, n_for, transports, backends,
            strace_max, do_1k, n1k, conns, callers, rounds_1k, log=print):
    """Everything above; returns (results, failures): results[(size,
    transport, server)][op] = {mbps, cpu, rss: medians, sys}, and
    results[("1k", "tls", server)] = {rps, cpu_us: medians}."""
    os.makedirs(work, exist_ok=True)
    certs = lib.make_cert(work)
    servers = ["alpcrund " + b for b in backends] + ["grpc-go"]
    results, fails = {}, []

    def start(server, tls, tag, size):
        if server == "grpc-go":
            return GoRef(bindir, tls)
        extra = "max_message_size %dm\nmax_inflight_bytes 4g\n" % max(
            64, (size + size // 16) >> 20)
        if server == "alpcrund lmdb":
            extra += "backend lmdb\nlmdb_path @DIR@/db\nlmdb_map_size %dm\n" % max(
                4096, 4 * (size >> 20))
        if tls:
            extra += "tls_cert %s\ntls_key %s\n" % tls
        return lib.Daemon(binary, work, tag, extra=extra)

    seq = [0]

    def one(fn, server, tls, size):
        seq[0] += 1
        srv = start(server, tls, "s%d" % seq[0], size)
        try:
            return fn(srv)
        except BenchFailed as e:
            fails.append("%s: %s" % (server, e))
            log("# FAILED %s: %s" % (server, str(e).splitlines()[0]))
            return None
        finally:
            srv.stop()

    for size in sizes:
        n, rounds = n_for(size), rounds_for(size)
        for tr in transports:
            tls = certs if tr == "tls" else None
            t0 = time.monotonic()
            # in_turns hands its names over as paths: basename gives them back
            runs = lib.in_turns(servers, rounds, lambda s, tag: one(
                lambda srv: phases(srv, bindir, tls, size, n, tag), os.path.basename(s),
                tls, size))
            for server in servers:
                got = [r for r in runs[server] if r is not None]
                key = (size, tr, server)
                if len(got) < rounds:
                    results[key] = None
                    continue
                results[key] = {op: {k: median([g[op][k] for g in got])
                                     for k in ("mbps", "cpu", "rss")}
                                for op in ("set", "update", "get")}
                log("# %s %s %-14s %s" % (size_name(size), tr, server, "  ".join(
                    "%s %.0f MB/s %.2f s/GiB %.2fx" % (op, v["mbps"], v["cpu"], v["rss"])
                    for op, v in results[key].items())))
            if size <= strace_max:
                for server in servers:
                    s = one(lambda srv: phases(srv, bindir, tls, size, 1, "t", trace=work),
                            server, tls, size)
                    if s is not None and results.get((size, tr, server)):
                        for op in s:
                            results[(size, tr, server)][op]["sys"] = s[op]["sys"]
            log("# %s %s done in %.0f s, load %s" % (size_name(size), tr,
                                                     time.monotonic() - t0, loadavg()))
    if do_1k:
        t0 = time.monotonic()
        pair = ["alpcrund memory", "grpc-go"]
        runs = lib.in_turns(pair, rounds_1k, lambda s, tag: one(
            lambda srv: get1k(srv, bindir, certs, n1k, conns, callers),
            os.path.basename(s), certs, 64 * MiB))
        for server in pair:
            got = [r for r in runs[server] if r is not None]
            results[("1k", "tls", server)] = None if len(got) < rounds_1k else {
                k: median([g[k] for g in got]) for k in ("rps", "cpu_us")}
            log("# 1 KiB TLS %s: %s" % (server, results[("1k", "tls", server)]))
        log("# 1 KiB done in %.0f s, load %s" % (time.monotonic() - t0, loadavg()))
    return results, fails


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def fmt(v, spec):
    return "-" if v is None else spec % v


def table(results, sizes, transports, backends, out=sys.stdout):
    head = ["payload", "transport", "op", "server", "MB/s", "CPU s/GiB",
            "peak RSS x payload", "syscalls/GiB", "x grpc-go", "goal", "met"]
    rows = [head]
    servers = ["alpcrund " + b for b in backends] + ["grpc-go"]
    for size in sizes:
        for tr in transports:
            for op in ("set", "update", "get"):
                ref = (results.get((size, tr, "grpc-go")) or {}).get(op)
                for server in servers:
                    r = results.get((size, tr, server))
                    cell = [size_name(size), "TLS" if tr == "tls" else "cleartext", op,
                            server]
                    if r is None:
                        rows.append(cell + ["FAILED"] + ["-"] * 6)
                        continue
                    v = r[op]
                    ratio = v["mbps"] / ref["mbps"] if ref and server != "grpc-go" else None
                    goals, met = [], []
                    rg = RATIO_GOALS.get((op, tr)) if server != "grpc-go" and \
                        size == 64 * MiB else None
                    if rg and ratio is not None:
                        goals.append(">=%gx" % rg)
                        met.append("yes" if ratio >= rg else "NO")
                    cg = CPU_GOALS.get((op, tr)) if server == "alpcrund memory" else None
                    if cg:
                        goals.append("<=%g s" % cg)
                        met.append("yes" if v["cpu"] <= cg else "NO")
                    rows.append(cell + [fmt(v["mbps"], "%.0f"), fmt(v["cpu"], "%.2f"),
                                        fmt(v["rss"], "%.2f"),
                                        fmt(v.get("sys"), "%.0f"),
                                        fmt(ratio, "%.2fx"), ", ".join(goals) or "-",
                                        ", ".join(met) or "-"])
    _print(rows, out)
    k = [key for key in results if key[0] == "1k"]
    if k:
        print(file=out)
        rows = [["1 KiB Get, TLS", "server", "req/s", "CPU us/Get", "x grpc-go", "goal",
                 "met"]]
        ref = results.get(("1k", "tls", "grpc-go"))
        for server in ("alpcrund memory", "grpc-go"):
            r = results.get(("1k", "tls", server))
            if r is None:
                rows.append(["", server, "FAILED", "-", "-", "-", "-"])
                continue
            ratio = r["rps"] / ref["rps"] if ref and server != "grpc-go" else None
            rows.append(["", server, "%.0f" % r["rps"], "%.1f" % r["cpu_us"],
                         fmt(ratio, "%.2fx"), ">=2x" if ratio is not None else "-",
                         ("yes" if ratio >= 2 else "NO") if ratio is not None else "-"])
        _print(rows, out)


def _print(rows, out):
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("| " + " | ".join(x.ljust(w[i]) for i, x in enumerate(r)) + " |", file=out)
        if r is rows[0]:
            print("|" + "|".join("-" * (x + 2) for x in w) + "|", file=out)


def main():
    ap = argparse.ArgumentParser(description="large payloads, alpcrund against a "
                                 "minimal grpc-go server; see bench/README.md")
    ap.add_argument("--alpcrund", default=os.environ.get("ALPCRUND") or "./alpcrund",
                    help="the daemon (default: $ALPCRUND, else ./alpcrund)")
    ap.add_argument("--sizes", default="64m,1g", help="payload sizes (default 64m,1g)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds for sizes under 1 GiB (default 3)")
    ap.add_argument("--big-rounds", type=int, default=1,
                    help="rounds for sizes of 1 GiB and more (default 1)")
    ap.add_argument("--n", type=int, default=3,
                    help="operations per phase under 1 GiB (default 3; 1 GiB: 1)")
    ap.add_argument("--transports", default="clear,tls")
    ap.add_argument("--backends", default="memory,lmdb")
    ap.add_argument("--strace-max", default="64m",
                    help="syscall counts for sizes up to this (default 64m)")
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--no-1k", action="store_true", help="skip the 1 KiB TLS Gets")
    ap.add_argument("--n1k", type=int, default=100000, help="1 KiB Gets per run")
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--callers", type=int, default=64)
    ap.add_argument("--quick", action="store_true",
                    help="1 round, 64 MiB only, fewer 1 KiB Gets")
    ap.add_argument("--gocache", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "alpcrund-bench"), help="where the Go programs are built")
    ap.add_argument("--dir", default=None, help="where the servers keep their files")
    a = ap.parse_args()
    binary = os.path.abspath(a.alpcrund)
    if not os.access(binary, os.X_OK):
        raise SystemExit("no daemon at %s (--alpcrund or $ALPCRUND)" % binary)
    for tool in ("openssl", "strace"):
        if not shutil.which(tool):
            raise SystemExit("%s not found (scripts/install-deps)" % tool)
    if a.quick:
        a.sizes, a.rounds, a.n1k = "64m", 1, 30000
    sizes = [parse_size(s) for s in a.sizes.split(",") if s]
    transports = [t for t in a.transports.split(",") if t]
    backends = [b for b in a.backends.split(",") if b]
    os.makedirs(a.gocache, exist_ok=True)
    bindir = build_goref(a.gocache)
    work = tempfile.mkdtemp(prefix="alpcrund-bigload.", dir=a.dir)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load0 = loadavg()
    try:
        results, fails = measure(
            binary, work, bindir, sizes,
            lambda s: a.big_rounds if s >= GiB else a.rounds,
            lambda s: 1 if s >= GiB else a.n, transports, backends,
            -1 if a.no_strace else parse_size(a.strace_max), not a.no_1k, a.n1k,
            a.conns, a.callers, a.rounds, log=lambda s: print(s, flush=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("alpcrund bench/bigload.py, %s; %s; grpc-go client (Debian grpc-go %s)" % (
        started, ", ".join("%s x %d rounds of %d" % (
            size_name(s), a.big_rounds if s >= GiB else a.rounds,
            1 if s >= GiB else a.n) for s in sizes), grpc_version()))
    print("machine: nproc %d, Linux %s; load average %s at start, %s at end"
          % (os.cpu_count(), os.uname().release, load0, loadavg()))
    print()
    table(results, sizes, transports, backends)
    for f in fails:
        print("FAILED %s" % f)
    return 1 if fails else 0


def grpc_version():
    try:
        with open("/usr/share/gocode/src/google.golang.org/grpc/version.go") as f:
            return re.search(r'Version = "([^"]+)"', f.read()).group(1)
    except (OSError, AttributeError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
