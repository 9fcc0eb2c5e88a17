"""Turn raw results into RESULTS.md: tables, ratios to the floor, versions, machine."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from .common import ROOT

__all__ = ["METRICS", "Metric", "collect_environment", "render", "summarize"]


@dataclass(frozen=True)
class Metric:
    scenario: str
    key: str
    label: str
    higher_is_better: bool
    target: float | None = None
    """Largest acceptable cost ratio of asyncprov to the floor (None: informational)."""


METRICS = [
    Metric("stream_20k", "chunks_per_s", "one stream of 20,000 chunks: chunks/s", True, 1.25),
    Metric("stream_20k", "cpu_us_per_chunk", "CPU µs per chunk", False, 1.25),
    Metric("conc_1000", "wall_s", "1,000 concurrent streams × 50 chunks: wall s", False, 1.25),
    Metric("conc_1000", "cpu_s", "CPU s", False),
    Metric("conc_1000", "peak_rss_mib", "peak RSS MiB (imports included)", False, 1.25),
    Metric("conc_1000", "rss_growth_mib", "RSS growth during the burst, MiB", False),
    Metric("nonstream_c1", "p50_ms", "non-stream, sequential: latency p50 ms", False, 1.25),
    Metric("nonstream_c1", "p99_ms", "latency p99 ms", False),
    Metric("nonstream_c64", "req_per_s", "non-stream, 64 concurrent: req/s", True, 1.25),
    Metric("nonstream_c64", "cpu_us_per_req", "CPU µs per request", False),
    Metric("ttft", "ttft_p50_ms", "time to first token, one request: median ms", False, 1.25),
    Metric("ttft_256", "ttft_p50_ms", "TTFT, 256 concurrent paced streams: p50 ms", False, 1.25),
    Metric("ttft_256", "ttft_p99_ms", "TTFT p99 ms", False),
    Metric("import", "import_ms", "cold import ms (floor: `aiohttp, pydantic`)", False, 1.3),
]

PEERS = ("floor", "openai", "asyncprov")


def summarize(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt(value: float) -> str:
    """A number with about three significant digits (thousands separated)."""
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _values(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(run[key]) for run in runs if run.get("ok") and key in run]


def _cell(runs: list[dict[str, Any]] | None, key: str) -> tuple[str, float | None]:
    """The table cell ``median (min–max)`` and the median (None when nothing ran)."""
    if not runs:
        return "—", None
    values = _values(runs, key)
    failed = sum(1 for run in runs if not run.get("ok"))
    if not values:
        return f"FAIL ({failed}/{len(runs)})", None
    mid, low, high = summarize(values)
    text = fmt(mid) if len(values) == 1 else f"{fmt(mid)} ({fmt(low)}–{fmt(high)})"
    if failed:
        text += f" [{failed} failed]"
    return text, mid


def _cost_ratio(metric: Metric, value: float | None, floor: float | None) -> float | None:
    """How much more the client costs than the floor (>1: worse, <1: better)."""
    if value is None or floor is None or value <= 0 or floor <= 0:
        return None
    return floor / value if metric.higher_is_better else value / floor


def _main_table(scenarios: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    lines = [
        "| scenario | metric | better | floor | openai | asyncprov "
        "| openai cost ×floor | asyncprov cost ×floor | target (asyncprov) | ok? |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    last = None
    for metric in METRICS:
        per_client = scenarios.get(metric.scenario)
        if not per_client:
            continue
        cells: dict[str, str] = {}
        medians: dict[str, float | None] = {}
        for name in PEERS:
            cells[name], medians[name] = _cell(per_client.get(name), metric.key)
        ratios = {
            name: _cost_ratio(metric, medians[name], medians["floor"]) for name in PEERS
        }
        ratio_text = {n: "—" if r is None else f"{r:.2f}×" for n, r in ratios.items()}
        if metric.target is None:
            target, ok = "info", ""
        else:
            target = f"≤ {metric.target:g}×"
            ratio = ratios["asyncprov"]
            ok = "—" if ratio is None else ("yes" if ratio <= metric.target else "**no**")
        scenario = f"`{metric.scenario}`" if metric.scenario != last else ""
        last = metric.scenario
        better = "higher" if metric.higher_is_better else "lower"
        lines.append(
            f"| {scenario} | {metric.label} | {better} | {cells['floor']} | {cells['openai']} "
            f"| {cells['asyncprov']} | {ratio_text['openai']} | {ratio_text['asyncprov']} "
            f"| {target} | {ok} |"
        )
    return lines


def _by_round(runs: list[dict[str, Any]], key: str) -> dict[int, float]:
    return {int(run["round"]): float(run[key]) for run in runs if run.get("ok") and key in run}


def _asyncprov_table(
    scenarios: dict[str, dict[str, list[dict[str, Any]]]], params: dict[str, Any]
) -> list[str]:
    lines = [
        "| scenario | metric | better | value | target | ok? |",
        "|---|---|---|---|---|---|",
    ]
    pair = scenarios.get("sync_vs_async", {})
    if pair:
        async_cell, _ = _cell(pair.get("asyncprov"), "chunks_per_s")
        sync_cell, _ = _cell(pair.get("asyncprov_sync"), "chunks_per_s")
        lines.append(f"| `sync_vs_async` | `AsyncClient`: chunks/s | higher | {async_cell} | | |")
        lines.append(f"| | `Client` (sync): chunks/s | higher | {sync_cell} | | |")
        a = _by_round(pair.get("asyncprov", []), "chunks_per_s")
        s = _by_round(pair.get("asyncprov_sync", []), "chunks_per_s")
        ratios = [s[r] / a[r] for r in sorted(a.keys() & s.keys())]
        if ratios:
            mid, low, high = summarize(ratios)
            ok = "yes" if mid >= 0.70 else "**no**"
            text = f"{mid:.2f} ({low:.2f}–{high:.2f})"
        else:
            text, ok = "—", "—"
        lines.append(
            f"| | sync / async throughput (paired by round) | higher | {text} | ≥ 0.70 | {ok} |"
        )
    failover = scenarios.get("failover", {}).get("asyncprov")
    if failover:
        p = params.get("failover", {})
        delay, first = p.get("hedge_delay", 0.1), p.get("first_chunk", 0.5)
        hedged, _ = _cell(failover, "hedged_ttft_ms")
        sequential, _ = _cell(failover, "sequential_ttft_ms")
        lines.append(
            f"| `failover` | hedged (`hedge_delay={delay:g}`): TTFT ms | lower | {hedged} "
            f"| ≈ {delay * 1000:.0f} + one request | info |"
        )
        lines.append(
            f"| | sequential (`Timeout(first_chunk={first:g})`): TTFT ms | lower | {sequential} "
            f"| ≈ {first * 1000:.0f} + one request | info |"
        )
    return lines


def _capacity_lines(capacity: dict[str, float] | None) -> list[str]:
    if not capacity:
        return []
    return [
        "| what (raw blocking socket client, 1 connection) | server capacity |",
        "|---|---|",
        f"| `json`, one request at a time | {fmt(capacity['json_seq_rps'])} req/s |",
        f"| `json`, 32 pipelined | {fmt(capacity['json_pipelined_rps'])} req/s |",
        f"| `stream-20000`, back to back | {fmt(capacity['stream_chunks_per_s'])} chunks/s "
        f"({fmt(capacity['stream_mib_per_s'])} MiB/s) |",
    ]


def _git(*args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return None


def collect_environment() -> dict[str, Any]:
    """Library versions and a description of the machine (no library is imported)."""
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "asyncprov"))
    asyncprov = _version("asyncprov")
    if commit:
        asyncprov += f" (git {commit}{', with uncommitted changes in asyncprov/' if dirty else ''})"
    httpx = _version("httpx2")
    httpx_name = "httpx2"
    if httpx == "not installed":
        httpx, httpx_name = _version("httpx"), "httpx"
    ram = _ram_gib()
    return {
        "versions": {
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "aiohttp": _version("aiohttp"),
            "pydantic": _version("pydantic"),
            "pydantic-core": _version("pydantic-core"),
            "anyio": _version("anyio"),
            "openai": _version("openai"),
            httpx_name: httpx,
            "asyncprov": asyncprov,
        },
        "machine": (
            f"{_cpu_model()}, {os.cpu_count()} cores, "
            f"{'?' if ram is None else f'{ram:.1f}'} GiB RAM, {platform.system()} "
            f"{platform.release()}"
        ),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


_HOW = """\
## How to read this

