"""One measurement in a fresh process: one client kind, one scenario.

Run as ``python -m benchmarks.worker '<json spec>'``, where the spec is
``{"client": ..., "scenario": ..., "base_url": ..., "stall_url": ..., "params": {...}}``.
It prints a single line ``RESULT {json}`` with:

- ``wall_s``: wall time of the measured part (after one warm-up request);
- ``cpu_s``: CPU time of the whole process (all threads) over the same part;
- ``peak_rss_kib``: ``getrusage(RUSAGE_SELF).ru_maxrss`` at the end (imports included);
- scenario metrics (see ``SCENARIOS``), and ``checked``: how much output was verified.

Every response is checked (chunk count, joined text, finish reason), so a client that
drops or garbles chunks fails loudly (``"ok": false``) instead of looking fast. The
worker bounds itself with ``signal.alarm`` and exits on its own.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from .common import JSON_CONTENT, expected_text

__all__ = ["SCENARIOS", "main", "run_spec"]

RESULT_PREFIX = "RESULT "


class CheckFailed(AssertionError):
    """A client delivered something other than what the server sent."""


def _per_request(span: Any, count: int) -> dict[str, float]:
    """Wall, CPU, requests/s and CPU µs per request of ``count`` requests in ``span``."""
    return {
        "wall_s": span.wall,
        "cpu_s": span.cpu,
        "req_per_s": count / span.wall,
        "cpu_us_per_req": span.cpu / count * 1e6,
    }


def _check_stream(result: Any, n: int, where: str) -> None:
    if len(result.parts) != n:
        raise CheckFailed(f"{where}: {len(result.parts)} content chunks, expected {n}")
    if result.text != expected_text(n):
        raise CheckFailed(f"{where}: the joined text differs from what the server sent")
    if result.finish_reason != "stop":
        raise CheckFailed(f"{where}: finish_reason {result.finish_reason!r}, expected 'stop'")


def _check_completion(text: str, where: str) -> None:
    if text != JSON_CONTENT:
        raise CheckFailed(f"{where}: unexpected completion text {text[:60]!r}")


def _ms_since(start: float, result: Any) -> float:
    """Milliseconds from ``start`` to the stream's first content chunk."""
    if result.t_first is None:
        raise CheckFailed("a stream delivered no content")
    return float(result.t_first - start) * 1000


