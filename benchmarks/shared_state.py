"""``python -m benchmarks.shared_state``: what sharing the rate limits through Redis
costs, against the same limits in memory.

One benchmark server (its own process) and one ``redis-server`` (started here on a free
loopback port; it must be installed). Two measurements, in one run, each in fresh
worker processes, the modes interleaved in rounds (medians reported, with min-max):

1. **Per-request overhead at concurrency 64**: one process sends non-streamed requests,
   64 in flight, under ``RateLimit(rpm, tpm, concurrency)`` set so high that they never
   make anyone wait (the cost of the bookkeeping alone): in memory, then in Redis
   (``shared_state=``). Also the Redis round trips per request (``INFO commandstats``).
2. **Throughput through one Redis from 4 processes**: 4 processes at once, 64 in flight
   each, every one with the same shared limits, against the same 4 with in-memory ones.

Writes ``benchmarks/SHARED_STATE.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from asyncprov import __version__

from .common import ROOT
from .report import cpu_model, short_commit
from .server import BenchServer

WIDTH = 64
MODES = ("memory", "shared")
LABELS = {"none": "none (reference)", "memory": "in memory", "shared": "in Redis"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Redis:
    """A throwaway ``redis-server`` on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command("PING").startswith(b"+PONG"):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *words: str) -> bytes:
        """One command's reply: a status line, or a bulk string's bytes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(" ".join(words).encode() + b"\r\n")
            data = b""
            while b"\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n")
            if not head.startswith(b"$"):
                return data
            size = int(head[1:])
            while len(rest) < size:
                rest += conn.recv(65536)
            return rest[:size]

    def script_calls(self) -> int:
        for line in self.command("INFO", "commandstats").decode().splitlines():
            if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
                return int(line.split("calls=", 1)[1].split(",", 1)[0])
        return 0

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


# --- the worker process ------------------------------------------------------------------


async def _work(mode: str, base_url: str, redis_url: str, requests: int, namespace: str) -> None:
    import anyio

    from asyncprov import AsyncClient, RateLimit, SharedState

    limits = {"OpenAICompatible": RateLimit(rpm=1e9, tpm=1e12, concurrency=100_000)}
    rate_limits = limits if mode != "none" else None
    shared = SharedState(redis_url, namespace=namespace) if mode == "shared" else None
    client = AsyncClient(base_url=base_url, rate_limits=rate_limits, shared_state=shared)
    async with client:

        async def run(count: int) -> None:
            left = iter(range(count))

            async def worker() -> None:
                for _ in left:
                    await client.chat.completions.create(model="json", messages="hi")

            async with anyio.create_task_group() as tg:
                for _ in range(WIDTH):
                    tg.start_soon(worker)

        await run(500)  # warm: connections, the script loaded in Redis
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)  # the start line
        started, cpu = time.perf_counter(), time.process_time()
        await run(requests)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "requests": requests}), flush=True)


def _start(
    mode: str, server: BenchServer, redis: Redis, requests: int, ns: str
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "benchmarks.shared_state", "--worker", mode),
            *(server.base_url, redis.url, str(requests), ns),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"a {mode} worker did not start")
    return proc


def _measure(
    mode: str, processes: int, server: BenchServer, redis: Redis, requests: int, ns: str
) -> tuple[float, float, float]:
    """(requests per second in all, CPU µs per request, Redis scripts per request)."""
    procs = [_start(mode, server, redis, requests, ns) for _ in range(processes)]
    calls = redis.script_calls()
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - started
    total = processes * requests
    cpu = sum(r["cpu"] for r in results) / total * 1e6
    return total / wall, cpu, (redis.script_calls() - calls) / total


def _row(name: str, values: list[float], fmt: str) -> str:
    median = statistics.median(values)
    return f"{format(median, fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared_state")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5000, help="per process and round")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "SHARED_STATE.md")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import anyio

        mode, base_url, redis_url, requests, namespace = args.worker
        anyio.run(_work, mode, base_url, redis_url, int(requests), namespace)
        return
    command = " ".join(["python -m benchmarks.shared_state", *sys.argv[1:]])
    redis = Redis()
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    try:
        with BenchServer() as server:
            for round_ in range(args.rounds):
                order = MODES if round_ % 2 == 0 else MODES[::-1]
                for processes in (1, 4):
                    for mode in (*order, "none") if processes == 1 else order:
                        ns = f"bench-{round_}-{processes}-{mode}"
                        figures = _measure(mode, processes, server, redis, args.requests, ns)
                        results.setdefault((mode, processes), []).append(figures)
                        print(mode, processes, [f"{x:.2f}" for x in figures], file=sys.stderr)
    finally:
        redis.stop()
    text = _report(results, command, args)
    args.output.write_text(text)
    print(text)


def _report(
    results: dict[tuple[str, int], list[tuple[float, float, float]]],
    command: str,
    args: argparse.Namespace,
) -> str:
    def med(mode: str, processes: int, index: int) -> float:
        return statistics.median(r[index] for r in results[(mode, processes)])

    machine = (
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; {_redis_version()}; asyncprov "
        f"{__version__} (git {short_commit()})"
    )
    lines = [
        "# Shared limits (Redis) against in-memory limits",
        "",
        f"`{command}`: {machine}. {args.rounds} rounds, {args.requests:,} non-streamed "
        f"requests per process and round, {WIDTH} in flight per process, against the "
        "benchmark server; `RateLimit(rpm, tpm, concurrency)` far above what is sent, so "
        'the figures are the limits\' bookkeeping alone ("none": no limits at all, for '
        "reference). Medians (min–max). Server, Redis and every worker share the "
        "machine's cores.",
        "",
        "| processes | limits | requests/s (all processes) | CPU µs per request "
        "| Redis round trips per request |",
        "|---|---|---|---|---|",
    ]
    for processes in (1, 4):
        for mode in (*MODES, "none") if processes == 1 else MODES:
            rows = results[(mode, processes)]
            lines.append(
                f"| {processes} | {LABELS[mode]} | "
                f"{_row('rps', [r[0] for r in rows], ',.0f')} | "
                f"{_row('cpu', [r[1] for r in rows], '.0f')} | "
                f"{_row('trips', [r[2] for r in rows], '.2f')} |"
            )
    one_mem, one_shared = med("memory", 1, 0), med("shared", 1, 0)
    added = (1 / one_shared - 1 / one_mem) * 1e6
    cpu_added = med("shared", 1, 1) - med("memory", 1, 1)
    lines += [
        "",
        f"- Limits in memory cost {med('none', 1, 0) / one_mem:.2f}× the time of no limits "
        f"at all; in Redis {med('none', 1, 0) / one_shared:.2f}×.",
        f"- One process at concurrency {WIDTH}: shared limits run at "
        f"{one_shared / one_mem:.2f}× the in-memory throughput ({one_mem / one_shared:.2f}× "
        f"the time per request): {added:.0f} µs of wall time and {cpu_added:.0f} µs of "
        "CPU added per request.",
        f"- Four processes through one Redis: {med('shared', 4, 0):,.0f} requests/s in all, "
        f"{med('shared', 4, 0) / med('memory', 4, 0):.2f}× the same four with in-memory "
        f"limits ({med('memory', 4, 0):,.0f} requests/s).",
    ]
    return "\n".join(lines) + "\n"


def _redis_version() -> str:
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "redis-server (version unknown)"
    return "redis-server " + out.split("v=", 1)[-1].split()[0]


if __name__ == "__main__":
    main()
