"""200 concurrent clients, each on its own connection, mixing all four RPCs
on their own sessions and on a few shared ones; every byte checked, and the
daemon's requests_total must add up to what the clients saw (spec §4, §8)."""
import collections
import hashlib
import random
import re
import threading
import time

import grpc
import pytest

from alptest import MiB, cache_pb2_grpc, sd

C = grpc.StatusCode
CLIENTS = 200
SHARED = ["shared-%d" % i for i in range(4)]
OPTIONS = [("grpc.max_send_message_length", 64 * MiB),
           ("grpc.max_receive_message_length", 64 * MiB),
           ("grpc.use_local_subchannel_pool", 1)]


def shared_payload(sid, level):
    seed = hashlib.sha256(("%s:%d" % (sid, level)).encode()).digest()
    return seed * (64 + level % 97)


class Client(threading.Thread):
    def __init__(self, n, addr, barrier):
        super().__init__(daemon=True)
        self.n, self.addr, self.barrier = n, addr, barrier
        self.counts = collections.Counter()
        self.errors = []
        self.rng = random.Random(n)

    def call(self, method, fn, req, expect=C.OK):
        try:
            r = fn(req, timeout=60)
            code = C.OK
        except grpc.RpcError as e:
            r, code = e, e.code()
        self.counts[(method, code.name)] += 1
        if expect is not None and code != expect:
            self.fail("%s(%s): %s, expected %s (%s)" % (
                method, req.session_id, code, expect,
                r.details() if code != C.OK else ""))
        return r, code

    def fail(self, msg):
        self.errors.append("client %d: %s" % (self.n, msg))

    def run(self):
        ch = grpc.insecure_channel(self.addr, options=OPTIONS)
        try:
            grpc.channel_ready_future(ch).result(timeout=30)
            self.barrier.wait(timeout=60)
            self.work(cache_pb2_grpc.CacheStub(ch))
        except Exception as e:      # recorded, reported by the test
            self.fail("%s: %s" % (type(e).__name__, e))
        finally:
            ch.close()

    def work(self, s):
        own = "client-%d" % self.n
        size = MiB if self.n % 25 == 0 else self.rng.randint(1, 64 * 1024)
        payloads = {lvl: self.rng.randbytes(min(size, 4096))
                    * (size // 4096 + 1) for lvl in range(1, 5)}
        payloads = {lvl: p[:size] + bytes([lvl]) for lvl, p in payloads.items()}

        self.call("SetSharedData", s.SetSharedData, sd(own, 1, payloads[1]))
        g, _ = self.call("GetSharedData", s.GetSharedData, sd(own))
        if getattr(g, "payload", None) != payloads[1]:
            self.fail("own level 1 payload differs")
        for lvl in (2, 3, 4):
            self.call("UpdateSharedData", s.UpdateSharedData, sd(own, lvl, payloads[lvl]))
            g, _ = self.call("GetSharedData", s.GetSharedData, sd(own, lvl))
            if getattr(g, "payload", None) != payloads[lvl] or g.update_level != lvl:
                self.fail("own level %d payload differs" % lvl)
            self.shared_round(s, lvl)
        e, _ = self.call("GetSharedData", s.GetSharedData, sd(own, 1), C.FAILED_PRECONDITION)
        if e.details() != "update level mismatch: expected 4, got 1":
            self.fail("mismatch text %r" % e.details())
        e, _ = self.call("SetSharedData", s.SetSharedData, sd(own, 1, payloads[1]),
                         C.ALREADY_EXISTS)
        if e.details() != "shared data already exists for session %s at update level 4" % own:
            self.fail("already-exists text %r" % e.details())
        self.call("DeleteSharedData", s.DeleteSharedData, sd(own))
        self.call("GetSharedData", s.GetSharedData, sd(own), C.NOT_FOUND)

    def shared_round(self, s, k):
        sid = SHARED[(self.n + k) % len(SHARED)]
        g, _ = self.call("GetSharedData", s.GetSharedData, sd(sid))
        lvl = g.update_level
        if g.payload != shared_payload(sid, lvl):
            self.fail("%s level %d: payload is not the one that level names" % (sid, lvl))
        r, code = self.call("UpdateSharedData", s.UpdateSharedData,
                            sd(sid, lvl + 1, shared_payload(sid, lvl + 1)), None)
        if code == C.FAILED_PRECONDITION:
            m = re.fullmatch(r"update level mismatch: expected (\d+), got (\d+)", r.details())
            if not m or int(m.group(2)) != lvl + 1 or int(m.group(1)) < lvl + 3:
                self.fail("shared update from %d: %r" % (lvl, r.details()))
        elif code != C.OK:
            self.fail("shared update: %s %s" % (code, r.details()))


def requests_table(m):
    out = collections.Counter()
    for (name, lab), v in m.items():
        lab = dict(lab)
        if name == "alpcrund_requests_total" and v and lab.get("method", "").endswith("SharedData"):
            out[(lab["method"], lab["code"])] = int(v)
    return out


@pytest.mark.timeout(240)
def test_200_concurrent_clients(daemon, perf):
    s = daemon.stub()
    for sid in SHARED:
        s.SetSharedData(sd(sid, 1, shared_payload(sid, 1)), timeout=10)
    base = requests_table(daemon.metrics())
    barrier = threading.Barrier(CLIENTS + 1)
    clients = [Client(i, daemon.addr, barrier) for i in range(CLIENTS)]
    for c in clients:
        c.start()
    # every client is connected before any starts: the daemon holds 200 connections
    daemon.wait_metric(lambda m: m.value("alpcrund_connections") >= CLIENTS, 60)
    t0 = time.monotonic()
    barrier.wait(timeout=60)
    for c in clients:
        c.join(180)
    elapsed = time.monotonic() - t0
    assert not any(c.is_alive() for c in clients), "clients still running after 180 s"
    errors = [e for c in clients for e in c.errors]
    assert not errors, "%d errors, first: %s" % (len(errors), errors[:10])

    seen = collections.Counter()
    for c in clients:
        seen.update(c.counts)
    total = sum(seen.values())
    perf("%d clients, %d RPCs in %.2f s" % (CLIENTS, total, elapsed))
    want = base + seen
    m = daemon.wait_metric(lambda m: sum(requests_table(m).values()) >= sum(want.values()), 10)
    assert requests_table(m) == want

    # the shared sessions still hold content their level names
    for sid in SHARED:
        g = s.GetSharedData(sd(sid), timeout=10)
        assert g.payload == shared_payload(sid, g.update_level)
    daemon.close_channels()
    daemon.wait_metric(lambda m: m.value("alpcrund_connections") == 0, 15)
    daemon.wait_metric(lambda m: m.value("alpcrund_entries") == len(SHARED))


@pytest.mark.timeout(120)
def test_uploads_beyond_max_inflight_bytes_complete(make_daemon):
    # §4.6: no error, the server only withholds window until memory frees up
    d = make_daemon("max_inflight_bytes 4m")
    n, size = 6, 3 * MiB
    payloads = [bytes([i]) * 17 + random.Random(i).randbytes(4096)
                for i in range(n)]
    payloads = [(p * (size // len(p) + 1))[:size] for p in payloads]
    results = [None] * n

    def up(i):
        ch = grpc.insecure_channel(d.addr, options=OPTIONS)
        try:
            cache_pb2_grpc.CacheStub(ch).SetSharedData(sd("up-%d" % i, 1, payloads[i]), timeout=60)
            results[i] = "OK"
        except grpc.RpcError as e:
            results[i] = "%s %s" % (e.code(), e.details())
        finally:
            ch.close()
    threads = [threading.Thread(target=up, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results == ["OK"] * n
    s = d.stub()
    for i in range(n):
        assert s.GetSharedData(sd("up-%d" % i), timeout=30).payload == payloads[i]
