"""alptest.py: shared helpers of the integration suite (no fixtures here).

- where things are (ALPCRUND, TOP_SRCDIR, TOP_BUILDDIR, the generated stubs);
- a protobuf wire encoder for SharedData that can write what the Python
  protobuf API refuses (embedded NUL, invalid UTF-8, negative durations);
- gRPC message framing;
- TLS certificates made with the openssl command (PKI; conftest.py's pki
  fixture), the config lines that use them and grpcio channels over TLS;
- RawH2: a small HTTP/2 client on a raw socket (hyperframe for frames, hpack
  for headers) that records every frame, for wire tests grpcio cannot do.

Only the standard library and Debian's python3-grpcio, python3-protobuf,
python3-hyperframe and python3-hpack are used (scripts/install-deps).
"""
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

import grpc

import hpack
from hyperframe.frame import (
    ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
    PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame,
)

# --- Where things are --------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.environ.get("TOP_SRCDIR") or os.path.abspath(
    os.path.join(HERE, "..", ".."))
TOP_BUILDDIR = os.environ.get("TOP_BUILDDIR") or TOP_SRCDIR
ALPCRUND = os.environ.get("ALPCRUND") or os.path.join(TOP_BUILDDIR, "alpcrund")
GEN = os.path.join(TOP_BUILDDIR, "tests", "integration", "gen")

MiB = 1 << 20

# configure --enable-sanitizers runs the suite with ALPCRUND_SANITIZED=1:
# ASan's shadow memory and quarantine make the largest payloads slow and
# heavy, so tests size them with big_mib().
SANITIZED = os.environ.get("ALPCRUND_SANITIZED", "0") not in ("", "0")
SANITIZED_MIB = 32


def big_mib(mib):
    """A large payload size in MiB: mib, or at most 32 under sanitizers."""
    return min(mib, SANITIZED_MIB) if SANITIZED else mib


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_report(log, lines=60):
    """The first ASan, LSan or UBSan report in a daemon's log (its stderr),
    as text, or None. conftest fails a test whose daemon printed one."""
    text = log.splitlines()
    for i, line in enumerate(text):
        if any(m in line for m in SANITIZER_MARKS):
            return "\n".join(text[max(0, i - 2):i + lines])
    return None

# The generated stubs live in GEN (tests/integration/run makes them).
# grpc/health/v1/health_pb2*.py sits under a directory named "grpc", which is
# also the name of the installed grpcio package: extend that package's search
# path so that `grpc.health.v1` resolves to the generated files.
if GEN not in sys.path:
    sys.path.insert(0, GEN)
if os.path.join(GEN, "grpc") not in grpc.__path__:
    grpc.__path__.append(os.path.join(GEN, "grpc"))

# Re-exported for the tests and conftest.py.
from alpcrun.v1 import cache_pb2, cache_pb2_grpc  # noqa: E402,F401
from grpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402,F401
from google.protobuf import empty_pb2  # noqa: E402,F401

SharedData = cache_pb2.SharedData

SET = "/alpcrun.v1.Cache/SetSharedData"
UPDATE = "/alpcrun.v1.Cache/UpdateSharedData"
GET = "/alpcrun.v1.Cache/GetSharedData"
DELETE = "/alpcrun.v1.Cache/DeleteSharedData"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"

MAX_U32 = 4294967295

# The channel options of every grpcio channel the tests open (conftest's
# Daemon.channel, tls_channel below).
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 300 * MiB),
    ("grpc.max_receive_message_length", 300 * MiB),
    # One TCP connection per channel: grpcio otherwise shares subchannels
    # between channels with identical arguments.
    ("grpc.use_local_subchannel_pool", 1),
]

# gRPC status codes by number, and the names the daemon's metrics use.
CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}

# --- SharedData construction --------------------------------------------------


