"""contrib/grafana/alpcrund.json (spec §8): every metric its queries use is
one a real daemon shows on /metrics (a central with a watcher, and a node
with prefetch in front of it, so that every family has a sample), and the
dashboard is importable as Grafana expects (its datasource an input)."""
import json
import os
import re

import alptest
from alptest import cache_pb2, sd, wait_until

DASH = os.path.join(alptest.TOP_SRCDIR, "contrib", "grafana", "alpcrund.json")
SUFFIXES = ("_bucket", "_sum", "_count")


def names(d):
    st, body = d.http_get("/metrics")
    assert st == 200
    return {m.group(1) for m in re.finditer(r"^([a-z_]+)[{ ]", body, re.M)}

def test_dashboard_queries_name_real_metrics(make_pair):
    with open(DASH) as f:
        dash = json.load(f)
    assert dash["__inputs"][0]["name"] == "DS_PROMETHEUS"
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    used = {m for e in exprs for m in re.findall(r"\balpcrund_[a-z_]+", e)}

    central, node = make_pair(node="prefetch on\n")
    central.stub().SetSharedData(sd("g", 1, b"v"), timeout=10)
    node.stub().GetSharedData(sd("g"), timeout=10)
    it = central.stub().WatchSharedData(cache_pb2.WatchRequest(), timeout=30)
    next(it)
    wait_until(lambda: central.metric("alpcrund_watchers") >= 1, 10, what="a watcher")
    shown = names(central) | names(node)
    it.cancel()
    missing = sorted(m for m in used
                     if m not in shown and not (m.endswith(SUFFIXES) and
                                                re.sub(r"_(bucket|sum|count)$", "", m) + "_bucket"
                                                in shown))
    assert not missing, "the dashboard queries metrics no daemon shows: %s" % missing
    # and the main families are on it
    for m in ("alpcrund_requests_total", "alpcrund_request_duration_seconds_bucket",
              "alpcrund_cache_hits_total", "alpcrund_upstream_up",
              "alpcrund_upstream_target_up", "alpcrund_watchers", "alpcrund_inflight_bytes",
              "alpcrund_evictions_total", "alpcrund_upstream_received_bytes_total"):
        assert m in used, m
