"""``run_batch`` and ``arun_batch``: an OpenAI Batch API file run on Ray from Python,
exactly as ``asyncprov batch IN OUT --ray`` runs it (the same OUT, resume, summary)."""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ParamSpec, TextIO

P = ParamSpec("P")

__all__ = ["arun_batch", "run_batch"]


def run_batch(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    address: str | None = None,
    workers: int = 2,
    concurrency: int = 64,
    provider: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    redis: str | None = None,
    timeout: float | None = None,
    max_retries: int = 2,
    retry_failed: bool = False,
    progress: str = "none",
    out: TextIO | None = None,
) -> int:
    """Run every request of the file ``input`` on Ray workers, appending one result
    line per request to ``output``; run again to resume. The options are the
    command's flags (keys come from the providers' environment variables).

    Returns:
        The command's exit status: 0 when every request succeeded, 1 when some failed
        (their lines are in ``output``) or the workers kept dying, 2 for unusable
        arguments or files, 130 when interrupted. Problems are one line on stderr; the
        summary goes to ``out`` (default stdout).

    Example:
        >>> run_batch("requests.jsonl", "results.jsonl", workers=4, rpm=500,
        ...           redis="redis://10.0.0.5:6379/0")
        0
    """
    from asyncprov.cli import main

    argv = ["batch", os.fspath(Path(input)), os.fspath(Path(output)), "--ray"]
    if address is not None:
        argv.append(address)
    argv += ["--workers", str(workers), "--concurrency", str(concurrency)]
    argv += ["--max-retries", str(max_retries), "--progress", progress]
    for flag, value in (
        ("--provider", provider),
        ("--model", model),
        ("--base-url", base_url),
        ("--rpm", rpm),
        ("--tpm", tpm),
        ("--redis", redis),
        ("--timeout", timeout),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if retry_failed:
        argv.append("--retry-failed")
    return main(argv, out=out)


def _in_a_thread(run: Callable[P, int]) -> Callable[P, Awaitable[int]]:
    async def run_in_a_thread(*args: P.args, **kwargs: P.kwargs) -> int:
        import anyio

        return await anyio.to_thread.run_sync(functools.partial(run, *args, **kwargs))

    return run_in_a_thread


arun_batch = _in_a_thread(run_batch)
"""``run_batch`` for async code (the same arguments): the run goes on in a worker
thread, so the event loop is free meanwhile (Ctrl-C there is the caller's to handle)."""
