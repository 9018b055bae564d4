"""deploy/monitoring (issue 20): the Prometheus alert rules pass ``promtool check rules`` and
their unit tests (``promtool test rules``), the dashboard's queries parse as PromQL, and
every metric that the rules, their tests and
the Grafana dashboard name is one muster serves, so no panel or alert watches a name that
never had a sample.

Names are looked up in the ``# TYPE`` lines of a running muster's /metrics (a histogram's
``_bucket``, ``_sum`` and ``_count`` series included). A muster without etcd or an ECS source
lacks a few of those modules' series: such a name must then be one the docs list, which
test_metrics_documented.py checks against a muster on etcd and one with an ECS source.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

from test_metrics_documented import documented, exposed, is_ecs, is_etcd, with_a_file_source

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "alerts.yml"
RULE_TESTS = MONITORING / "alerts_test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

SERIES = re.compile(r"\bmuster_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool(*args):
    tool = shutil.which("promtool")
    assert tool, "promtool not found: scripts/install-test-tools.sh installs Debian's prometheus"
    return subprocess.run([tool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_rules():
    p = promtool("check", "rules", RULES.name)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout, p.stdout


def test_the_rules_unit_tests_pass():
    p = promtool("test", "rules", RULE_TESTS.name)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_dashboard_queries_are_promql(tmp_path):
    """Each panel's query, with Grafana's variables given values, parses as PromQL: promtool
    checks them as recording rules."""
    grafana = {"$__rate_interval": "5m", "$instance": ".*"}
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for n, expr in enumerate(dashboard_expressions()):
        if expr.startswith("label_values("):
            continue  # a Grafana template function, not PromQL
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        lines += [f"      - record: dashboard:panel_{n}", f"        expr: {json.dumps(expr)}"]
    assert len(lines) > 20
    rules = tmp_path / "dashboard.yml"
    rules.write_text("\n".join(lines) + "\n")
    p = promtool("check", "rules", str(rules))
    assert p.returncode == 0, p.stdout + p.stderr


def dashboard_expressions():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def named():
    """Every muster_ name the rules, their tests and the dashboard use, with where."""
    names = {}
    for path in (RULES, RULE_TESTS):
        for name in SERIES.findall(path.read_text()):
            names.setdefault(name, path.name)
    for expr in dashboard_expressions():
        for name in SERIES.findall(expr):
            names.setdefault(name, DASHBOARD.name)
    return names


def served(text):
    """The series names /metrics serves: families, counters' ``_total``, histograms' parts."""
    names = exposed(text)
    for line in text.splitlines():
        if line.startswith("# TYPE ") and line.endswith(" histogram"):
            family = line.split(" ")[2]
            names.update(family + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


def family(name):
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def unserved(names, text):
    """Names neither served here nor, for etcd's and ECS's, documented."""
    serving = served(text)
    docs = documented()
    missing = []
    for name, where in sorted(names.items()):
        if name in serving:
            continue
        if (is_etcd(name) or is_ecs(name)) and (name in docs or family(name) in docs):
            continue
        missing.append(f"{name} ({where})")
    return missing


def test_every_metric_the_dashboard_and_alerts_name_is_served(muster, tmp_path):
    names = named()
    # The dashboard covers what issue 20 lists: answers, changes, health, the store, sources.
    for wanted in ("muster_dns_queries_total", "muster_registry_revision",
                   "muster_health_transitions_total", "muster_store_fsync_seconds_bucket",
                   "muster_ecs_event_lag_seconds_bucket", "muster_etcd_up",
                   "muster_dns_rrl_dropped_total", "muster_ecs_reconcile_drift_total",
                   "muster_source_synced", "muster_source_last_sync_timestamp_seconds",
                   "muster_registry_publish_lag_seconds_bucket"):
        assert wanted in names, f"{wanted} is in neither the dashboard nor the alerts"
    m = muster(with_a_file_source(tmp_path))
    text = m.get("/metrics").text
    assert unserved(names, text) == []
    # The check tells a real name from a made-up one.
    assert unserved({"muster_dns_queries_totals": "x", "muster_etcd_upp": "y"}, text) == [
        "muster_dns_queries_totals (x)", "muster_etcd_upp (y)"]
