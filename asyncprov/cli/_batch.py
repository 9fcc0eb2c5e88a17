"""``asyncprov batch IN.jsonl OUT.jsonl``: OpenAI Batch API files run against any
provider, resumably (the file format and resume rules are ``_batchfile``'s): options,
progress display, Ctrl-C, and the summary."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from asyncprov import (
    AsyncClient,
    BatchProgress,
    KeyMask,
    RateLimit,
    RateLimitStats,
)
from asyncprov.providers import provider_class, provider_names

from ._batchfile import (
    InputFile,
    OutputFile,
    Report,
    error_line,
    load_output,
    result_line,
)
from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXPECTED, UsageError, exit_status
from ._provider import check_provider, redis_flag
from ._ray import add_ray_options, check_ray_options, ray_batch, ray_summary

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``batch`` command to the ``asyncprov`` command line."""
    parser = subparsers.add_parser(
        "batch",
        help="run an OpenAI Batch API JSONL file against any provider (resumable)",
        description="Run every request of IN (OpenAI Batch API JSONL) and append one result "
        "line per request to OUT. Run the same command again to resume: custom_ids "
        "already in OUT are skipped. Ctrl-C stops taking requests and waits --grace "
        "seconds for those in flight.",
    )
    parser.add_argument("input", metavar="IN.jsonl", type=Path, help="the requests")
    parser.add_argument("output", metavar="OUT.jsonl", type=Path, help="the results (appended)")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="requests in flight at once (default 64)"
    )
    parser.add_argument("--provider", help="provider name for every request (default: by model)")
    parser.add_argument("--model", help="model for every request, replacing the file's")
    parser.add_argument("--base-url", help="an OpenAI-compatible server to send to")
    parser.add_argument(
        "--api-key",
        help="the key (default, and better: the provider's env variable; a key given here "
        "shows in the process list)",
    )
    parser.add_argument("--rpm", type=float, help="requests per minute, per provider")
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share --rpm/--tpm and provider health with every batch (and gateway) on this "
        "Redis, e.g. the same command on several machines (needs asyncprov[redis])",
    )
    parser.add_argument("--tpm", type=float, help="tokens per minute, per provider")
    parser.add_argument("--timeout", type=float, help="seconds each request may take in all")
    parser.add_argument(
        "--max-retries",
        type=int,
        default=2,
        help="retries of a transient failure (5xx, timeout, cut connection) per request "
        "(default 2)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds Ctrl-C waits for the requests in flight (default 30)",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "log", "none"),
        default="auto",
        help="a tqdm bar on a terminal (auto, with tqdm installed), log lines, or nothing",
    )
    parser.add_argument(
        "--log-every", type=float, default=10.0, help="seconds between progress log lines"
    )
    add_ray_options(parser)
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the requests whose results in OUT are failures (their lines are replaced)",
    )


class _Display:
    """Progress: a tqdm bar on a terminal, else a log line every few seconds."""

    def __init__(self, mode: str, err: TextIO, every: float, total: Callable[[], int]) -> None:
        self.err = err
        self.every = every
        self.next_log = time.monotonic() + every
        self.bar: Any = None
        self.mode = mode
        if mode in ("auto", "bar"):
            is_tty = hasattr(err, "isatty") and err.isatty()
            tqdm = _import_tqdm() if (is_tty or mode == "bar") else None
            if tqdm is not None:
                self.bar = tqdm(total=total(), unit="req", file=err, dynamic_ncols=True)
            elif mode == "auto":
                self.mode = "log"
            else:
                self.mode = "log"
                err.write("asyncprov: tqdm is not installed (pip install 'asyncprov[progress]')\n")

    def skip(self, count: int) -> None:
        if self.bar is not None and count:
            self.bar.update(count)

    def update(self, progress: BatchProgress) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if progress.finished % 64 == 1:
                self.bar.set_postfix(failed=progress.failed, tokens=progress.total_tokens)
        elif self.mode == "log" and time.monotonic() >= self.next_log:
            self.next_log = time.monotonic() + self.every
            self.log(progress)

    def log(self, progress: BatchProgress) -> None:
        rate = progress.finished / progress.elapsed if progress.elapsed else 0.0
        self.err.write(
            f"asyncprov batch: {progress.done:,} done, {progress.failed:,} failed, "
            f"{progress.in_flight:,} in flight, {progress.total_tokens:,} tokens, "
            f"{rate:,.1f} req/s\n"
        )
        self.err.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _import_tqdm() -> Any:
    import importlib

    try:
        return importlib.import_module("tqdm").tqdm
    except ImportError:
        return None


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
    return count


