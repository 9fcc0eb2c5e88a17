"""``python -m benchmarks.ray_batch``: ``asyncprov batch`` on Ray (``--ray``, 2 workers)
against the local one-process run, at 10,000 and 100,000 lines.

One benchmark server (its own process, non-streamed ``json`` replies) and one local Ray
cluster started here (2 CPUs, no dashboard, a 200 MiB object store). Each run is the
real command, ``python -m asyncprov batch IN OUT ...``, in a process of its own, the
Ray runs joining the cluster by its address; the same number of requests in flight in
both (``--concurrency 128`` locally, 2 workers x ``--concurrency 64`` on Ray). Each
run's throughput is its lines over its wall time (process start to exit, so Ray's
connection and the workers' start are counted), and its peak memory is the driver
process's own maximum RSS (``wait4``); the Ray workers' memory is not in it. The modes
alternate within each round.

Writes ``benchmarks/RAY_BATCH.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from asyncprov import __version__

from .common import ROOT, child_env
from .report import cpu_model, short_commit
from .server import BenchServer

MODES = ("local", "ray")


def _write_input(path: Path, lines: int) -> None:
    with path.open("w") as handle:
        for i in range(lines):
            body = {"model": "json", "messages": [{"role": "user", "content": f"prompt {i}"}]}
            request = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions"}
            handle.write(json.dumps(request | {"body": body}) + "\n")


def _rss(pid: int) -> float:
    """A live process's RSS in MiB (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _run(mode: str, source: Path, base_url: str, address: str) -> tuple[float, float, float]:
    """One command: (requests per second, the driver's peak RSS and its RSS when its
    last line of OUT was written, in MiB)."""
    target = source.with_suffix(f".{mode}.out")
    target.unlink(missing_ok=True)
    command = [sys.executable, "-m", "asyncprov", "batch", str(source), str(target)]
    command += ["--base-url", base_url, "--progress", "none", "--max-retries", "0"]
    if mode == "ray":
        command += ["--ray", address, "--workers", "2", "--concurrency", "64"]
    else:
        command += ["--concurrency", "128"]
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    # Sampled while it runs: the last sample is the RSS with the whole input read and
    # nearly every result written (the peak may come from start-up instead).
    samples: list[float] = []
    done = threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc.pid, samples, done), daemon=True)
    sampler.start()
    stdout = proc.stdout.read().decode()
    stderr = proc.stderr.read().decode()
    done.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    lines = target.read_bytes().count(b"\n")
    if proc.returncode != 0 or lines != source.read_bytes().count(b"\n"):
        raise RuntimeError(f"{mode} run failed ({proc.returncode}): {stderr or stdout}")
    target.unlink()
    late = [rss for rss in samples if rss > 0]
    return lines / elapsed, usage.ru_maxrss / 1024, late[-1] if late else 0.0


def _sample(pid: int, samples: list[float], done: threading.Event) -> None:
    """RSS samples until ``done`` (the process is reaped after, by ``wait4``)."""
    while not done.wait(0.1):
        samples.append(_rss(pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds at 10k lines")
    parser.add_argument("--big-rounds", type=int, default=1, help="rounds at 100k lines")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "RAY_BATCH.md")
    args = parser.parse_args()
    import ray

    ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False
    )
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    try:
        address = ray.get_runtime_context().gcs_address
        with BenchServer() as server, tempfile.TemporaryDirectory() as folder:
            for lines, rounds in ((10_000, args.rounds), (100_000, args.big_rounds)):
                source = Path(folder) / f"in-{lines}.jsonl"
                _write_input(source, lines)
                for round_ in range(rounds):
                    order = MODES if round_ % 2 == 0 else MODES[::-1]
                    for mode in order:
                        row = _run(mode, source, server.base_url, address)
                        results.setdefault((mode, lines), []).append(row)
                        print(
                            f"{mode} {lines:,}: {row[0]:,.0f} req/s, RSS peak {row[1]:.1f} "
                            f"MiB, late {row[2]:.1f} MiB",
                            flush=True,
                        )
    finally:
        ray.shutdown()
    command = "python -m benchmarks.ray_batch" + "".join(
        f" {flag} {value}"
        for flag, value, default in (
            ("--rounds", args.rounds, 2),
            ("--big-rounds", args.big_rounds, 1),
        )
        if value != default
    )
    report = _report(results, command, args, ray.__version__)
    args.output.write_text(report)
    print(report)


def _cell(values: list[float], fmt: str) -> str:
    middle = format(statistics.median(values), fmt)
    if len(values) == 1:
        return middle
    return f"{middle} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def _report(
    results: dict[tuple[str, int], list[tuple[float, float, float]]],
    command: str,
    args: argparse.Namespace,
    ray_version: str,
) -> str:
    def med(mode: str, lines: int, index: int) -> float:
        return statistics.median(r[index] for r in results[(mode, lines)])

    machine = (
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; Ray {ray_version}; asyncprov "
        f"{__version__} (git {short_commit()})"
    )
    out = [
        "# `asyncprov batch` on Ray against the local run",
        "",
        f"`{command}`: {machine}, run at {time.strftime('%H:%M UTC', time.gmtime())}. "
        f"{args.rounds} round(s) at 10,000 lines and {args.big_rounds} at 100,000; each "
        "run is the real command in its own process against the benchmark server "
        "(non-streamed replies): locally with `--concurrency 128`; on a local Ray "
        "cluster of 2 CPUs with `--ray ADDRESS --workers 2 --concurrency 64` (128 in "
        "flight in all). Throughput is lines over the process's wall time (start-up, "
        "Ray's connection and the workers' start included). Memory is the driver's "
        "(the workers' is not in it): its peak RSS, and its RSS at the last sample "
        "before it exited (sampled every 0.1 s), when the whole input had been read. "
        "Medians (min–max). The machine is shared "
        "(other work ran on its 2 cores), and the server, the driver and both workers "
        "share those cores, so Ray here measures its overhead, not a speed-up.",
        "",
        "| lines | run | requests/s | driver peak RSS MiB | driver RSS at the end MiB |",
        "|---|---|---|---|---|",
    ]
    for lines in (10_000, 100_000):
        for mode in MODES:
            rows = results[(mode, lines)]
            out.append(
                f"| {lines:,} | {'local, one process' if mode == 'local' else 'Ray, 2 workers'} "
                f"| {_cell([r[0] for r in rows], ',.0f')} | {_cell([r[1] for r in rows], '.1f')} "
                f"| {_cell([r[2] for r in rows], '.1f')} |"
            )
    growth = {mode: med(mode, 100_000, 2) - med(mode, 10_000, 2) for mode in MODES}
    out += [
        "",
        f"- Ray, 2 workers: {med('ray', 10_000, 0) / med('local', 10_000, 0):.2f}× the local "
        f"throughput at 10,000 lines, {med('ray', 100_000, 0) / med('local', 100_000, 0):.2f}× "
        "at 100,000.",
        f"- Driver RSS at the end, from 10,000 to 100,000 lines: {growth['ray']:+.1f} MiB on Ray "
        f"({growth['ray'] * 1024 * 1024 / 90_000:+.0f} bytes a line), {growth['local']:+.1f} "
        f"MiB locally ({growth['local'] * 1024 * 1024 / 90_000:+.0f} bytes a line). Neither "
        "run holds requests or results beyond those in flight, and the custom_ids seen "
        "(the duplicate and resume check both runs share) are indexed on disk; what "
        "remains is the allocator and Ray settling (see a million lines below).",
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