def sd(session_id, level=None, payload=b"", ttl=None):
    """A SharedData; level None leaves update_level absent; ttl is seconds
    (int/float) or a (seconds, nanos) tuple, None leaves it absent."""
    m = SharedData(session_id=session_id, payload=payload)
    if level is not None:
        m.update_level = level
    if ttl is not None:
        if isinstance(ttl, tuple):
            m.ttl.seconds, m.ttl.nanos = ttl
        else:
            m.ttl.seconds = int(ttl)
            m.ttl.nanos = int(round((ttl - int(ttl)) * 1e9))
    return m


def ttl_seconds(m):
    return m.ttl.seconds + m.ttl.nanos / 1e9


# --- Protobuf wire encoding by hand ---------------------------------------------


def varint(n):
    if n < 0:
        n &= (1 << 64) - 1      # int64/int32 negatives: 10-byte two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, value):
    return varint(num << 3 | 0) + varint(value)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def encode_duration(seconds, nanos):
    out = b""
    if seconds:
        out += field_varint(1, seconds)
    if nanos:
        out += field_varint(2, nanos)
    return out


def encode_shared(session_id=b"", level=None, payload=b"", ttl=None):
    """SharedData bytes written by hand: session_id may be any bytes."""
    if isinstance(session_id, str):
        session_id = session_id.encode()
    out = b""
    if session_id:
        out += field_bytes(1, session_id)
    if level is not None:
        out += field_varint(2, level)
    if payload:
        out += field_bytes(3, payload)
    if ttl is not None:
        out += field_bytes(4, encode_duration(*ttl))
    return out


def raw_unary(channel, path):
    """A unary callable that sends and returns raw message bytes."""
    return channel.unary_unary(path)


# --- gRPC framing ----------------------------------------------------------------


def grpc_frame(body, flag=0, length=None):
    return struct.pack(">BI", flag, len(body) if length is None else length) + body


def grpc_unframe(data):
    """Split a DATA byte stream into [(flag, body)]; a trailing partial
    message raises ValueError."""
    out, i = [], 0
    while i < len(data):
        if len(data) - i < 5:
            raise ValueError("partial gRPC prefix")
        flag, n = struct.unpack(">BI", data[i:i + 5])
        if len(data) - i - 5 < n:
            raise ValueError("partial gRPC message")
        out.append((flag, bytes(data[i + 5:i + 5 + n])))
        i += 5 + n
    return out


def stamped_payload(mib):
    """mib MiB: one random 1 MiB block repeated, each copy stamped with its
    index (front and back) so that a misplaced or repeated block is caught."""
    block = bytearray(os.urandom(MiB))
    parts = []
    for i in range(mib):
        stamp = struct.pack(">QQ", i, i ^ 0xA5A5A5A5A5A5A5A5)
        block[0:16] = stamp
        block[-16:] = stamp
        parts.append(bytes(block))
    return b"".join(parts)


# --- TLS certificates ------------------------------------------------------------
# Made with the openssl command, once per session (conftest.py's pki fixture):
# a CA ("ca"), a server certificate for localhost and 127.0.0.1 ("server"),
# a client certificate ("client"), a second CA with a server and a client
# certificate of its own ("ca2", "server2", "client2") and an expired
# server certificate ("expired"). Used by tls/ and by node/'s TLS runs.


class PKI:
    def __init__(self, d):
        self.dir = d

    def path(self, name):
        return os.path.join(self.dir, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def openssl(self, *args):
        subprocess.run(["openssl"] + list(args), cwd=self.dir, check=True,
                       capture_output=True, timeout=60)

    def ca(self, name, cn):
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "30",
                     "-subj", "/CN=" + cn)

    def leaf(self, name, cn, ca, ext, days="30"):
        with open(self.path(name + ".ext"), "w") as f:
            f.write(ext)
        self.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)
        self.openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey",
                     ca + ".key", "-CAcreateserial", "-out", name + ".pem", "-days", days,
                     "-extfile", name + ".ext")


SERVER_EXT = ("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
              "extendedKeyUsage=serverAuth\n")
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