def _rss_kib() -> int:
    """Current resident set size, KiB (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _quantile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class _Span:
    """Wall and process CPU time over the measured part."""

    def __enter__(self) -> _Span:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


# --- scenarios: async client kinds -----------------------------------------------------


async def _stream_20k(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    n, repeat = p.get("n", 20_000), p.get("repeat", 1)
    _check_stream(await client.stream("stream-50"), 50, "warm-up")
    with _Span() as span:
        results = [await client.stream(f"stream-{n}") for _ in range(repeat)]
    return _long_streams(span, results, n)


def _long_streams(span: Any, results: list[Any], n: int) -> dict[str, Any]:
    """Check ``results`` (streams of ``n`` chunks each) and report their rates."""
    for result in results:
        _check_stream(result, n, f"stream-{n}")
    chunks = n * len(results)
    return {
        "wall_s": span.wall,
        "cpu_s": span.cpu,
        "chunks_per_s": chunks / span.wall,
        "cpu_us_per_chunk": span.cpu / chunks * 1e6,
        "checked": {"streams": len(results), "chunks": chunks},
    }


async def _concurrent_streams(
    client: Any, model: str, n: int, count: int
) -> tuple[_Span, list[Any], float]:
    """``count`` streams at once; also returns the moment they were all asked for."""
    with _Span() as span:
        results = await asyncio.gather(*(client.stream(model) for _ in range(count)))
    for result in results:
        _check_stream(result, n, model)
    return span, results, span.wall0


async def _conc(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    n, count = p.get("n", 50), p.get("concurrency", 1000)
    _check_stream(await client.stream("stream-50"), 50, "warm-up")
    rss0 = _rss_kib()
    span, _, _ = await _concurrent_streams(client, f"stream-{n}", n, count)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "wall_s": span.wall,
        "cpu_s": span.cpu,
        "peak_rss_mib": peak / 1024,
        "rss_growth_mib": max(0, peak - rss0) / 1024,
        "chunks_per_s": n * count / span.wall,
        "checked": {"streams": count, "chunks": n * count},
    }


async def _ttft_load(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    n, count, bursts = p.get("n", 20), p.get("concurrency", 256), p.get("bursts", 1)
    # Warm-up: one burst of the same size, so every client has its pool filled and the
    # measured bursts see the client's per-request cost, not the kernel's connect path.
    await _concurrent_streams(client, "stream-50", 50, count)
    ttfts: list[float] = []
    wall = cpu = 0.0
    for _ in range(bursts):
        span, results, start = await _concurrent_streams(client, f"paced-{n}", n, count)
        ttfts.extend(_ms_since(start, r) for r in results)
        wall, cpu = wall + span.wall, cpu + span.cpu
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "ttft_p50_ms": _quantile(ttfts, 0.50),
        "ttft_p99_ms": _quantile(ttfts, 0.99),
        "ttft_max_ms": max(ttfts),
        "checked": {"streams": count * bursts, "chunks": n * count * bursts},
    }


async def _ttft(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    count = p.get("count", 50)
    _check_stream(await client.stream("stream-50"), 50, "warm-up")
    ttfts = []
    with _Span() as span:
        for _ in range(count):
            start = time.perf_counter()
            result = await client.stream("stream-50")
            ttfts.append(_ms_since(start, result))
            _check_stream(result, 50, "stream-50")
    return {
        "wall_s": span.wall,
        "cpu_s": span.cpu,
        "ttft_p50_ms": statistics.median(ttfts),
        "ttft_p99_ms": _quantile(ttfts, 0.99),
        "checked": {"streams": count, "chunks": 50 * count},
    }


async def _ttft_paced(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    """One short paced stream at a time (4 tokens, 2 ms apart, the first at once): the
    time to its first token, where an extra wake-up or a buffer shows."""
    n, count = p.get("n", 4), p.get("count", 200)
    _check_stream(await client.stream(f"shortpaced-{n}"), n, "warm-up")
    ttfts = []
    with _Span() as span:
        for _ in range(count):
            start = time.perf_counter()
            result = await client.stream(f"shortpaced-{n}")
            ttfts.append(_ms_since(start, result))
            _check_stream(result, n, f"shortpaced-{n}")
    return {
        "wall_s": span.wall,
        "cpu_s": span.cpu,
        "ttft_p50_ms": statistics.median(ttfts),
        "ttft_p99_ms": _quantile(ttfts, 0.99),
        "checked": {"streams": count, "chunks": n * count},
    }


async def _nonstream_c1(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    count = p.get("count", 300)
    _check_completion(await client.complete("json"), "warm-up")
    latencies = []
    with _Span() as span:
        for _ in range(count):
            start = time.perf_counter()
            text = await client.complete("json")
            latencies.append((time.perf_counter() - start) * 1000)
            _check_completion(text, "json")
    return {
        "wall_s": span.wall,
        "cpu_s": span.cpu,
        "p50_ms": statistics.median(latencies),
        "p99_ms": _quantile(latencies, 0.99),
        "req_per_s": count / span.wall,
        "checked": {"requests": count},
    }


async def _nonstream_c64(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    count, concurrency = p.get("count", 3000), p.get("concurrency", 64)
    _check_completion(await client.complete("json"), "warm-up")
    remaining = count
    done = 0

    async def loop() -> None:
        nonlocal remaining, done
        while remaining > 0:
            remaining -= 1
            _check_completion(await client.complete("json"), "json")
            done += 1

    with _Span() as span:
        await asyncio.gather(*(loop() for _ in range(concurrency)))
    if done != count:
        raise CheckFailed(f"{done} requests completed, expected {count}")
    return {**_per_request(span, count), "checked": {"requests": count}}


AsyncScenario = Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]
SCENARIOS: dict[str, AsyncScenario] = {
    "stream_20k": _stream_20k,
    "sync_vs_async": _stream_20k,  # the async side of the comparison
    "ttft_256": _ttft_load,
    "conc_1000": _conc,
    "nonstream_c1": _nonstream_c1,
    "nonstream_c64": _nonstream_c64,
    "nonstream_c256": _nonstream_c64,  # the same loop, 256 in flight
    "ttft": _ttft,
    "ttft_paced": _ttft_paced,
}


# --- scenarios run outside the common shape ---------------------------------------------


def _sync_stream_20k(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    n, repeat = p.get("n", 20_000), p.get("repeat", 1)
    _check_stream(client.stream("stream-50"), 50, "warm-up")
    with _Span() as span:
        results = [client.stream(f"stream-{n}") for _ in range(repeat)]
    return _long_streams(span, results, n)


async def _failover(spec: dict[str, Any]) -> dict[str, Any]:
    from .clients import failover_ttft

    p = spec.get("params", {})
    count = p.get("count", 5)
    hedge_delay, first_chunk = p.get("hedge_delay", 0.1), p.get("first_chunk", 0.5)
    out: dict[str, Any] = {}
    # Warm-up: imports, provider modules and model schemas are built on first use.
    warm = await failover_ttft(
        spec["base_url"], spec["stall_url"], hedged=True, hedge_delay=hedge_delay, first_chunk=120
    )
    _check_stream(warm, 50, "failover warm-up")
    with _Span() as span:
        for mode in ("hedged", "sequential"):
            ttfts = []
            for _ in range(count):
                start = time.perf_counter()
                result = await failover_ttft(
                    spec["base_url"],
                    spec["stall_url"],
                    hedged=mode == "hedged",
                    hedge_delay=hedge_delay,
                    first_chunk=first_chunk if mode == "sequential" else 120.0,
                )
                ttfts.append(_ms_since(start, result))
                _check_stream(result, 50, f"failover {mode}")
                if result.provider != "secondary":
                    raise CheckFailed(f"failover {mode}: answered by {result.provider!r}")
            out[f"{mode}_ttft_ms"] = statistics.median(ttfts)
            out[f"{mode}_ttft_max_ms"] = max(ttfts)
    out.update(wall_s=span.wall, cpu_s=span.cpu, checked={"streams": 2 * count})
    return out


async def _batch(spec: dict[str, Any]) -> dict[str, Any]:
    """``count`` non-streamed requests through a batch runner, ``concurrency`` in flight;
    every result checked. RSS is sampled after the first 1,000 results and at the end:
    with the input made lazily, the growth between the two stays flat."""
    from .clients import BATCH_RUNNERS, batch_requests

    p = spec.get("params", {})
    count, concurrency = p.get("count", 10_000), p.get("concurrency", 256)
    runner = BATCH_RUNNERS[spec["client"]]
    seen: set[str] = set()
    rss_early = 0

    def on_text(custom_id: str, text: Any) -> None:
        nonlocal rss_early
        if not isinstance(text, str):
            raise CheckFailed(f"{custom_id} failed: {text!r}")
        _check_completion(text, custom_id)
        seen.add(custom_id)
        if len(seen) == min(1000, count):
            rss_early = _rss_kib()

    await runner(spec["base_url"], batch_requests(1), 1, lambda *_: None)  # warm-up
    with _Span() as span:
        await runner(spec["base_url"], batch_requests(count), concurrency, on_text)
    rss_end = _rss_kib()
    if len(seen) != count:
        raise CheckFailed(f"{len(seen)} distinct results, expected {count}")
    return {
        **_per_request(span, count),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_growth_after_1k_mib": max(0, rss_end - rss_early) / 1024,
        "checked": {"requests": count},
    }


async def _run_async(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["scenario"] == "failover":
        return await _failover(spec)
    if spec["scenario"] == "batch":
        return await _batch(spec)
    from .clients import make_async_client

    client = make_async_client(spec["client"], spec["base_url"])
    try:
        return await SCENARIOS[spec["scenario"]](client, spec.get("params", {}))
    finally:
        await client.aclose()


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this process and return its result dict."""
    if spec["client"] in ("asyncprov_sync",):
        from .clients import SYNC_CLIENTS

        client = SYNC_CLIENTS[spec["client"]](spec["base_url"])
        try:
            metrics = _sync_stream_20k(client, spec.get("params", {}))
        finally:
            client.close()
    else:
        metrics = asyncio.run(_run_async(spec))
    metrics["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return metrics


def _on_alarm(signum: int, frame: object) -> None:
    raise TimeoutError("the worker ran past its time limit")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(spec.get("time_limit", 300)))
    head = {"client": spec["client"], "scenario": spec["scenario"]}
    try:
        metrics = run_spec(spec)
    except BaseException as exc:  # report every failure as a result line
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        print(RESULT_PREFIX + json.dumps({**head, "ok": False, "error": error}), flush=True)
        return 1
    finally:
        signal.alarm(0)
    print(RESULT_PREFIX + json.dumps({**head, "ok": True, **metrics}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
