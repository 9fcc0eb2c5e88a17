"""`asyncprov batch IN OUT`: the Batch API file format, resume, torn lines, malformed
input, and a crash and Ctrl-C of the real process."""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncprov.cli import main
from asyncprov.testing import OpenAITestServer, Reply

ROOT = Path(__file__).resolve().parent.parent


def cli(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["batch", *map(str, argv)], out=out)
    return code, out.getvalue()


@pytest.fixture
def threaded_server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer()
    with server.run_in_thread():
        yield server


def line(custom_id: str, text: str, **body: Any) -> str:
    request = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": text}], **body},
    }
    return json.dumps(request)


def write_input(path: Path, count: int) -> Path:
    path.write_text("".join(line(f"req-{i}", f"prompt {i}") + "\n" for i in range(count)))
    return path


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text().splitlines()]


def test_runs_a_batch_file(threaded_server: OpenAITestServer, tmp_path: Path) -> None:
    """Every request gets one Batch API output line; the summary counts them."""
    source = write_input(tmp_path / "in.jsonl", 5)
    target = tmp_path / "out.jsonl"
    code, out = cli(source, target, "--base-url", threaded_server.base_url, "--progress", "none")
    assert code == 0
    records = results(target)
    assert sorted(r["custom_id"] for r in records) == [f"req-{i}" for i in range(5)]
    first = next(r for r in records if r["custom_id"] == "req-3")
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200
    body = first["response"]["body"]
    assert body["object"] == "chat.completion" and body["provider"] == "OpenAICompatible"
    assert body["choices"][0]["message"]["content"] == "You said: prompt 3"
    assert len({r["id"] for r in records}) == 5
    assert "batch: 5 done, 0 failed, 0 already in OUT" in out
    assert "providers: OpenAICompatible 5 done" in out and "requests/s" in out


def test_failures_are_result_lines(
    threaded_server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed request is an output line with the upstream status and a typed error."""
    threaded_server.add_reply(Reply(status=400, error={"message": "no", "type": "invalid"}))
    source = write_input(tmp_path / "in.jsonl", 1)
    target = tmp_path / "out.jsonl"
    code, out = cli(source, target, "--base-url", threaded_server.base_url, "--progress", "log")
    assert code == 1 and "0 done, 1 failed" in out
    (record,) = results(target)
    assert record["response"] == {
        "status_code": 400,
        "body": {"error": {"message": "no", "type": "invalid"}},
    }
    assert record["error"]["code"] == "invalid_request_error" and "no" in record["error"]["message"]
    assert "asyncprov batch: 0 done, 1 failed" in capsys.readouterr().err  # the log line


def test_malformed_lines_are_reported_and_skipped(
    threaded_server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad lines are reported with their line numbers and never stop the rest."""
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                line("a", "one"),
                "{not json",
                json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}),
                "",
                line("a", "again"),
                json.dumps({"custom_id": "emb", "url": "/v1/embeddings", "body": {}}),
                json.dumps({"custom_id": "nobody", "url": "/v1/chat/completions"}),
                "[1, 2]",
                line("b", "two"),
            ]
        )
        + "\n"
    )
    target = tmp_path / "out.jsonl"
    code, out = cli(source, target, "--base-url", threaded_server.base_url, "--progress", "none")
    err = capsys.readouterr().err
    assert code == 1
    assert f"{source} line 2: not valid JSON" in err
    assert f"{source} line 3: no custom_id" in err
    assert f"{source} line 5: duplicate custom_id 'a' (first on line 1); skipped" in err
    assert f"{source} line 6: url must be /v1/chat/completions" in err
    assert f"{source} line 7: body must be a JSON object; recorded as failed" in err
    assert f"{source} line 8: not a JSON object" in err
    assert "Traceback" not in err
    by_id = {r["custom_id"]: r for r in results(target)}
    assert sorted(by_id) == ["a", "b", "emb", "nobody"]
    assert by_id["emb"]["error"]["code"] == "invalid_request_error"
    assert by_id["emb"]["response"] is None
    assert by_id["a"]["response"]["body"]["choices"][0]["message"]["content"] == "You said: one"
    assert len(threaded_server.requests) == 2
    assert "2 done, 2 failed, 0 already in OUT, 4 malformed line(s) skipped" in out


