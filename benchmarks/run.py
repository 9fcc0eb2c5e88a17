"""The orchestrator: server, rounds of worker processes, import timings, the report.

``python -m benchmarks`` (full) or ``python -m benchmarks --quick``. See README.md here.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import PYTHON, ROOT, child_env
from .report import collect_environment, render, source_fingerprint
from .server import BenchServer, measure_capacity
from .worker import RESULT_PREFIX

__all__ = [
    "FULL",
    "QUICK",
    "Config",
    "main",
    "run_benchmarks",
    "run_cold_start_round",
    "run_import_round",
    "run_worker",
]

PEERS = ["floor", "openai", "asyncprov"]
STREAM_PEERS = ["floor", "floor_lines", "openai", "asyncprov"]

SCENARIO_CLIENTS: dict[str, list[str]] = {
    "stream_20k": STREAM_PEERS,
    "ttft_256": STREAM_PEERS,
    "conc_1000": STREAM_PEERS,
    "nonstream_c1": PEERS,
    "nonstream_c64": PEERS,
    "nonstream_c256": PEERS,
    "ttft": STREAM_PEERS,
    "ttft_paced": STREAM_PEERS,
    "import": ["floor", "floor_basemodel", "openai", "asyncprov"],
    "cold_start": PEERS,
    "sync_vs_async": ["asyncprov", "asyncprov_sync"],
    "failover": ["asyncprov"],
    "batch": ["floor", "floor_pool", "asyncprov"],
}

IMPORTS = {
    "floor": "import aiohttp, pydantic",
    # ``import pydantic`` is lazy: code that defines a model also pays for BaseModel.
    "floor_basemodel": "import aiohttp\nfrom pydantic import BaseModel",
    "openai": "import openai",
    "asyncprov": "import asyncprov",
}
"""What each client's import costs, timed inside a fresh interpreter."""

_FLOOR_COLD = """
import asyncio, aiohttp
from pydantic import BaseModel
class Message(BaseModel):
    content: str | None = None
class Choice(BaseModel):
    message: Message
class Completion(BaseModel):
    choices: list[Choice]
async def main():
    async with aiohttp.ClientSession() as session:
        body = {{"model": "json", "messages": [{{"role": "user", "content": "hi"}}]}}
        async with session.post("{url}/chat/completions", json=body) as resp:
            data = await resp.read()
    return Completion.model_validate_json(data).choices[0].message.content
"""
COLD_STARTS = {
    "floor": _FLOOR_COLD,
    "openai": """
import asyncio, openai
async def main():
    async with openai.AsyncOpenAI(base_url="{url}", api_key="x", max_retries=0) as client:
        reply = await client.chat.completions.create(model="json", messages="hi")
    return reply.choices[0].message.content
""".replace('messages="hi"', 'messages=[{{"role": "user", "content": "hi"}}]'),
    "asyncprov": """
import asyncio, asyncprov
async def main():
    async with asyncprov.AsyncClient(base_url="{url}") as client:
        reply = await client.chat.completions.create(model="json", messages="hi")
    return reply.choices[0].message.content
""",
}
"""A fresh interpreter's way to its first answer: the imports, a client, one request."""

_COLD_CHILD = (
    "import time\nt0 = time.perf_counter()\n{code}\ntext = asyncio.run(main())\n"
    "elapsed = time.perf_counter() - t0\nassert text, text\nprint(repr(elapsed))\n"
)

_IMPORT_CHILD = (
    "import time\nt0 = time.perf_counter()\n{stmt}\nprint(repr(time.perf_counter() - t0))\n"
)


@dataclass
class Config:
    """How much work each measurement does, and how many rounds."""

    name: str
    rounds: int
    params: dict[str, dict[str, Any]]
    import_reps: int
    capacity_seconds: float
    time_limit: int = 240
    """Seconds a single worker may run before it is stopped and counted as failed."""
    clients_off: frozenset[str] = frozenset()
    """Client kinds this configuration leaves out."""
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIO_CLIENTS))


