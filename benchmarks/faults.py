"""``python -m benchmarks.faults``: the fault matrix of the call path, at real timescales.

For ``stream=True`` and ``stream=False``, a client with ``max_retries=2`` and
``Timeout(connect=3, first_chunk=3, idle=3)`` against asyncprov's own fault server:

- a stall before headers, a stall mid-body, a keepalive-only body and a trickled body
  must each end in a ``TimeoutError`` naming the provider after 3 attempts, in about
  3 x 3 s plus the backoff;
- 5xx, 429 (``Retry-After: 1``: each wait must be the Retry-After, at most 100 ms more)
  and connection resets must end in their own typed error after 3 attempts, the
  backoff waits never over 0.5 s and 1 s;
- a failover group whose primary always fails must answer from its healthy backup
  within 50 ms of the primary's last failure;
- the seed's ``RetryProvider([OpenaiChat], single_provider_retry=True, max_retries=5)``
  must recover from three upstream 500s in under 4 s.

Waits are measured at the server, between the arrival of one attempt and the next,
less the attempt's own time as the client saw it. Everything runs on 127.0.0.1 and each
cell is bounded (60 s). Writes ``benchmarks/FAULTS.md`` and exits 1 if a cell fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from asyncprov import AsyncClient, Timeout, __version__
from asyncprov.providers import OpenaiChat, OpenAICompatible, RetryProvider
from asyncprov.testing import OpenAITestServer, Reply

TIMEOUT = Timeout(connect=3, first_chunk=3, idle=3, total=120)
SCHEDULE = (0.5, 1.0)  # the nominal backoff before attempts 2 and 3


@dataclass
class Cell:
    name: str
    stream: bool | None
    outcome: str
    attempts: int
    seconds: float
    waits: list[float]
    ok: bool
    note: str = ""


async def _call(client: AsyncClient, stream: bool) -> Any:
    if stream:
        reply = await client.chat.completions.create(model="m", messages="hi", stream=True)
        return await reply.collect()
    return await client.chat.completions.create(model="m", messages="hi")


def _waits(server: OpenAITestServer, attempt_seconds: list[float]) -> list[float]:
    """Gaps between attempts at the server, less each attempt's own duration."""
    arrivals = [r.at for r in server.requests]
    return [
        round(later - earlier - spent, 3)
        for earlier, later, spent in zip(arrivals, arrivals[1:], attempt_seconds, strict=False)
    ]


async def failing_cell(name: str, reply: Reply, stream: bool, expect: type[Exception]) -> Cell:
    error: Exception | None = None
    async with (
        OpenAITestServer(default=reply) as server,
        AsyncClient(base_url=server.base_url, timeout=TIMEOUT, max_retries=2) as client,
    ):
        started = time.monotonic()
        with anyio.fail_after(60):
            try:
                await _call(client, stream)
            except Exception as caught:
                error = caught
        seconds = time.monotonic() - started
    attempts = list(getattr(error, "exceptions", ()) or ([error] if error else []))
    spent = [getattr(e, "timeout", None) or 0.0 for e in attempts]
    if not issubclass(expect, TimeoutError):
        spent = [0.0] * len(attempts)  # answered at once: the gap is the wait
    waits = _waits(server, spent)
    ok = (
        isinstance(error, expect)
        and getattr(error, "provider", None) == "OpenAICompatible"
        and len(server.requests) == 3
    )
    note = ""
    if ok and name == "429 (Retry-After: 1)":
        ok = all(1.0 <= w <= 1.1 for w in waits)
        note = "each wait is Retry-After (1 s) + at most 0.1 s"
    elif ok and issubclass(expect, TimeoutError):
        budget = 3 * 3.0 + sum(SCHEDULE) + 1.0
        ok = seconds <= budget
        note = f"3 x 3 s + backoff: {seconds:.2f} s <= {budget:.1f} s"
    elif ok:
        ok = all(w <= limit + 0.05 for w, limit in zip(waits, SCHEDULE, strict=False))
        note = "waits <= 0.5 s, 1 s (+50 ms measuring slack)"
    outcome = type(error).__name__ if error else "answered"
    return Cell(name, stream, outcome, len(server.requests), seconds, waits, ok, note)


