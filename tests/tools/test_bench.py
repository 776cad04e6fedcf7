"""`hsmsvc bench` end to end: a real server, a real echo server and h2load, in a short run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _h2load() -> None:
    for tool, package in (("h2load", "nghttp2-client"), ("haproxy", "haproxy")):
        if shutil.which(tool):
            continue
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} missing under CI (apt-get install {package}; .ci/run does this)")
        pytest.skip(f"{tool} missing: apt-get install {package}")


def test_bench_reports_every_form_against_echo(tmp_path: Path) -> None:
    _h2load()
    out = tmp_path / "report"
    r = subprocess.run(
        [sys.executable, "-m", "hsmsvc", "bench", "--out", str(out), "--ops", "TranslatePin,VerifyMac,VerifyPin",
         "--forms", "unary,stream,batch", "--concurrency", "1,8", "--stream-concurrency", "2",
         "--batch-concurrency", "2", "--stream-messages", "20", "--batch-size", "20,50",
         "--duration", "0.6", "--warm-up", "0.2", "--workers", "2", "--mtls-concurrency", "4", "--rounds", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["machine"]["commit"] and doc["machine"]["host"]  # a run says what code it measured, where
    rows = doc["results"]
    assert {(x["operation"], x["form"], x["items_per_request"]) for x in rows if x["form"] != "unary"} == {
        (op, f, n) for op in ("TranslatePin", "VerifyMac", "VerifyPin")
        for f, n in (("stream", 20), ("batch", 20), ("batch", 50))}
    for x in rows:
        assert x["errors"] == 0 and x["rate"] > 0 and x["echo"]["rate"] > 0, x
        assert x["ratio"] == pytest.approx(x["rate"] / x["echo"]["rate"], rel=0.01)
        assert 0 < x["p50_ms"] <= x["p95_ms"] <= x["p99_ms"] <= x["max_ms"]
        # The server's own count agrees that every request answered OK.
        assert x["server_ok"] >= x["requests"] > 0
        s = x["server"]
        assert s["cpu_cores"] > 0 and s["rss_mb"] > 10 and s["connections"] >= 1 and s["file_handles"] > 0
        # Two workers: each run's connections were spread over both before it was measured.
        assert x["load_starts"] >= 1 and x["echo"]["load_starts"] >= 1
    assert {x["concurrency"] for x in rows if x["form"] == "unary"} == {1, 8}
    for batch in (x for x in rows if x["form"] == "batch"):
        assert batch["rate"] == pytest.approx(batch["requests_per_second"] * batch["items_per_request"], rel=0.01)
    assert doc["settings"]["workers"] == 2 and "ZPK" in doc["settings"]["rotation"]
    md = (out / "report.md").read_text()
    assert ("| TranslatePin | unary | 8 |" in md and "| VerifyMac | batch of 20 | 2 |" in md and "Rotation: " in md
            and "latency.png" in md)
    assert "- Connections: " in md
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # mTLS beside plaintext, for hsmsvc and echo alike, through the same terminator.
    (m,) = doc["mtls"]
    assert m["concurrency"] == 4 and m["mtls_errors"] == 0
    for side in ("plaintext", "mtls", "echo_plaintext", "echo_mtls"):
        assert m[side]["rate"] > 0 and m[side]["failed"] == 0 and m[side]["server_cpu_us_per_call"] > 0, side
    assert m["ratio_mtls"] == pytest.approx(m["mtls"]["rate"] / m["echo_mtls"]["rate"], rel=0.01)
    assert m["terminator_cpu_cores"] > 0 and "## Cost of mTLS" in md
    for log in ("server.log", "server-mtls.log"):
        assert "Traceback" not in (out / log).read_text()


def test_bench_rows_are_their_median_round(tmp_path: Path) -> None:
    """Several rounds per row, hsmsvc and echo taking turns: the row is the round with the median ratio."""
    _h2load()
    out = tmp_path / "report"
    r = subprocess.run(
        [sys.executable, "-m", "hsmsvc", "bench", "--out", str(out), "--ops", "TranslatePin", "--forms", "unary",
         "--concurrency", "4", "--duration", "0.4", "--warm-up", "0.2", "--rounds", "3", "--no-mtls"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "report.json").read_text())
    (x,) = doc["results"]
    ratios = sorted(k["ratio"] for k in x["rounds"])
    assert len(ratios) == 3 and doc["settings"]["rounds"] == 3
    assert x["ratio"] == ratios[1] and x["ratio_min"] == ratios[0] and x["ratio_max"] == ratios[2]
    mid = next(k for k in x["rounds"] if k["ratio"] == x["ratio"])
    assert x["rate"] == mid["rate"] and x["echo"]["rate"] == mid["echo_rate"]
    assert x["errors"] == 0 and x["server_ok"] >= x["requests"] > 0
    md = (out / "report.md").read_text()
    assert "3 rounds per row" in md and "| ratio | range |" in md
    assert f"**{x['ratio']:.0%}** | {ratios[0]:.0%}–{ratios[2]:.0%} |" in md


def test_bench_translates_between_aes_keys_in_format_4(tmp_path: Path) -> None:
    _h2load()
    out = tmp_path / "report"
    r = subprocess.run(
        [sys.executable, "-m", "hsmsvc", "bench", "--out", str(out), "--ops", "TranslatePin", "--pin-keys", "aes",
         "--concurrency", "4", "--stream-concurrency", "2", "--batch-concurrency", "2", "--stream-messages", "20",
         "--batch-size", "50", "--duration", "0.5", "--warm-up", "0.2", "--no-mtls", "--rounds", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["settings"]["translate_pin_keys"] == "AES-128 ZPKs, format 4"
    assert {x["form"] for x in doc["results"]} == {"unary", "stream", "batch"}
    for x in doc["results"]:
        assert x["errors"] == 0 and x["server_ok"] >= x["requests"] > 0, x
    assert "TranslatePin: AES-128 ZPKs, format 4" in (out / "report.md").read_text()


def test_bench_verifies_cvvs_and_arqcs_in_unary_and_batch_form(tmp_path: Path) -> None:
    # Issue 35's operations: every answer checked by the bench (verified, no item error), and no stream form.
    _h2load()
    out = tmp_path / "report"
    r = subprocess.run(
        [sys.executable, "-m", "hsmsvc", "bench", "--out", str(out), "--ops", "VerifyCvv,VerifyArqc",
         "--concurrency", "4", "--batch-concurrency", "2", "--batch-size", "20", "--duration", "0.4",
         "--warm-up", "0.2", "--no-mtls", "--rounds", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "report.json").read_text())
    assert {(x["operation"], x["form"]) for x in doc["results"]} == {
        (op, form) for op in ("VerifyCvv", "VerifyArqc") for form in ("unary", "batch")}
    for x in doc["results"]:
        assert x["errors"] == 0 and x["server_ok"] >= x["requests"] > 0, x


def test_bench_on_a_postgresql_store_drops_its_database(tmp_path: Path) -> None:
    _h2load()
    from tests import pg

    with pg.throwaway_db():  # skips, or fails under CI, without the server
        pass
    import psycopg

    def bench_dbs() -> set[str]:
        with psycopg.connect(pg.PG_ADMIN) as c:
            return {r[0] for r in c.execute("SELECT datname FROM pg_database WHERE datname LIKE 'hsmsvc_bench_%'")}

    before = bench_dbs()
    out = tmp_path / "report"
    r = subprocess.run(
        [sys.executable, "-m", "hsmsvc", "bench", "--out", str(out), "--ops", "VerifyPin", "--forms", "unary,batch",
         "--concurrency", "2", "--batch-concurrency", "1", "--batch-size", "20", "--duration", "0.5", "--rounds", "1",
         "--warm-up", "0.2", "--no-mtls", "--store", pg.PG_ADMIN],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "report.json").read_text())
    store = doc["settings"]["store"]
    assert store.startswith("PostgreSQL at ") and "@" not in store
    assert all(x["errors"] == 0 and x["server_ok"] >= x["requests"] > 0 for x in doc["results"])
    assert f"{store} key store" in (out / "report.md").read_text()
    assert bench_dbs() == before


def test_bench_refuses_bad_arguments(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "hsmsvc", "bench", "--ops", "Nope"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "unknown 'nope'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "hsmsvc", "bench", "--pin-keys", "des"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--pin-keys" in r.stderr
    r = subprocess.run([sys.executable, "-m", "hsmsvc", "bench", "--store", "mysql://x"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--store" in r.stderr
    r = subprocess.run([sys.executable, "-m", "hsmsvc", "bench", "--rounds", "0", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--rounds" in r.stderr


def test_a_run_is_recorded_under_the_marker_newest_first(tmp_path: Path) -> None:
    """Issue 34: docs/performance.md keeps one row per operation of each recorded run, with its commit."""
    from tools.bench import report

    doc_file = tmp_path / "performance.md"
    doc_file.write_text(f"# P\n\n{report.RUNS_MARKER}\n| date | commit | machine | store | operation | ratios |\n"
                        "|---|---|---|---|---|---|\n| old | row |\n\n## Next\n")

    def run(commit: str, ratio: float) -> dict[str, object]:
        return {"machine": {"cpus": 2, "cpu": "EPYC", "host": "h", "commit": commit},
                "settings": {"store": "SQLite (a file)", "workers": 2},
                "results": [{"operation": "VerifyPin", "form": "unary", "concurrency": 64, "ratio": ratio},
                            {"operation": "VerifyPin", "form": "batch", "items_per_request": 100,
                             "concurrency": 4, "ratio": None}]}

    report.record(run("aaaa111", 0.351), doc_file)
    report.record(run("bbbb222-dirty", 0.452), doc_file)
    rows = [x for x in doc_file.read_text().splitlines() if x.startswith("| 2")]
    assert [r.split(" | ")[1] for r in rows] == ["bbbb222-dirty", "aaaa111"]
    assert rows[0].endswith("| VerifyPin | unary x64 0.45, batch of 100 x4 - |")
    assert doc_file.read_text().endswith("| old | row |\n\n## Next\n")
    assert report.commit() != ""
