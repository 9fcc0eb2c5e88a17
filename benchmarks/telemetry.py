"""``python -m benchmarks.telemetry``: what OpenTelemetry costs a call, off and on.

Four modes, each in a fresh worker process (OpenTelemetry's global providers can be set
once per process, and "off" must mean never imported), against the benchmark server:

- ``before`` (with ``--baseline PATH``): the asyncprov of another checkout, e.g. the
  commit before telemetry existed, for what the feature costs while off;
- ``off``: no provider anywhere; the worker checks that nothing of OpenTelemetry was
  imported;
- ``global no-op``: the API's no-op providers set globally (they count as off; the
  call still makes its one check);
- ``no-op provider``: ``Telemetry(tracer_provider=NoOpTracerProvider(), meter_provider=
  NoOpMeterProvider())``: every span and metric call of asyncprov made, none recorded;
- ``in-memory exporter``: the SDK with a ``SimpleSpanProcessor`` into an
  ``InMemorySpanExporter`` and an ``InMemoryMetricReader``: everything recorded;
- ``in-memory, no chunk timings``: the same with ``chunk_timings=False`` (no
  ``time_per_output_chunk`` recording per chunk).

Each worker makes sequential non-streamed calls and reads whole streams of 50 and of
2,000 chunks (concurrency 1), after a warm-up, and reports its own CPU time and the wall
time per call. Rounds interleave the modes (the order rotates each round); the tables
give medians with min-max, and each mode's ratio to ``off`` from the same run. Writes
``benchmarks/TELEMETRY.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import PYTHON, ROOT, child_env
from .server import BenchServer

MODES = (
    "off",
    "global no-op",
    "no-op provider",
    "in-memory exporter",
    "in-memory, no chunk timings",
)
ROWS = (
    ("nonstream", "non-stream call"),
    ("stream50", "stream, 50 chunks"),
    ("stream2000", "stream, 2,000 chunks"),
)
OUTPUT = ROOT / "benchmarks" / "TELEMETRY.md"
BEFORE = "before"
"""The mode running ``--baseline``'s asyncprov (e.g. the commit before telemetry)."""


def _telemetry(mode: str) -> Any:
    """The client's ``telemetry=`` for ``mode`` (global providers set here, if any)."""
    if mode == "off":
        return None
    from opentelemetry import metrics, trace

    if mode == "global no-op":
        trace.set_tracer_provider(trace.NoOpTracerProvider())
        metrics.set_meter_provider(metrics.NoOpMeterProvider())
        return None
    from asyncprov import Telemetry

    if mode == "no-op provider":
        return Telemetry(
            tracer_provider=trace.NoOpTracerProvider(), meter_provider=metrics.NoOpMeterProvider()
        )
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        chunk_timings=mode == "in-memory exporter",
    )


