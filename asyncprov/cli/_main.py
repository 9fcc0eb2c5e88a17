"""The ``asyncprov`` command line: ``chat``, ``providers``, ``batch``, ``serve`` and ``demo``.
Built on the public API only; expected failures print one line, never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from asyncprov import Client, __version__
from asyncprov import providers as provider_module
from asyncprov.providers import Provider

from . import _batch as _batch_cli
from ._errors import EXPECTED, UsageError, exit_status
from ._provider import check_provider, redis_flag

__all__ = ["run"]


def _provider_classes() -> list[type[Provider]]:
    classes = []
    for name in provider_module.__all__:
        value = getattr(provider_module, name)
        is_service = isinstance(value, type) and issubclass(value, Provider)
        if is_service and value is not Provider and value.name != "RetryProvider":
            classes.append(value)
    return classes


def _providers(out: TextIO) -> int:
    rows = [("provider", "models", "working", "needs auth", "key env", "key set")]
    for cls in _provider_classes():
        models = ", ".join(cls.models[:3]) + (
            f" (+{len(cls.models) - 3})" if len(cls.models) > 3 else ""
        )
        key_env = cls.api_key_env or "-"
        key_set = "yes" if cls.api_key_env and cls.default().has_api_key else "no"
        rows.append(
            (
                cls.name or cls.__name__,
                models or "any",
                "yes" if cls.working else "no",
                "yes" if cls.needs_auth else "no",
                key_env,
                key_set if cls.api_key_env else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write(line.rstrip() + "\n")
    return 0


def _chat(args: argparse.Namespace, out: TextIO) -> int:
    # A piped prompt ends with the newline of its last line: not part of the message.
    prompt = " ".join(args.prompt) if args.prompt else sys.stdin.read().rstrip("\r\n")
    if not prompt.strip():
        raise UsageError("nothing to send: give a prompt, or pipe one on stdin")
    if args.max_retries < 0:
        raise UsageError("--max-retries must be 0 or more")
    check_provider(args.provider, base_url=args.base_url, api_key=args.api_key, model=args.model)
    with Client(
        provider=args.provider,
        base_url=args.base_url,
        api_key=args.api_key,
        max_retries=args.max_retries,
    ) as client:
        stream = client.chat.completions.create(
            model=args.model, messages=prompt, stream=True, images=args.image or None
        )
        wrote = False
        try:
            with stream:
                for chunk in stream:
                    if args.json:
                        out.write(chunk.model_dump_json(exclude_none=True) + "\n")
                    elif chunk.choices and (text := chunk.choices[0].delta.content):
                        out.write(text)
                        out.flush()
                        wrote = True
        finally:
            if wrote:  # the partial text ends its line before any error line
                out.write("\n")
                out.flush()
    if not args.json and not wrote:
        out.write("\n")
    return 0


_SIMPLE_FLAGS = ("provider", "base_url", "api_key_env", "model")


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    import anyio

    from asyncprov.server import load_config, parse_config, serve, serve_workers

    if args.config:
        given = [f"--{f.replace('_', '-')}" for f in _SIMPLE_FLAGS if getattr(args, f)]
        if given:
            raise UsageError(f"{', '.join(given)}: set providers in the --config file instead")
        config = load_config(args.config)
    else:
        if not args.provider and not args.base_url:
            raise UsageError("serve needs --config FILE, or --base-url URL / --provider NAME")
        if args.api_key_env and not os.environ.get(args.api_key_env):
            raise UsageError(f"--api-key-env {args.api_key_env}: that variable is not set")
        check_provider(
            args.provider,
            base_url=args.base_url,
            api_key=os.environ.get(args.api_key_env) if args.api_key_env else None,
            model="(any)",
            key_flag="--api-key-env NAME",
        )
        provider_type = args.provider or "OpenAICompatible"
        provider = {"type": provider_type, "models": args.model or []}
        if args.base_url:
            provider["base_url"] = args.base_url
        if args.api_key_env:
            provider["api_key_env"] = args.api_key_env
        config = parse_config(
            {"providers": {provider_type: provider}}, source="command line options"
        )
    server: dict[str, object] = {}
    for flag in ("host", "port", "grace_period", "client_keys_env", "workers"):
        if getattr(args, flag) is not None:
            server[flag] = getattr(args, flag)
    if server:
        merged = config.server.model_dump(exclude_unset=True) | server
        config = parse_config(
            config.model_dump(exclude_unset=True) | {"server": merged},
            source="command line options",
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )

    def ready(url: str) -> None:
        with contextlib.suppress(OSError):  # stdout may be a closed pipe; keep serving
            out.write(f"asyncprov gateway: {url} (Ctrl-C to stop)\n")
            out.flush()

    shared = redis_flag(args.redis)
    if shared is None and config.shared_state is not None:
        shared = config.shared_state.shared_state()  # checked before any worker starts
    elif shared is not None and config.shared_state is not None:
        shared = config.shared_state.shared_state(shared.url)
    if config.server.workers > 1:
        return serve_workers(
            config, workers=config.server.workers, shared_state=shared, ready=ready
        )
    anyio.run(lambda: serve(config, ready=ready, shared_state=shared))
    return 0


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    import anyio

    from ._demo import run_demo

    if not 1 <= args.requests <= 1000:
        raise UsageError("--requests must be between 1 and 1000")
    return anyio.run(lambda: run_demo(out, requests=args.requests, seed=args.seed))


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="asyncprov", description="One OpenAI-shaped client over many LLM providers."
    )
    parser.add_argument("--version", action="version", version=f"asyncprov {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    chat = commands.add_parser("chat", help="stream a reply to the terminal")
    chat.add_argument("prompt", nargs="*", help="the message (default: read stdin)")
    chat.add_argument("--provider", help="provider name, e.g. OpenaiChat (default: by model)")
    chat.add_argument("--model", help="model name (default: the provider's)")
    chat.add_argument("--base-url", help="an OpenAI-compatible server to talk to")
    chat.add_argument("--api-key", help="the key (default: the provider's env variable)")
    chat.add_argument("--image", action="append", help="an image path or URL (repeatable)")
    chat.add_argument(
        "--max-retries",
        type=int,
        default=2,
        help="retries of a transient failure before any text arrives (default 2)",
    )
    chat.add_argument("--json", action="store_true", help="print raw chunks as JSON lines")

    commands.add_parser("providers", help="list providers, their models and keys")
    _batch_cli.add_parser(commands)

    serve = commands.add_parser(
        "serve",
        help="run an OpenAI-compatible gateway with failover",
        description="Run an OpenAI-compatible gateway. Give a TOML --config (see "
        "examples/gateway.toml), or one upstream with --base-url / --provider.",
    )
    serve.add_argument("--config", help="a TOML configuration file")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    serve.add_argument(
        "--grace-period", type=float, help="seconds in-flight requests get at shutdown"
    )
    serve.add_argument(
        "--client-keys-env", help="env variable with comma-separated keys clients must send"
    )
    serve.add_argument("--provider", help="the upstream provider type (no --config)")
    serve.add_argument("--base-url", help="an OpenAI-compatible upstream (no --config)")
    serve.add_argument("--api-key-env", help="env variable holding the upstream key")
    serve.add_argument(
        "--model", action="append", help="a model to serve (repeatable; default: any)"
    )
    serve.add_argument(
        "--workers", type=int, help="processes serving the port (default 1; with --redis)"
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        help="share limits and provider health with other workers and gateways through "
        "this Redis (redis://host:port/db; needs asyncprov[redis])",
    )

    demo = commands.add_parser(
        "demo", help="offline: concurrent streams through failover across local providers"
    )
    demo.add_argument("--requests", type=int, default=24, help="how many (default 24)")
    demo.add_argument("--seed", type=int, help="make the flaky provider's failures repeatable")
    return parser, dict(commands.choices)


def run(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    parser, commands = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the usage of the command given, not the top-level one
        commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command != "serve":
        # One line per failure: the library's own warnings (a provider marked not
        # working, ...) are not printed beside it.
        library = logging.getLogger("asyncprov")
        if not library.handlers:
            library.addHandler(logging.NullHandler())
    try:
        if args.command == "providers":
            return _providers(out)
        if args.command == "serve":
            return _serve(args, out)
        if args.command == "demo":
            return _demo(args, out)
        if args.command == "batch":
            return _batch_cli.run(args, out)
        return _chat(args, out)
    except (UsageError, *EXPECTED) as error:
        return exit_status(error, sys.stderr)
