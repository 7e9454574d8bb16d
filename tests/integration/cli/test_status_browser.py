"""The status page in a real headless browser (Debian's chromium): its
script runs, asks /status.json and renders it. A central's page shows the
session set on it with its level and size; a node's page, after a fetch
through it, shows the copy and its upstream in use. The DOM after the
script ran (--dump-dom) is what is checked; a screenshot of each page is
kept beside the test logs (tests/integration/status-*.png)."""
import os
import re
import shutil
import subprocess

import alptest
from alptest import sd

BROWSER = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--virtual-time-budget=5000"]


def render(d, shot):
    url = "http://127.0.0.1:%d/" % d.metrics_port
    assert BROWSER, "chromium is missing: scripts/install-deps installs it"
    home = os.path.join(os.path.dirname(shot), "chromium-home")
    env = dict(os.environ, HOME=home)
    r = subprocess.run([BROWSER] + FLAGS + ["--dump-dom", url], capture_output=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    subprocess.run([BROWSER] + FLAGS + ["--window-size=1000,900", "--screenshot=" + shot,
                                        url], capture_output=True, timeout=120, env=env)
    return r.stdout.decode()


def cells(dom):
    """The text of every table row, cell by cell."""
    return [re.findall(r"<t[dh]>(.*?)</t[dh]>", row)
            for row in re.findall(r"<tr>(.*?)</tr>", dom)]


def test_pages_render_central_and_node(make_pair):
    central, node = make_pair()
    central.stub().SetSharedData(sd("model-7", 7, b"w" * 3000), timeout=10)
    assert node.stub().GetSharedData(sd("model-7"), timeout=10).update_level == 7
    out = os.path.join(alptest.TOP_BUILDDIR, "tests", "integration")
    dom = render(central, os.path.join(out, "status-central.png"))
    assert "alpcrund central" in dom
    rows = cells(dom)
    assert ["model-7", "7", "2.9 KiB"] == rows[[r[0] for r in rows].index("model-7")][:3], rows
    assert ["entries", "1"] in rows
    dom = render(node, os.path.join(out, "status-node.png"))
    assert "alpcrund node" in dom
    rows = cells(dom)
    assert ["model-7", "7", "2.9 KiB"] == rows[[r[0] for r in rows].index("model-7")][:3], rows
    up = [r for r in rows if r and r[0] == central.addr]
    assert up and "in use" in up[0][1], rows
    assert "Fetches in flight" in dom
