"""Prometheus histograms scraped from muster's /metrics, before and after a run.

The churn runs read `muster_store_fsync_seconds` (time to write and fsync one batch of
the log) this way: the buckets' difference over the run gives how many batches the log
wrote, how many records shared each, and the quantiles of the fsync time, to print beside
the writes' own latency. A quantile is the upper bound of the bucket it falls in (what
Prometheus's buckets can say), so "p99 ≤ 1.6 ms" reads as "99% took at most 1.6 ms".
"""

import math
import re

_SAMPLE = re.compile(r'^([a-z_]+)(?:\{le="([^"]+)"\})? ([0-9.eE+-]+|NaN|\+Inf)$')


def scrape(muster, names):
    """The samples of the metrics `names` (plain names: counters, gauges, `_sum`,
    `_count`; histogram buckets as (name, upper bound)) from muster's /metrics."""
    status, body = muster.http("GET", "/metrics", timeout=5)
    if status != 200:
        raise RuntimeError(f"GET /metrics: HTTP {status}")
    samples = {}
    for line in body.decode().splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, le, value = match.groups()
        if not any(name == wanted or name.removeprefix(wanted) in ("_bucket", "_sum", "_count") for wanted in names):
            continue
        base = name.removesuffix("_bucket")
        key = (base, math.inf if le == "+Inf" else float(le)) if le is not None else name
        samples[key] = float(value)
    return samples


def difference(before, after, name):
    """What histogram `name` counted between two scrapes: count, sum (seconds) and the
    cumulative buckets, as {upper bound: count}."""
    buckets = {key[1]: value - before.get(key, 0.0) for key, value in after.items() if isinstance(key, tuple) and key[0] == name}
    return {
        "count": after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0),
        "sum": after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0),
        "buckets": dict(sorted(buckets.items())),
    }


def quantile(histogram, q):
    """The upper bound (seconds) of the bucket holding the `q` quantile; None when the
    histogram counted nothing, inf when it lies beyond the last finite bound."""
    if histogram["count"] <= 0:
        return None
    rank = q * histogram["count"]
    for le, cumulative in histogram["buckets"].items():
        if cumulative >= rank:
            return le
    return math.inf


def summary(histogram, records=None):
    """The figures the report prints: count, mean, p50, p99 and the largest bucket used
    (seconds), and with `records` (logged over the same run) the records per fsync."""
    count = histogram["count"]
    largest = None
    previous = 0.0
    for le, cumulative in histogram["buckets"].items():
        if cumulative > previous:
            largest = le
        previous = cumulative
    result = {
        "count": count,
        "mean_s": histogram["sum"] / count if count else None,
        "p50_s": quantile(histogram, 0.5),
        "p99_s": quantile(histogram, 0.99),
        "max_bucket_s": largest,
    }
    if records is not None:
        result["records_per_fsync"] = records / count if count else None
    return result
