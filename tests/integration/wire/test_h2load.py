"""h2load smoke test: 50 000 GetSharedData requests, 16 connections x 32
streams, against one stored 1 KiB session. h2load counts HTTP 200 as success
whatever grpc-status says (spec §11), so the daemon's own requests_total is
what is checked."""
import os
import re
import shutil
import subprocess

import pytest

from alptest import encode_shared, grpc_frame, sd

N = 50000


@pytest.mark.timeout(300)
def test_h2load_get_50000(daemon, tmp_path, perf):
    if not shutil.which("h2load"):
        pytest.skip("h2load (Debian package nghttp2-client) is not installed")
    payload = os.urandom(1024)
    daemon.stub().SetSharedData(sd("h2load", 1, payload, ttl=600), timeout=10)
    body = tmp_path / "get.bin"
    body.write_bytes(grpc_frame(encode_shared("h2load", 1)))
    before_ok = daemon.requests("GetSharedData", "OK")
    before_all = daemon.metric("alpcrund_requests_total", method="GetSharedData")
    out = subprocess.run(
        ["h2load", "-n", str(N), "-c", "16", "-m", "32", "-d", str(body),
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "http://%s/alpcrun.v1.Cache/GetSharedData" % daemon.addr],
        capture_output=True, text=True, timeout=240)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    for line in text.splitlines():
        if re.match(r"^(finished in|requests:|status codes:|time for request:|min +max|"
                    r"time to 1st byte:|req/s)", line.strip()):
            perf("h2load " + line.strip())
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", text)
    assert m, text
    assert int(m.group(4)) == N, "h2load: " + m.group(0)
    # every request reached the daemon and was answered OK (grpc-status 0)
    daemon.wait_requests("GetSharedData", "OK", before_ok + N, timeout=10)
    assert daemon.metric("alpcrund_requests_total", method="GetSharedData") == before_all + N
    assert daemon.alive()