def make_pki(d):
    """The certificates above, made in directory d; returns the PKI."""
    p = PKI(d)
    p.ca("ca", "alpcrund test CA")
    p.leaf("server", "localhost", "ca", SERVER_EXT)
    p.leaf("client", "alp-client", "ca", CLIENT_EXT)
    p.ca("ca2", "another CA")
    p.leaf("server2", "localhost", "ca2", SERVER_EXT)
    p.leaf("client2", "other-client", "ca2", CLIENT_EXT)
    p.leaf("expired", "localhost", "ca", SERVER_EXT, days="-1")
    return p


def tls_lines(pki, server="server", client_ca=None):
    """Config lines for a TLS listener with pki's certificate server (and
    client certificates checked against client_ca, when given)."""
    text = "tls_cert %s\ntls_key %s\n" % (pki.path(server + ".pem"), pki.path(server + ".key"))
    if client_ca:
        text += "tls_client_ca %s\n" % pki.path(client_ca + ".pem")
    return text


def upstream_lines(pki, cert="client", ca="ca", name=None):
    """Config lines for a node's TLS link to central: trusting ca, with the
    client certificate cert (None: none), checking the server name name."""
    text = "upstream_tls on\nupstream_ca %s\n" % pki.path(ca + ".pem")
    if cert:
        text += "upstream_cert %s\nupstream_key %s\n" % (pki.path(cert + ".pem"),
                                                        pki.path(cert + ".key"))
    if name:
        text += "upstream_server_name %s\n" % name
    return text


def tls_channel(d, pki, ca="ca", cert=None, name="localhost"):
    """A grpcio channel over TLS to daemon d, trusting ca, with the client
    certificate cert (None: none), checking the server's name; closed with
    d's channels."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.read(ca + ".pem"),
        private_key=pki.read(cert + ".key") if cert else None,
        certificate_chain=pki.read(cert + ".pem") if cert else None)
    ch = grpc.secure_channel(d.addr, creds, options=CHANNEL_OPTIONS + [
        ("grpc.ssl_target_name_override", name)])
    d._channels.append(ch)
    return ch


def tls_stub(d, pki, **kw):
    return cache_pb2_grpc.CacheStub(tls_channel(d, pki, **kw))


# --- Polling ---------------------------------------------------------------------


def rss_bytes(pid, field="VmRSS"):
    """The resident set size of process pid, in bytes (field "VmHWM": its
    peak so far)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no %s for %d" % (field, pid))


