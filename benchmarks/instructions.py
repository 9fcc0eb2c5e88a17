"""Instructions per request and per chunk, floor against asyncprov, counted by valgrind.

``python -m benchmarks.instructions`` (needs ``valgrind``: ``apt-get install valgrind``)
runs each client in a fresh interpreter under callgrind twice, once with only the
warm-up and once with the measured work added, and divides the difference by the work
done. A count does not move with the machine's other load, so it tells a change of a few
percent apart where wall and CPU time on a shared 2-core machine swing by 20%. It counts
the client process only (the server runs natively in its own process), and it is not a
time: a cache miss costs more than an instruction. ``python -m benchmarks`` stays the
judge of the targets; this is the instrument for finding and checking a cut.

The cyclic garbage collector is off in the workers unless ``--gc``: when it runs depends
on allocation counts across many requests in flight, which makes counts vary by about
5% from run to run; what it costs is measured by running with ``--gc``.

Writes ``benchmarks/INSTRUCTIONS.md`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import ROOT, child_env
from .report import collect_environment
from .server import BenchServer

PYTHON = sys.executable
_COLLECTED = re.compile(r"Collected : (\d+)")

# (scenario, what one unit is, concurrency, requests measured, units per request)
SCENARIOS: list[tuple[str, str, int, int, int]] = [
    ("json", "non-stream request at concurrency 64", 64, 500, 1),
    ("stream-2000", "chunk of one 2,000-chunk stream", 1, 5, 2000),
]
CLIENTS = ["floor", "asyncprov"]


async def _work(client: Any, scenario: str, concurrency: int, units: int) -> None:
    remaining = units

    async def one() -> None:
        if scenario == "json":
            await client.complete("json")
        else:
            await client.stream(scenario)

    async def loop() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    await asyncio.gather(*(loop() for _ in range(concurrency)))


async def _worker(base_url: str, name: str, scenario: str, concurrency: int, units: int) -> None:
    from .clients import make_async_client

    client = make_async_client(name, base_url)
    try:
        # The warm-up, run whatever is measured: imports, schemas, a full pool.
        await _work(client, scenario, concurrency, concurrency)
        await _work(client, scenario, concurrency, units)
    finally:
        await client.aclose()


def _count(
    base_url: str, name: str, scenario: str, concurrency: int, units: int, gc_on: bool
) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", PYTHON]
    command += ["-m", "benchmarks.instructions", "--worker", base_url, name, scenario]
    command += [str(concurrency), str(units)] + (["--gc"] if gc_on else [])
    done = subprocess.run(
        command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=900
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{name} {scenario}: {done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions",
        description="Instructions per request and per chunk, floor against asyncprov "
        "(valgrind's callgrind); writes benchmarks/INSTRUCTIONS.md.",
    )
    parser.add_argument("--gc", action="store_true", help="leave the garbage collector on")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "INSTRUCTIONS.md")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        base_url, name, scenario, concurrency, units = args.worker
        if not args.gc:
            gc.disable()
        asyncio.run(_worker(base_url, name, scenario, int(concurrency), int(units)))
        return 0
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    started = time.perf_counter()
    rows = []
    with BenchServer(lifetime=3600) as server:
        for scenario, unit, concurrency, units, per_request in SCENARIOS:
            per_unit = {}
            for name in CLIENTS:
                base = _count(server.base_url, name, scenario, concurrency, 0, args.gc)
                full = _count(server.base_url, name, scenario, concurrency, units, args.gc)
                per_unit[name] = (full - base) / (units * per_request)
                print(f"{scenario:12} {name:10} {per_unit[name]:10,.0f} instructions per unit")
            rows.append((unit, per_unit["floor"], per_unit["asyncprov"]))
    command = "python -m benchmarks.instructions" + (" --gc" if args.gc else "")
    env = collect_environment()
    lines = [
        "# Instructions per unit of work: floor against asyncprov",
        "",
        f"Command: `{command}`, took {time.perf_counter() - started:.0f} s, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; garbage collector "
        f"{'on' if args.gc else 'off'} in the clients. Counted by valgrind's callgrind in "
        "the client process (see the module's docstring for what a count is and is not).",
        "",
        f"Machine: {env['machine']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if k != "openai")
        + ".",
        "",
        "| one unit | floor | asyncprov | asyncprov ×floor |",
        "|---|---|---|---|",
    ]
    for unit, floor, ours in rows:
        lines.append(f"| {unit} | {floor:,.0f} | {ours:,.0f} | {ours / floor:.2f}× |")
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
