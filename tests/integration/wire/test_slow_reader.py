"""Slow readers of large replies (spec §4.6, §6 leases).

A client that stops reading a 200 MiB reply must not make the daemon hold
more than that one reply: the payload goes to the socket by reference under a
lease, so each slow reader costs a bounded amount of output, not a copy. The
lease also keeps the bytes valid while the entry is deleted and replaced.
"""
import pytest

import alptest
from alptest import GET, MiB, RawH2, encode_shared, grpc_frame, rss_bytes, sd

SIZE_MIB = alptest.big_mib(200)    # 32 under sanitizers
READERS = 3


@pytest.mark.abuse
@pytest.mark.timeout(300)
def test_slow_readers_hold_no_copy_and_leases_outlive_delete(make_daemon, perf):
    d = make_daemon("max_message_size 260m\n")
    stub = d.stub()
    payload = alptest.stamped_payload(SIZE_MIB)
    stub.SetSharedData(sd("big", 1, payload))
    base = rss_bytes(d.proc.pid)

    # Readers that grant a huge window and then never read the socket.
    readers = []
    for _ in range(READERS):
        c = RawH2(d.port, settings={alptest.S_INITIAL_WINDOW_SIZE: 2**31 - 1},
                  auto_window=False, rcvbuf=64 * 1024)
        c.window_update(0, 2**31 - 1 - 65535)
        sid = c.start(GET, end_stream=False)
        c.send_data(sid, grpc_frame(encode_shared(b"big")), end_stream=True)
        readers.append((c, sid))

    # The daemon pushes until its bounded output fills, then waits: once
    # each reader's zero window holds back what the daemon's socket has
    # queued, nothing more can go out, and the baseline is compared.
    ports = [c.sock.getsockname()[1] for c, _ in readers]
    alptest.wait_until(
        lambda: all(alptest.held_by_zero_window(d.port, p) for p in ports), 20,
        what="the daemon's socket to each of the %d readers to be held by its zero "
        "window" % READERS)
    grown = rss_bytes(d.proc.pid) - base
    perf("RSS growth with %d stalled readers of %d MiB: %.1f MiB"
         % (READERS, SIZE_MIB, grown / MiB))
    # A copy per reader would be 600 MiB; allow output buffers only.
    assert grown < 64 * MiB, "daemon grew %d MiB for stalled readers" % (grown // MiB)

    # The loop still serves others, and the entry can be deleted and
    # replaced at a higher level while the readers hold leases on it.
    stub.DeleteSharedData(sd("big"))
    stub.SetSharedData(sd("big", 2, b"replacement"))
    assert stub.GetSharedData(sd("big")).payload == b"replacement"

    # Each stalled reader, reading at last, receives the original bytes.
    for c, sid in readers:
        c.auto_window = True
        st = c.finish(sid, timeout=120)
        assert st.grpc_status == 0, st
        msgs = st.messages
        assert len(msgs) == 1 and msgs[0][0] == 0
        reply = alptest.cache_pb2.SharedData.FromString(msgs[0][1])
        assert reply.update_level == 1
        assert len(reply.payload) == len(payload)
        assert reply.payload == payload
        c.close()
