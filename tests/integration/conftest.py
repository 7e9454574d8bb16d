"""conftest.py: the Daemon class and fixtures of the integration suite.

It sits at the top of tests/integration/, so that pytest applies it to
every feature folder (central/, node/, watch/, tls/, cli/, wire/, s3/:
README.md here says which file goes where); pytest.ini puts this directory
on sys.path, so every test can `import alptest`, the shared helpers.

API (keep to it, others use it):

  Daemon(tmp_path, config="", env=None, args=None, start=True, prefix=None)
      Writes `config` to a file (adding `listen 127.0.0.1:P` and
      `metrics_listen 127.0.0.1:M` on free loopback ports unless the text sets
      them; added lines go at the end so the caller's line numbers hold),
      starts `$ALPCRUND -c FILE` with stderr to .log_path and waits (deadline
      10 s) until GET /healthz answers 200.
      .addr .port .metrics_port .proc .log_path .conf_path .log()
      .channel() .stub() .health_stub() .metrics() .metric(name, **labels)
      .requests(method, code) .wait_metric(pred, timeout) .wait_requests(...)
      .http_get(path) .signal(sig) .stop(timeout=30) .kill()
      .write_config(text) .wait_log(pattern, timeout)

  fixtures: daemon (default config), make_daemon(config="", env=None,
  args=None, start=True, prefix=None), make_pair(central="", node="", …)
  (a central and a node in front of it), perf (record a figure for the final
  report), pki (session-wide TLS certificates, alptest.make_pki; skips
  without the openssl command). prefix: a command that execs the daemon
  (e.g. prlimit).

  Backends: a test module marked `pytestmark = pytest.mark.all_backends`
  runs each of its tests once per backend (ids [memory] and [lmdb]): the
  `backend` fixture is parametrized, and make_daemon adds `backend lmdb`,
  a fresh `lmdb_path` and a modest `lmdb_map_size` to the config of the
  lmdb runs (after the caller's lines, unless the text names a backend).

Every daemon is stopped at teardown; one that died while the test ran fails
the test with its log tail. A test runs under a per-test alarm (default 180 s,
@pytest.mark.timeout(N) to change it): nothing here may hang CI.
"""
import http.client
import itertools
import os
import re
import shutil
import signal
import subprocess
import time

import grpc
import pytest

import alptest
from alptest import ALPCRUND, CHANNEL_OPTIONS, cache_pb2_grpc, health_pb2_grpc, wait_until

_counter = itertools.count(1)
_perf_lines = []

_METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    """Prometheus text format into {(name, frozenset(labels.items())): value}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            raise AssertionError("unparsable metrics line: %r" % line)
        name, labels, value = m.groups()
        lab = {}
        if labels:
            for lm in _LABEL.finditer(labels):
                lab[lm.group(1)] = (lm.group(2).replace('\\"', '"')
                                    .replace("\\n", "\n").replace("\\\\", "\\"))
        out[(name, frozenset(lab.items()))] = float(value)
    return out


class Metrics(dict):
    """A /metrics snapshot; value(name, **labels) sums the series of that
    name whose labels include the given ones (0 if none)."""

    def value(self, name, **labels):
        want = set(labels.items())
        return sum(v for (n, lab), v in self.items() if n == name and want <= lab)


class DaemonError(Exception):
    pass


class Daemon:
    def __init__(self, tmp_path, config="", env=None, args=None, start=True, prefix=None,
                 extra=""):
        self.dir = os.path.join(str(tmp_path), "alpcrund-%d" % next(_counter))
        os.makedirs(self.dir, exist_ok=True)
        self.conf_path = os.path.join(self.dir, "alpcrund.conf")
        self.log_path = os.path.join(self.dir, "alpcrund.log")
        self.env = env or {}
        self.args = list(args or [])
        self.prefix = list(prefix or [])   # a wrapper that execs the daemon (prlimit …)
        self.extra = extra                 # lines appended to every config written
        self.proc = None
        self.expect_exit = False
        self.returncode = None
        self._channels = []
        self.port = None
        self.metrics_port = None
        self.write_config(config)
        if start:
            self.start()

    # -- configuration
    def write_config(self, text):
        """(Re)write the config file: the caller's text first, then listen /
        metrics_listen on the same ports as before unless the text sets them."""
        lines = text.splitlines()
        extra = []
        lm = re.search(r'^\s*listen\s+127\.0\.0\.1:(\d+)\s*$', text, re.M)
        if re.search(r'^\s*listen\s', text, re.M):
            if lm and self.port is None:
                self.port = int(lm.group(1))
        else:
            if self.port is None:
                self.port = alptest.free_port()
            extra.append("listen 127.0.0.1:%d" % self.port)
        mm = re.search(r'^\s*metrics_listen\s+127\.0\.0\.1:(\d+)\s*$', text, re.M)
        if mm:
            self.metrics_port = int(mm.group(1))
        elif not re.search(r'^\s*metrics_listen\s', text, re.M):
            if self.metrics_port is None:
                self.metrics_port = alptest.free_port()
            extra.append("metrics_listen 127.0.0.1:%d" % self.metrics_port)
        if self.extra and not re.search(r'^\s*backend\s', text, re.M):
            extra += self.extra.splitlines()
        body = "\n".join(lines + extra) + "\n"
        with open(self.conf_path, "w") as f:
            f.write(body)
        return self.conf_path

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    # -- process
    def start(self, timeout=10):
        env = dict(os.environ)
        env.pop("METALCORE_API_KEY", None)
        for k, v in self.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.prefix + [ALPCRUND, "-c", self.conf_path] + self.args,
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=self._logf,
            env=env, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise DaemonError("alpcrund exited with %d during start-up:\n%s"
                                  % (rc, self.log_tail()))
            try:
                st, _ = self.http_get("/healthz", timeout=1)
                if st == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise DaemonError("alpcrund did not answer /healthz within %ds:\n%s"
                                  % (timeout, self.log_tail()))
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGQUIT):
            self.expect_exit = True
        self.proc.send_signal(sig)

    def close_channels(self):
        for ch in self._channels:
            try:
                ch.close()
            except Exception:
                pass
        self._channels = []

    def wait_exit(self, timeout=30):
        self.expect_exit = True
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("alpcrund (pid %d) still running %ss after the "
                                 "signal:\n%s" % (self.proc.pid, timeout, self.log_tail()))
        return self.returncode

    def stop(self, timeout=30):
        """SIGTERM, wait, assert exit status 0 and return it."""
        self.close_channels()
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        assert rc == 0, "alpcrund exited with %d on SIGTERM:\n%s" % (rc, self.log_tail())
        return rc

    def kill(self):
        self.expect_exit = True
        self.close_channels()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # -- logs
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern, timeout=5, start=0):
        """Poll the log until the regex matches (searching from offset
        start); returns the match."""
        rx = re.compile(pattern, re.M)
        return wait_until(lambda: rx.search(self.log(), start), timeout,
                          what="log line /%s/ in:\n%s" % (pattern, self.log_tail(10)))

    # -- gRPC
    def channel(self, options=()):
        ch = grpc.insecure_channel(self.addr, options=CHANNEL_OPTIONS + list(options))
        self._channels.append(ch)
        return ch

    def stub(self):
        return cache_pb2_grpc.CacheStub(self.channel())

    def health_stub(self):
        return health_pb2_grpc.HealthStub(self.channel())

    def raw(self, **kw):
        """A RawH2 connection to the gRPC port."""
        return alptest.RawH2(self.port, **kw)

    # -- HTTP (metrics_listen)
    def http_get(self, path, timeout=5):
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            c.close()

    def metrics(self):
        st, body = self.http_get("/metrics")
        assert st == 200, "/metrics answered %d" % st
        return Metrics(parse_metrics(body))

    def metric(self, name, **labels):
        return self.metrics().value(name, **labels)

    def requests(self, method, code):
        return self.metric("alpcrund_requests_total", method=method, code=code)

    def wait_metric(self, pred, timeout=5):
        """Poll /metrics until pred(snapshot) is true; returns the snapshot.
        snapshot.value(name, **labels) reads a value."""
        last = {}

        def check():
            last["m"] = self.metrics()
            return pred(last["m"])
        try:
            wait_until(check, timeout, what="metrics predicate")
        except AssertionError:
            m = last.get("m") or {}
            shown = "\n".join("%s%s %g" % (n, dict(lab), v) for (n, lab), v in sorted(
                m.items(), key=lambda kv: kv[0][0]) if n.startswith("alpcrund_")
                and "_bucket" not in n)
            raise AssertionError("metrics predicate still false after %ss; last "
                                 "scrape:\n%s" % (timeout, shown))
        return last["m"]

    def wait_requests(self, method, code, value, timeout=5):
        """Wait until requests_total{method,code} == value (and report the
        value seen when it is not)."""
        self.wait_metric(lambda m: m.value("alpcrund_requests_total",
                                           method=method, code=code) >= value, timeout)
        got = self.requests(method, code)
        assert got == value, "requests_total{method=%s,code=%s} = %g, expected %g" % (
            method, code, got, value)


# --- fixtures --------------------------------------------------------------------


# The markers (abuse, all_backends, timeout) are registered in pytest.ini,
# with --strict-markers.


BACKENDS = ("memory", "lmdb")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("all_backends") and \
            "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request):
    """The storage backend of the daemons make_daemon starts: "memory"
    unless the module is marked all_backends."""
    return getattr(request, "param", "memory")


def backend_lines(backend, tmp_path):
    """Config lines for a daemon of this backend, each with its own store."""
    if backend == "memory":
        return ""
    path = os.path.join(str(tmp_path), "lmdb-%d" % next(_counter))
    return "backend lmdb\nlmdb_path %s\nlmdb_map_size 256m\n" % path


class TestTimeout(BaseException):
    pass


@pytest.fixture(autouse=True)
def _alarm(request):
    m = request.node.get_closest_marker("timeout")
    limit = int(m.args[0]) if m else 180

    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded its %d s limit" % limit)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit + 30)       # set-up and teardown get some slack too
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def make_daemon(request, tmp_path, backend):
    daemons = []
    request.node._alp_daemons = daemons

    def factory(config="", env=None, args=None, start=True, prefix=None):
        d = Daemon(tmp_path, config=config, env=env, args=args, start=False, prefix=prefix,
                   extra=backend_lines(backend, tmp_path))
        daemons.append(d)
        if start:
            d.start()
        return d
    yield factory
    problems = []
    for d in daemons:
        d.close_channels()
        if d.proc is None:
            continue
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            try:
                rc = d.proc.wait(20)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait(10)
                problems.append("alpcrund did not exit within 20 s of SIGTERM at "
                                "teardown:\n" + d.log_tail())
                continue
            if rc != 0:
                problems.append("alpcrund exited with %d on SIGTERM at teardown:\n%s"
                                % (rc, d.log_tail()))
    # Sanitizer builds: a report (LeakSanitizer's comes at exit) fails the test.
    for d in daemons:
        report = alptest.sanitizer_report(d.log())
        if report:
            problems.append("sanitizer report in %s:\n%s" % (d.log_path, report))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def daemon(make_daemon):
    return make_daemon()


@pytest.fixture
def make_pair(make_daemon):
    """make_pair(central="", node="", central_env=None, node_env=None,
    start_node=True) -> (central, node): a central and a node in front of it
    (`mode node`, `upstream` the central's address unless the node text sets
    one), each on free loopback ports. Both are make_daemon daemons."""
    def factory(central="", node="", central_env=None, node_env=None, start_node=True):
        c = make_daemon(central, env=central_env)
        head = "mode node\n"
        if not re.search(r'^\s*backend\s', node, re.M):
            head += "backend memory\n"     # a node is memory only, in lmdb runs too
        if not re.search(r'^\s*upstream\s', node, re.M):
            head += "upstream %s\n" % c.addr
        n = make_daemon(head + node, env=node_env, start=start_node)
        return c, n
    return factory


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The test certificates (alptest.PKI: ca, server, client, ca2, server2,
    client2, expired), made once per session."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed")
    return alptest.make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def perf(request):
    """perf(line): a figure shown in the final report ("alpcrund figures")
    and written to $TOP_BUILDDIR/tests/integration/perf.txt, after the
    test's id (feature/test_file.py::test_name[params])."""
    def record(line):
        line = "%s: %s" % (request.node.nodeid, line)
        _perf_lines.append(line)
        print(line)
    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    daemons = getattr(item, "_alp_daemons", [])
    if rep.when == "call":
        for d in daemons:
            if d.proc is not None and not d.expect_exit and d.proc.poll() is not None:
                msg = ("alpcrund (pid %d) died during the test with status %s; log "
                       "tail:\n%s" % (d.proc.pid, d.proc.returncode, d.log_tail()))
                if rep.passed:
                    rep.outcome = "failed"
                    rep.longrepr = msg
                else:
                    rep.sections.append(("alpcrund died", msg))
    if rep.failed and rep.when in ("call", "setup"):
        for i, d in enumerate(daemons):
            rep.sections.append(("alpcrund log %d (%s)" % (i, d.log_path), d.log_tail(30)))


def pytest_terminal_summary(terminalreporter):
    if not _perf_lines:
        return
    terminalreporter.section("alpcrund figures")
    for line in _perf_lines:
        terminalreporter.write_line(line)
    try:
        path = os.path.join(alptest.TOP_BUILDDIR, "tests", "integration", "perf.txt")
        with open(path, "w") as f:
            f.write("\n".join(_perf_lines) + "\n")
    except OSError:
        pass
