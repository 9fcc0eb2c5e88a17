"""``asyncprov batch IN.jsonl OUT.jsonl``: OpenAI Batch API files, run against any
provider, resumably. Built on the public API only.

Input lines are ``{"custom_id", "method", "url", "body"}``; output lines are
``{"id", "custom_id", "response": {"status_code", "body"}, "error"}``, appended and
flushed one finished request at a time, so a crash loses at most the requests in
flight. Running the same command again skips every ``custom_id`` already in OUT and
drops a last line an earlier crash cut off.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TextIO

from . import (
    AsyncClient,
    AsyncProvError,
    BatchProgress,
    BatchResult,
    RateLimit,
    RateLimitStats,
)

__all__ = ["add_parser", "run"]

CHAT_URLS = frozenset({"/v1/chat/completions", "/chat/completions"})
# create() arguments that are ours, not OpenAI body fields: a file may not set them.
_NOT_BODY_FIELDS = frozenset(
    {"provider", "proxy", "api_key", "timeout", "image", "images", "hedge_delay", "stream"}
)
_SHOWN_PROBLEMS = 20


class UsageError(Exception):
    """A command line or file that cannot be acted on (exit status 2)."""


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
    parser.add_argument("--tpm", type=float, help="tokens per minute, per provider")
    parser.add_argument("--timeout", type=float, help="seconds each request may take in all")
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
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the requests whose results in OUT are failures (their lines are replaced)",
    )


def _code(error_type: str | None) -> str:
    """``RateLimitError`` -> ``rate_limit_error``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", error_type or "Error").lower()


