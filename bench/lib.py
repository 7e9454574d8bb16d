"""bench/lib.py: what the benchmarks (bench/run, backends.py, node.py)
share: alpcrund started on loopback with a temporary configuration, gRPC
stubs and channels, the /metrics scrape, h2load runs that are checked
against the daemon's own counters and the bytes received, and a bulk
loader for millions of small Sets.

Not a test helper: nothing here asserts; a run that does not check out
raises BenchFailed, which the caller reports (bench/run prints FAILED in
the table instead of a number).

Only the standard library and Debian's python3-grpcio, python3-protobuf,
python3-hpack (with python3-h2), protobuf-compiler-grpc and nghttp2-client
(h2load) are used.
"""
import http.client
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.path.join(HERE, ".."))
MiB = 1 << 20
GiB = 1 << 30


class BenchFailed(Exception):
    """A run whose replies did not check out (status, count or bytes)."""


def make_cert(work):
    """A self-signed P-256 certificate for 127.0.0.1; (cert, key) paths."""
    cert, key = os.path.join(work, "bench.pem"), os.path.join(work, "bench.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out",
                    cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def gen_stubs(outdir):
    """Generate the Python gRPC stubs of proto/ into outdir and import from
    there (alpcrun.v1.cache_pb2, cache_pb2_grpc)."""
    os.makedirs(outdir, exist_ok=True)
    subprocess.run(
        ["protoc", "-I" + os.path.join(TOP_SRCDIR, "proto"), "-I/usr/include",
         "--python_out=" + outdir, "--grpc_out=" + outdir,
         "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
         "alpcrun/v1/cache.proto"], check=True)
    sys.path.insert(0, outdir)


_handed_out = set()


def free_port():
    """A loopback TCP port nothing is bound to now and not handed out
    before by this process (bind(0) alone can give the same port twice in
    a row). The same rule as tests/integration/alptest.py's free_port,
    which the benchmarks cannot import: it needs the test stubs built."""
    held = []
    try:
        for _ in range(1000):
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
            if p not in _handed_out:
                _handed_out.add(p)
                return p
    finally:
        for s in held:
            s.close()
    raise OSError("free_port: 1000 ports from bind(0), all handed out already")


def wait_port(port, proc=None, timeout=30, what="server"):
    """Poll until something accepts on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise SystemExit("%s exited at start" % what)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("%s did not start on port %d" % (what, port))
        time.sleep(0.05)


def stop_proc(proc, timeout=120):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid):
    """User plus system CPU time a process has used, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    """Resident set size of a process, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise SystemExit("no VmRSS for pid %d" % pid)


class Daemon:
    """alpcrund on loopback with a configuration of its own in
    workdir/name; extra is appended to the configuration (@DIR@ names that
    directory); wrap is a command line to run it under (valgrind ...).
    Returns once /readyz answers 200."""

    def __init__(self, binary, workdir, name, extra="", wrap=""):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.port, self.mport = free_port(), free_port()
        conf = os.path.join(self.dir, "alpcrund.conf")
        with open(conf, "w") as f:
            f.write("listen 127.0.0.1:%d\nmetrics_listen 127.0.0.1:%d\n"
                    "max_ttl 1h\ndefault_ttl 1h\nlog_level warn\n%s\n"
                    % (self.port, self.mport, extra.replace("@DIR@", self.dir)))
        self.log = open(os.path.join(self.dir, "alpcrund.log"), "wb")
        self.proc = subprocess.Popen(wrap.split() + [binary, "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + (120 if wrap else 30)
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("alpcrund exited at start: see %s" % self.log.name)
            try:
                if self.http("/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("alpcrund did not become ready: see %s"
                                 % self.log.name)
            time.sleep(0.05)
        self.addr = "127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid

    def rss(self):
        return rss_bytes(self.proc.pid)

    def http(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.mport, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def metric(self, name, **labels):
        """The sum of every sample of name whose labels include labels."""
        return metric_sum(self.http("/metrics")[1], name, **labels)

    def ok(self, method):
        """alpcrund_requests_total{method=method,code="OK"}."""
        return self.metric("alpcrund_requests_total", method=method, code="OK")

    def stop(self, remove=True):
        stop_proc(self.proc)
        self.log.close()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)


def in_turns(bins, rounds, fn):
    """Run fn(path, tag) for every build of bins, rounds times, the order
    swapped each round so that the machine's drift hits all of them;
    returns {build: [fn's results]}. tag names the run ("ROUND-INDEX")."""
    runs = {b: [] for b in bins}
    for r in range(rounds):
        for b in (bins if r % 2 == 0 else list(reversed(bins))):
            runs[b].append(fn(os.path.abspath(b), "%d-%d" % (r, bins.index(b))))
    return runs


def metric_sum(body, name, **labels):
    total = 0.0
    for line in body.splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)', line)
        if not m or m.group(1) != name:
            continue
        lab = m.group(2) or ""
        if all('%s="%s"' % kv in lab for kv in labels.items()):
            total += float(m.group(3))
    return total


# --- gRPC ----------------------------------------------------------------------

def channel(addr):
    import grpc
    return grpc.insecure_channel(addr, options=[
        ("grpc.max_send_message_length", 300 * MiB),
        ("grpc.max_receive_message_length", 300 * MiB),
        ("grpc.use_local_subchannel_pool", 1)])


def stub(addr):
    from alpcrun.v1 import cache_pb2_grpc
    return cache_pb2_grpc.CacheStub(channel(addr))


def sd(sid, level=None, payload=b"", ttl=3600):
    from alpcrun.v1 import cache_pb2
    m = cache_pb2.SharedData(session_id=sid, payload=payload)
    if level is not None:
        m.update_level = level
    if ttl:
        m.ttl.seconds = ttl
    return m


def grpc_frame(body):
    """One uncompressed gRPC message: 0x00, big-endian u32 length, body."""
    return struct.pack(">BI", 0, len(body)) + body


def body_file(workdir, msg, tag=None):
    """Write msg as a gRPC-framed request body for h2load's -d; returns
    the path."""
    path = os.path.join(workdir, "body-%s.bin" % (tag or msg.session_id))
    with open(path, "wb") as f:
        f.write(grpc_frame(msg.SerializeToString()))
    return path


def get_reply_bounds(sid, level, payload_len):
    """(lo, hi): DATA bytes of one GetSharedData reply, gRPC prefix
    included. Only the remaining TTL (a Duration of 2 to 14 bytes on the
    wire) varies from one reply to the next."""
    from alpcrun.v1 import cache_pb2
    m = cache_pb2.SharedData(session_id=sid, update_level=level,
                             payload=b"\0" * payload_len)
    base = 5 + m.ByteSize()
    return base + 2, base + 2 + 6 + 6


# --- h2load --------------------------------------------------------------------

class H2Result:
    def __init__(self, text, took):
        self.text = text
        self.took = took            # wall seconds, h2load process included
        m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
        self.secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        self.rps = float(m.group(3))
        m = re.search(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers.*?"
                      r"\((\d+)\) data", text)
        self.data_bytes = int(m.group(3)) if m else -1

    @property
    def mbps(self):
        """Reply DATA bytes per second, in MiB/s."""
        return self.data_bytes / self.secs / MiB


def h2load(d, body, n, conns, streams, method="GetSharedData", log=None,
           reply_bounds=None, timeout=900, extra=(), prefix=()):
    """Run h2load against daemon d with request body file body (n requests,
    conns connections x streams streams each) and check that the daemon
    answered exactly n requests of method, every one with grpc-status OK,
    and (reply_bounds (lo, hi) per reply) that the DATA bytes received fit.
    h2load itself counts any HTTP 200 as a success. Returns an H2Result;
    raises BenchFailed. prefix runs h2load under a command (ip netns exec
    NS)."""
    before_ok = d.ok(method)
    before_all = d.metric("alpcrund_requests_total", method=method)
    cmd = list(prefix) + ["h2load", "-n", str(n), "-c", str(conns), "-m", str(streams), "-d", body,
           "-H", "content-type: application/grpc", "-H", "te: trailers"]
    cmd += list(extra)
    if log:
        cmd += ["--log-file", log]
    cmd.append("http://%s/alpcrun.v1.Cache/%s" % (d.addr, method))
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - t0
    text = out.stdout + out.stderr
    if out.returncode != 0 or not re.search(
            r"requests: %d total.* %d succeeded" % (n, n), text):
        raise BenchFailed("h2load did not complete:\n" + text[-2000:])
    ok = d.ok(method) - before_ok
    total = d.metric("alpcrund_requests_total", method=method) - before_all
    if ok != n or total != n:
        raise BenchFailed("h2load: %d %s requests, but the daemon answered %d, "
                          "%d with grpc-status OK" % (n, method, total, ok))
    r = H2Result(text, took)
    if reply_bounds is not None:
        lo, hi = reply_bounds
        if not n * lo <= r.data_bytes <= n * hi:
            raise BenchFailed("h2load: %d replies carried %d DATA bytes, "
                              "expected %d to %d" % (n, r.data_bytes, n * lo, n * hi))
    return r


def log_durations_us(path):
    """Per-request durations (microseconds) from h2load's --log-file
    (start time, status, duration per line), sorted."""
    durs = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                durs.append(int(parts[2]))
    durs.sort()
    return durs


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[k]


def median(vals):
    s = sorted(vals)
    if not s:
        return float("nan")
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


# --- bulk loading ----------------------------------------------------------------

def bulk_set(addr, count, payload, prefix="m", inflight=100, ttl=3600):
    """count SetSharedData calls of payload (small: it must fit a DATA
    frame), session ids prefix + a fixed-width counter, on one HTTP/2
    connection with up to inflight streams open: h2load repeats one body
    and grpcio manages some thousands of calls a second, which would make
    a million entries take minutes. The request header block is HPACK-
    encoded once (never-indexed, so it does not depend on the decoder's
    state); replies are only counted (a stream ends with END_STREAM on
    HEADERS or DATA, or with RST_STREAM): check their status with the
    daemon's requests_total. Returns the seconds taken."""
    import hpack
    width = len(str(count - 1))
    path = "/alpcrun.v1.Cache/SetSharedData"
    block = hpack.Encoder().encode([
        (":method", "POST", True), (":scheme", "http", True),
        (":path", path, True), (":authority", addr, True),
        ("content-type", "application/grpc", True), ("te", "trailers", True)])
    tmpl = sd(prefix + "0" * width, 1, payload, ttl).SerializeToString()
    idpos = tmpl.index((prefix + "0" * width).encode()) + len(prefix)
    framed = grpc_frame(tmpl)
    idpos += 5
    if len(framed) > 16384:
        raise SystemExit("bulk_set: payload too large for one DATA frame")
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def frame(ftype, flags, sid, data):
        return struct.pack(">I", len(data))[1:] + struct.pack(">BBI", ftype, flags,
                                                              sid) + data
    # our SETTINGS: the largest stream window; then the connection window
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
              frame(4, 0, 0, struct.pack(">HI", 4, 0x7fffffff)) +
              frame(8, 0, 0, struct.pack(">I", 0x7fffffff - 65535)))
    window = 65535          # the server's connection window for our DATA
    buf = b""
    sent = done = 0
    open_streams = 0
    hdr_frame = struct.pack(">I", len(block))[1:] + b"\x01\x04"
    data_frame = struct.pack(">I", len(framed))[1:] + b"\x00\x01"
    t0 = time.monotonic()
    while done < count:
        out = []
        while sent < count and open_streams < inflight and window >= len(framed):
            sid = 2 * sent + 1
            body = (framed[:idpos] + str(sent).zfill(width).encode() +
                    framed[idpos + width:])
            sidb = struct.pack(">I", sid)
            out.append(hdr_frame + sidb + block + data_frame + sidb + body)
            window -= len(framed)
            sent += 1
            open_streams += 1
        if out:
            s.sendall(b"".join(out))
        chunk = s.recv(1 << 20)
        if not chunk:
            raise BenchFailed("bulk_set: the server closed the connection after "
                              "%d replies" % done)
        buf += chunk
        pos = 0
        reply = []
        while len(buf) - pos >= 9:
            ln = int.from_bytes(buf[pos:pos + 3], "big")
            if len(buf) - pos < 9 + ln:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            if ftype in (0, 1) and flags & 1 or ftype == 3:
                done += 1
                open_streams -= 1
            elif ftype == 4 and not flags & 1:
                reply.append(frame(4, 1, 0, b""))
            elif ftype == 6 and not flags & 1:
                reply.append(frame(6, 1, 0, buf[pos + 9:pos + 17]))
            elif ftype == 8 and int.from_bytes(buf[pos + 5:pos + 9], "big") == 0:
                window += int.from_bytes(buf[pos + 9:pos + 13], "big") & 0x7fffffff
            elif ftype == 7:
                raise BenchFailed("bulk_set: GOAWAY after %d replies" % done)
            pos += 9 + ln
        buf = buf[pos:]
        if reply:
            s.sendall(b"".join(reply))
    took = time.monotonic() - t0
    s.close()
    return took


def stream_get(addr, body, n, bounds, max_frame=1 << 20, warmup=1):
    """n GetSharedData calls, one at a time on one HTTP/2 connection, of
    request body (gRPC-framed) as a lean reader: h2load reads its socket
    in small pieces and spends more CPU per byte than the daemon does
    sending them (bench/README.md), which made a 64 MiB Get measure
    h2load. This client announces SETTINGS_MAX_FRAME_SIZE max_frame and
    windows of 2^31-1, receives into a 128 KiB buffer (as iperf3 does: the
    copy stays in the cache; 4 MiB cost twice the CPU), parses only frame
    headers (payload bytes are counted, never copied); header blocks go
    through hpack to check :status 200 and grpc-status 0 on every reply,
    and each reply's DATA bytes must lie within bounds (lo, hi). The first
    warmup replies are not timed (TCP's windows grow on a new connection,
    as iperf3's do during its first second). Returns (seconds from the
    first timed request to the last trailers, DATA bytes of the timed
    replies); raises BenchFailed."""
    import hpack
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def frame(ftype, flags, sid, data):
        return struct.pack(">I", len(data))[1:] + struct.pack(">BBI", ftype, flags,
                                                              sid) + data
    enc, dec = hpack.Encoder(), hpack.Decoder()
    dec.max_allowed_table_size = 65536
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
              frame(4, 0, 0, struct.pack(">HIHI", 4, 0x7fffffff, 5, max_frame)) +
              frame(8, 0, 0, struct.pack(">I", 0x7fffffff - 65535)))
    buf = bytearray(128 << 10)     # as iperf3: the copy stays in cache
    view = memoryview(buf)
    pend = b""              # a frame header or header block in pieces
    skip = 0                # DATA payload bytes still to come
    skip_sid = 0
    total = 0
    t0 = time.monotonic()
    for i in range(n + warmup):
        if i == warmup:
            t0 = time.monotonic()
            total = 0
        sid = 2 * i + 1
        block = enc.encode([(":method", "POST"), (":scheme", "http"),
                            (":path", "/alpcrun.v1.Cache/GetSharedData"),
                            (":authority", addr), ("content-type", "application/grpc"),
                            ("te", "trailers")])
        s.sendall(frame(1, 4, sid, block) + frame(0, 1, sid, body))
        got = 0
        status = grpc_status = None
        done = False
        while not done:
            k = s.recv_into(buf)
            if k == 0:
                raise BenchFailed("stream_get: connection closed")
            pos = 0
            while pos < k and not done:
                if skip:
                    m = min(skip, k - pos)
                    if skip_sid == sid:
                        got += m
                    skip -= m
                    pos += m
                    continue
                if not pend and k - pos >= 9:
                    # the common case, a whole frame header in the buffer:
                    # no copies (a Python step per 16 KiB frame is what
                    # this reader costs)
                    ln = buf[pos] << 16 | buf[pos + 1] << 8 | buf[pos + 2]
                    if buf[pos + 3] == 0:
                        if buf[pos + 4] & 9:
                            raise BenchFailed("stream_get: padded or ending DATA")
                        skip = ln
                        skip_sid = int.from_bytes(buf[pos + 5:pos + 9], "big")
                        pos += 9
                        continue
                    m = min(9 + ln, k - pos)
                    pend = bytes(buf[pos:pos + m])
                    pos += m
                else:
                    need = 9 if len(pend) < 9 else 9 + int.from_bytes(pend[:3], "big")
                    m = min(need - len(pend), k - pos)
                    pend += view[pos:pos + m].tobytes()
                    pos += m
                if len(pend) < 9:
                    continue
                ln = int.from_bytes(pend[:3], "big")
                ftype, flags, fsid = pend[3], pend[4], int.from_bytes(pend[5:9], "big")
                if ftype == 0:                  # DATA: count, never copy
                    if flags & 9:
                        raise BenchFailed("stream_get: padded or ending DATA")
                    skip, skip_sid = ln - (len(pend) - 9), fsid
                    if skip_sid == sid:
                        got += len(pend) - 9
                    pend = b""
                    continue
                if len(pend) < 9 + ln:
                    continue
                payload = pend[9:]
                pend = b""
                if ftype == 1:                  # HEADERS (no CONTINUATION here)
                    if not flags & 4:
                        raise BenchFailed("stream_get: CONTINUATION not handled")
                    if flags & 0x20:
                        payload = payload[5:]
                    if flags & 8:
                        payload = payload[1:len(payload) - payload[0]]
                    hdrs = dict(dec.decode(payload))
                    if ":status" in hdrs:
                        status = hdrs[":status"]
                    if "grpc-status" in hdrs:
                        grpc_status = hdrs["grpc-status"]
                    if flags & 1 and fsid == sid:
                        done = True
                elif ftype == 4 and not flags & 1:
                    s.sendall(frame(4, 1, 0, b""))
                elif ftype == 6 and not flags & 1:
                    s.sendall(frame(6, 1, 0, payload))
                elif ftype in (3, 7):
                    raise BenchFailed("stream_get: %s from the server" %
                                      ("RST_STREAM" if ftype == 3 else "GOAWAY"))
        if status != "200" or grpc_status != "0":
            raise BenchFailed("stream_get: reply %d: :status %s, grpc-status %s"
                              % (i, status, grpc_status))
        if not bounds[0] <= got <= bounds[1]:
            raise BenchFailed("stream_get: reply %d carried %d DATA bytes, expected "
                              "%d to %d" % (i, got, bounds[0], bounds[1]))
        total += got
        # give the connection window back
        s.sendall(frame(8, 0, 0, struct.pack(">I", got)))
    took = time.monotonic() - t0
    s.close()
    return took, total
