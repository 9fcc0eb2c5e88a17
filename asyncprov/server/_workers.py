"""Several gateway processes on one port: ``asyncprov serve --workers N``.

The parent binds and listens once, then forks the workers, which all accept from that
one socket (the kernel hands each new connection to one of them) and run ``serve`` as
a lone gateway would. Limits and provider health are per process unless the workers
share a Redis (``shared_state``); the parent only forwards SIGTERM and waits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from types import FrameType

import anyio

from .. import ConfigurationError, SharedState
from ._config import GatewayConfig, build_routes
from ._serve import serve

__all__ = ["serve_workers"]

log = logging.getLogger("asyncprov.server")

BACKLOG = 1024


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), inheritable."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
        except BaseException:
            sock.close()
            raise
    except OSError as error:
        raise ConfigurationError(
            f"server.host/server.port: cannot listen on {host}:{port}: {error.strerror or error}"
        ) from None
    sock.setblocking(False)
    return sock


def serve_workers(
    config: GatewayConfig,
    *,
    workers: int,
    shared_state: SharedState | str | None = None,
    ready: Callable[[str], None] | None = None,
) -> int:
    """Run ``workers`` gateway processes on one port until SIGTERM (or Ctrl-C, which
    the terminal sends to every worker); returns 0 when every worker stopped cleanly.
    Call it from a process that runs no event loop and no threads (it forks)."""
    settings = config.server
    build_routes(config)  # a configuration that cannot work is said once, before forking
    sock = listen(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/v1"
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: serve until told to stop, and never return here
            os._exit(_worker(config, sock, shared_state))
        children.append(pid)
    sock.close()  # the workers hold it

    terms = [0]

    def forward(signum: int, frame: FrameType | None) -> None:
        # The first SIGTERM drains every worker; a second one ends their grace period,
        # told as SIGINT (a worker takes a repeated SIGTERM as a group's, the same stop).
        terms[0] += 1
        for child in children:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(child, signal.SIGTERM if terms[0] == 1 else signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal signals each worker itself
    log.info("%d workers listening on %s", workers, url)
    if ready is not None:
        ready(url)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(code)
        # A worker still starting when the stop came dies of that SIGTERM: a clean stop.
        if code != 0 and not (terms[0] and code == -signal.SIGTERM):
            status = 1
    return status


def _worker(config: GatewayConfig, sock: socket.socket, shared: SharedState | str | None) -> int:
    try:
        anyio.run(lambda: serve(config, shared_state=shared, sock=sock))
    except ConfigurationError as error:
        print(f"asyncprov serve: worker {os.getpid()}: {error}", file=sys.stderr)
        return 2
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0