- Every figure is the **median over rounds, with min–max** in brackets. Each round
  runs every client once per scenario, each in a **fresh worker process**, clients
  interleaved (the order rotates every round).
- **cost ×floor** is how much more the client costs than the floor, whichever way the
  metric goes: client/floor for times and memory, floor/client for throughputs. 1.00×
  is as cheap as the floor, 2.00× twice as costly; below 1.00× is cheaper. The
  asyncprov targets (DESIGN.md, "Performance targets") are on that ratio.
- **floor**: hand-written aiohttp + pydantic doing the same work (one session, body
  split into SSE events, `ChatCompletionChunk.model_validate_json` per chunk);
  **openai**: openai-python `AsyncOpenAI` (httpx underneath), `max_retries=0`, a pool of
  1,000 connections; **asyncprov**: `AsyncClient(base_url=...)` with its defaults.
- Wall and CPU cover the measured part only, after one warm-up request; CPU is
  `time.process_time()` of the whole worker (all threads). Peak RSS is `ru_maxrss`
  of the worker, so it includes each library's imports.
- `ttft_256` is measured on a warm pool (one unmeasured burst of the same size
  first); TTFT there is from the moment all 256 streams were asked for. `conc_1000`
  starts from a cold pool, so it includes opening 1,000 connections.
