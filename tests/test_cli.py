"""The command line: `asyncprov chat` and `asyncprov providers`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from asyncprov.cli import main
from asyncprov.testing import OpenAITestServer, Reply


@pytest.fixture
def threaded_server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer()
    with server.run_in_thread():
        yield server


def test_chat_streams_the_reply(threaded_server: OpenAITestServer) -> None:
    """`chat` prints the streamed reply, sending the prompt given as arguments."""
    threaded_server.add_reply(Reply(content="Hello from the CLI."))
    out = io.StringIO()
    code = main(
        ["chat", "--base-url", threaded_server.base_url, "--model", "m", "hi", "there"], out=out
    )
    assert code == 0
    assert out.getvalue() == "Hello from the CLI.\n"
    assert threaded_server.requests[-1].json["messages"] == [
        {"role": "user", "content": "hi there"}
    ]


def test_chat_reads_stdin_and_prints_json(
    threaded_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a prompt argument `chat` reads stdin; --json prints one chunk per line."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin"))
    out = io.StringIO()
    assert (
        main(["chat", "--base-url", threaded_server.base_url, "--model", "m", "--json"], out=out)
        == 0
    )
    chunks = [json.loads(line) for line in out.getvalue().splitlines()]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "You said: from stdin"
    assert {c["provider"] for c in chunks} == {"OpenAICompatible"}


def test_chat_expected_failures_are_one_line(
    threaded_server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Expected failures print one line to stderr and exit non-zero, without a traceback."""
    threaded_server.add_reply(Reply(status=429, headers={"Retry-After": "3"}))
    code = main(
        ["chat", "--base-url", threaded_server.base_url, "--model", "m", "--max-retries=0", "hi"],
        out=io.StringIO(),
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("asyncprov: RateLimitError: HTTP 429")
    assert "Traceback" not in err and err.count("\n") == 1
    assert main(["chat", "--provider", "OpenaiChat", "hi"], out=io.StringIO()) == 2
    assert capsys.readouterr().err == (
        "asyncprov: OpenaiChat needs an API key: set OPENAI_API_KEY or pass --api-key\n"
    )
    assert main(["chat", "--provider", "Nope", "hi"], out=io.StringIO()) == 1
    assert "ProviderNotFoundError" in capsys.readouterr().err


def test_chat_without_a_prompt_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty prompt (and empty stdin) is refused with exit status 2."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("   "))
    assert main(["chat", "--base-url", "http://127.0.0.1:9/v1"], out=io.StringIO()) == 2
    assert "nothing to send" in capsys.readouterr().err


def test_providers_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """`providers` lists each provider with its models, working flag, auth and key status."""
    monkeypatch.setenv("REKA_API_KEY", "set-for-test")
    out = io.StringIO()
    assert main(["providers"], out=out) == 0
    rows = {line.split()[0]: line for line in out.getvalue().splitlines()[1:]}
    assert set(rows) == {"OpenAICompatible", "OpenaiChat", "Raycast", "Reka"}
    assert rows["Reka"].split()[-2:] == ["REKA_API_KEY", "yes"]
    assert rows["OpenaiChat"].split()[-2:] == ["OPENAI_API_KEY", "no"]
    assert " no " in rows["Raycast"]  # marked not working
    assert "set-for-test" not in out.getvalue()


def test_python_dash_m_entry_point() -> None:
    """`python -m asyncprov` runs the same command line."""
    result = subprocess.run(
        [sys.executable, "-m", "asyncprov", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("asyncprov ")
