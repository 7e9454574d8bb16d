"""The node's receive windows on its link to central (spec §5 "Upstream
link", §4.6): sized for bandwidth x delay, bounded by max_inflight_bytes.

A fake central (hyper-h2 on a raw socket) records what the node announces:
SETTINGS_INITIAL_WINDOW_SIZE (each stream's window) and the connection's
WINDOW_UPDATE, which must both equal max_inflight_bytes, at most 256 MiB.
A reload changes them on the connection up, without a new connection. A
reply as large as the window goes out whole before any WINDOW_UPDATE (the
fake's flow control would refuse a byte beyond it).

No timing in the assertions.
"""
import contextlib
import signal
import socket
import threading

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

import alptest
from alptest import MiB, encode_shared, grpc_frame, sd, wait_until

WINDOW_MAX = 256 * MiB
H2_INITIAL = 65535


class WindowCentral:
    """Listens on a free port; for each connection (kept in order) records
    the node's announced stream window (None until its SETTINGS) and what
    the connection lets us send (65,535 plus its WINDOW_UPDATEs). A Get is
    answered by reply(session_id) -> payload, or NOT_FOUND."""

    def __init__(self, reply=None):
        self.reply = reply or (lambda sid: None)
        self.conns = []
        self.errors = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.05)
        self.port = self.lsock.getsockname()[1]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                sock = self.lsock.accept()[0]
            except socket.timeout:
                continue
            except OSError:
                return
            rec = {"sock": sock, "settings": [], "conn_window": H2_INITIAL,
                   "stream_windows": []}
            with self.lock:
                self.conns.append(rec)
            t = threading.Thread(target=self._serve, args=(rec,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, rec):
        sock = rec["sock"]
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        try:
            sock.sendall(conn.data_to_send())
            while not self.stop.is_set():
                sock.settimeout(0.05)
                try:
                    data = sock.recv(1 << 20)
                except socket.timeout:
                    continue
                if not data:
                    return
                for e in conn.receive_data(data):
                    self._event(rec, conn, sock, e)
                sock.sendall(conn.data_to_send())
        except OSError:
            pass
        except Exception as e:  # noqa: BLE001 - a bug in the fake, or a refusal
            self.errors.append(repr(e))

    def _event(self, rec, conn, sock, e):
        if isinstance(e, h2.events.RemoteSettingsChanged):
            ch = e.changed_settings.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE)
            if ch is not None:
                with self.lock:
                    rec["settings"].append(ch.new_value)
        elif isinstance(e, h2.events.WindowUpdated) and e.stream_id == 0:
            with self.lock:
                rec["conn_window"] = conn.outbound_flow_control_window
        elif isinstance(e, h2.events.DataReceived):
            conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        elif isinstance(e, h2.events.StreamEnded):
            self._answer(rec, conn, sock, e.stream_id)

    def _answer(self, rec, conn, sock, sid):
        # the request's session id is not parsed: one Get at a time here
        payload = self.reply(sid)
        if payload is None:
            conn.send_headers(sid, [(":status", "200"),
                                    ("content-type", "application/grpc"),
                                    ("grpc-status", "5"), ("grpc-message", "not here")],
                              end_stream=True)
            return
        body = grpc_frame(encode_shared("w", 1, payload, ttl=(600, 0)))
        window = conn.local_flow_control_window(sid)
        with self.lock:
            rec["stream_windows"].append(window)
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        # all of it before reading anything: hyper-h2 raises FlowControlError
        # for a byte beyond the windows the node granted
        step = conn.max_outbound_frame_size
        for i in range(0, len(body), step):
            conn.send_data(sid, body[i:i + step])
            sock.sendall(conn.data_to_send())
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)

    def first(self):
        wait_until(lambda: self.conns and self.conns[0]["settings"], 15,
                   what="the node's SETTINGS")
        return self.conns[0]

    def close(self):
        self.stop.set()
        self.lsock.close()
        for rec in self.conns:
            with contextlib.suppress(OSError):
                rec["sock"].shutdown(socket.SHUT_RDWR)
            rec["sock"].close()
        for t in self.threads:
            t.join(10)
        assert not self.errors, self.errors


@pytest.fixture
def window_central():
    fakes = []

    def make(**kw):
        f = WindowCentral(**kw)
        fakes.append(f)
        return f
    yield make
    for f in fakes:
        f.close()


def node_conf(port, inflight=None):
    text = ("mode node\nbackend memory\nupstream 127.0.0.1:%d\n"
            "upstream_keepalive 1s\n" % port)
    if inflight is not None:
        text += "max_inflight_bytes %s\n" % inflight
    return text


@pytest.mark.parametrize("inflight,window", [
    ("64k", 64 * 1024),
    ("1m", 1 * MiB),
    ("5000000", 5000000),
    ("100m", 100 * MiB),
    ("256m", WINDOW_MAX),
    (None, WINDOW_MAX),           # the default, 1g: the cap
    ("4g", WINDOW_MAX),
])
def test_windows_follow_max_inflight_bytes(make_daemon, window_central, inflight, window):
    fake = window_central()
    make_daemon(node_conf(fake.port, inflight))
    rec = fake.first()
    # each stream's window, and the connection's (one WINDOW_UPDATE with the
    # SETTINGS, none when it is HTTP/2's initial 65,535)
    assert rec["settings"] == [window]
    wait_until(lambda: rec["conn_window"] == window, 15,
               what="connection window %d (have %d)" % (window, rec["conn_window"]))


def test_reload_resizes_the_windows_of_the_link_up(make_daemon, window_central):
    fake = window_central()
    node = make_daemon(node_conf(fake.port, "2m"))
    rec = fake.first()
    wait_until(lambda: rec["conn_window"] == 2 * MiB, 15, what="the first window")
    node.write_config(node_conf(fake.port, "32m"))
    node.signal(signal.SIGHUP)
    wait_until(lambda: rec["settings"] == [2 * MiB, 32 * MiB], 15,
               what="the new SETTINGS (have %r)" % (rec["settings"],))
    wait_until(lambda: rec["conn_window"] == 32 * MiB, 15,
               what="the connection's window to grow")
    # smaller again: announced for the streams (the connection's window
    # shrinks as it is used, with no frame to say so)
    node.write_config(node_conf(fake.port, "4m"))
    node.signal(signal.SIGHUP)
    wait_until(lambda: rec["settings"] == [2 * MiB, 32 * MiB, 4 * MiB], 15,
               what="the smaller SETTINGS (have %r)" % (rec["settings"],))
    assert len(fake.conns) == 1     # on the same connection


def test_a_reply_as_large_as_the_window_needs_no_update(make_daemon, window_central):
    # the reply's DATA (payload, protobuf and gRPC framing) fits the 8 MiB
    # window with room to spare, and is sent whole before the fake reads on
    payload = alptest.stamped_payload(6)
    fake = window_central(reply=lambda sid: payload)
    node = make_daemon(node_conf(fake.port, "8m"))
    rec = fake.first()
    node.wait_metric(lambda m: m.value("alpcrund_upstream_up") == 1, 15)
    r = node.stub().GetSharedData(sd("w", 1), timeout=30)
    assert r.payload == payload
    assert rec["stream_windows"] == [8 * MiB]
