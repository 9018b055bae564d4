"""Every metric the docs name is one /metrics serves (issue 16): the docs/*.md pages and the
README are where operators look a metric up, and names listed by hand drift from the code.

The names are read from the Markdown (``muster_<module>_<name>``, with brace lists such as
``muster_ecs_events_{received,applied,malformed}_total`` expanded) and looked up in the
``# TYPE`` lines of a running muster's /metrics, which list a family even before it has
a sample. The etcd store's metrics exist only on a muster that uses etcd, so they are
checked against one on a real etcd cluster; the ECS source's against one with an ECS
source on moto (its per-cluster series appear with the cluster's first reconcile, which
`/readyz` waits for).
"""

import itertools
import re
from pathlib import Path

from etcd_cluster import etcd_toml
from harness import namespace_toml, wait_until
from moto_ecs import ecs_toml

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]

# A metric name as the docs write it: `muster_` then name characters and brace lists
# (a brace list follows a `_`; braces after a name are its labels, `_total{qtype}`).
NAME = re.compile(r"\bmuster_(?:[a-z0-9]|_\{[a-z0-9_,]+\}|_)+")


def expand(text):
    """``a_{b,c}_d`` → ``a_b_d``, ``a_c_d``."""
    parts = re.split(r"\{([a-z0-9_,]+)\}", text)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def documented():
    """Documented metric names, each with the first page that names it. A name that ends
    in ``_`` is a prefix (``muster_dns_tcp_*``), not a metric."""
    names = {}
    for page in DOCS:
        for match in NAME.finditer(page.read_text()):
            for name in expand(match.group(0)):
                if not name.endswith("_"):
                    names.setdefault(name, page.name)
    return names


def exposed(text):
    """The names /metrics serves: each family's, and a counter's with ``_total`` (the
    name its samples carry)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            names.add(family)
            if kind == "counter":
                names.add(family + "_total")
    return names


def missing(m, names):
    served = exposed(m.get("/metrics").text)
    return sorted(f"{name} ({page})" for name, page in names.items() if name not in served)


def is_etcd(name):
    return name.startswith("muster_etcd_")


def is_ecs(name):
    return name.startswith("muster_ecs_")


# Names the docs use that are not metrics: the TSIG key name of the Knot example.
NOT_METRICS = {"muster_notify"}


def test_the_docs_name_metrics():
    names = documented()
    assert len(names) > 40, sorted(names)
    assert any(is_etcd(n) for n in names)


def with_a_file_source(tmp_path):
    """A file source's table: the per-source series (`muster_source_*`) exist once a
    source runs, and a family without a series is not listed."""
    path = tmp_path / "instances.toml"
    path.write_text('[[instances]]\nnamespace = "internal"\nservice = "db"\nid = "db-1"\nipv4 = "10.0.9.1"\n')
    return f'\n[[sources.file]]\npath = "{path}"\n'


def test_every_documented_metric_is_served(muster, tmp_path):
    names = {
        n: p for n, p in documented().items() if not (is_etcd(n) or is_ecs(n)) and n not in NOT_METRICS
    }
    m = muster(with_a_file_source(tmp_path))
    assert missing(m, names) == []


def test_every_documented_etcd_metric_is_served(muster, etcd_cluster):
    names = {n: p for n, p in documented().items() if is_etcd(n)}
    m = muster(etcd_toml(etcd_cluster.endpoints))
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=10, message="ready on etcd")
    assert missing(m, names) == []


def test_every_documented_ecs_metric_is_served(muster, aws):
    names = {n: p for n, p in documented().items() if is_ecs(n)}
    assert len(names) > 10, sorted(names)
    aws.create_cluster("prod")
    m = muster(namespace_toml() + ecs_toml(["prod"], aws.url, aws.create_queue()))
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=15, message="ready after the first reconcile")
    assert missing(m, names) == []