FULL = Config(
    name="full",
    rounds=5,
    params={
        "stream_20k": {"n": 20_000, "repeat": 3},
        "sync_vs_async": {"n": 20_000, "repeat": 3},
        "ttft_256": {"n": 20, "concurrency": 256, "bursts": 5},
        "conc_1000": {"n": 50, "concurrency": 1000},
        "nonstream_c1": {"count": 300},
        "nonstream_c64": {"count": 3000, "concurrency": 64},
        "nonstream_c256": {"count": 3000, "concurrency": 256},
        "ttft": {"count": 50},
        "ttft_paced": {"n": 4, "count": 200},
        "failover": {"count": 5, "hedge_delay": 0.1, "first_chunk": 0.5},
        "batch": {"count": 10_000, "concurrency": 256},
    },
    import_reps=10,
    capacity_seconds=2.0,
)

QUICK = Config(
    name="quick",
    rounds=3,
    params={
        "stream_20k": {"n": 20_000, "repeat": 1},
        "sync_vs_async": {"n": 20_000, "repeat": 1},
        "ttft_256": {"n": 20, "concurrency": 256, "bursts": 2},
        "conc_1000": {"n": 50, "concurrency": 1000},
        "nonstream_c1": {"count": 100},
        "nonstream_c64": {"count": 1000, "concurrency": 64},
        "nonstream_c256": {"count": 1000, "concurrency": 256},
        "ttft": {"count": 20},
        "ttft_paced": {"n": 4, "count": 50},
        "failover": {"count": 2, "hedge_delay": 0.1, "first_chunk": 0.5},
        "batch": {"count": 10_000, "concurrency": 256},
    },
    import_reps=3,
    capacity_seconds=1.0,
    clients_off=frozenset({"floor_lines"}),  # keeps --quick under 2 minutes
)