- `import`: the time of the import statement alone, measured inside a fresh
  interpreter with `time.perf_counter()` (interpreter start-up excluded), median of
  many interpreters per round.
- Every response is checked (number of chunks, joined text, `finish_reason`);
  a failed check makes the measurement a FAIL.
"""


def render(results: dict[str, Any]) -> str:
    """RESULTS.md as text."""
    scenarios: dict[str, dict[str, list[dict[str, Any]]]] = results.get("scenarios", {})
    env = results.get("environment") or collect_environment()
    out = ["# asyncprov benchmark results", ""]
    command = results.get("command", "python -m benchmarks")
    elapsed = results.get("elapsed_s")
    took = f", took {elapsed:.0f} s" if elapsed is not None else ""
    out += [
        f"Command: `{command}` (from the repository root), {results.get('config', '?')} mode, "
        f"{results.get('rounds', '?')} rounds{took}, {env['date']}.",
        "",
        f"Machine: {env['machine']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
        "## asyncprov vs the floor and openai-python",
        "",
        *_main_table(scenarios),
        "",
        "## asyncprov only",
        "",
        *_asyncprov_table(scenarios, results.get("params", {})),
        "",
    ]
    capacity = _capacity_lines(results.get("capacity"))
    if capacity:
        out += [
            "## The server is not the bottleneck",
            "",
            "The same server process, measured at the start of the run:",
            "",
            *capacity,
            "",
        ]
    out.append(_HOW)
    failures = [
        run
        for per_client in scenarios.values()
        for runs in per_client.values()
        for run in runs
        if not run.get("ok")
    ]
    if failures:
        out += ["## Failed measurements", ""]
        for run in failures:
            out.append(
                f"- round {run.get('round', '?')}, `{run['scenario']}` / `{run['client']}`: "
                f"{run.get('error', 'unknown error')}"
            )
        out.append("")
    return "\n".join(out)
