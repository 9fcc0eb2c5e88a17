"""``python -m benchmarks.wires``: streaming through each wire format, against OpenAI's.

The benchmark server sends the same 20,000 content chunks (same pieces of text) as an
OpenAI stream, an Anthropic Messages stream and a Gemini ``streamGenerateContent``
stream. Each round is one fresh worker process streaming the three wires interleaved
(the order rotating from round to round): a warm-up stream each, then three passes over
the wires, each stream after collecting the garbage before it (a full collection of the
start-up's objects costs ~30 ms, 1.5 µs a chunk, and would otherwise land in one wire's
window or another's by chance). A round gives each wire the median of its three; the
report gives medians over rounds (min-max) of chunks/s and CPU µs per chunk, and each
wire's cost against OpenAI's. Interleaving in one process compares the wires on the same
core at the same moment: one wire a process, a stream each, swung by ±10% from process
to process on this shared machine. Target (issue 16): Anthropic and Gemini within 1.15x of OpenAI's.
Writes ``benchmarks/WIRES.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from asyncprov import __version__

from .common import child_env, expected_text
from .server import BenchServer

WIRES = ("openai", "anthropic", "gemini")

WORKER = """
import asyncio, gc, json, sys, time
from asyncprov import AsyncClient
from asyncprov.providers import Anthropic, Gemini, OpenAICompatible
root, n, order = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
providers = {
    "openai": OpenAICompatible(base_url=root + "/v1"),
    "anthropic": Anthropic(api_key="bench-key", base_url=root),
    "gemini": Gemini(api_key="bench-key", base_url=root),
}
async def main():
    clients = {wire: AsyncClient(providers[wire], max_retries=0) for wire in order}
    async def once(client):
        stream = await client.chat.completions.create(
            model=f"stream-{n}", messages="hi", stream=True)
        parts = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts)
    for client in clients.values():
        await once(client)  # warm-up
    runs = {wire: [] for wire in order}
    for _ in range(3):
        for wire, client in clients.items():
            gc.collect()  # the garbage of what came before collected now, not in the window
            wall, cpu = time.perf_counter(), time.process_time()
            text = await once(client)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            runs[wire].append({"text_len": len(text), "wall": wall, "cpu": cpu})
    for client in clients.values():
        await client.aclose()
    print(json.dumps(runs))
asyncio.run(main())
"""


def _round(root: str, n: int, order: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """One worker streaming each wire three times, interleaved: each wire's median."""
    result = subprocess.run(
        [sys.executable, "-c", WORKER, root, str(n), ",".join(order)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=child_env(),
    )
    runs = json.loads(result.stdout.splitlines()[-1])
    medians = {}
    for wire in order:
        for run in runs[wire]:
            if run["text_len"] != len(expected_text(n)):
                raise RuntimeError(f"{wire}: the stream did not add up ({run['text_len']} chars)")
        wall = statistics.median(run["wall"] for run in runs[wire])
        cpu = statistics.median(run["cpu"] for run in runs[wire])
        medians[wire] = {"chunks_per_s": n / wall, "cpu_us_per_chunk": cpu / n * 1e6}
    return medians


def run(rounds: int, n: int) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {wire: [] for wire in WIRES}
    with BenchServer(lifetime=1800) as server:
        root = f"http://127.0.0.1:{server.port}"
        for index in range(rounds):
            order = WIRES[index % 3 :] + WIRES[: index % 3]
            for wire, figures in _round(root, n, order).items():
                results[wire].append(figures)
    return results


def report(results: dict[str, list[dict[str, float]]], command: str) -> str:
    def median(wire: str, key: str) -> float:
        return statistics.median(r[key] for r in results[wire])

    def span(wire: str, key: str) -> str:
        values = [r[key] for r in results[wire]]
        return f"{median(wire, key):,.2f} ({min(values):,.2f}–{max(values):,.2f})"

    lines = [
        "# Streaming through each wire format",
        "",
        f"`{command}`: Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"asyncprov {__version__}; {len(results['openai'])} rounds, each a worker "
        "streaming the wires interleaved, 3 times each (their median); medians over "
        "rounds (min–max).",
        "",
        "| wire | chunks/s | CPU µs per chunk | cost x OpenAI's (CPU) | target |",
        "|---|---|---|---|---|",
    ]
    base = median("openai", "cpu_us_per_chunk")
    for wire in WIRES:
        ratio = median(wire, "cpu_us_per_chunk") / base
        target = "" if wire == "openai" else ("met" if ratio <= 1.15 else "**missed**")
        lines.append(
            f"| {wire} | {span(wire, 'chunks_per_s')} | {span(wire, 'cpu_us_per_chunk')} | "
            f"{ratio:.2f}x | {'≤ 1.15x ' + target if target else ''} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wires")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("WIRES.md"))
    args = parser.parse_args()
    results = run(args.rounds, args.chunks)
    text = report(results, f"python -m benchmarks.wires --rounds {args.rounds}")
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