def test_resume_skips_finished_and_repairs_a_torn_line(
    threaded_server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A re-run sends only what OUT lacks, after dropping a last line cut off mid-write."""
    source = write_input(tmp_path / "in.jsonl", 6)
    target = tmp_path / "out.jsonl"
    assert cli(source, target, "--base-url", threaded_server.base_url, "--progress", "none")[0] == 0
    kept = target.read_text().splitlines()[:3]
    torn = target.read_text().splitlines()[3][:40]
    target.write_text("\n".join(kept) + "\n" + torn)
    threaded_server.requests.clear()
    code, out = cli(source, target, "--base-url", threaded_server.base_url, "--progress", "none")
    assert code == 0 and "3 done, 0 failed, 3 already in OUT" in out
    assert f"{target} line 4 was cut off" in capsys.readouterr().err
    ids = [r["custom_id"] for r in results(target)]
    assert sorted(ids) == [f"req-{i}" for i in range(6)]  # each exactly once
    assert len(threaded_server.requests) == 3

    # A complete last line that only lacks its newline is kept and finished.
    target.write_text(target.read_text().rstrip("\n"))
    assert cli(source, target, "--base-url", threaded_server.base_url)[1].count("6 already") == 1
    assert len(results(target)) == 6 and target.read_text().endswith("}\n")


def test_unusable_files_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing IN, or an OUT broken before its last line, exits 2 with one line."""
    assert cli(tmp_path / "nope.jsonl", tmp_path / "out.jsonl")[0] == 2
    err = capsys.readouterr().err
    assert err == f"asyncprov: cannot read {tmp_path / 'nope.jsonl'}: no such file\n"
    source = write_input(tmp_path / "in.jsonl", 1)
    target = tmp_path / "out.jsonl"
    target.write_text('garbage\n{"custom_id": "x"}\n')
    assert cli(source, target, "--base-url", "http://127.0.0.1:9/v1")[0] == 2
    err = capsys.readouterr().err
    assert "line 1 is not a result line" in err and err.count("\n") == 1
    assert cli(source, tmp_path / "o2.jsonl", "--provider", "Nope")[0] == 2
    assert capsys.readouterr().err.startswith("asyncprov: --provider Nope: unknown provider")
    assert not (tmp_path / "o2.jsonl").exists()  # checked before OUT is made
    assert cli(source, tmp_path / "o3.jsonl", "--rpm", "0")[0] == 2
    assert capsys.readouterr().err == "asyncprov: --rpm must be a positive number\n"


def test_model_override_and_rate_limit(threaded_server: OpenAITestServer, tmp_path: Path) -> None:
    """--model replaces the file's model; --rpm paces the requests (counted, not slept)."""
    from asyncprov.testing import instant_retries

    source = write_input(tmp_path / "in.jsonl", 3)
    with instant_retries():
        code, out = cli(
            source,
            tmp_path / "out.jsonl",
            "--base-url",
            threaded_server.base_url,
            "--model",
            "other",
            "--rpm",
            "60",
            "--concurrency",
            "1",
            "--progress",
            "none",
        )
    assert code == 0
    assert {r.json["model"] for r in threaded_server.requests} == {"other"}
    assert "rate limit OpenAICompatible: paced 2 time(s) (2.0 s), 0 429(s)" in out


# --- the real process: crash and Ctrl-C -------------------------------------------------


def start(
    source: Path, target: Path, server: OpenAITestServer, *extra: str
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [str(source), str(target), "--base-url", server.base_url, "--concurrency", "4"]
    return subprocess.Popen(
        [sys.executable, "-m", "asyncprov", "batch", *command, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen[str]) -> None:
    """Until OUT holds ``count`` lines (a file another process writes: polled)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {count} lines")


def test_resume_after_a_crash(threaded_server: OpenAITestServer, tmp_path: Path) -> None:
    """Killed mid-run and run again, every custom_id is in OUT exactly once."""
    threaded_server.add_reply(*[Reply() for _ in range(10)])
    threaded_server.default = Reply(delay=30)  # the rest hang until the kill
    source = write_input(tmp_path / "in.jsonl", 30)
    target = tmp_path / "out.jsonl"
    proc = start(source, target, threaded_server)
    wait_for_lines(target, 10, proc)
    proc.kill()
    proc.communicate()
    assert len(results(target)) == 10
    threaded_server.default = Reply()
    proc = start(source, target, threaded_server)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "20 done, 0 failed, 10 already in OUT" in out
    ids = [r["custom_id"] for r in results(target)]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(30))


@pytest.mark.parametrize("grace", ["30", "0.2"])
def test_ctrl_c_leaves_out_consistent(
    threaded_server: OpenAITestServer, tmp_path: Path, grace: str
) -> None:
    """SIGINT takes no new requests; those in flight finish within the grace period or
    are dropped; OUT stays valid and a re-run completes it."""
    threaded_server.add_reply(*[Reply() for _ in range(5)])
    threaded_server.default = Reply(delay=1.0 if grace == "30" else 30)
    source = write_input(tmp_path / "in.jsonl", 20)
    target = tmp_path / "out.jsonl"
    proc = start(source, target, threaded_server, "--grace", grace)
    wait_for_lines(target, 5, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted: taking no new requests" in err and "Traceback" not in err
    records = results(target)  # every line is whole JSON
    assert len(threaded_server.requests) == 9  # nothing new after the signal
    if grace == "30":
        assert len(records) == 9 and "dropped" not in out
    else:
        assert len(records) == 5 and "interrupted: 4 request(s) in flight were dropped" in out
    threaded_server.default = Reply()
    proc = start(source, target, threaded_server)
    proc.communicate(timeout=30)
    assert sorted(r["custom_id"] for r in results(target)) == sorted(f"req-{i}" for i in range(20))


def test_progress_bar_with_tqdm(threaded_server: OpenAITestServer, tmp_path: Path) -> None:
    """--progress bar draws a tqdm bar (on stderr) counting every request."""
    pytest.importorskip("tqdm")
    source = write_input(tmp_path / "in.jsonl", 4)
    err = io.StringIO()
    original, sys.stderr = sys.stderr, err
    try:
        code, _ = cli(source, tmp_path / "out.jsonl", "--base-url", threaded_server.base_url,
                      "--progress", "bar")  # fmt: skip
    finally:
        sys.stderr = original
    assert code == 0
    assert "4/4" in err.getvalue() and "100%" in err.getvalue()


def test_the_batch_example_runs() -> None:
    """examples/batch_example.py runs examples/batch.jsonl offline, in input order."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "batch_example.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers = [text for text in result.stdout.splitlines() if not text.startswith("  ...")]
    assert answers[0] == "capital-fr   OpenAICompatible: You said: What is the capital of France?"
    assert [a.split()[0] for a in answers[:6]] == [
        "capital-fr", "capital-jp", "haiku-sea", "translate-1", "sum-1", "define-1"
    ]  # fmt: skip
    assert answers[6].startswith("done 6, failed 0, tokens ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grace", "-1"], "--grace must be a number of seconds, 0 or more"),
        (["--rpm", "inf"], "--rpm must be a positive number"),
        (["--log-every", "0"], "--log-every must be a positive number"),
    ],
)
def test_option_values_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    source = write_input(tmp_path / "in.jsonl", 1)
    assert cli(source, tmp_path / "out.jsonl", *args)[0] == 2
    assert capsys.readouterr().err == f"asyncprov: {message}\n"


