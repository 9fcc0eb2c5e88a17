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
    assert main(["chat", "--provider", "Nope", "hi"], out=io.StringIO()) == 2
    assert capsys.readouterr().err.startswith("asyncprov: --provider Nope: unknown provider")


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
    assert set(rows) == {
        "OpenAICompatible", "OpenaiChat", "Raycast", "Reka", "Anthropic", "Groq", "DeepSeek",
        "Mistral", "Gemini",
        "OpenRouter", "Together", "xAI", "Fireworks", "Ollama", "vLLM", "LMStudio",
    }  # fmt: skip
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


# --- what a new user hit (issue 13) -----------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--provider", "RetryProvider"],
            "--provider RetryProvider cannot be used from the command line",
        ),
        (["--provider", "OpenAICompatible"], "--provider OpenAICompatible needs --base-url URL"),
        ([], "give --model (or --provider, or --base-url)"),
    ],
)
def test_chat_problems_speak_in_flags(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command line that cannot work says so in flags, never keyword arguments."""
    assert main(["chat", *argv, "hi"], out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"asyncprov: {expected}") and err.count("\n") == 1
    assert "=..." not in err and "instance" not in err


def test_a_bad_flag_prints_the_commands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """`asyncprov chat --bogus` shows chat's usage, not the top-level one."""
    with pytest.raises(SystemExit) as caught:
        main(["chat", "--bogus"], out=io.StringIO())
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: asyncprov chat") and "unrecognized arguments: --bogus" in err


def test_piped_prompt_loses_its_trailing_newline(
    threaded_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt piped on stdin is sent without the newline that ends it."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("from a pipe\n"))
    assert (
        main(["chat", "--base-url", threaded_server.base_url, "--model", "m"], out=io.StringIO())
        == 0
    )
    assert threaded_server.requests[-1].json["messages"][0]["content"] == "from a pipe"


def test_a_cut_stream_ends_its_line_before_the_error(
    threaded_server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a stream breaks off, the partial text and the error are on separate lines."""
    threaded_server.add_reply(Reply(content="a b c d", fault="truncate", fault_after=2))
    out = io.StringIO()
    argv = ["chat", "--base-url", threaded_server.base_url, "--model", "m", "--max-retries=0"]
    assert main([*argv, "hi"], out=out) == 1
    assert out.getvalue() == "a b \n"
    assert capsys.readouterr().err.startswith("asyncprov: StreamInterruptedError")


def test_a_provider_marked_not_working_fails_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`chat --provider Raycast` (marked not working) prints one line, no warning beside."""
    argv = ["chat", "--provider", "Raycast", "--base-url", "http://127.0.0.1:9/api/v1"]
    assert main([*argv, "--api-key", "rc-token", "--max-retries=0", "hi"], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("asyncprov: APIConnectionError")


def test_counts_read_as_english() -> None:
    """The demo's totals say "1 hedge", "2 hedges", "1 try", "3 tries"."""
    from asyncprov.cli._demo import _count

    assert (_count(1, "hedge"), _count(2, "hedge")) == ("1 hedge", "2 hedges")
    assert (_count(1, "try", "tries"), _count(3, "try", "tries")) == ("1 try", "3 tries")


def test_ctrl_c_at_any_moment_exits_130_without_a_traceback() -> None:
    """SIGINT while `asyncprov demo` starts up or runs: exit 130, one line, no traceback."""
    import signal
    import time

    program = (
        "import sys, asyncprov.cli; print('ready', flush=True); "
        "sys.exit(asyncprov.cli.main(['demo', '--requests', '300']))"
    )
    for delay in (0.0, 0.05, 0.2, 0.5):
        process = subprocess.Popen(
            [sys.executable, "-c", program],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, (delay, err)
        assert "Traceback" not in err and err.strip().splitlines()[-1] == "asyncprov: interrupted"


def test_serve_without_a_key_names_the_variable_and_the_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --provider OpenaiChat` with no key names OPENAI_API_KEY and --api-key-env,
    not a configuration-file field."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["serve", "--provider", "OpenaiChat"], out=io.StringIO()) == 2
    assert capsys.readouterr().err == (
        "asyncprov: OpenaiChat needs an API key: set OPENAI_API_KEY or pass --api-key-env NAME\n"
    )


def test_the_provider_a_model_routes_to_is_checked_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`chat --model gpt-4o-mini` with no key, or an unknown model: one line in flag
    words, exit 2, before anything is sent."""
    assert main(["chat", "--model", "gpt-4o-mini", "hi"], out=io.StringIO()) == 2
    assert capsys.readouterr().err == (
        "asyncprov: OpenaiChat needs an API key: set OPENAI_API_KEY or pass --api-key\n"
    )
    assert main(["chat", "--model", "zzz", "hi"], out=io.StringIO()) == 2
    assert "--model zzz: no provider is known for it" in capsys.readouterr().err


def test_configuration_errors_exit_2_in_flag_words(capsys: pytest.CaptureFixture[str]) -> None:
    """A --base-url that is no URL: exit 2, naming the flag; failures name the provider
    and model without keyword syntax."""
    assert main(["chat", "--base-url", "notaurl", "--model", "m", "hi"], out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.startswith("asyncprov: ConfigurationError: --base-url must be an http(s) URL")
    argv = ["chat", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--max-retries=0"]
    assert main([*argv, "hi"], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert "(provider OpenAICompatible, model m)" in err and "provider=" not in err
