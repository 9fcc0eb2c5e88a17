"""The examples, including the three seed snippets, run offline exactly as shipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRUBBED = (
    "ASYNCPROV_LIVE",
    "ASYNCPROV_PROXY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "REKA_API_KEY",
    "REKA_BASE_URL",
    "RAYCAST_TOKEN",
    "RAYCAST_BASE_URL",
)


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_quickstart() -> None:
    """The README's quickstart streams async and sync from the local server."""
    result = run_example("quickstart.py")
    assert result.returncode == 0, result.stderr
    assert "Streaming works: every token arrives" in result.stdout
    assert "[answered by OpenAICompatible]" in result.stdout
    assert "sync stream:   The sync client streams too." in result.stdout


def test_seed_reka_image() -> None:
    """Seed 1: Reka with an image file streams the answer; the server got a JPEG part."""
    result = run_example("reka_image.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "A cartoon cat's face: brown fur, pointed ears and two green eyes.",
        "[local Reka server: model=reka-core, images=['data:image/jpeg;base64,']]",
    ]


def test_seed_openai_retry_proxy() -> None:
    """Seed 2: sync Client, proxy with credentials, RetryProvider retrying a 503."""
    result = run_example("openai_retry_proxy.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "The Danube, the Rhine and the Loire.",
        "[local proxy saw 2 requests, with credentials: [('POST', 'user'), ('POST', 'user')]]",
        "[local OpenAI server saw 2 attempts]",
    ]
    assert "attempt 2 on OpenaiChat" in result.stderr
    assert "pw@" not in result.stderr and "sk-local-example" not in result.stderr


def test_seed_raycast_tokens() -> None:
    """Seed 3: Raycast.create_completion streams str tokens, warning it is not working."""
    result = run_example("raycast_tokens.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "Why did the token cross the stream? To reach the other delta."
    )
    assert "'author': 'user'" in result.stdout
    assert result.stderr.count("Raycast is marked not working") == 1


@pytest.mark.parametrize("name", ["failover.py"])
def test_failover_example(name: str) -> None:
    """The failover example shows fail-over, cool-down, hedging and the final error."""
    result = run_example(name)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("answered by slow") == 4
    assert "hedged (delay 0.2 s)         answered by healthy" in out
    assert "flaky: InternalServerError: overloaded" in out
    assert "requests seen: flaky=6 slow=5 healthy=1" in out


def test_observability() -> None:
    """The observability example prints the failover call's span tree."""
    result = run_example("observability.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Answered by the backup.",
        "chat m: answered by backup (openaicompatible at 127.0.0.1), 2 attempts, tokens in/out 1/4",
        "  attempt primary: #1 first -> error InternalServerError",
        "  attempt backup: #1 failover -> ok",
    ]