def test_in_and_out_must_differ_and_in_must_be_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.jsonl", 2)
    assert cli(source, source)[0] == 2
    assert "IN and OUT are the same file" in capsys.readouterr().err
    assert cli(tmp_path, tmp_path / "out.jsonl")[0] == 2
    assert capsys.readouterr().err.endswith(": not a file\n")
    assert len(source.read_text().splitlines()) == 2


def test_deep_nesting_and_odd_custom_ids_are_malformed_lines(
    threaded_server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line nested too deeply for the JSON parser is one more malformed line."""
    source = tmp_path / "in.jsonl"
    nested = "[" * 100_000 + "]" * 100_000
    odd = json.dumps({"custom_id": 5, "url": "/v1/chat/completions", "body": {}})
    # Valid JSON, yet no text: a lone surrogate cannot be written to OUT (or indexed).
    lone = '{"custom_id": "bad-\\ud800", "url": "/v1/chat/completions", "body": {}}'
    source.write_text(f"{nested}\n{odd}\n{lone}\n{line('ok', 'fine')}\n")
    code, _ = cli(source, tmp_path / "out.jsonl", "--base-url", threaded_server.base_url)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "line 1: not valid JSON (nested too deeply)" in err
    assert "line 2: custom_id is not a string" in err
    assert "line 3: custom_id holds a lone surrogate (not text); skipped" in err
    assert [r["custom_id"] for r in results(tmp_path / "out.jsonl")] == ["ok"]


def test_upstream_echoes_of_the_key_are_masked_in_out(
    threaded_server: OpenAITestServer, tmp_path: Path
) -> None:
    """A key an upstream echoes is masked in the failure's message and body; ids and
    answers are never touched, and short placeholder keys are not masked at all."""
    secret = "sk-batch-secret-123"
    echo = {"message": f"Incorrect API key provided: {secret}", "type": "invalid_request_error"}
    threaded_server.add_reply(Reply(status=401, error=echo))
    source = write_input(tmp_path / "in.jsonl", 1)
    target = tmp_path / "out.jsonl"
    cli(source, target, "--base-url", threaded_server.base_url, "--api-key", secret)
    text = target.read_text()
    assert secret not in text and "Incorrect API key provided: ***" in text
    assert results(target)[0]["response"]["body"]["error"]["message"].endswith("***")

    source.write_text(line("test-1", "a test of null"))
    placeholder = tmp_path / "placeholder.jsonl"
    cli(source, placeholder, "--base-url", threaded_server.base_url, "--api-key", "test")
    (record,) = results(placeholder)
    assert record["custom_id"] == "test-1"
    assert record["response"]["body"]["choices"][0]["message"]["content"] == (
        "You said: a test of null"
    )


def test_out_torn_lines_and_foreign_lines(
    threaded_server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cut-off last line (no newline: a write a crash interrupted) is repaired; a
    whole line that is not a result (it ends with a newline) is left for a person."""
    source = write_input(tmp_path / "in.jsonl", 2)
    target = tmp_path / "out.jsonl"
    assert cli(source, target, "--base-url", threaded_server.base_url)[0] == 0
    first = target.read_text().splitlines()[0]
    target.write_text(first + "\n" + '{"id": "batch_req_x", "cust')
    code, out = cli(source, target, "--base-url", threaded_server.base_url)
    assert code == 0 and "1 done" in out and len(results(target)) == 2
    target.write_text(first + "\n" + "not a result\n")
    assert cli(source, target, "--base-url", threaded_server.base_url)[0] == 2
    assert "line 2 is not a result line" in capsys.readouterr().err


def test_retry_failed_runs_failures_again(
    threaded_server: OpenAITestServer, tmp_path: Path
) -> None:
    """A resume over failures exits 1 and says so; --retry-failed replaces them."""
    threaded_server.add_reply(*[Reply(status=500)] * 6)  # 2 requests x 3 attempts
    source = write_input(tmp_path / "in.jsonl", 3)
    target = tmp_path / "out.jsonl"
    from asyncprov.testing import instant_retries

    with instant_retries():
        assert (
            cli(source, target, "--base-url", threaded_server.base_url, "--concurrency", "1")[0]
            == 1
        )
    assert sum(r["error"] is not None for r in results(target)) == 2
    code, out = cli(source, target, "--base-url", threaded_server.base_url)
    assert code == 1 and "OUT already held 2 failed request(s)" in out
    target.chmod(0o600)
    code, out = cli(source, target, "--base-url", threaded_server.base_url, "--retry-failed")
    assert code == 0 and "2 done" in out
    assert target.stat().st_mode & 0o777 == 0o600  # the rewrite keeps OUT private
    records = results(target)
    assert sorted(r["custom_id"] for r in records) == ["req-0", "req-1", "req-2"]
    assert all(r["error"] is None for r in records)


def test_a_second_run_on_the_same_out_is_refused(
    threaded_server: OpenAITestServer, tmp_path: Path
) -> None:
    threaded_server.default = Reply(delay=0.5)
    source = write_input(tmp_path / "in.jsonl", 20)
    target = tmp_path / "out.jsonl"
    first = start(source, target, threaded_server)
    try:
        wait_for_lines(target, 1, first)
        second = start(source, target, threaded_server)
        _, err = second.communicate(timeout=30)
        assert second.returncode == 2 and "is in use by another asyncprov batch run" in err
    finally:
        first.kill()
        first.communicate(timeout=10)


def test_a_failed_write_to_out_is_one_line(
    threaded_server: OpenAITestServer, tmp_path: Path
) -> None:
    """OUT hitting the file size limit ends the run with one line, exit 2."""
    import resource

    source = write_input(tmp_path / "in.jsonl", 20)
    target = tmp_path / "out.jsonl"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = ["batch", str(source), str(target), "--base-url", threaded_server.base_url]
    result = subprocess.run(
        [sys.executable, "-m", "asyncprov", *command],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=small_files,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot write {target}" in result.stderr


# --- what a new user hit (issue 13) -----------------------------------------------------


def test_429s_are_waited_out_by_default(threaded_server: OpenAITestServer, tmp_path: Path) -> None:
    """Without --rpm or --tpm, and with retries off, a 429's Retry-After is waited out:
    no failure line, and the summary counts the waits."""
    threaded_server.add_reply(*[Reply(status=429, headers={"Retry-After": "0.05"})] * 3)
    source = write_input(tmp_path / "in.jsonl", 10)
    target = tmp_path / "out.jsonl"
    code, out = cli(source, target, "--base-url", threaded_server.base_url, "--max-retries", "0")
    assert code == 0, out
    assert all(r["error"] is None for r in results(target)) and len(results(target)) == 10
    assert "3 429(s) waited out" in out


def test_a_lone_429_delays_only_its_own_request(
    threaded_server: OpenAITestServer, tmp_path: Path
) -> None:
    """One 429 (Retry-After: 1) among requests that succeed pauses only that request:
    the others keep arriving at the server without a one-second gap."""
    replies = [Reply(content="ok")] * 60
    replies[5] = Reply(status=429, headers={"Retry-After": "1"})
    threaded_server.add_reply(*replies)
    source = write_input(tmp_path / "in.jsonl", 60)
    target = tmp_path / "out.jsonl"
    code, _ = cli(
        source, target, "--base-url", threaded_server.base_url, "--rpm", "600000",
        "--concurrency", "4",
    )  # fmt: skip
    assert code == 0
    arrivals = sorted(r.at for r in threaded_server.requests)
    others = arrivals[:-1]  # the last arrival is the resent request, a second later
    assert arrivals[-1] - arrivals[0] >= 0.9
    assert max(b - a for a, b in itertools.pairwise(others)) < 0.5


def test_a_missing_key_stops_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--provider OpenaiChat without its key: one line naming the variable and the flag,
    exit 2, and OUT is not created."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    source = write_input(tmp_path / "in.jsonl", 3)
    target = tmp_path / "out.jsonl"
    code, _ = cli(source, target, "--provider", "OpenaiChat")
    assert code == 2 and not target.exists()
    assert capsys.readouterr().err == (
        "asyncprov: OpenaiChat needs an API key: set OPENAI_API_KEY or pass --api-key\n"
    )


def test_error_codes_are_one_per_kind_in_snake_case(tmp_path: Path) -> None:
    """A refused connection is recorded as connection_error (was a_p_i_connection_error)."""
    source = write_input(tmp_path / "in.jsonl", 1)
    target = tmp_path / "out.jsonl"
    code, _ = cli(source, target, "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0")
    assert code == 1
    assert [r["error"]["code"] for r in results(target)] == ["connection_error"]


def test_every_error_code_is_listed_in_the_readme() -> None:
    """The README's error-code list names every code an error can carry."""
    import asyncprov

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    codes = {
        getattr(asyncprov, name).code
        for name in asyncprov.__all__
        if isinstance(getattr(asyncprov, name), type)
        and issubclass(getattr(asyncprov, name), asyncprov.AsyncProvError)
    }
    assert all(code.islower() and " " not in code for code in codes)
    missing = {code for code in codes if f"`{code}`" not in readme}
    assert missing == set()


def test_the_providers_line_adds_up(threaded_server: OpenAITestServer, tmp_path: Path) -> None:
    """Every failed line of OUT is counted on the providers line (one sent and failed,
    one never sent because the line was invalid)."""
    threaded_server.add_reply(Reply(status=400))
    source = tmp_path / "in.jsonl"
    source.write_text(
        line("bad", "one")
        + "\n"
        + json.dumps({"custom_id": "emb", "url": "/v1/embeddings", "body": {}})
        + "\n"
    )
    target = tmp_path / "out.jsonl"
    code, out = cli(source, target, "--base-url", threaded_server.base_url)
    assert code == 1
    assert sum(r["error"] is not None for r in results(target)) == 2
    assert "providers: (not sent) 0 done, 1 failed; OpenAICompatible 0 done, 1 failed" in out


def test_5000_lines_killed_twice_and_resumed_hold_each_id_once(
    threaded_server: OpenAITestServer, tmp_path: Path
) -> None:
    """kill -9 twice mid-run, then resumed to the end: every custom_id is in OUT exactly
    once, with its own reply (the server echoes each prompt), and a 429 now and then is
    waited out rather than recorded."""
    threaded_server.default = Reply(delay=0.002)
    threaded_server.add_reply(*[Reply(status=429, headers={"Retry-After": "0.01"})] * 5)
    source = write_input(tmp_path / "in.jsonl", 5000)
    target = tmp_path / "out.jsonl"
    for stop_at in (1500, 3500):
        proc = start(source, target, threaded_server, "--concurrency", "32")
        wait_for_lines(target, stop_at, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    proc = start(source, target, threaded_server, "--concurrency", "32")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    records = results(target)
    ids = [r["custom_id"] for r in records]
    assert len(ids) == len(set(ids)) == 5000
    for record in records:
        number = record["custom_id"].removeprefix("req-")
        reply = record["response"]["body"]["choices"][0]["message"]["content"]
        assert reply == f"You said: prompt {number}"


def test_out_must_be_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """OUT that is a device (/dev/null here) is refused at once: a run reads OUT back."""
    source = write_input(tmp_path / "in.jsonl", 1)
    assert cli(source, "/dev/null", "--base-url", "http://127.0.0.1:9/v1")[0] == 2
    assert "OUT must be a regular file" in capsys.readouterr().err


def test_the_provider_of_ins_first_model_is_checked_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no --provider, the provider IN's first model routes to is checked before
    anything is sent: no key means one line, exit 2 and no OUT."""
    source = tmp_path / "in.jsonl"
    source.write_text(line("a", "hi", model="gpt-4o-mini") + "\n")
    target = tmp_path / "out.jsonl"
    assert cli(source, target)[0] == 2 and not target.exists()
    assert "OpenaiChat needs an API key: set OPENAI_API_KEY" in capsys.readouterr().err
