"""Out of file descriptors (spec §4.6): the listener pauses and retries on a
timer, with no busy loop, and says so once per burst; when descriptors free
up, the connection that waited is served.

Descriptors are used up for real: the open-file limit is set to exactly
what max_connections needs, and idle HTTP connections to the metrics
server, which max_connections does not count, take the reserve.
"""
import socket
import time

import pytest

from alptest import sd, wait_until

MAX_CONNECTIONS = 8
NOFILE = MAX_CONNECTIONS + 64       # what the daemon reserves (main.c)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0   # utime + stime


@pytest.mark.abuse
@pytest.mark.timeout(120)
def test_listeners_pause_without_spinning_and_resume(make_daemon):
    d = make_daemon("max_connections %d\nlog_level info" % MAX_CONNECTIONS,
                    prefix=["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE)])
    d.stub().SetSharedData(sd("fd", 1, b"still here"), timeout=10)
    d.close_channels()

    # Take every descriptor the process has left with idle metrics
    # connections, until the daemon reports the pause.
    hogs = []
    try:
        for _ in range(NOFILE + 16):
            hogs.append(socket.create_connection(("127.0.0.1", d.metrics_port), timeout=5))
        wait_until(lambda: "out of file descriptors" in d.log(), 10,
                   what="the out-of-descriptors log line")

        # A gRPC client now waits in the listen backlog.
        waiting = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        hogs.append(waiting)

        # Paused, not spinning: over two seconds of exhaustion the daemon
        # uses a small fraction of a CPU (a busy accept loop uses all of it).
        before = cpu_seconds(d.proc.pid)
        t0 = time.monotonic()
        time.sleep(2.0)
        used = cpu_seconds(d.proc.pid) - before
        assert used < 0.5 * (time.monotonic() - t0), "daemon used %.2fs CPU while out of descriptors" % used
        assert d.alive()
        # Once per burst, not once per retry.
        assert d.log().count("out of file descriptors") <= 2, d.log()[-2000:]
    finally:
        for s in hogs:
            s.close()

    # Descriptors free: a new client is served (the listener resumed).
    stub = d.stub()
    wait_until(lambda: stub.GetSharedData(sd("fd"), timeout=5).payload == b"still here",
               30, what="service after descriptors free up")
