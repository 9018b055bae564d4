"""The printed table, the ratios against Knot, NSD and the floor, and the JSON file."""

import json
import os
import statistics

COLUMNS = (
    ("server", "server", "{}"),
    ("mode", "mode", "{}"),
    ("qps", "QPS", "{:,.0f}"),
    ("cpu_us_per_query", "CPU µs/q", "{:.2f}"),
    ("server_cpu_share", "srv CPU", "{:.0%}"),
    ("dnsperf_cpu_share", "dnsperf CPU", "{:.0%}"),
    ("bound", "bound by", "{}"),
    ("avg_us", "avg µs", "{:.0f}"),
    ("p99_us", "p99 µs", "{:.0f}"),
    ("lost", "lost", "{:,}"),
    ("response_bytes", "resp B", "{}"),
    ("other_core0_share", "core0 other", "{:.0%}"),
)

RATIO_KEYS = (("qps", "QPS"), ("cpu_us_per_query", "CPU/q"), ("p99_us", "p99"), ("avg_us", "avg"))


# A process using at least this share of its core limited the rate. When dnsperf is the
# one, the QPS is the load generator's ceiling on one core, not the server's; "neither"
# means something else (scheduling, other processes, packet loss) held both back.
SATURATED = 0.9


def classify(rows):
    """Sets each row's `bound`: what limited its rate (see SATURATED)."""
    for row in rows:
        if row["mode"] != "saturation" and not row["mode"].startswith("churn"):
            row["bound"] = "rate"
        else:
            row["bound"] = (
                "server" if row["server_cpu_share"] >= SATURATED
                else "dnsperf" if row["dnsperf_cpu_share"] >= SATURATED
                else "neither"
            )  # fmt: skip