def tcp_row(server_port, client_port):
    """The fields of the server's side of the loopback connection from
    client_port to server_port in /proc/net/tcp."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.split(":")[1], 16) == server_port and
                    int(remote.split(":")[1], 16) == client_port):
                return fields
    raise AssertionError("no TCP connection 127.0.0.1:%d <- :%d in /proc/net/tcp"
                         % (server_port, client_port))


def held_by_zero_window(server_port, client_port):
    """True when the loopback connection from client_port to server_port
    has bytes on the server's side that the client's zero receive window
    holds back: the kernel's zero-window probe timer is armed on the
    server's socket (timer 4 in /proc/net/tcp). A sender in that state
    cannot pass anything more to that client until it reads."""
    return tcp_row(server_port, client_port)[5].split(":")[0] == "04"


def server_rx_queue(server_port, client_port):
    """Bytes the kernel holds for the daemon on the loopback connection
    from client_port to server_port, not yet read by the daemon
    (rx_queue of /proc/net/tcp)."""
    return int(tcp_row(server_port, client_port)[4].split(":")[1], 16)


def start_set_flood(d, body, scheme="http"):
    """h2load uploading the gRPC request in file body to d's SetSharedData
    back to back on one connection, as fast as the windows let it, until
    killed: a sender that never stops."""
    return subprocess.Popen(
        ["h2load", "-n", "100000", "-c", "1", "-m", "1", "-d", str(body),
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "%s://%s/alpcrun.v1.Cache/SetSharedData" % (scheme, d.addr)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# The slowest answer a prober accepts during an attack, in seconds.
PROBE_LIMIT = 6.0 if SANITIZED else 3.0


class GetProber(threading.Thread):
    """During an attack: /healthz and a GetSharedData hit of "victim" (which
    must return payload) every 50 ms, over a channel of its own (channel():
    made and closed in the thread; default cleartext to d.addr); keeps the
    failures, the slowest round and the number of rounds."""

    def __init__(self, d, payload, channel=None):
        super().__init__(daemon=True)
        self.d, self.payload = d, payload
        self.channel = channel or (lambda: grpc.insecure_channel(
            d.addr, options=[("grpc.use_local_subchannel_pool", 1)]))
        self.stop = threading.Event()
        self.failures = []
        self.worst = 0.0
        self.rounds = 0

    def run(self):
        ch = self.channel()
        stub = cache_pb2_grpc.CacheStub(ch)
        try:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    st, _ = self.d.http_get("/healthz", timeout=PROBE_LIMIT)
                    assert st == 200, "/healthz answered %d" % st
                    r = stub.GetSharedData(sd("victim"), timeout=PROBE_LIMIT)
                    assert r.payload == self.payload
                except Exception as e:     # noqa: BLE001 - every failure counts
                    self.failures.append("%.2fs: %r" % (time.monotonic() - t0, e))
                self.worst = max(self.worst, time.monotonic() - t0)
                self.rounds += 1
                self.stop.wait(0.05)
        finally:
            ch.close()


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value (returned) or the deadline
    passes (AssertionError). No fixed sleeps anywhere else."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
            last_exc = None
        except AssertionError as e:
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += ": %s" % last_exc
            raise AssertionError(msg)
        time.sleep(interval)


_handed_out = set()
_handed_out_lock = threading.Lock()


def free_port():
    """A loopback TCP port that nothing is bound to now and that this
    process has not handed out before.

    A port from bind(0) is free again as soon as the probing socket
    closes, so two calls in a row could return the same number (a daemon
    given it for both listen and metrics_listen then fails, "Address
    already in use"). Every port handed out is remembered for the life of
    the process; one seen before stays bound while the kernel is asked
    again, so the next bind(0) cannot return it either."""
    with _handed_out_lock:
        held = []
        try:
            for _ in range(1000):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(s)
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
                if port not in _handed_out:
                    _handed_out.add(port)
                    return port
        finally:
            for s in held:
                s.close()
    raise OSError("free_port: 1000 ports from bind(0), all handed out already")


# --- Raw HTTP/2 client ----------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

H2_NO_ERROR = 0x0
H2_PROTOCOL_ERROR = 0x1
H2_CANCEL = 0x8
H2_REFUSED_STREAM = 0x7
H2_ENHANCE_YOUR_CALM = 0xB

S_HEADER_TABLE_SIZE = 0x1
S_ENABLE_PUSH = 0x2
S_MAX_CONCURRENT_STREAMS = 0x3
S_INITIAL_WINDOW_SIZE = 0x4
S_MAX_FRAME_SIZE = 0x5


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


class Stream:
    def __init__(self, sid):
        self.id = sid
        self.blocks = []        # [(headers list, end_stream)]
        self.data = bytearray()
        self.data_frames = 0
        self.events = []        # ("HEADERS", end) ("DATA", n, end) ("RST", code)
        self.reset = None       # RST_STREAM error code
        self.ended = False      # END_STREAM seen from the server
        self.send_window = 65535

    @property
    def done(self):
        return self.ended or self.reset is not None

    def header(self, name, block=0):
        for k, v in self.blocks[block][0]:
            if k == name:
                return v
        return None

    @property
    def headers(self):
        return dict(self.blocks[0][0]) if self.blocks else {}

    @property
    def trailers(self):
        """The block that carries grpc-status: the trailers, or the only
        block of a Trailers-Only reply."""
        if not self.blocks:
            return {}
        return dict(self.blocks[-1][0])

    @property
    def trailers_only(self):
        return len(self.blocks) == 1 and self.blocks[0][1] and not self.data_frames

    @property
    def grpc_status(self):
        v = self.trailers.get("grpc-status")
        return None if v is None else int(v)

    @property
    def grpc_message(self):
        return self.trailers.get("grpc-message")

    @property
    def messages(self):
        return grpc_unframe(bytes(self.data))

    def __repr__(self):
        return "<stream %d events=%r blocks=%r>" % (
            self.id, self.events[:20], [b for b, _ in self.blocks])


class RawH2:
    """HTTP/2 client on a plain socket, h2c with prior knowledge.

    Every received frame is kept in .frames as (type name, flags, stream id,
    frame object). Server SETTINGS are ACKed and PINGs answered
    automatically; received DATA is credited back with WINDOW_UPDATE unless
    auto_window is False.
    """

    def __init__(self, port, host="127.0.0.1", settings=None, handshake=True,
                 auto_window=True, timeout=10, rcvbuf=None):
        self.port = port
        if rcvbuf:
            # a small receive buffer, set before connect so that it sticks
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inbuf = bytearray()
        self.frames = []
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.server_settings = {}
        self.settings_seen = False
        self.settings_acked = 0
        self.streams = {}
        self.goaways = []       # [(last_stream_id, error_code, debug data)]
        self.closed = False
        self.send_error = None
        self.auto_window = auto_window
        self.conn_send_window = 65535
        self.conn_recv_unacked = 0
        self.next_id = 1
        self._cont = None       # (stream id, flags, block) of a pending CONTINUATION
        self.pings = 0          # PINGs sent by ping()
        if handshake:
            self.send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())
            self.wait(lambda: self.settings_seen, 5, "server SETTINGS")

    # -- sending
    def send(self, data):
        """Write bytes; a peer that already closed is recorded in
        .send_error (the next pump reports the close), not raised."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            self.send_error = e

    def max_frame(self):
        return self.server_settings.get(S_MAX_FRAME_SIZE, 16384)

    def stream(self, sid):
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = Stream(sid)
            st.send_window = self.server_settings.get(S_INITIAL_WINDOW_SIZE, 65535)
        return st

    def new_stream_id(self):
        sid = self.next_id
        self.next_id += 2
        return sid

    def send_headers(self, sid, headers, end_stream=False, never_index=False):
        self.stream(sid)
        if never_index:
            headers = [hpack.NeverIndexedHeaderTuple(k, v) for k, v in headers]
        block = self.encoder.encode(headers)
        mf = self.max_frame()
        first, rest = block[:mf], block[mf:]
        f = HeadersFrame(sid, data=first)
        if end_stream:
            f.flags.add("END_STREAM")
        if not rest:
            f.flags.add("END_HEADERS")
        out = f.serialize()
        while rest:
            chunk, rest = rest[:mf], rest[mf:]
            c = ContinuationFrame(sid, data=chunk)
            if not rest:
                c.flags.add("END_HEADERS")
            out += c.serialize()
        self.send(out)

    def send_data(self, sid, data, end_stream=False, frame_size=None):
        """Send data in frames of at most frame_size bytes, ignoring flow
        control (keep it within the windows)."""
        st = self.stream(sid)
        size = frame_size or self.max_frame()
        out = bytearray()
        if not data:
            f = DataFrame(sid, data=b"")
            if end_stream:
                f.flags.add("END_STREAM")
            self.send(f.serialize())
            return
        for i in range(0, len(data), size):
            chunk = data[i:i + size]
            f = DataFrame(sid, data=bytes(chunk))
            if end_stream and i + size >= len(data):
                f.flags.add("END_STREAM")
            out += f.serialize()
            st.send_window -= len(chunk)
            self.conn_send_window -= len(chunk)
        self.send(bytes(out))

    def send_data_flow(self, sid, data, end_stream=False, stall=1.0):
        """Send as much of data as the peer's windows allow, pumping for
        WINDOW_UPDATE; returns the number of bytes sent, stopping early when
        no window was granted for `stall` seconds."""
        st = self.stream(sid)
        sent = 0
        while sent < len(data):
            room = min(st.send_window, self.conn_send_window,
                       self.max_frame(), len(data) - sent)
            if room <= 0:
                try:
                    self.wait(lambda: min(st.send_window, self.conn_send_window) > 0
                              or st.done, stall, "window")
                except AssertionError:
                    return sent         # no window for `stall` seconds
                if st.done:
                    return sent
                continue
            chunk = data[sent:sent + room]
            last = sent + room >= len(data)
            f = DataFrame(sid, data=bytes(chunk))
            if end_stream and last:
                f.flags.add("END_STREAM")
            self.send(f.serialize())
            st.send_window -= room
            self.conn_send_window -= room
            sent += room
            self.pump(0)
        return sent

    def rst(self, sid, code=H2_CANCEL):
        self.send(RstStreamFrame(sid, error_code=code).serialize())

    def window_update(self, sid, inc):
        self.send(WindowUpdateFrame(sid, window_increment=inc).serialize())

    def request_headers(self, path, content_type="application/grpc", extra=(),
                        method="POST"):
        return [(":method", method), (":scheme", "http"), (":path", path),
                (":authority", "127.0.0.1:%d" % self.port),
                ("content-type", content_type), ("te", "trailers")] + list(extra)

    def start(self, path, content_type="application/grpc", extra=(), end_stream=False):
        """Open a stream (HEADERS only); returns its id."""
        sid = self.new_stream_id()
        hdrs = self.request_headers(path, content_type, extra)
        if content_type is None:
            hdrs = [h for h in hdrs if h[0] != "content-type"]
        self.send_headers(sid, hdrs, end_stream=end_stream)
        return sid

    def unary(self, path, message, content_type="application/grpc", extra=(),
              frame_size=None, flag=0, timeout=10, raw_body=None):
        """One gRPC unary call; returns the finished Stream."""
        sid = self.start(path, content_type, extra)
        body = raw_body if raw_body is not None else grpc_frame(message, flag)
        self.send_data(sid, body, end_stream=True, frame_size=frame_size)
        return self.finish(sid, timeout)

    def finish(self, sid, timeout=10):
        st = self.stream(sid)
        self.wait(lambda: st.done, timeout, "end of stream %d" % sid)
        return st

    # -- receiving
    def pump(self, timeout):
        """Read what arrives within timeout (0: only what is there) and
        handle the frames. Raises Closed on EOF."""
        if self.closed:
            raise Closed()
        p = select.poll()       # not select(): descriptors may exceed 1023
        p.register(self.sock, select.POLLIN)
        if not p.poll(max(timeout, 0) * 1000):
            return False
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            raise Closed()
        self.inbuf += data
        self._parse()
        return True

    def wait(self, pred, timeout, what="condition"):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out after %.1fs waiting for %s; frames: %s"
                                     % (timeout, what, self.frame_summary()))
            try:
                self.pump(min(left, 0.2))
            except Closed:
                if pred():
                    return
                raise AssertionError("connection closed while waiting for %s; frames: %s"
                                     % (what, self.frame_summary()))

    def ping(self, timeout=10):
        """A PING and its ACK: the peer answers a PING in order, so once the
        ACK is here it has read and handled every frame sent before."""
        self.pings += 1
        data = struct.pack(">Q", self.pings)
        self.send(PingFrame(0, opaque_data=data).serialize())
        self.wait(lambda: any(n == "PING" and "ACK" in fl and f.opaque_data == data
                              for n, fl, _, f in self.frames),
                  timeout, "the ACK of PING %d" % self.pings)

    def wait_closed(self, timeout):
        """Wait until the server closes the connection or sends GOAWAY.
        Returns "goaway" or "eof"; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self.goaways:
                return "goaway"
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection still open after %.1fs" % timeout)
            try:
                self.pump(min(left, 0.2))
            except Closed:
                return "goaway" if self.goaways else "eof"
            except OSError:
                return "eof"

    def frame_summary(self, last=30):
        out = []
        for name, flags, sid, f in self.frames[-last:]:
            extra = ""
            if name == "RST_STREAM":
                extra = " code=%d" % f.error_code
            elif name == "GOAWAY":
                extra = " last=%d code=%d" % (f.last_stream_id, f.error_code)
            elif name == "DATA":
                extra = " len=%d" % len(f.data)
            out.append("%s[%d]%s%s" % (name, sid, "+" + ",".join(sorted(flags)) if flags else "", extra))
        return " ".join(out)

    def _parse(self):
        while len(self.inbuf) >= 9:
            f, length = Frame.parse_frame_header(memoryview(self.inbuf[:9]))
            if len(self.inbuf) < 9 + length:
                return
            body = bytes(self.inbuf[9:9 + length])
            del self.inbuf[:9 + length]
            f.parse_body(memoryview(body))
            self._handle(f)

    def _handle(self, f):
        name = type(f).__name__.replace("Frame", "").upper()
        name = {"RSTSTREAM": "RST_STREAM", "GOAWAY": "GOAWAY",
                "WINDOWUPDATE": "WINDOW_UPDATE"}.get(name, name)
        self.frames.append((name, set(f.flags), f.stream_id, f))
        if isinstance(f, SettingsFrame):
            if "ACK" in f.flags:
                self.settings_acked += 1
                return
            for k, v in f.settings.items():
                if k == S_INITIAL_WINDOW_SIZE:
                    delta = v - self.server_settings.get(S_INITIAL_WINDOW_SIZE, 65535)
                    for st in self.streams.values():
                        st.send_window += delta
                self.server_settings[k] = v
            self.settings_seen = True
            self.send(SettingsFrame(0, flags=["ACK"]).serialize())
        elif isinstance(f, PingFrame):
            if "ACK" not in f.flags:
                self.send(PingFrame(0, flags=["ACK"], opaque_data=f.opaque_data).serialize())
        elif isinstance(f, WindowUpdateFrame):
            if f.stream_id == 0:
                self.conn_send_window += f.window_increment
            else:
                self.stream(f.stream_id).send_window += f.window_increment
        elif isinstance(f, GoAwayFrame):
            self.goaways.append((f.last_stream_id, f.error_code, f.additional_data))
        elif isinstance(f, RstStreamFrame):
            st = self.stream(f.stream_id)
            st.reset = f.error_code
            st.events.append(("RST", f.error_code))
        elif isinstance(f, HeadersFrame):
            if "END_HEADERS" in f.flags:
                self._headers(f.stream_id, f.flags, f.data)
            else:
                self._cont = (f.stream_id, set(f.flags), bytearray(f.data))
        elif isinstance(f, ContinuationFrame):
            sid, flags, block = self._cont
            block += f.data
            if "END_HEADERS" in f.flags:
                self._cont = None
                self._headers(sid, flags, bytes(block))
        elif isinstance(f, DataFrame):
            st = self.stream(f.stream_id)
            st.data += f.data
            st.data_frames += 1
            end = "END_STREAM" in f.flags
            st.events.append(("DATA", len(f.data), end))
            if end:
                st.ended = True
            n = f.flow_controlled_length
            if self.auto_window and n:
                self.send(WindowUpdateFrame(0, window_increment=n).serialize()
                          + (WindowUpdateFrame(f.stream_id, window_increment=n).serialize()
                             if not end else b""))
            elif n:
                self.conn_recv_unacked += n

    def _headers(self, sid, flags, block):
        hdrs = [(k if isinstance(k, str) else k.decode(),
                 v if isinstance(v, str) else v.decode("latin-1"))
                for k, v in self.decoder.decode(bytes(block), raw=False)]
        st = self.stream(sid)
        end = "END_STREAM" in flags
        st.blocks.append((hdrs, end))
        st.events.append(("HEADERS", end))
        if end:
            st.ended = True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
