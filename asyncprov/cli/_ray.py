"""``asyncprov batch --ray``: the flags, their checks, the ``RayBatch`` a run uses in
place of a local batch, and the summary's ``ray:`` line (Ray loads only with --ray)."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any, TextIO

from ._errors import UsageError

if TYPE_CHECKING:
    from asyncprov.ray import RayBatch

__all__ = ["add_ray_options", "check_ray_options", "ray_batch", "ray_summary"]


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on a Ray cluster (needs asyncprov[ray]): ADDRESS (host:port, ray://..., "
        "auto), else RAY_ADDRESS or a local cluster; --concurrency is then per worker, "
        "and --rpm/--tpm are divided among the workers unless --redis is given",
    )
    parser.add_argument("--workers", type=int, help="Ray workers, with --ray (default 2)")
    parser.add_argument(
        "--worker-cpus", type=float, help="CPUs Ray reserves per worker, with --ray (default 1)"
    )


def check_ray_options(args: argparse.Namespace) -> None:
    """Raise ``UsageError`` for --workers / --worker-cpus values that cannot work."""
    if args.ray is None:
        if args.workers is not None or args.worker_cpus is not None:
            raise UsageError("--workers and --worker-cpus go with --ray")
        return
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.worker_cpus is not None and not (
        args.worker_cpus >= 0 and math.isfinite(args.worker_cpus)
    ):
        raise UsageError("--worker-cpus must be 0 or more")


def ray_batch(args: argparse.Namespace, requests: Any, settings: dict[str, Any]) -> RayBatch:
    """The run on Ray's workers: the same requests and client ``settings`` (the
    ``AsyncClient`` keywords) as a local run."""
    from asyncprov.ray import RayBatch

    return RayBatch(
        requests,
        address=args.ray or None,
        workers=args.workers or 2,
        concurrency=args.concurrency,
        worker_cpus=1.0 if args.worker_cpus is None else args.worker_cpus,
        **settings,
    )


def ray_summary(out: TextIO, batch: RayBatch) -> None:
    out.write(
        f"ray: {batch.workers} worker(s), {batch.worker_deaths:,} died and were replaced, "
        f"{batch.resent:,} request(s) sent again (each may have reached the provider twice)\n"
    )