async def backup_cell(stream: bool) -> Cell:
    async with (
        OpenAITestServer(default=Reply(status=503)) as primary,
        OpenAITestServer() as backup,
    ):
        group = RetryProvider(
            [
                OpenAICompatible(base_url=primary.base_url, name="primary"),
                OpenAICompatible(base_url=backup.base_url, name="backup"),
            ],
            shuffle=False,
        )
        async with AsyncClient(group, timeout=TIMEOUT) as client:
            started = time.monotonic()
            with anyio.fail_after(60):
                result = await _call(client, stream)
            seconds = time.monotonic() - started
    gap = backup.requests[0].at - primary.requests[-1].at
    ok = result.provider == "backup" and gap <= 0.05
    return Cell(
        "failover to a healthy backup",
        stream,
        f"answered by {result.provider}",
        len(primary.requests) + len(backup.requests),
        seconds,
        [round(gap, 4)],
        ok,
        "backup asked <= 50 ms after the primary's last failure",
    )


async def seed_cell() -> Cell:
    async with OpenAITestServer() as server:
        server.add_reply(*[Reply(status=500)] * 3)
        os.environ["OPENAI_BASE_URL"] = server.base_url
        os.environ.setdefault("OPENAI_API_KEY", "sk-local-test")
        provider = RetryProvider([OpenaiChat], single_provider_retry=True, max_retries=5)
        async with AsyncClient(provider=provider) as client:
            started = time.monotonic()
            with anyio.fail_after(60):
                await _call(client, stream=True)
            seconds = time.monotonic() - started
    waits = _waits(server, [0.0] * 3)
    return Cell(
        "seed snippet, three 500s",
        True,
        "answered",
        len(server.requests),
        seconds,
        waits,
        seconds < 4.0 and len(server.requests) == 4,
        "recovers in under 4 s",
    )


async def run() -> list[Cell]:
    from asyncprov import APIConnectionError, InternalServerError, RateLimitError

    timeouts = {
        "stall before headers": Reply(delay=3600),
        "stall mid-body": Reply(fault="stall", fault_after=0),
        "keepalive-only body": Reply(fault="keepalive", fault_after=0, chunk_delay=1.0),
        "trickled body (1 byte / 100 ms)": Reply(fault="trickle", fault_after=0, chunk_delay=0.1),
    }
    typed: dict[str, tuple[Reply, type[Exception]]] = {
        "5xx": (Reply(status=500), InternalServerError),
        "429 (Retry-After: 1)": (Reply(status=429, headers={"Retry-After": "1"}), RateLimitError),
        "connection reset": (Reply(fault="reset"), APIConnectionError),
    }
    cells: list[Cell] = []

    async def add(coro: Any) -> None:
        cells.append(await coro)

    # The slow timeout cells run side by side (each has its own server); the ones
    # whose waits are judged in milliseconds run alone.
    async with anyio.create_task_group() as tg:
        for stream in (False, True):
            for name, reply in timeouts.items():
                tg.start_soon(add, failing_cell(name, reply, stream, TimeoutError))
    for stream in (False, True):
        for name, (reply, kind) in typed.items():
            cells.append(await failing_cell(name, reply, stream, kind))
        cells.append(await backup_cell(stream))
    cells.append(await seed_cell())
    return cells


def report(cells: list[Cell], command: str) -> str:
    lines = [
        "# The call path's fault matrix",
        "",
        f"`{command}` on {platform.node() and 'this machine'}: Python "
        f"{platform.python_version()}, {os.cpu_count()} cores, asyncprov {__version__}.",
        "`max_retries=2`, `Timeout(connect=3, first_chunk=3, idle=3)`. Waits are measured "
        "at the server (arrival to arrival, less the attempt's own time).",
        "",
        "| fault | stream | outcome | attempts | seconds | waits (s) | check | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = {name: i for i, name in enumerate(dict.fromkeys(c.name for c in cells))}
    for c in sorted(cells, key=lambda c: (order[c.name], bool(c.stream))):
        mark = "pass" if c.ok else "**FAIL**"
        lines.append(
            f"| {c.name} | {c.stream} | {c.outcome} | {c.attempts} | {c.seconds:.2f} | "
            f"{', '.join(f'{w:.3f}' for w in c.waits)} | {c.note} | {mark} |"
        )
    passed = sum(c.ok for c in cells)
    lines += ["", f"{passed} of {len(cells)} cells pass."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("FAULTS.md"))
    args = parser.parse_args()
    cells = anyio.run(run)
    text = report(cells, "python -m benchmarks.faults")
    args.output.write_text(text)
    print(text)
    return 0 if all(c.ok for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
