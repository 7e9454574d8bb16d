"""Spec §8: /metrics, /healthz and /readyz on metrics_listen."""
import re

from alptest import RawH2, sd

FAMILIES = {
    "alpcrund_requests_total": "counter",
    "alpcrund_request_duration_seconds": "histogram",
    "alpcrund_entries": "gauge",
    "alpcrund_payload_bytes": "gauge",
    "alpcrund_cache_hits_total": "counter",
    "alpcrund_cache_misses_total": "counter",
    "alpcrund_upstream_fetches_total": "counter",
    "alpcrund_coalesced_waits_total": "counter",
    "alpcrund_evictions_total": "counter",
    "alpcrund_expired_total": "counter",
    "alpcrund_connections": "gauge",
    "alpcrund_upstream_up": "gauge",
    # the change feed (issue 6)
    "alpcrund_watchers": "gauge",
    "alpcrund_watch_queued_bytes": "gauge",
    "alpcrund_watch_notices_total": "counter",
    "alpcrund_watch_cutoffs_total": "counter",
    "alpcrund_prefetches_total": "counter",
    # payload buffers kept for reuse (issue 16)
    "alpcrund_payload_buffers_kept_bytes": "gauge",
    # central's store found changed under a node's copies (issue 17)
    "alpcrund_upstream_incarnation_changes_total": "counter",
}


def test_every_family_is_exposed(daemon):
    daemon.stub().SetSharedData(sd("m", 1, b"x"), timeout=10)
    st, text = daemon.http_get("/metrics")
    assert st == 200
    for name, kind in FAMILIES.items():
        assert re.search(r"^# TYPE %s %s$" % (name, kind), text, re.M), \
            "no `# TYPE %s %s` in /metrics" % (name, kind)
    daemon.metrics()        # every sample line parses


def test_healthz_and_readyz_while_serving(daemon):
    assert daemon.http_get("/healthz")[0] == 200
    assert daemon.http_get("/readyz")[0] == 200


def test_entries_and_payload_bytes_follow_the_store(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("pb-1", 1, b"a" * 1000), timeout=10)
    s.SetSharedData(sd("pb-2", 1, b"b" * 3000), timeout=10)
    daemon.wait_metric(lambda m: m.value("alpcrund_entries") == 2
                       and m.value("alpcrund_payload_bytes") == 4000)
    s.UpdateSharedData(sd("pb-1", 2, b"c" * 10), timeout=10)
    daemon.wait_metric(lambda m: m.value("alpcrund_payload_bytes") == 3010)
    s.DeleteSharedData(sd("pb-2"), timeout=10)
    daemon.wait_metric(lambda m: m.value("alpcrund_entries") == 1
                       and m.value("alpcrund_payload_bytes") == 10)


def test_a_replaced_level_s_buffer_is_kept_then_given_back(daemon):
    """The buffer of a large level that the next level replaced is kept
    for the next upload of its size, shown by
    alpcrund_payload_buffers_kept_bytes, and given back after 10 s unused;
    small ones are never kept."""
    s = daemon.stub()
    s.SetSharedData(sd("small", 1, b"s" * 100000), timeout=10)
    s.UpdateSharedData(sd("small", 2, b"t" * 100000), timeout=10)
    assert daemon.metric("alpcrund_payload_buffers_kept_bytes") == 0
    big = 8 << 20
    s.SetSharedData(sd("big", 1, b"a" * big), timeout=30)
    s.UpdateSharedData(sd("big", 2, b"b" * big), timeout=30)
    kept = daemon.metric("alpcrund_payload_buffers_kept_bytes")
    assert big <= kept <= big + (1 << 20), kept
    # the next upload of that size takes it again
    s.UpdateSharedData(sd("big", 3, b"c" * big), timeout=30)
    assert s.GetSharedData(sd("big"), timeout=30).payload == b"c" * big
    # unused: given back within 10 s and the trim's second
    daemon.wait_metric(lambda m: m.value("alpcrund_payload_buffers_kept_bytes") == 0, 30)


def test_duration_histogram_is_consistent(daemon):
    s = daemon.stub()
    s.SetSharedData(sd("h", 1, b"x"), timeout=10)
    for _ in range(25):
        s.GetSharedData(sd("h"), timeout=10)
    m = daemon.wait_metric(lambda m: m.value("alpcrund_request_duration_seconds_count",
                                             method="GetSharedData") == 25)
    buckets = []
    for (name, lab), v in m.items():
        lab = dict(lab)
        if name == "alpcrund_request_duration_seconds_bucket" and lab.get("method") == "GetSharedData":
            buckets.append((float(lab["le"]), v))
    buckets.sort()
    assert buckets, "no buckets for GetSharedData"
    assert buckets[-1][0] == float("inf") and buckets[-1][1] == 25
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "bucket counts are not cumulative: %r" % buckets
    assert m.value("alpcrund_request_duration_seconds_sum", method="GetSharedData") > 0


def test_connections_gauge(daemon):
    daemon.wait_metric(lambda m: m.value("alpcrund_connections") == 0)
    conns = [RawH2(daemon.port) for _ in range(3)]
    try:
        daemon.wait_metric(lambda m: m.value("alpcrund_connections") == 3)
    finally:
        for c in conns:
            c.close()
    daemon.wait_metric(lambda m: m.value("alpcrund_connections") == 0)
