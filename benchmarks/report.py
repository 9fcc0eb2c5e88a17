"""Turn raw results into RESULTS.md: tables, ratios to the floor, versions, machine."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from .common import ROOT

TIMES = "\u00d7"  # multiplication sign
DASH = "\u2013"  # en dash, for ranges

__all__ = [
    "METRICS",
    "Metric",
    "collect_environment",
    "render",
    "source_fingerprint",
    "summarize",
]


@dataclass(frozen=True)
class Metric:
    scenario: str
    key: str
    label: str
    higher_is_better: bool
    target: float | None = None
    """Largest acceptable cost ratio of asyncprov to the floor (None: informational)."""
    floor: str = "floor"
    """The client kind the ratios are taken against."""


METRICS = [
    Metric("stream_20k", "chunks_per_s", "one stream of 20,000 chunks: chunks/s", True, 1.15),
    Metric("stream_20k", "cpu_us_per_chunk", "CPU µs per chunk", False, 1.15),
    Metric(
        "conc_1000", "wall_s", f"1,000 concurrent streams {TIMES} 50 chunks: wall s", False, 1.15
    ),
    Metric("conc_1000", "cpu_s", "CPU s", False),
    Metric("conc_1000", "peak_rss_mib", "peak RSS MiB (imports included)", False, 1.15),
    Metric("conc_1000", "rss_growth_mib", "RSS growth during the burst, MiB", False),
    Metric("nonstream_c1", "p50_ms", "non-stream, sequential: latency p50 ms", False, 1.15),
    Metric("nonstream_c1", "p99_ms", "latency p99 ms", False),
    Metric("nonstream_c64", "req_per_s", "non-stream, 64 concurrent: req/s", True, 1.15),
    Metric("nonstream_c64", "cpu_us_per_req", "CPU µs per request", False),
    Metric("nonstream_c256", "req_per_s", "non-stream, 256 concurrent: req/s", True, 1.15),
    Metric("nonstream_c256", "cpu_us_per_req", "CPU µs per request", False),
    Metric("ttft", "ttft_p50_ms", "time to first token, one request: median ms", False, 1.15),
    Metric(
        "ttft_paced",
        "ttft_p50_ms",
        "TTFT, one short paced stream (4 tokens 2 ms apart): median ms",
        False,
        1.15,
    ),
    Metric("ttft_256", "ttft_p50_ms", "TTFT, 256 concurrent paced streams: p50 ms", False, 1.15),
    Metric("ttft_256", "ttft_p99_ms", "TTFT p99 ms", False),
    Metric(
        "batch",
        "req_per_s",
        f"batch, 10,000 requests {TIMES} concurrency 256: req/s (floor: aiohttp + anyio loop)",
        True,
        1.15,
    ),
    Metric("batch", "cpu_us_per_req", "CPU µs per request", False),
    Metric("batch", "peak_rss_mib", "peak RSS MiB (imports included)", False, 1.15),
    Metric("batch", "rss_growth_after_1k_mib", "RSS growth after the first 1,000, MiB", False),
    Metric("import", "import_ms", "cold import ms (floor: `import aiohttp, pydantic`)", False),
    Metric(
        "import",
        "import_ms",
        "cold import ms (floor: `import aiohttp` + `from pydantic import BaseModel`)",
        False,
        1.15,
        floor="floor_basemodel",
    ),
    Metric(
        "cold_start",
        "cold_start_ms",
        "cold start to the first answer ms (imports, a client, one request)",
        False,
        1.15,
    ),
]

COLUMNS = ("floor", "floor_lines", "openai", "asyncprov")


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
    """The table cell ``median (min-max)`` and the median (None when nothing ran)."""
    if not runs:
        return "—", None
    values = _values(runs, key)
    failed = sum(1 for run in runs if not run.get("ok"))
    if not values:
        return f"FAIL ({failed}/{len(runs)})", None
    mid, low, high = summarize(values)
    text = fmt(mid) if len(values) == 1 else f"{fmt(mid)} ({fmt(low)}{DASH}{fmt(high)})"
    if failed:
        text += f" [{failed} failed]"
    return text, mid


def _cost_ratio(metric: Metric, value: float | None, floor: float | None) -> float | None:
    """How much more the client costs than the floor (>1: worse, <1: better)."""
    if value is None or floor is None or value <= 0 or floor <= 0:
        return None
    return floor / value if metric.higher_is_better else value / floor


def _main_table(scenarios: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    x = TIMES
    lines = [
        "| scenario | metric | better | floor | floor (readline) | openai | asyncprov "
        f"| openai cost {x}floor | asyncprov cost {x}floor "
        f"| asyncprov cost {x}floor (readline) | target (asyncprov {x}floor) | ok? |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    last = None
    for metric in METRICS:
        per_client = scenarios.get(metric.scenario)
        if not per_client:
            continue
        cells: dict[str, str] = {}
        medians: dict[str, float | None] = {}
        for name in COLUMNS:
            source = metric.floor if name == "floor" else name
            cells[name], medians[name] = _cell(per_client.get(source), metric.key)
        if metric.floor != "floor":
            cells["floor_lines"], medians["floor_lines"] = "—", None

        def ratio(name: str, floor: str, m: Metric = metric, v: Any = medians) -> str:
            value = _cost_ratio(m, v[name], v[floor])
            return "—" if value is None else f"{value:.2f}{x}"

        if metric.target is None:
            target, ok = "info", ""
        else:
            target = f"≤ {metric.target:g}{x}"
            value = _cost_ratio(metric, medians["asyncprov"], medians["floor"])
            # Judged on the ratio as printed, so the table never contradicts itself.
            ok = "—" if value is None else ("yes" if round(value, 2) <= metric.target else "**no**")
        scenario = f"`{metric.scenario}`" if metric.scenario != last else ""
        last = metric.scenario
        better = "higher" if metric.higher_is_better else "lower"
        lines.append(
            f"| {scenario} | {metric.label} | {better} | {cells['floor']} "
            f"| {cells['floor_lines']} | {cells['openai']} | {cells['asyncprov']} "
            f"| {ratio('openai', 'floor')} | {ratio('asyncprov', 'floor')} "
            f"| {ratio('asyncprov', 'floor_lines')} | {target} | {ok} |"
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
            ok = "yes" if round(mid, 2) >= 0.80 else "**no**"
            text = f"{mid:.2f} ({low:.2f}{DASH}{high:.2f})"
        else:
            text, ok = "—", "—"
        lines.append(
            f"| | sync / async throughput (paired by round) | higher | {text} | ≥ 0.80 | {ok} |"
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
    batch = scenarios.get("batch", {})
    if batch.get("floor_pool"):
        pool_cell, pool = _cell(batch.get("floor_pool"), "req_per_s")
        _, ours = _cell(batch.get("asyncprov"), "req_per_s")
        ratio = f"{pool / ours:.2f}{TIMES}" if pool and ours else "—"
        lines.append(
            f"| `batch` | hand-written worker pool (no task per request): req/s | higher "
            f"| {pool_cell} | info | |"
        )
        lines.append(f"| | asyncprov cost {TIMES}worker pool | lower | {ratio} | info | |")
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


def short_commit() -> str:
    """The checkout's commit, abbreviated (``?`` outside a git checkout)."""
    return _git("rev-parse", "--short", "HEAD") or "?"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
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


