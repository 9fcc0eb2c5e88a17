"""Smoke test of ``benchmarks/telemetry.py``: each mode's worker once, with tiny
workloads, against the benchmark server, and the report rendered."""

from __future__ import annotations

from benchmarks.server import BenchServer
from benchmarks.telemetry import MODES, ROWS, _run_worker, render


def test_every_mode_runs_and_the_report_has_every_row() -> None:
    """Each mode's worker measures every row (the ``off`` worker also checks that no
    OpenTelemetry module was imported), and the report shows them with ratios."""
    sizes = {"nonstream": 3, "stream50": 2, "stream2000": 1}
    found: dict[str, dict[str, list[float]]] = {}
    with BenchServer(lifetime=120) as server:
        for mode in MODES:
            result = _run_worker(server.base_url, mode, sizes)
            assert all(result[row] > 0 and result[row + " wall"] > 0 for row, _ in ROWS)
            found[mode] = {key: [value] for key, value in result.items()}
    text = render(found, "python -m benchmarks.telemetry --rounds 1", 1)
    times = "\u00d7"
    for _, label in ROWS:
        rows = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
        assert len(rows) == 2  # the CPU table and the wall-time table
        for row in rows:
            off, *others = row.strip("|").split(" | ")[1:]
            assert times not in off  # the baseline
            assert len(others) == len(MODES) - 1
            assert all(f"{times})" in cell for cell in others)  # each a ratio to off
