"""OpenAI Batch API files for ``asyncprov batch``: reading IN lazily, writing OUT one
flushed line per result, and resuming from what OUT already holds.

Input lines are ``{"custom_id", "method", "url", "body"}``; output lines are
``{"id", "custom_id", "response": {"status_code", "body"}, "error"}``. A crash loses at
most the requests in flight: OUT is appended to and flushed line by line, a run locks
it, and the next run skips every ``custom_id`` OUT holds and drops a last line an
earlier crash cut off.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TextIO

from asyncprov import CALL_SETTINGS, AsyncProvError, BatchResult, InvalidRequestError, KeyMask

from ._errors import UsageError
from ._ids import IdIndex

__all__ = [
    "InputFile",
    "OutputFile",
    "Report",
    "error_line",
    "load_output",
    "result_line",
]

CHAT_URLS = frozenset({"/v1/chat/completions", "/chat/completions"})
# create() arguments that are ours, not OpenAI body fields: a file may not set them.
_NOT_BODY_FIELDS = CALL_SETTINGS | {"stream"}
_SHOWN_PROBLEMS = 20


def _code(error: BaseException | None) -> str:
    """The error's kind as OUT records it (``AsyncProvError.code``: OpenAI's snake_case
    vocabulary, one per kind)."""
    return error.code if isinstance(error, AsyncProvError) else AsyncProvError.code


def _new_id() -> str:
    return "batch_req_" + uuid.uuid4().hex


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def result_line(result: BatchResult, mask: KeyMask | None = None) -> str:
    """The OpenAI Batch API output line for ``result`` (with its newline). ``mask`` hides
    keys in a failure's message and upstream body, where a provider may echo the key
    back (ids and completions are never touched)."""
    mask = mask or KeyMask(())
    head = f'{{"id":{_dumps(_new_id())},"custom_id":{_dumps(result.custom_id)},'
    if result.completion is not None:
        body = result.completion.model_dump_json(exclude_none=True)
        return head + f'"response":{{"status_code":200,"body":{body}}},"error":null}}\n'
    message = mask(result.error_message or "")
    error = {"code": _code(result.error), "message": message}
    response = None
    if result.status is not None:
        upstream = getattr(result.error, "body", None)
        if isinstance(upstream, str):
            upstream = mask(upstream)
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


def error_line(custom_id: str, code: str, message: str) -> str:
    record = {
        "id": _new_id(),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
    return _dumps(record) + "\n"


class Report:
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
    path: Path, report: Report, *, retry_failed: bool = False
) -> tuple[IdIndex, int, bool]:
    """The ``custom_id``s already in OUT (indexed on disk, each at line 0), how many of
    them failed, and whether OUT was rewritten. A last line an earlier crash cut off
    (no newline) is removed. With ``retry_failed`` the failed lines are removed too (OUT
    is rewritten into a new file), so their requests run again.

    Raises:
        UsageError: a line other than a torn last one is not a result line (not ours
            to fix).
    """
    done = IdIndex()
    failed: dict[int, str] = {}  # offset of each failed result line -> its custom_id
    if not path.exists():
        return done, 0, False
    try:
        handle = path.open("r+b")
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror or exc}") from None
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
                done.add(custom_id, 0)
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
        done.remove(set(failed.values()))
        return done, 0, True
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


def _is_text(value: str) -> bool:
    """Whether ``value`` can be written as UTF-8 (JSON can hold a lone surrogate)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class InputFile:
    """Reads IN lazily, line by line, turning each good line into a batch request."""

    def __init__(
        self,
        path: Path,
        *,
        done: IdIndex,
        model: str | None,
        report: Report,
        reject: Callable[[str, str, str], None],
    ) -> None:
        self.path = path
        self.model = model
        self.report = report
        self.reject = reject
        self.first_line = done  # each id seen and its line (0: already in OUT)
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
        if not custom_id.isascii() and not _is_text(custom_id):
            self._problem(number, "custom_id holds a lone surrogate (not text); skipped")
            return None
        if not self.first_line.add(custom_id, number):  # seen before: one look-up more
            first = self.first_line.get(custom_id)
            if first == 0:
                self.skipped += 1
            else:
                self._problem(
                    number, f"duplicate custom_id {custom_id!r} (first on line {first}); skipped"
                )
            return None
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
            self.reject(custom_id, InvalidRequestError.code, problem)
            return None
        assert isinstance(body, dict)
        request = {**body, "custom_id": custom_id}
        if self.model:
            request["model"] = self.model
        return request


class OutputFile:
    """OUT, opened for appending and locked against a second run: one line per result,
    flushed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = self._open()

    def _open(self) -> IO[bytes]:
        try:
            handle = self.path.open("ab")
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}") from None
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
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a failed write has been reported already
            self.handle.close()