async def _work(base_url: str, mode: str, sizes: dict[str, int]) -> dict[str, float]:
    from asyncprov import AsyncClient

    # "before": the baseline checkout's asyncprov, which may know no telemetry at all.
    options = {} if mode == BEFORE else {"telemetry": _telemetry(mode)}
    async with AsyncClient(base_url=base_url, max_retries=0, **options) as client:
        create = client.chat.completions.create

        async def nonstream() -> None:
            await create(model="json", messages="Say something.")

        async def stream(n: int) -> None:
            reply = await create(model=f"stream-{n}", messages="Say something.", stream=True)
            async for _ in reply:
                pass

        async def timed(row: str, count: int, call: Any, *args: Any) -> None:
            for _ in range(max(3, count // 10)):  # warm-up: connections, caches, validators
                await call(*args)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(count):
                await call(*args)
            result[row] = (time.process_time() - cpu) / count * 1e6
            result[row + " wall"] = (time.perf_counter() - wall) / count * 1e6

        result: dict[str, float] = {}
        await timed("nonstream", sizes["nonstream"], nonstream)
        await timed("stream50", sizes["stream50"], stream, 50)
        await timed("stream2000", sizes["stream2000"], stream, 2000)
    if mode in ("off", BEFORE):
        loaded = [m for m in sys.modules if m.startswith("opentelemetry")]
        assert not loaded, f"tracing off imported {loaded}"
    return result


def worker(base_url: str, mode: str, sizes: dict[str, int]) -> None:
    import asyncio

    print(json.dumps(asyncio.run(_work(base_url, mode, sizes))))


def _run_worker(
    base_url: str, mode: str, sizes: dict[str, int], baseline: Path | None = None
) -> dict[str, float]:
    """One worker process; for ``before``, with ``baseline``'s asyncprov imported first
    (from its directory), then this benchmark's code."""
    root = baseline if mode == BEFORE and baseline is not None else ROOT
    code = (
        "import sys, json, asyncprov; "
        f"assert asyncprov.__file__.startswith({str(root)!r}), asyncprov.__file__; "
        f"sys.path.insert(0, {str(ROOT)!r}); "
        "from benchmarks.telemetry import worker; worker(*json.loads(sys.argv[1]))"
    )
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(root), env["PYTHONPATH"]])
    done = subprocess.run(
        [PYTHON, "-c", code, json.dumps([base_url, mode, sizes])],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=root,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {mode!r} worker failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(
    rounds: int, sizes: dict[str, int], baseline: Path | None = None
) -> dict[str, dict[str, list[float]]]:
    """Per mode and row, the microseconds per call of every round."""
    keys = [key for row, _ in ROWS for key in (row, row + " wall")]
    modes = (BEFORE, *MODES) if baseline is not None else MODES
    found: dict[str, dict[str, list[float]]] = {m: {k: [] for k in keys} for m in modes}
    with BenchServer(lifetime=3600) as server:
        for number in range(rounds):
            order = modes[number % len(modes) :] + modes[: number % len(modes)]
            for mode in order:
                result = _run_worker(server.base_url, mode, sizes, baseline)
                for key in found[mode]:
                    found[mode][key].append(result[key])
                print(f"round {number + 1}/{rounds} {mode}: {result}", file=sys.stderr)
    return found


def _commit(root: Path = ROOT) -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root
    )
    dirty = subprocess.run(["git", "status", "--porcelain", "asyncprov"], capture_output=True,
                           text=True, cwd=root).stdout.strip()  # fmt: skip
    return (done.stdout.strip() or "unknown") + (" with local changes" if dirty else "")


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("asyncprov", "opentelemetry-api", "opentelemetry-sdk"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _table(found: dict[str, dict[str, list[float]]], suffix: str) -> list[str]:
    modes = list(found)
    lines = ["| call | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for row, label in ROWS:
        base = statistics.median(found["off"][row + suffix])
        cells = []
        for mode in modes:
            values = found[mode][row + suffix]
            median = statistics.median(values)
            ratio = "" if mode == "off" else f" ({median / base:.2f}×)"
            cells.append(f"{median:,.0f} µs{ratio} [{min(values):,.0f}–{max(values):,.0f}]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def render(
    found: dict[str, dict[str, list[float]]],
    command: str,
    rounds: int,
    baseline: Path | None = None,
) -> str:
    lines = [
        "# What OpenTelemetry costs a call",
        "",
        f"`{command}`: Python {platform.python_version()}, {os.cpu_count()} cores "
        f"({platform.machine()}, {platform.system()}), {_versions()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, at git {_commit()}. "
        "The machine's 2 cores "
        "are shared with other work, so rounds interleave the modes (each in a fresh "
        "worker process, the order rotating each round) and the tables show medians of "
        f"{rounds} rounds, min-max in brackets, per call at concurrency 1 against the "
        "local benchmark server (its own process). Ratios are to `off`, from this one run.",
        "",
        *(
            [
                f"`before` is the asyncprov of the checkout given as `--baseline` (at git "
                f"{_commit(baseline)}), which has no telemetry: `off` against it is what "
                "the feature costs a call while it is off.",
                "",
            ]
            if baseline is not None
            else []
        ),
        "**The client's CPU time per call** (`time.process_time` of the worker: what "
        "telemetry adds, little disturbed by other load):",
        "",
        *_table(found, ""),
        "",
        "**Wall time per call** (server included; noisier on a shared machine):",
        "",
        *_table(found, " wall"),
    ]
    lines += [
        "",
        "- `off` and `global no-op` make one check per call (a dictionary look-up while "
        "OpenTelemetry is not imported; a look at the global providers once it is) and "
        "nothing per chunk. The `off` worker asserts that no `opentelemetry` module was "
        "imported.",
        "- `no-op provider` runs all of asyncprov's own telemetry work (the call span, "
        "attempt spans from the attempt records, the stream's observer, a histogram "
        "record per chunk for `time_per_output_chunk`) into the API's no-op objects.",
        "- `in-memory exporter` records and exports every span and metric point "
        "synchronously (`SimpleSpanProcessor`); a batching processor moves the export "
        "off the call. Most of its per-chunk cost is the SDK's histogram recording of "
        "`gen_ai.client.operation.time_per_output_chunk` (about 10 µs each on this "
        "machine); `in-memory, no chunk timings` is the same with "
        "`Telemetry(chunk_timings=False)`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telemetry")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer calls per round")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of asyncprov to compare with (its code runs as the 'before' mode)",
    )
    args = parser.parse_args(argv)
    scale = 5 if args.quick else 1
    sizes = {"nonstream": 1500 // scale, "stream50": 600 // scale, "stream2000": 60 // scale}
    command = "python -m benchmarks.telemetry" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    baseline = args.baseline.resolve() if args.baseline is not None else None
    found = measure(args.rounds, sizes, baseline)
    text = render(found, command, args.rounds, baseline)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