def run_worker(spec: dict[str, Any], time_limit: int = 240) -> dict[str, Any]:
    """Run one measurement in a fresh worker process and return its result dict.

    A worker that crashes, times out or prints no result line gives
    ``{"ok": False, "error": ...}``; nothing here raises for a failed measurement.
    """
    spec = {**spec, "time_limit": time_limit}
    head = {"client": spec["client"], "scenario": spec["scenario"]}
    try:
        proc = subprocess.run(
            [PYTHON, "-m", "benchmarks.worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=time_limit + 30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {**head, "ok": False, "error": f"worker killed after {time_limit + 30} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            if not result.get("ok"):
                result["stderr"] = proc.stderr[-2000:]
            return result
    tail = (proc.stderr or proc.stdout)[-2000:]
    return {**head, "ok": False, "error": f"no result (exit {proc.returncode})", "stderr": tail}


def _time_import(stmt: str, raw: bool = False) -> float:
    """Seconds a fresh interpreter reports for ``stmt`` timed (``raw``: ``stmt`` is the
    whole child program, printing its own figure)."""
    proc = subprocess.run(
        [PYTHON, "-c", stmt if raw else _IMPORT_CHILD.format(stmt=stmt)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=True,
    )
    return float(proc.stdout.strip().splitlines()[-1])


def run_cold_start_round(clients: list[str], reps: int, base_url: str) -> dict[str, dict[str, Any]]:
    """Median time from a fresh interpreter's start to its first answer, per client."""
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(reps):
        for name in clients:
            code = COLD_STARTS[name].format(url=base_url)
            samples[name].append(_time_import(_COLD_CHILD.format(code=code), raw=True) * 1000)
    return {
        name: {
            "client": name,
            "scenario": "cold_start",
            "ok": True,
            "cold_start_ms": statistics.median(values),
            "checked": {"interpreters": reps},
        }
        for name, values in samples.items()
    }


def run_import_round(clients: list[str], reps: int) -> dict[str, dict[str, Any]]:
    """Median import time per client over ``reps`` fresh interpreters, interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(reps):
        for name in clients:
            samples[name].append(_time_import(IMPORTS[name]) * 1000)
    return {
        name: {
            "client": name,
            "scenario": "import",
            "ok": True,
            "import_ms": statistics.median(values),
            "import_min_ms": min(values),
            "checked": {"interpreters": reps},
        }
        for name, values in samples.items()
    }


def _rotated(items: list[str], by: int) -> list[str]:
    by %= len(items)
    return items[by:] + items[:by]


def available_clients() -> list[str]:
    """Client kinds whose library is installed (openai is an optional extra)."""
    names = ["floor", "floor_lines", "floor_basemodel", "floor_pool", "asyncprov", "asyncprov_sync"]
    if importlib.util.find_spec("openai") is not None:
        names.append("openai")
    return names


def run_benchmarks(
    config: Config,
    server: BenchServer,
    *,
    clients: list[str] | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every scenario of ``config``, clients interleaved in rounds (order rotated each
    round), one fresh worker per measurement. Returns the raw results."""
    allowed = clients or available_clients()
    data: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for round_index in range(config.rounds):
        progress(f"round {round_index + 1}/{config.rounds}")
        for scenario in config.scenarios:
            names = [
                c
                for c in SCENARIO_CLIENTS[scenario]
                if c in allowed and c not in config.clients_off
            ]
            if not names:
                continue
            names = _rotated(names, round_index)
            started = time.perf_counter()
            if scenario == "import":
                outcome = run_import_round(names, config.import_reps)
            elif scenario == "cold_start":
                outcome = run_cold_start_round(names, config.import_reps, server.base_url)
            else:
                outcome = {}
                for name in names:
                    spec = {
                        "client": name,
                        "scenario": scenario,
                        "base_url": server.base_url,
                        "stall_url": server.stall_url,
                        "params": config.params.get(scenario, {}),
                    }
                    outcome[name] = run_worker(spec, config.time_limit)
            for name, result in outcome.items():
                result["round"] = round_index + 1
                data.setdefault(scenario, {}).setdefault(name, []).append(result)
            failed = [f"{n}: {r.get('error')}" for n, r in outcome.items() if not r.get("ok")]
            took = time.perf_counter() - started
            note = f"  FAILED {failed}" if failed else ""
            progress(f"  {scenario:<14} {' '.join(names):<36} {took:6.1f} s{note}")
    return {
        "config": config.name,
        "rounds": config.rounds,
        "params": config.params,
        "scenarios": data,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark asyncprov against a hand-written aiohttp+pydantic floor "
        "and openai-python on a local server, and write benchmarks/RESULTS.md.",
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds, less work (< 2 min)")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument(
        "--only", help=f"comma-separated scenarios (of {', '.join(SCENARIO_CLIENTS)})"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "benchmarks" / "RESULTS.md",
        help="where to write the report (default: benchmarks/RESULTS.md)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)

    base = QUICK if args.quick else FULL
    config = Config(
        name=base.name,
        rounds=args.rounds or base.rounds,
        params=base.params,
        import_reps=base.import_reps,
        capacity_seconds=base.capacity_seconds,
        clients_off=base.clients_off,
    )
    if args.only:
        chosen = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(chosen) - set(SCENARIO_CLIENTS))
        if unknown:
            parser.error(f"unknown scenarios: {', '.join(unknown)}")
        config.scenarios = chosen
    command = "python -m benchmarks" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    started = time.perf_counter()
    # Every library is measured as installed: pip compiles aiohttp's and pydantic's
    # bytecode when it installs them, and a checkout's asyncprov has none where
    # PYTHONDONTWRITEBYTECODE is set, so each cold start would compile its source.
    compileall.compile_dir(ROOT / "asyncprov", quiet=1)
    source_before = source_fingerprint()
    lifetime = config.rounds * 600.0 + 300.0
    with BenchServer(lifetime=lifetime) as server:
        print(f"benchmark server on 127.0.0.1:{server.port}; measuring its capacity")
        capacity = measure_capacity(server.port, config.capacity_seconds)
        results = run_benchmarks(config, server)
    results["capacity"] = capacity
    results["source_before"], results["source_after"] = source_before, source_fingerprint()
    results["elapsed_s"] = time.perf_counter() - started
    results["command"] = command
    results["environment"] = collect_environment()
    report = render(results)
    args.output.write_text(report)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print()
    print(report)
    print(f"wrote {args.output} in {results['elapsed_s']:.0f} s")
    if source_before != results["source_after"]:
        print("warning: asyncprov's source changed during the run; run again", file=sys.stderr)
    failures = sum(
        1
        for per_client in results["scenarios"].values()
        for runs in per_client.values()
        for run in runs
        if not run.get("ok")
    )
    return 1 if failures else 0