def _new_id() -> str:
    return "batch_req_" + uuid.uuid4().hex


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _masked(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def result_line(result: BatchResult, secrets: Sequence[str] = ()) -> str:
    """The OpenAI Batch API output line for ``result`` (with its newline). ``secrets``
    are masked in a failure's message and upstream body, where a provider may echo the
    key back (ids and completions are never touched)."""
    head = f'{{"id":{_dumps(_new_id())},"custom_id":{_dumps(result.custom_id)},'
    if result.completion is not None:
        body = result.completion.model_dump_json(exclude_none=True)
        return head + f'"response":{{"status_code":200,"body":{body}}},"error":null}}\n'
    message = _masked(result.error_message or "", secrets)
    error = {"code": _code(result.error_type), "message": message}
    response = None
    if result.status is not None:
        upstream = getattr(result.error, "body", None)
        if isinstance(upstream, str):
            upstream = _masked(upstream, secrets)
        parsed: Any = None
        if isinstance(upstream, str) and upstream:
            try:
                parsed = json.loads(upstream)
            except ValueError:
                parsed = None
        if not isinstance(parsed, dict):
            parsed = {"error": {"message": error["message"], "type": error["code"]}}
        response = {"status_code": result.status, "body": parsed}
    return head + f'"response":{_dumps(response)},"error":{_dumps(error)}}}\n'


def _error_line(custom_id: str, code: str, message: str) -> str:
    record = {
        "id": _new_id(),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
    return _dumps(record) + "\n"


class _Report:
    """Problems with the files, one line each on stderr (the first few of each run)."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.count = 0

    def problem(self, message: str) -> None:
        self.count += 1
        if self.count <= _SHOWN_PROBLEMS:
            self.err.write(f"asyncprov: {message}\n")
        elif self.count == _SHOWN_PROBLEMS + 1:
            self.err.write("asyncprov: (further problems are counted, not shown)\n")
        self.err.flush()


def load_output(
    path: Path, report: _Report, *, retry_failed: bool = False
) -> tuple[set[str], int, bool]:
    """The ``custom_id``s already in OUT, how many of them failed, and whether OUT was
    rewritten. A last line an earlier crash cut off (no newline) is removed. With
    ``retry_failed`` the failed lines are removed too (OUT is rewritten into a new
    file), so their requests run again.

    Raises:
        UsageError: a line other than a torn last one is not a result line (not ours
            to fix).
    """
    done: set[str] = set()
    failed: dict[int, str] = {}  # offset of each failed result line -> its custom_id
    if not path.exists():
        return done, 0, False
    try:
        handle = path.open("r+b")
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None
    with handle:
        offset = 0
        torn: tuple[int, int] | None = None  # (line number, offset) of a cut-off line
        for number, raw in enumerate(handle, 1):
            if torn is not None and raw.strip():
                raise UsageError(
                    f"{path} line {torn[0]} is not a result line; fix or remove it to resume"
                )
            try:
                record = json.loads(raw)
                custom_id = record.get("custom_id") if isinstance(record, dict) else None
            except (ValueError, RecursionError):
                record, custom_id = None, None
            if isinstance(custom_id, str):
                done.add(custom_id)
                if isinstance(record, dict) and record.get("error") is not None:
                    failed[offset] = custom_id
            elif raw.strip():
                if raw.endswith(b"\n"):  # whole, yet not ours: a person must look
                    raise UsageError(
                        f"{path} line {number} is not a result line; fix or remove it to resume"
                    )
                torn = (number, offset)
            offset += len(raw)
        if torn is not None:
            handle.truncate(torn[1])
            report.problem(
                f"{path} line {torn[0]} was cut off (an earlier run stopped mid-write); "
                "removed it, its request runs again"
            )
        elif offset and not _ends_with_newline(handle, offset):
            handle.write(b"\n")
    if retry_failed and failed:
        _drop_lines(path, set(failed))
        report.problem(f"{len(failed):,} failed request(s) in {path} will run again")
        return done - set(failed.values()), 0, True
    return done, len(failed), False


def _ends_with_newline(handle: IO[bytes], size: int) -> bool:
    handle.seek(size - 1)
    return handle.read(1) == b"\n"


def _drop_lines(path: Path, offsets: set[int]) -> None:
    """Rewrite OUT without the lines starting at ``offsets`` (atomically: a crash
    leaves the old OUT)."""
    path = path.resolve()  # rewrite a symlink's target, not the link
    temporary = path.with_name(path.name + ".tmp")
    with path.open("rb") as source, temporary.open("wb") as target:
        offset = 0
        for raw in source:
            if offset not in offsets:
                target.write(raw)
            offset += len(raw)
        target.flush()
        os.fsync(target.fileno())
    shutil.copymode(path, temporary)  # results may be private: keep OUT's permissions
    os.replace(temporary, path)


class _Input:
    """Reads IN lazily, line by line, turning each good line into a batch request."""

    def __init__(
        self,
        path: Path,
        *,
        done: set[str],
        model: str | None,
        report: _Report,
        reject: Callable[[str, str, str], None],
    ) -> None:
        self.path = path
        self.model = model
        self.report = report
        self.reject = reject
        self.first_line: dict[str, int] = dict.fromkeys(done, 0)  # 0: already in OUT
        self.skipped = 0
        self.malformed = 0
        self.invalid = 0

    def _problem(self, number: int, message: str) -> None:
        self.malformed += 1
        self.report.problem(f"{self.path} line {number}: {message}")

    def requests(self) -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as lines:
            for number, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                request = self._parse(number, raw)
                if request is not None:
                    yield request

    def _parse(self, number: int, raw: bytes) -> dict[str, Any] | None:
        try:
            item = json.loads(raw)
        except ValueError as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            self._problem(number, f"not valid JSON ({reason}); skipped")
            return None
        except RecursionError:
            self._problem(number, "not valid JSON (nested too deeply); skipped")
            return None
        if not isinstance(item, dict):
            self._problem(number, "not a JSON object; skipped")
            return None
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            what = "no custom_id" if custom_id is None else "custom_id is not a string"
            self._problem(number, f"{what} (a non-empty string is required); skipped")
            return None
        first = self.first_line.get(custom_id)
        if first == 0:
            self.skipped += 1
            return None
        if first is not None:
            self._problem(
                number, f"duplicate custom_id {custom_id!r} (first on line {first}); skipped"
            )
            return None
        self.first_line[custom_id] = number
        url, method, body = item.get("url"), item.get("method", "POST"), item.get("body")
        problem = None
        if url not in CHAT_URLS:
            problem = f"url must be /v1/chat/completions, not {url!r}"
        elif not isinstance(method, str) or method.upper() != "POST":
            problem = f"method must be POST, not {method!r}"
        elif not isinstance(body, dict):
            problem = "body must be a JSON object"
        elif not_ours := sorted(_NOT_BODY_FIELDS & body.keys()):
            problem = f"body field {not_ours[0]!r} is not accepted here"
        if problem is not None:
            self.invalid += 1
            self.report.problem(f"{self.path} line {number}: {problem}; recorded as failed")
            self.reject(custom_id, "invalid_request", problem)
            return None
        assert isinstance(body, dict)
        request = {**body, "custom_id": custom_id}
        if self.model:
            request["model"] = self.model
        return request


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


class _Output:
    """OUT, opened for appending and locked against a second run: one line per result,
    flushed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = self._open()

    def _open(self) -> IO[bytes]:
        try:
            handle = self.path.open("ab")
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror}") from None
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        except OSError:
            handle.close()
            raise UsageError(f"{self.path} is in use by another asyncprov batch run") from None
        return handle

    def reopen(self) -> None:
        """OUT was rewritten (a new file): append to, and lock, that one."""
        self.close()
        self.handle = self._open()

    def write(self, line: str) -> None:
        try:
            self.handle.write(line.encode())
            self.handle.flush()
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a failed write has been reported already
            self.handle.close()


def _known_keys(args: argparse.Namespace) -> list[str]:
    """Every key this run may send: --api-key and the providers' key variables (short
    placeholders such as "none" or "test" are not secrets, and masking them would
    garble messages)."""
    from ._registry import provider_class, registered_names

    keys = [args.api_key] if args.api_key else []
    for name in registered_names():
        env = provider_class(name).api_key_env
        if env and (value := os.environ.get(env, "").strip()):
            keys.append(value)
    return sorted({k for k in keys if len(k) >= 8}, key=len, reverse=True)


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
    source: _Input,
    elapsed: float,
    dropped: int,
    limited: dict[str, RateLimitStats],
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
    if dropped:
        out.write(
            f"interrupted: {dropped:,} request(s) in flight were dropped; run again to resume\n"
        )
    out.flush()


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import anyio

    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    for option in ("rpm", "tpm", "timeout", "log_every"):
        value = getattr(args, option)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UsageError(f"--{option.replace('_', '-')} must be a positive number")
    if not (args.grace >= 0 and math.isfinite(args.grace)):
        raise UsageError("--grace must be a number of seconds, 0 or more")
    if not args.input.exists():
        raise UsageError(f"cannot read {args.input}: no such file")
    if not args.input.is_file():
        raise UsageError(f"cannot read {args.input}: not a file")
    if args.output.exists() and args.input.resolve() == args.output.resolve():
        raise UsageError("IN and OUT are the same file; results need a file of their own")
    limits = None
    if args.rpm is not None or args.tpm is not None:
        # A batch queues by design, and its waits are finite (paced, or 429 pauses).
        limits = {"*": RateLimit(rpm=args.rpm, tpm=args.tpm, max_wait=None)}
    # Checked before OUT is touched: a bad --provider leaves no empty OUT behind.
    client = AsyncClient(
        args.provider,
        base_url=args.base_url,
        api_key=args.api_key,
        timeout=args.timeout,
        rate_limits=limits,
    )
    report = _Report(err)
    secrets = _known_keys(args)
    output = _Output(args.output)
    try:
        done, earlier_failures, rewritten = load_output(
            args.output, report, retry_failed=args.retry_failed
        )
        if rewritten:
            output.reopen()
        source = _Input(
            args.input,
            done=done,
            model=args.model,
            report=report,
            reject=lambda custom_id, code, message: output.write(
                _error_line(custom_id, code, message)
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
            batch = client.chat.completions.batch(source.requests(), concurrency=args.concurrency)
            group.start_soon(interrupt.watch, batch)
            async with batch as results:
                async for result in results:
                    output.write(result_line(result, secrets))
                    counts = providers.setdefault(result.provider or "(none)", [0, 0])
                    counts[0 if result.ok else 1] += 1
                    display.update(batch.progress)
            group.cancel_scope.cancel()
        progress = batch.progress
        display.close()
        if display.mode == "log":
            display.log(progress)
    finally:
        output.close()
    dropped = progress.in_flight if batch.cancelled else 0
    limited = {name: client.rate_limits.stats(name) for name in providers} if limits else {}
    _summary(out, progress, providers, source, time.monotonic() - started, dropped, limited)
    if earlier_failures:
        out.write(
            f"OUT already held {earlier_failures:,} failed request(s): --retry-failed runs "
            "them again\n"
        )
    if interrupt.signalled:
        return 130
    failures = progress.failed + source.invalid + source.malformed + earlier_failures
    return 1 if failures else 0


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
    except UsageError as error:
        err.write(f"asyncprov: {error}\n")
        return 2
    except AsyncProvError as error:
        err.write(f"asyncprov: {type(error).__name__}: {error}\n")
        return 1
    except KeyboardInterrupt:
        err.write("asyncprov: interrupted\n")
        return 130
