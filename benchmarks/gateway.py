"""``python -m benchmarks.gateway``: what the gateway adds to a request, at fixed rates.

The benchmark server (its own process, core 0) is the upstream; ``asyncprov serve
--base-url`` runs as a second process pinned to core 1; the load generator (an aiohttp
client in this process, core 0) sends an open-loop request stream at a fixed rate to
the upstream directly and then through the gateway, interleaved, each for a fixed time.
For each rate and mode (non-stream ``json``, stream ``stream-20``) it reports latency
p50/p99 both ways and the gateway's added p50/p99, and the gateway's CPU per request
(from /proc) against the CPU an ``AsyncClient`` in its own process spends on the same
direct call at the same rate. Writes ``benchmarks/GATEWAY.md``.

Targets (issue 14): added p50 under 1 ms and gateway CPU under 2x a direct asyncprov
call at 500 rps, non-stream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from asyncprov import __version__

from .server import BenchServer

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _pin(pid: int, core: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        if (os.cpu_count() or 1) > core:
            os.sched_setaffinity(pid, {core})


@dataclass
class Row:
    mode: str
    rate: int
    direct_p50: float
    direct_p99: float
    gateway_p50: float
    gateway_p99: float
    gateway_cpu_us: float
    client_cpu_us: float
    errors: int

    @property
    def added_p50(self) -> float:
        return self.gateway_p50 - self.direct_p50

    @property
    def added_p99(self) -> float:
        return self.gateway_p99 - self.direct_p99


async def _load(url: str, model: str, rate: int, seconds: float) -> tuple[list[float], int]:
    """Open loop: one request every 1/rate s, whatever the answers do; latencies in ms."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if model.startswith("stream"):
        body["stream"] = True
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                async with session.post(url + "/chat/completions", json=body) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append((time.perf_counter() - started) * 1000)

        count = int(rate * seconds)
        start = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 30)
    return latencies, errors


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


CLIENT_WORKER = """
import asyncio, json, sys, time
from asyncprov import AsyncClient
url, model, rate, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
async def main():
    async with AsyncClient(base_url=url, max_retries=0) as client:
        async def one():
            if model.startswith("stream"):
                s = await client.chat.completions.create(model=model, messages="hi", stream=True)
                async for _ in s: pass
            else:
                await client.chat.completions.create(model=model, messages="hi")
        await one()
        count = int(rate * seconds)
        start = time.perf_counter(); cpu = time.process_time(); tasks = []
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0: await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
        print(json.dumps({"cpu_us": (time.process_time() - cpu) / count * 1e6}))
asyncio.run(main())
"""


def _client_cpu(url: str, model: str, rate: int, seconds: float) -> float:
    result = subprocess.run(
        [sys.executable, "-c", CLIENT_WORKER, url, model, str(rate), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
        preexec_fn=lambda: _pin(0, 1),
    )
    return float(json.loads(result.stdout.splitlines()[-1])["cpu_us"])


@contextlib.contextmanager
def _gateway(upstream: str) -> object:
    config = Path(tempfile.mkdtemp()) / "gateway.toml"
    config.write_text(
        f'[server]\nport = 0\n[providers.up]\ntype = "OpenAICompatible"\nbase_url = "{upstream}"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncprov", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[2]
        _pin(process.pid, 1)
        yield process, url
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        process.kill()


def run(rates: list[int], seconds: float) -> list[Row]:
    rows = []
    _pin(0, 0)
    with BenchServer(lifetime=1800) as server:
        _pin(server._proc.pid, 0)  # type: ignore[union-attr]
        with _gateway(server.base_url) as (gateway, url):
            for mode, model in (("non-stream", "json"), ("stream", "stream-20")):
                # warm both paths
                asyncio.run(_load(url, model, 100, 1.0))
                asyncio.run(_load(server.base_url, model, 100, 1.0))
                for rate in rates:
                    direct, e1 = asyncio.run(_load(server.base_url, model, rate, seconds))
                    before = _cpu_seconds(gateway.pid)
                    via, e2 = asyncio.run(_load(url, model, rate, seconds))
                    spent = _cpu_seconds(gateway.pid) - before
                    client = _client_cpu(server.base_url, model, rate, seconds)
                    rows.append(
                        Row(
                            mode,
                            rate,
                            statistics.median(direct),
                            _pct(direct, 0.99),
                            statistics.median(via),
                            _pct(via, 0.99),
                            spent / max(1, len(via)) * 1e6,
                            client,
                            e1 + e2,
                        )
                    )
    return rows


def report(rows: list[Row], command: str) -> str:
    lines = [
        "# What the gateway adds",
        "",
        f"`{command}`: Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"asyncprov {__version__}. Upstream and load generator on core 0, the gateway "
        "alone on core 1; open-loop load at a fixed rate; latencies in ms.",
        "",
        "| mode | rate | direct p50 | direct p99 | via gateway p50 | via gateway p99 "
        "| added p50 | added p99 | gateway CPU µs/req | direct AsyncClient CPU µs/req "
        "| CPU ratio | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.mode} | {r.rate} rps | {r.direct_p50:.2f} | {r.direct_p99:.2f} | "
            f"{r.gateway_p50:.2f} | {r.gateway_p99:.2f} | {r.added_p50:.2f} | "
            f"{r.added_p99:.2f} | {r.gateway_cpu_us:.0f} | {r.client_cpu_us:.0f} | "
            f"{r.gateway_cpu_us / r.client_cpu_us:.2f}x | {r.errors} |"
        )
    target = next((r for r in rows if r.mode == "non-stream" and r.rate == 500), None)
    if target is not None:
        lines += [
            "",
            f"Target at 500 rps non-stream: added p50 {target.added_p50:.2f} ms (under 1 ms: "
            f"{'met' if target.added_p50 < 1 else 'missed'}), gateway CPU "
            f"{target.gateway_cpu_us / target.client_cpu_us:.2f}x a direct AsyncClient call "
            "(under 2x: "
            f"{'met' if target.gateway_cpu_us < 2 * target.client_cpu_us else 'missed'}).",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gateway")
    parser.add_argument("--rates", default="250,500")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("GATEWAY.md"))
    args = parser.parse_args()
    rows = run([int(r) for r in args.rates.split(",")], args.seconds)
    command = f"python -m benchmarks.gateway --rates {args.rates} --seconds {args.seconds}"
    text = report(rows, command)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