def table(rows):
    cells = [[title for _, title, _ in COLUMNS]]
    for row in rows:
        cells.append([fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = []
    for n, line in enumerate(cells):
        lines.append("  ".join(cell.rjust(width) if i > 1 else cell.ljust(width) for i, (cell, width) in enumerate(zip(line, widths))))
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def ratios(rows):
    """muster / other for each other server, per mode, on the keys of RATIO_KEYS."""
    by_mode = {}
    for row in rows:
        by_mode.setdefault(row["mode"], {})[row["label"]] = row
    result = {}
    for mode, labelled in by_mode.items():
        muster = labelled.get("muster")
        if not muster:
            continue
        for other in ("knot", "nsd", "floor"):
            if other not in labelled:
                continue
            result[f"muster/{other} ({mode})"] = {
                key: muster[key] / labelled[other][key]
                for key, _ in RATIO_KEYS
                if muster.get(key) is not None and labelled[other].get(key)
            }
    return result


def twin_ratios(rows, twin, base="muster"):
    """CPU per query and QPS of `twin` (a muster with one feature on, measured
    interleaved with `base`) over `base`, per mode: the ratio of the two medians over the
    repeats, and each repeat's ratio (the i-th runs of both, measured back to back)."""
    by_mode = {}
    for row in rows:
        by_mode.setdefault(row["mode"], {})[row["label"]] = row
    result = {}
    for mode, labelled in by_mode.items():
        if base not in labelled or twin not in labelled:
            continue
        on = labelled[twin].get("repeats", [labelled[twin]])
        off = labelled[base].get("repeats", [labelled[base]])
        result[mode] = {
            key: statistics.median([r[key] for r in on]) / statistics.median([r[key] for r in off]) for key in ("cpu_us_per_query", "qps")
        }
        result[mode]["repeats"] = [
            {key: a[key] / b[key] for key in ("cpu_us_per_query", "qps")} for a, b in zip(on, off)
        ]  # fmt: skip
    return result


def twin_ratio_lines(twin, ratios, base="muster"):
    """One line per mode: `twin / base (mode): CPU/q X, QPS Y`, and each repeat's."""
    lines = []
    for mode, ratio in ratios.items():
        line = f"  {twin} / {base} ({mode}): CPU/q {ratio['cpu_us_per_query']:.3f}, QPS {ratio['qps']:.3f}"
        if len(ratio["repeats"]) > 1:
            each = ", ".join(f"{r['cpu_us_per_query']:.3f}" for r in ratio["repeats"])
            line += f" (medians; each repeat's CPU/q {each})"
        lines.append(line)
    return lines


def ratio_lines(ratio_table):
    lines = []
    for name, values in ratio_table.items():
        parts = [f"{title} {values[key]:.2f}" for key, title in RATIO_KEYS if key in values]
        lines.append(f"  {name}: " + ", ".join(parts))
    return "\n".join(lines)


def load_lines(servers):
    lines = []
    for name, info in servers.items():
        memory = info.get("memory_after_load", {})
        lines.append(
            f"  {name}: load {info['load_seconds']:.2f} s, "
            f"VmRSS {memory.get('rss_kib', 0) / 1024:.1f} MiB (Pss {memory.get('pss_kib', 0) / 1024:.1f} MiB) after load"
        )
    return "\n".join(lines)


def churn_lines(churn):
    if not churn:
        return ""
    lines = []
    for run in churn["runs"]:
        lines.append(
            f"  target {run['target_per_s']}/s, achieved {run['achieved_per_s']:.0f}/s "
            f"({run['puts']} PUT, {run['deletes']} DELETE, {len(run['errors'])} errors) over {run['services_touched']} services; "
            f"write answered in p50 {run['write_ms']['p50']:.2f} ms, p99 {run['write_ms']['p99']:.2f} ms, max {run['write_ms']['max']:.2f} ms"
        )
        lines.append("    " + fsync_line(run["fsync"]))
        lines.append("    slowest requests (sent at s, took ms): " + ", ".join(f"{at:.2f} s {ms:.0f}" for at, ms in run["slowest"][:5]))
    for run in churn.get("alone", []):
        lines.append(
            f"  alone (no DNS load): achieved {run['achieved_per_s']:.0f}/s, {run['cpu_us_per_change']:.1f} µs muster CPU per change, "
            f"write answered in p50 {run['write_ms']['p50']:.2f} ms, p99 {run['write_ms']['p99']:.2f} ms, "
            f"{run['verify']['stale']} stale after; " + fsync_line(run["fsync"])
        )
    lines += [
        f"  QPS {churn['qps']:,.0f} vs {churn['baseline_qps']:,.0f} without churn: drop {churn['qps_drop']:.1%}; "
        f"CPU/q {churn['cpu_us_per_query']:.2f} vs {churn['baseline_cpu_us_per_query']:.2f} µs",
        f"  each run's QPS: with churn {', '.join(f'{q:,.0f}' for q in churn['qps_runs'])}; "
        f"without {', '.join(f'{q:,.0f}' for q in churn['baseline_qps_runs'])}",
        f"  read-your-writes during the runs: {churn['stale_reads']} stale of {churn['read_checks']} checked"
        f" ({sum(run['probe_timeouts'] for run in churn['runs'])} probe timeouts)",
        f"  after each run: {churn['stale_after']} stale of {churn['services_checked_after']} service checks",
    ]
    short = [run for run in churn["runs"] if run["achieved_per_s"] < 0.95 * run["target_per_s"]]
    if short:
        lines.append("  WARNING: the churn client fell short of the target rate; raise --churn-clients")
    for run in churn["runs"]:
        lines += [f"    {example}" for example in run["stale_reads"][:5] + run["errors"][:5]]
    for run in churn["runs"]:
        lines += [f"    {example}" for example in run["verify"]["examples"][:5]]
    return "\n".join(lines)


def fsync_line(fsync):
    """The log's side of a churn run: batches written and fsynced, records per batch, and
    the fsync time's quantiles (bucket upper bounds, bench/dns/histogram.py)."""
    if not fsync["count"]:
        return "log: no fsync during the run"

    def ms(seconds):
        return "over the last bucket" if seconds == float("inf") else f"≤ {seconds * 1000:.2f} ms"

    return (
        f"log: {fsync['count']:.0f} fsyncs, {fsync['records_per_fsync']:.1f} records each, "
        f"mean {fsync['mean_s'] * 1000:.2f} ms, p50 {ms(fsync['p50_s'])}, p99 {ms(fsync['p99_s'])}, "
        f"max {ms(fsync['max_bucket_s'])}"
    )


def write_json(result, directory, stamp):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{stamp}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    return path
