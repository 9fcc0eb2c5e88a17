"""Smoke test of the benchmark's batch scenario: each client kind runs a small batch in
a worker process, every result checked, and the report renders its rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.report import render
from benchmarks.run import SCENARIO_CLIENTS, run_worker
from benchmarks.server import BenchServer


@pytest.fixture(scope="module")
def bench_server() -> Iterator[BenchServer]:
    with BenchServer(lifetime=120) as server:
        yield server


def test_batch_scenario_runs_for_every_client(bench_server: BenchServer) -> None:
    """Each batch client answers every request of a small run; the report shows them."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for client in SCENARIO_CLIENTS["batch"]:
        spec = {
            "client": client,
            "scenario": "batch",
            "base_url": bench_server.base_url,
            "stall_url": bench_server.stall_url,
            "params": {"count": 300, "concurrency": 16},
        }
        result = run_worker(spec, time_limit=60)
        assert result["ok"], result
        assert result["checked"] == {"requests": 300} and result["req_per_s"] > 0
        assert result["peak_rss_mib"] > 1 and result["rss_growth_after_1k_mib"] >= 0
        runs[client] = [{**result, "round": 1}]
    text = render({"config": "smoke", "rounds": 1, "params": {}, "scenarios": {"batch": runs}})
    assert "batch, 10,000 requests" in text and "hand-written worker pool" in text
    assert "FAIL (" not in text
