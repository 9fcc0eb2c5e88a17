"""Smoke test of the benchmark harness: tiny workloads through the real code paths.

The measurements themselves run with ``python -m benchmarks`` (see benchmarks/README.md);
here each client kind does one 50-chunk stream in a worker process, exactly as in a
benchmark round, and the report is rendered to a temporary file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.clients import StreamResult
from benchmarks.common import expected_text
from benchmarks.report import render
from benchmarks.run import run_cold_start_round, run_import_round, run_worker
from benchmarks.server import BenchServer, measure_capacity
from benchmarks.worker import CheckFailed, _check_stream


@pytest.fixture(scope="module")
def bench_server() -> Iterator[BenchServer]:
    with BenchServer(lifetime=120) as server:
        yield server


def _spec(server: BenchServer, client: str, scenario: str, **params: Any) -> dict[str, Any]:
    return {
        "client": client,
        "scenario": scenario,
        "base_url": server.base_url,
        "stall_url": server.stall_url,
        "params": params,
    }


@pytest.fixture(scope="module")
def stream_results(bench_server: BenchServer) -> dict[str, dict[str, Any]]:
    """One tiny stream measurement per client kind (openai only when installed)."""
    results = {}
    for client in ("floor", "floor_lines", "openai", "asyncprov", "asyncprov_sync"):
        if client == "openai":
            try:
                import openai  # noqa: F401
            except ImportError:
                continue
        spec = _spec(bench_server, client, "stream_20k", n=50, repeat=1)
        results[client] = {**run_worker(spec, time_limit=60), "round": 1}
    return results


@pytest.mark.parametrize(
    "client", ["floor", "floor_lines", "openai", "asyncprov", "asyncprov_sync"]
)
def test_one_stream_per_client(client: str, stream_results: dict[str, dict[str, Any]]) -> None:
    if client == "openai":
        pytest.importorskip("openai")
    result = stream_results[client]
    assert result["ok"], result
    assert result["client"] == client and result["scenario"] == "stream_20k"
    assert result["checked"] == {"streams": 1, "chunks": 50}
    assert result["wall_s"] > 0 and result["cpu_s"] >= 0
    assert result["chunks_per_s"] > 0 and result["cpu_us_per_chunk"] >= 0
    assert result["peak_rss_kib"] > 1000


@pytest.mark.parametrize("client", ["floor", "asyncprov"])
def test_nonstream_worker(bench_server: BenchServer, client: str) -> None:
    result = run_worker(_spec(bench_server, client, "nonstream_c1", count=5), time_limit=60)
    assert result["ok"], result
    assert result["checked"] == {"requests": 5}
    assert 0 < result["p50_ms"] <= result["p99_ms"]


@pytest.mark.parametrize("client", ["floor", "asyncprov"])
def test_short_paced_ttft_and_nonstream_at_256(bench_server: BenchServer, client: str) -> None:
    paced = run_worker(_spec(bench_server, client, "ttft_paced", n=4, count=3), time_limit=60)
    assert paced["ok"], paced
    assert paced["checked"] == {"streams": 3, "chunks": 12}
    # The first token comes with the headers: well before the second (2 ms later).
    assert 0 < paced["ttft_p50_ms"] < 50
    wide = _spec(bench_server, client, "nonstream_c256", count=300, concurrency=256)
    result = run_worker(wide, time_limit=60)
    assert result["ok"], result
    assert result["checked"] == {"requests": 300}


def test_cold_start_round(bench_server: BenchServer) -> None:
    outcome = run_cold_start_round(["floor", "asyncprov"], 1, bench_server.base_url)
    for name in ("floor", "asyncprov"):
        assert outcome[name]["ok"] and outcome[name]["cold_start_ms"] > 0


def test_correctness_check_rejects_wrong_streams() -> None:
    good = StreamResult(parts=["t0 ", "t1 ", "t2 "], finish_reason="stop")
    assert good.text == expected_text(3)
    _check_stream(good, 3, "good")
    with pytest.raises(CheckFailed, match="content chunks"):
        _check_stream(StreamResult(parts=["t0 ", "t1 "], finish_reason="stop"), 3, "short")
    with pytest.raises(CheckFailed, match="text differs"):
        _check_stream(StreamResult(parts=["t0 ", "t2 ", "t1 "], finish_reason="stop"), 3, "order")
    with pytest.raises(CheckFailed, match="finish_reason"):
        _check_stream(StreamResult(parts=["t0 ", "t1 ", "t2 "]), 3, "unfinished")


def test_a_failing_worker_is_reported_not_raised(bench_server: BenchServer) -> None:
    spec = _spec(bench_server, "asyncprov", "stream_20k", n=50)
    spec["base_url"] = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    result = run_worker(spec, time_limit=30)
    assert result["ok"] is False
    assert result["error"]


def test_report_renders(
    bench_server: BenchServer, stream_results: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    capacity = measure_capacity(bench_server.port, seconds=0.3)
    assert capacity["json_seq_rps"] > 0 and capacity["stream_chunks_per_s"] > 0
    peers = {k: v for k, v in stream_results.items() if k != "asyncprov_sync"}
    imports = run_import_round(["floor", "asyncprov"], reps=1)
    assert all(r["ok"] and r["import_ms"] > 0 for r in imports.values())
    results = {
        "config": "smoke",
        "rounds": 1,
        "params": {},
        "command": "pytest tests/test_benchmarks_smoke.py",
        "capacity": capacity,
        "scenarios": {
            "stream_20k": {name: [result] for name, result in peers.items()},
            "import": {name: [{**result, "round": 1}] for name, result in imports.items()},
            "sync_vs_async": {
                "asyncprov": [stream_results["asyncprov"]],
                "asyncprov_sync": [stream_results["asyncprov_sync"]],
            },
        },
    }
    path = tmp_path / "RESULTS.md"
    path.write_text(render(results))
    text = path.read_text()
    assert "| scenario | metric | better | floor | floor (readline) | openai | asyncprov " in text
    assert "cold import ms" in text
    assert "one stream of 20,000 chunks: chunks/s" in text
    assert "sync / async throughput" in text
    assert "Machine: " in text and " cores, " in text and "GiB RAM" in text
    for name in ("python", "aiohttp", "pydantic", "anyio", "openai", "asyncprov"):
        assert f"{name} " in text.split("Versions: ", 1)[1].split("\n", 1)[0]
    assert "`pytest tests/test_benchmarks_smoke.py`" in text
    assert "server capacity" in text
    assert "FAIL (" not in text and "Failed measurements" not in text


def test_wires_round(bench_server: BenchServer) -> None:
    """One round of ``python -m benchmarks.wires``: every wire streamed and checked."""
    from benchmarks.wires import WIRES, _round

    figures = _round(bench_server.base_url.removesuffix("/v1"), 50, WIRES)
    assert set(figures) == set(WIRES)
    assert all(f["chunks_per_s"] > 0 and f["cpu_us_per_chunk"] > 0 for f in figures.values())


def test_instruction_count_worker_runs_both_clients(bench_server: BenchServer) -> None:
    """What ``python -m benchmarks.instructions`` runs under valgrind, run plainly: each
    client's warm-up and measured work against the server, both scenarios."""
    import subprocess
    import sys

    from benchmarks.common import ROOT, child_env

    for client in ("floor", "asyncprov"):
        for scenario, concurrency, units in (("json", 4, 20), ("stream-50", 1, 2)):
            command = [sys.executable, "-m", "benchmarks.instructions", "--worker"]
            command += [bench_server.base_url, client, scenario, str(concurrency), str(units)]
            done = subprocess.run(
                command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, done.stderr[-2000:]