def _first_model(path: Path) -> str | None:
    """The model of IN's first request, to check the provider it routes to up front
    (later lines are checked as they run)."""
    with (
        contextlib.suppress(OSError, ValueError, AttributeError, TypeError, RecursionError),
        path.open("rb") as f,
    ):
        for line in f:
            if line.strip():
                model = json.loads(line).get("body", {}).get("model")
                return model if isinstance(model, str) else None
    return None


def _known_keys(args: argparse.Namespace) -> KeyMask:
    """A mask for every key this run may send: --api-key and the providers' key
    variables."""
    keys = [args.api_key]
    for name in provider_names():
        env = provider_class(name).api_key_env
        keys.append(os.environ.get(env) if env else None)
    return KeyMask(keys)


class _Interrupt:
    """Ctrl-C (or SIGTERM): first stop intake and give in-flight requests a grace
    period, then drop them; a second signal drops them at once."""

    def __init__(self, grace: float, err: TextIO) -> None:
        self.grace = grace
        self.err = err
        self.signalled = False

    async def watch(self, batch: Any) -> None:
        import anyio

        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as group:
                async for _ in signals:
                    if self.signalled:
                        self.err.write("asyncprov: stopping now\n")
                        batch.cancel()
                        group.cancel_scope.cancel()
                        return
                    self.signalled = True
                    in_flight = batch.progress.in_flight
                    self.err.write(
                        f"asyncprov: interrupted: taking no new requests; waiting up to "
                        f"{self.grace:g} s for {in_flight} in flight (again to stop now)\n"
                    )
                    self.err.flush()
                    batch.stop()
                    group.start_soon(self._drop_after_grace, batch)

    async def _drop_after_grace(self, batch: Any) -> None:
        import anyio

        await anyio.sleep(self.grace)
        batch.cancel()


