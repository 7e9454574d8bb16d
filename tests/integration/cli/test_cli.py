"""Spec §7: the command line (-c, -t, -h, -V) and configuration errors
(every error as `file:line: …`, all in one run)."""
import os
import re
import subprocess

import pytest

from alptest import ALPCRUND, TOP_BUILDDIR, free_port

CHANGE_FEED = ["prefetch on", "prefetch_concurrency 2", "watch_buffer 1m"]


def run(args, timeout=20, env=None):
    e = dict(os.environ)
    e.pop("METALCORE_API_KEY", None)
    e.update(env or {})
    p = subprocess.run([ALPCRUND] + args, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL, env=e)
    return p.returncode, p.stdout + p.stderr


def write(tmp_path, text, name="alpcrund.conf"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def good_config(tmp_path):
    key = tmp_path / "key"
    key.write_text("secret")
    return write(tmp_path, """# a complete central configuration
mode central
listen 127.0.0.1:%d
listen 127.0.0.1:%d
backend memory

max_memory 64m
default_ttl 30s
max_ttl 10m
sweep_interval 500ms
max_message_size 260m
max_inflight_bytes 1g
api_key_file %s
metrics_listen 127.0.0.1:%d
max_connections 1000
max_concurrent_streams 64
handshake_timeout 10s
idle_timeout 1h
send_timeout 60s
shutdown_grace 30s
log_level debug
log_target stderr
pid_file %s
""" % (free_port(), free_port(), key, free_port(), tmp_path / "pid"))


def test_check_good_config_exits_0(tmp_path):
    rc, out = run(["-t", "-c", good_config(tmp_path)])
    assert rc == 0, out


def test_check_minimal_and_empty_configs(tmp_path):
    for text in ("", "# only a comment\n\n", "sweep_interval 500ms\nmax_memory 64m\ndefault_ttl 1h\nmax_ttl 2h\n",
                 "sweep_interval 1h\nmax_message_size 64m\n"):
        rc, out = run(["-t", "-c", write(tmp_path, text)])
        assert rc == 0, (text, out)


def test_check_reports_every_error_with_file_and_line(tmp_path):
    path = write(tmp_path, "\n".join([
        "default_ttl 30s",           # 1 ok
        "default_ttl banana",        # 2 bad duration
        "no_such_directive 1",       # 3 unknown
        "# comment",                 # 4
        "mode sideways",             # 5 bad choice
        "max_message_size lots",     # 6 bad size
        "listen nowhere",            # 7 bad address
        "max_concurrent_streams -3", # 8 bad number
        "sweep_interval",            # 9 missing value
        "idle_timeout 10s",          # 10 ok
    ]) + "\n")
    rc, out = run(["-t", "-c", path])
    assert rc == 1, out
    for line, name in ((2, "default_ttl"), (3, "no_such_directive"), (5, "mode"),
                       (6, "max_message_size"), (7, "listen"),
                       (8, "max_concurrent_streams"), (9, "sweep_interval")):
        m = re.search(r"^.*%s:%d: .*$" % (re.escape(path), line), out, re.M)
        assert m, "no `%s:%d: …` error in:\n%s" % (path, line, out)
        assert name in m.group(0), "error for line %d does not name %s: %r" % (line, name, m.group(0))
    for line in (1, 4, 10):
        assert "%s:%d:" % (path, line) not in out, out


def test_change_feed_directives_accepted(tmp_path):
    # Issue 6: the last directives of a later build are implemented.
    path = write(tmp_path, "mode node\n" + "\n".join(CHANGE_FEED) + "\n")
    rc, out = run(["-t", "-v", "-c", path])
    assert rc == 0, out
    for text in CHANGE_FEED:
        assert re.search(r"^%s$" % re.escape(text), out, re.M), (text, out)


def test_tls_directives_that_need_another(tmp_path):
    # Issue 5: each error at the line of the directive that cannot work
    # alone, all in one run (TLS files themselves: tls/test_tls.py).
    path = write(tmp_path, "default_ttl 10s\ntls_cert /x\ntls_client_ca /y\n"
                 "upstream_ca /z\n")
    rc, out = run(["-t", "-c", path])
    assert rc == 1
    assert "%s:2: tls_cert: needs tls_key (the certificate's private key)" % path in out, out
    assert "%s:4: upstream_ca: needs upstream_tls on" % path in out, out
    assert "%s:3:" % path not in out, out    # tls_cert is set


def test_node_directives_accepted(tmp_path):
    # Node mode and its link to central (issue #4); the change feed:
    # CHANGE_FEED above.
    lines = ["mode node", "upstream central-cache:2337", "upstream_api_key_file /x",
             "upstream_timeout 5s", "upstream_connect_timeout 1s", "upstream_keepalive 5s"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    rc, out = run(["-t", "-v", "-c", path])
    assert rc == 0, out
    for line in lines:
        assert re.search(r"^%s$" % re.escape(line), out, re.M), (line, out)


def test_lmdb_directives_accepted(tmp_path):
    lines = ["backend lmdb", "lmdb_path /srv/alpcrund", "lmdb_map_size 1g",
             "lmdb_sync off", "lmdb_max_readers 10", "lmdb_full_ratio 80%"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    rc, out = run(["-t", "-v", "-c", path])
    assert rc == 0, out
    for line in lines:
        assert re.search(r"^%s$" % re.escape(line), out, re.M), (line, out)


def test_help_and_version():
    rc, out = run(["-h"])
    assert rc == 0, out
    assert "-c" in out and "-t" in out
    rc, out = run(["-V"])
    assert rc == 0, out
    version = None
    try:
        with open(os.path.join(TOP_BUILDDIR, "config.h")) as f:
            m = re.search(r'#define PACKAGE_VERSION "([^"]+)"', f.read())
            version = m and m.group(1)
    except OSError:
        pass
    if version:
        assert version in out, out
    else:
        assert re.search(r"\d+\.\d+", out), out


def test_missing_config_file(tmp_path):
    path = str(tmp_path / "does-not-exist.conf")
    rc, out = run(["-t", "-c", path])
    assert rc == 1, out
    assert path in out, out
    rc, out = run(["-c", path])
    assert rc == 1, out
    assert path in out, out


def test_unknown_option_fails():
    rc, out = run(["--no-such-option"])
    assert rc != 0


def test_start_with_broken_config_exits_1_with_all_errors(tmp_path):
    path = write(tmp_path, "listen 127.0.0.1:%d\ndefault_ttl x\nbogus 1\n" % free_port())
    rc, out = run(["-c", path], timeout=20)
    assert rc == 1, out
    assert "%s:2:" % path in out and "%s:3:" % path in out, out


def test_check_does_not_start_serving(tmp_path):
    port = free_port()
    path = write(tmp_path, "listen 127.0.0.1:%d\n" % port)
    rc, out = run(["-t", "-c", path], timeout=10)
    assert rc == 0, out


def test_listen_address_in_use_fails_to_start(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        path = write(tmp_path, "listen 127.0.0.1:%d\nmetrics_listen 127.0.0.1:%d\n"
                     % (port, free_port()))
        rc, out = run(["-c", path], timeout=20)
        assert rc != 0, out
        assert str(port) in out, out
    finally:
        s.close()


# --- issue 18: a node never fetches from itself -------------------------------

@pytest.mark.parametrize("listen,upstream,shown", [
    ("127.0.0.1:{p}", "localhost:{p}", "localhost:{p} (127.0.0.1)"),
    ("127.0.0.1:{p}", "127.0.0.1:{p}", "127.0.0.1:{p}"),
    ("0.0.0.0:{p}", "127.0.0.1:{p}", "127.0.0.1:{p}"),
])
def test_check_refuses_upstream_that_is_own_listener(tmp_path, listen, upstream, shown):
    p = free_port()
    listen, upstream, shown = (s.format(p=p) for s in (listen, upstream, shown))
    path = write(tmp_path, "mode node\nlisten %s\nupstream %s\n" % (listen, upstream))
    rc, out = run(["-t", "-c", path])
    assert rc == 1, out
    assert "upstream: %s is this node's own listen address %s; it must name the " \
        "central cache" % (shown, listen) in out, out
    assert "configuration has errors" in out
    # Started anyway: refused at once, nothing listens.
    rc, out = run(["-c", path])
    assert rc == 1, out
    assert "is this node's own listen address" in out, out


def test_check_accepts_upstream_on_another_port(tmp_path):
    p = free_port()
    path = write(tmp_path, "mode node\nlisten 127.0.0.1:%d\nupstream localhost:%d\n"
                 "node_id edge-1\n" % (p, p + 1))
    rc, out = run(["-t", "-v", "-c", path])
    assert rc == 0, out
    assert re.search(r"^node_id edge-1$", out, re.M), out


def test_node_id_default_and_refusal(tmp_path):
    p = free_port()
    path = write(tmp_path, "mode node\nlisten 127.0.0.1:%d\nupstream 127.0.0.1:%d\n"
                 % (p, p + 1))
    rc, out = run(["-t", "-v", "-c", path])
    assert rc == 0, out
    assert re.search(r"^node_id \S+/127\.0\.0\.1:%d$" % p, out, re.M), out
    path = write(tmp_path, "mode node\nnode_id a,b\n")
    rc, out = run(["-t", "-c", path])
    assert rc == 1 and ":2: node_id: \"a,b\" is not an id" in out, out
