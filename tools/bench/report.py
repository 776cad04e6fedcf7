"""The pressure test's Markdown report and latency-over-concurrency plot."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["commit", "markdown", "plot", "record"]

RUNS_MARKER = "<!-- hsmsvc bench --record: one row per operation and run, newest first -->"
"""Where ``--record`` adds a run's rows in docs/performance.md (the table follows the marker)."""

_UNIT = {"unary": "calls/s", "stream": "msgs/s", "batch": "items/s"}


def _sizes(sizes: list[int]) -> str:
    text = [f"{n:,}" for n in sizes]
    return text[0] if len(text) == 1 else ", ".join(text[:-1]) + " or " + text[-1]


def _form(row: dict[str, Any]) -> str:
    return f"batch of {row['items_per_request']:,}" if row["form"] == "batch" else str(row["form"])


def _rounds(s: dict[str, Any]) -> str:
    n = s.get("rounds", 1)
    if n == 1:
        return ""
    return (f", {n} rounds per row with hsmsvc and echo taking turns to go first; a row is its round with "
            "the median ratio (mTLS runs: one round)")


def commit() -> str:
    """The checkout's commit, ``-dirty`` if it has uncommitted changes (a run of code no commit holds)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + ("-dirty" if dirty else "")


def record(doc: dict[str, Any], path: Path) -> None:
    """Add this run's ratios to the table after :data:`RUNS_MARKER` in ``path``, one row per operation."""
    text = path.read_text()
    if RUNS_MARKER not in text:
        raise SystemExit(f"hsmsvc bench: {path} has no line {RUNS_MARKER!r} to record under")
    m, s = doc["machine"], doc["settings"]
    where = f"{m['cpus']} x {m['cpu']}, {m.get('host', '?')}"
    cells: dict[str, list[str]] = {}
    for r in doc["results"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        cells.setdefault(r["operation"], []).append(f"{_form(r)} x{r['concurrency']} {ratio}")
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    rows = [f"| {day} | {m.get('commit', '?')} | {where} | {s.get('store', 'SQLite (a file)')}, "
            f"{s['workers']} workers | {op} | {', '.join(c)} |" for op, c in cells.items()]
    head, _, tail = text.partition(RUNS_MARKER)
    lines = tail.split("\n")
    # The marker, then the table's header and rule lines; new rows go first below them.
    at = next(i for i, x in enumerate(lines) if x.startswith("|---")) + 1
    path.write_text(head + RUNS_MARKER + "\n".join(lines[:at] + rows + lines[at:]))


def markdown(doc: dict[str, Any]) -> str:
    s, m = doc["settings"], doc["machine"]
    ranged = s.get("rounds", 1) > 1
    rot = ", ".join(f"{t} {v['max_age_seconds'] // 3600} h or {v['max_uses']:,} uses"
                    for t, v in s["rotation"].items())
    lines = [
        "# hsmsvc pressure test",
        "",
        f"- Machine: {m['cpus']} CPUs ({m['cpu']}), host {m.get('host', '?')}, Python {m['python']}, "
        f"grpcio {m['grpcio']}; code at commit {m.get('commit', '?')}",
        f"- Server: {s['backend']} backend, {s.get('store', 'SQLite (a file)')} key store, {s['workers']} worker "
        f"process(es), log level {s['server_log_level']}",
        f"- Transport: {s['transport']}; load generator {s['load_generator']}",
        f"- Each run: {s['warm_up_seconds']:g} s warm-up, then {s['duration_seconds']:g} s measured{_rounds(s)}; "
        f"streams carry {s['stream_messages']} messages, batches {_sizes(s['batch_size'])} items "
        "(a VerifyPin batch: that many cards, since one card's attempt limit checks its repeats one by one)",
        f"- TranslatePin: {s.get('translate_pin_keys', 'two-key TDES ZPKs, format 0')}; VerifyPin: format 0 "
        "blocks under a two-key TDES ZPK against PINs stored in format 0 under a TDES PSK",
        f"- Rotation: {rot} ({s['rotation_note']})",
        f"- Baseline: {s['echo']}, driven in the same run with the same body and load",
        *([f"- Connections: {s['connections']}"] if "connections" in s else []),
        "",
        "Rate is calls/s (unary), messages/s (stream) or items/s (batch). Latency is per request: "
        "a unary call, a whole stream, or a whole batch. Ratio is hsmsvc's rate over echo's"
        + (" in the row's round; range is the lowest and highest ratio of its rounds." if ranged else "."),
        "",
        "| operation | form | in flight | rate | p50 ms | p95 ms | p99 ms | errors | server CPU (cores) "
        "| RSS MB | connections | file handles | echo rate | echo p50 ms | echo p99 ms | ratio |"
        + (" range |" if ranged else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if ranged else ""),
    ]
    for r in doc["results"]:
        sv, e = r["server"], r["echo"]
        lines.append(
            f"| {r['operation']} | {_form(r)} | {r['concurrency']} | {r['rate']:,.0f} {_UNIT[r['form']]} "
            f"| {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {sv['cpu_cores']:.2f} "
            f"| {sv['rss_mb']:.0f} | {sv['connections']} | {sv['file_handles']} | {e['rate']:,.0f} "
            f"| {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | **{r['ratio']:.0%}** |"
            + (f" {r['ratio_min']:.0%}–{r['ratio_max']:.0%} |" if ranged else ""))
    lines += ["", "![latency over concurrency](latency.png)", ""]
    if doc.get("mtls"):
        lines += [
            "## Cost of mTLS",
            "",
            f"{s['mtls']}. Plaintext and mTLS are measured one after the other at each level. Server CPU per "
            "call is the server's CPU time over its calls; haproxy's CPU is the client side's and is shown apart.",
            "",
            "| operation | in flight | plaintext calls/s | mTLS calls/s | change | mTLS p50 ms | mTLS p99 ms "
            "| server CPU µs/call plaintext | mTLS | haproxy CPU (cores) | echo plaintext | echo mTLS "
            "| ratio plaintext | ratio mTLS | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in doc["mtls"]:
            lines.append(
                f"| {r['operation']} | {r['concurrency']} | {r['plaintext']['rate']:,.0f} | {r['mtls']['rate']:,.0f} "
                f"| {r['mtls_rate_change']:+.0%} | {r['mtls']['p50_ms']:.2f} | {r['mtls']['p99_ms']:.2f} "
                f"| {r['plaintext']['server_cpu_us_per_call']} | {r['mtls']['server_cpu_us_per_call']} "
                f"| {r['terminator_cpu_cores']:.2f} | {r['echo_plaintext']['rate']:,.0f} "
                f"| {r['echo_mtls']['rate']:,.0f} "
                f"| {r['ratio_plaintext']:.0%} | **{r['ratio_mtls']:.0%}** | {r['mtls_errors']} |")
        lines.append("")
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    """p50 and p99 of each unary operation, and of echo, against calls in flight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unary = [r for r in doc["results"] if r["form"] == "unary"]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for op in dict.fromkeys(r["operation"] for r in unary):
        rs = sorted((r for r in unary if r["operation"] == op), key=lambda r: r["concurrency"])
        xs = [r["concurrency"] for r in rs]
        line = ax.plot(xs, [r["p50_ms"] for r in rs], marker="o", label=f"{op} p50")[0]
        ax.plot(xs, [r["p99_ms"] for r in rs], marker="^", linestyle="--", color=line.get_color(),
                label=f"{op} p99")
    if unary:
        first = unary[0]["operation"]
        rs = sorted((r for r in unary if r["operation"] == first), key=lambda r: r["concurrency"])
        ax.plot([r["concurrency"] for r in rs], [r["echo"]["p50_ms"] for r in rs], color="black", marker="s",
                label="echo p50")
        ax.plot([r["concurrency"] for r in rs], [r["echo"]["p99_ms"] for r in rs], color="black",
                linestyle="--", marker="s", label="echo p99")
        ax.set_xscale("log", base=2)
    ax.set_xlabel("unary calls in flight")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"hsmsvc unary latency, {doc['settings']['backend']} backend, "
                 f"{doc['settings']['workers']} worker(s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