def _summary(
    out: TextIO,
    progress: BatchProgress,
    providers: dict[str, list[int]],
    source: InputFile,
    elapsed: float,
    dropped: int,
    limited: dict[str, RateLimitStats],
    ray: Any = None,
) -> None:
    finished = progress.finished
    rate = finished / elapsed if elapsed > 0 else 0.0
    failed = progress.failed + source.invalid
    out.write(
        f"batch: {progress.done:,} done, {failed:,} failed, "
        f"{source.skipped:,} already in OUT, {source.malformed:,} malformed line(s) skipped\n"
    )
    out.write(
        f"tokens: {progress.total_tokens:,} (prompt {progress.prompt_tokens:,}, "
        f"completion {progress.completion_tokens:,})\n"
    )
    out.write(f"time: {elapsed:.1f} s, {rate:,.1f} requests/s\n")
    providers = dict(providers)
    if source.invalid:  # lines recorded as failed without being sent
        providers["(not sent)"] = [0, providers.get("(not sent)", [0, 0])[1] + source.invalid]
    if providers:
        parts = [
            f"{name} {ok:,} done" + (f", {bad:,} failed" if bad else "")
            for name, (ok, bad) in sorted(providers.items())
        ]
        out.write("providers: " + "; ".join(parts) + "\n")
    for name, stats in limited.items():
        out.write(
            f"rate limit {name}: paced {stats.paced:,} time(s) ({stats.paced_seconds:.1f} s), "
            f"{stats.rate_limited:,} 429(s) waited out ({stats.paused_seconds:.1f} s)\n"
        )
    if ray is not None:
        ray_summary(out, ray)
    if dropped:
        out.write(
            f"interrupted: {dropped:,} request(s) in flight were dropped; run again to resume\n"
        )
    out.flush()


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import anyio

    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.max_retries < 0:
        raise UsageError("--max-retries must be 0 or more")
    for option in ("rpm", "tpm", "timeout", "log_every"):
        value = getattr(args, option)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UsageError(f"--{option.replace('_', '-')} must be a positive number")
    check_ray_options(args)
    if not (args.grace >= 0 and math.isfinite(args.grace)):
        raise UsageError("--grace must be a number of seconds, 0 or more")
    if not args.input.exists():
        raise UsageError(f"cannot read {args.input}: no such file")
    if not args.input.is_file():
        raise UsageError(f"cannot read {args.input}: not a file")
    if args.output.exists() and not args.output.is_file():
        raise UsageError(
            f"OUT must be a regular file, not {args.output}: a run reads it back to resume"
        )
    if args.output.exists() and args.input.resolve() == args.output.resolve():
        raise UsageError("IN and OUT are the same file; results need a file of their own")
    # Always a limiter, so a 429's Retry-After is waited out (that request alone, or the
    # whole provider when nothing else gets through) instead of becoming a failure line.
    # A batch queues by design, and its waits are finite (paced, or 429 pauses).
    limits = {"*": RateLimit(rpm=args.rpm, tpm=args.tpm, max_wait=None)}
    shared = redis_flag(args.redis)
    # Checked before OUT is touched: a bad --provider or a missing key leaves no OUT.
    check_provider(
        args.provider,
        base_url=args.base_url,
        api_key=args.api_key,
        model=args.model or _first_model(args.input) or "from IN",
    )
    # The client's settings, written once: the local client's and each Ray worker's.
    settings: dict[str, Any] = {
        "provider": args.provider,
        "base_url": args.base_url,
        "api_key": args.api_key,
        "timeout": args.timeout,
        "max_retries": args.max_retries,
        "rate_limits": limits,
        "shared_state": shared,
    }
    client = AsyncClient(**settings)
    report = Report(err)
    mask = _known_keys(args)
    output = OutputFile(args.output)
    done = None
    try:
        done, earlier_failures, rewritten = load_output(
            args.output, report, retry_failed=args.retry_failed
        )
        if rewritten:
            output.reopen()
        source = InputFile(
            args.input,
            done=done,
            model=args.model,
            report=report,
            reject=lambda custom_id, code, message: output.write(
                error_line(custom_id, code, message)
            ),
        )
        display = _Display(
            args.progress, err, args.log_every, total=lambda: _count_lines(args.input)
        )
        display.skip(len(done))
        providers: dict[str, list[int]] = {}
        interrupt = _Interrupt(args.grace, err)
        started = time.monotonic()
        async with client, anyio.create_task_group() as group:
            ray = None if args.ray is None else ray_batch(args, source.requests(), settings)
            batch = ray or client.chat.completions.batch(
                source.requests(), concurrency=args.concurrency
            )
            group.start_soon(interrupt.watch, batch)
            async with batch as results:
                async for result in results:
                    output.write(result_line(result, mask))
                    counts = providers.setdefault(result.provider or "(not sent)", [0, 0])
                    counts[0 if result.ok else 1] += 1
                    display.update(batch.progress)
            group.cancel_scope.cancel()
        progress = batch.progress
        display.close()
        if display.mode == "log":
            display.log(progress)
    finally:
        output.close()
        if done is not None:
            done.close()
    dropped = progress.in_flight if batch.cancelled else 0
    stats_of = ray.rate_limit_stats.get if ray else client.rate_limits.stats
    limited = {
        name: stats
        for name in providers
        if (stats := stats_of(name)) is not None and (stats.rate_limited or stats.paced)
    }
    elapsed = time.monotonic() - started
    _summary(out, progress, providers, source, elapsed, dropped, limited, ray)
    if earlier_failures:
        out.write(
            f"OUT already held {earlier_failures:,} failed request(s): --retry-failed runs "
            "them again\n"
        )
    if interrupt.signalled:
        return EXIT_INTERRUPTED
    failures = progress.failed + source.invalid + source.malformed + earlier_failures
    return EXIT_FAILED if failures else EXIT_OK


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``asyncprov batch``; returns the exit status (0: every request succeeded;
    1: some failed or lines were malformed; 2: unusable arguments or files; 130:
    interrupted). Expected failures print one line to stderr, never a traceback."""
    import anyio

    err = sys.stderr
    try:
        try:
            return anyio.run(_run, args, out, err)
        except BaseExceptionGroup as group:  # one error from inside a task group
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                raise group.exceptions[0] from None
            raise
    except (UsageError, *EXPECTED) as error:
        return exit_status(error, err)
