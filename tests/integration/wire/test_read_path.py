"""The read path of cleartext connections (src/h2/h2read.c, issue of large
payloads): the daemon reads its sockets itself, in large bites. What such
a reader can get wrong: bytes split anywhere between two reads, a sender
that never stops starving the other connections, and a connection whose
client goes away in the middle of an upload."""
import os

import grpc
import pytest

from alptest import (GET, MiB, SET, SharedData, cache_pb2_grpc, encode_shared,
                     grpc_frame, sd, server_rx_queue, start_set_flood, wait_until)


def test_request_split_at_every_byte_across_reads(daemon):
    """Every byte of a Set and of a Get (HEADERS and DATA frames) reaches
    the daemon in a read of its own: each is sent alone and the next only
    once the daemon has taken it from the socket."""
    payload = bytes(range(256)) * 3
    with daemon.raw() as h:
        client_port = h.sock.getsockname()[1]
        for path, message in ((SET, encode_shared("bytes", 4, payload, ttl=(60, 0))),
                              (GET, encode_shared("bytes", 4))):
            wire = bytearray()
            real_send, h.send = h.send, wire.extend
            try:
                sid = h.start(path)
                h.send_data(sid, grpc_frame(message), end_stream=True)
            finally:
                h.send = real_send
            assert len(wire) > 40        # HEADERS and DATA
            for i in range(len(wire)):
                h.sock.sendall(wire[i:i + 1])
                wait_until(lambda: server_rx_queue(daemon.port, client_port) == 0,
                           5, what="the daemon to read byte %d of %d" % (i, len(wire)))
            st = h.finish(sid)
            assert st.grpc_status == 0, st
        g = SharedData.FromString(st.messages[0][1])
        assert (g.session_id, g.update_level, g.payload) == ("bytes", 4, payload)


def test_a_sender_that_never_stops(make_daemon, tmp_path):
    """h2load uploads 32 MiB messages back to back on one connection as
    fast as the windows let it; meanwhile Gets on other connections are
    answered, while that sender is still sending."""
    d = make_daemon("max_message_size 64m\n")
    stub = d.stub()
    stub.SetSharedData(sd("small", 1, b"s" * 1024))
    body = tmp_path / "set.bin"
    body.write_bytes(grpc_frame(sd("flood", 1, os.urandom(32 * MiB)).SerializeToString()))
    flood = start_set_flood(d, body)
    try:
        # The flood is on: its first uploads were answered.
        wait_until(lambda: d.requests("SetSharedData", "OK") >= 3, 120,
                   what="the flood's first uploads")
        ch = grpc.insecure_channel(d.addr, options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            other = cache_pb2_grpc.CacheStub(ch)
            for _ in range(20):
                r = other.GetSharedData(sd("small"), timeout=10)
                assert r.payload == b"s" * 1024
        finally:
            ch.close()
        sets_after = d.requests("SetSharedData", "OK")
        assert flood.poll() is None, "the flood ended before the Gets did"
        # ...and it was still being served, not held back.
        wait_until(lambda: d.requests("SetSharedData", "OK") > sets_after, 120,
                   what="another upload of the flood after the Gets")
    finally:
        flood.kill()
        flood.wait()


@pytest.mark.parametrize("cut_at", [1 * MiB, 20 * MiB])
def test_client_gone_mid_upload_stores_nothing(daemon, cut_at):
    """A client that closes its connection in the middle of a 32 MiB
    upload: nothing is stored, the bytes it held are released, and the
    daemon goes on serving."""
    payload = os.urandom(32 * MiB)
    body = grpc_frame(encode_shared("cut", 1, payload, ttl=(60, 0)))
    with daemon.raw() as h:
        sid = h.start(SET)
        h.send_data_flow(sid, body[:cut_at], stall=5.0)
        wait_until(lambda: daemon.metric("alpcrund_inflight_bytes") > 0, 10,
                   what="the upload counted in flight")
    wait_until(lambda: daemon.metric("alpcrund_inflight_bytes") == 0, 10,
               what="the cut upload's bytes released")
    with pytest.raises(grpc.RpcError) as e:
        daemon.stub().GetSharedData(sd("cut"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    daemon.stub().SetSharedData(sd("after", 1, b"ok"))
    assert daemon.stub().GetSharedData(sd("after")).payload == b"ok"