def source_fingerprint() -> str:
    """A short hash of asyncprov's source files, to notice edits during a run."""
    digest = hashlib.sha1(usedforsecurity=False)
    for path in sorted((ROOT / "asyncprov").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def collect_environment() -> dict[str, Any]:
    """Library versions and a description of the machine (no library is imported)."""
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "asyncprov"))
    asyncprov = _version("asyncprov")
    if commit:
        asyncprov += f" (git {commit}{', with uncommitted changes in asyncprov/' if dirty else ''}"
        asyncprov += f", source {source_fingerprint()})"
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
            f"{cpu_model()}, {os.cpu_count()} cores, "
            f"{'?' if ram is None else f'{ram:.1f}'} GiB RAM, {platform.system()} "
            f"{platform.release()}"
        ),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


_HOW = f"""\
## How to read this

- Every figure is the **median over rounds, with min{DASH}max** in brackets. Each round
  runs every client once per scenario, each in a **fresh worker process**, clients
  interleaved (the order rotates every round).
- **cost {TIMES}floor** is how much more the client costs than the floor, whichever way the
  metric goes: client/floor for times and memory, floor/client for throughputs. 1.00{TIMES}
  is as cheap as the floor, 2.00{TIMES} twice as costly; below 1.00{TIMES} is cheaper. The
  asyncprov targets (DESIGN.md, "Performance targets") are on that ratio.
- **floor**: hand-written aiohttp + pydantic doing the same work and sharing no code
  with asyncprov (one `aiohttp.ClientSession` with a pool of 1,000, each piece
  `iter_any()` returns split into SSE events, its own small pydantic model of the fields
  a caller reads validated per chunk or per reply: `benchmarks/clients.py`,
  `floor_models`).
  **floor (readline)**: the same, reading `async for line in resp.content` as many
  hand-written clients do; slower per chunk, so it is shown for reference and the
  targets stay on the floor (full runs only). **openai**:
  openai-python `AsyncOpenAI(max_retries=0)` on httpx with openai's default pool
  (1,000 connections, 100 kept alive). **asyncprov**: `AsyncClient(base_url=...)` with
  its defaults. Each library is imported only by its own worker.
- The server sends one HTTP chunk (chunked transfer encoding) per SSE event, as real
  servers flush one event at a time.
- Wall and CPU cover the measured part only, after one warm-up request; CPU is
  `time.process_time()` of the whole worker (all threads, so the sync `Client`'s loop
  thread counts). Peak RSS is `ru_maxrss` of the worker, imports included.
- `ttft_256` runs on a warm pool (one unmeasured burst of the same size first), then
  several measured bursts; p50 and p99 are over every stream of those bursts. TTFT
  counts from the moment all 256 streams of a burst were asked for, so it includes the
  client's cost of starting the other requests. Each stream's first chunk leaves the
  server 10 ms after the request. `conc_1000` starts from a cold pool, so it includes
  opening 1,000 connections. `ttft_paced`: one stream at a time of 4 tokens, the first
  sent with the headers and the others 2 ms apart, so a buffer or an extra wake-up
  shows.
- `import`: the import statement alone, timed with `time.perf_counter()` inside a
  fresh interpreter (start-up excluded); each round's figure is the median of several
  interpreters, run interleaved. `import pydantic` alone is lazy, so the second import
  row also loads `BaseModel`, as any code defining a model does. `cold_start`: a fresh
  interpreter's start until its first answer (the imports, a client, one non-streamed
  request; `benchmarks/run.py`, `COLD_STARTS`), interpreter start-up excluded.
- Every response is checked (number of chunks, joined text, `finish_reason`; the
  completion text for non-streamed calls); a failed check makes the measurement FAIL.
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
        *(
            [
                "**Warning: asyncprov's source changed while this ran "
                f"({results['source_before']} -> {results['source_after']}), "
                "so the rounds may have measured different code. Run again.**",
                "",
            ]
            if results.get("source_before") != results.get("source_after")
            else []
        ),
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
