"""The markdown summary of a results document (``bench/results/latest.md``)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}{unit}" if abs(value) < 100 else f"{value:,.0f}{unit}"
    return f"{value}{unit}"


def _verdict(section: dict[str, Any], key: str) -> str:
    met = section.get("met", {}).get(key)
    return "met" if met else ("**missed**" if met is not None else "-")


def summary(doc: dict[str, Any]) -> str:
    """Headline ratios with their targets, then the absolute figures behind them."""
    m = doc["machine"]
    lines = [
        f"# sfconnect benchmarks — {doc['started_at']} ({doc['config']['mode']} run, {doc['duration_s']:.0f} s)",
        "",
        f"Machine: {m['cpu_count']} cores ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}, "
        f"commit {m['commit']}{'' if m.get('tree_clean') else ' (working tree had changes)'}; "
        f"load average {m['load_average_at_start']} at start, {m.get('load_average_at_end')} at end.",
        "",
        "| scenario | figure | value | target | verdict |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("token_read", "throughput_ratio"),
        ("token_read", "p99_ratio"),
        ("create_pipeline", "ideal_ratio"),
        ("create_pipeline", "builder_rss_ratio"),
        ("refresh_rpc", "p50_ratio"),
        ("builder_scaling", "speedup"),
    ]
    for scenario, key in rows:
        section = doc.get(scenario)
        if not isinstance(section, dict) or "targets" not in section:
            continue
        lines.append(
            f"| {scenario} | {key} | {_fmt(section.get(key))} | {section['targets'][key]} | {_verdict(section, key)} |"
        )
    lines += ["", *_details(doc)]
    errors = doc.get("errors", {})
    if errors:
        lines += ["", "## Scenarios that did not run", ""]
        lines += [f"- {name}: {message}" for name, message in errors.items()]
    return "\n".join(lines) + "\n"


def _details(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    tr = doc.get("token_read")
    if isinstance(tr, dict) and "ours" in tr:
        out += [
            "## Token read path",
            "",
            f"{tr['connections']} connections, concurrency {tr['concurrency']}, {tr['rounds']} x "
            f"{tr['seconds_per_round']:g} s per server.",
            "",
            "| server | req/s | p50 | p99 | errors |",
            "|---|---|---|---|---|",
            f"| Manager | {_fmt(tr['ours']['rps'])} | {_fmt(tr['ours']['p50_ms'], ' ms')} | "
            f"{_fmt(tr['ours']['p99_ms'], ' ms')} | {tr['ours']['errors']} |",
            f"| bare find-by-id | {_fmt(tr['baseline']['rps'])} | {_fmt(tr['baseline']['p50_ms'], ' ms')} | "
            f"{_fmt(tr['baseline']['p99_ms'], ' ms')} | {tr['baseline']['errors']} |",
            "",
            f"Manager RSS: {tr['manager_rss_mb']['start']} MB at start, {tr['manager_rss_mb']['max']} MB max.",
            "",
        ]
    for key, title in (("create_pipeline", "Create-connection pipeline"),):
        cp = doc.get(key)
        if isinstance(cp, dict) and "measured_s" in cp:
            out += [
                f"## {title}",
                "",
                f"{cp['connections']} connections, {cp['builders']} Builder(s) x prefetch "
                f"{cp['prefetch_per_builder']}, simulator latency {cp['sim_latency_ms']} ms, "
                f"{cp['salesforce_calls_per_create']} Salesforce calls per create (counted).",
                "",
                f"Ideal {_fmt(cp['ideal_s'], ' s')}, measured {_fmt(cp['measured_s'], ' s')}, "
                f"{cp['active']} active, {cp['failed']} failed. Builder RSS after/warm-up: "
                f"{_fmt(cp.get('builder_rss_ratio'))}.",
                "",
            ]
    bs = doc.get("builder_scaling")
    if isinstance(bs, dict) and "one_builder" in bs:
        one, two = bs["one_builder"], bs["two_builders"]
        out += [
            "## Scaling",
            "",
            f"One Builder {_fmt(one['measured_s'], ' s')} (ideal {_fmt(one['ideal_s'], ' s')}), two Builders "
            f"{_fmt(two['measured_s'], ' s')} (ideal {_fmt(two['ideal_s'], ' s')}): speedup "
            f"{_fmt(bs['speedup'])} (ideal {_fmt(bs['ideal_speedup'])}).",
            "",
        ]
    rr = doc.get("refresh_rpc")
    if isinstance(rr, dict) and "ours" in rr:
        out += [
            "## Refresh round trip",
            "",
            "| path | p50 | p99 |",
            "|---|---|---|",
            f"| force_refresh (ours) | {_fmt(rr['ours']['p50_ms'], ' ms')} | {_fmt(rr['ours']['p99_ms'], ' ms')} |",
            f"| echo, product guarantees | {_fmt(rr['baseline']['p50_ms'], ' ms')} | "
            f"{_fmt(rr['baseline']['p99_ms'], ' ms')} |",
            f"| echo, minimal | {_fmt(rr['baseline_minimal']['p50_ms'], ' ms')} | "
            f"{_fmt(rr['baseline_minimal']['p99_ms'], ' ms')} |",
            f"| plain token read | {_fmt(rr['plain_read']['p50_ms'], ' ms')} | "
            f"{_fmt(rr['plain_read']['p99_ms'], ' ms')} |",
            "",
        ]
    return out
