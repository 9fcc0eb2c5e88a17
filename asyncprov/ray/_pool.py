"""``WorkerPool``: the driver's side of the Ray workers. It connects to the cluster,
starts one actor per worker place, replaces an actor that died (counting the deaths, so
a crash loop stops the batch), sums the workers' rate-limit counters, and lets every
actor go at the end."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asyncprov import AsyncProvError, ConfigurationError, RateLimit, RateLimitStats
from asyncprov.providers import provider_class, provider_names

from ._worker import BatchWorker

__all__ = ["BatchWorkerError", "Slot", "WorkerPool", "divide_limits", "first_line"]

_STATS_TIMEOUT = 5.0


class BatchWorkerError(AsyncProvError, code="batch_worker_error"):
    """Raised when a batch on Ray stops because its workers keep dying (a crash loop)."""


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def divide_limits(
    limits: Mapping[str, RateLimit] | None, workers: int
) -> dict[str, RateLimit] | None:
    """Each worker's share of ``limits``: rpm, tpm and concurrency divided by
    ``workers`` (concurrency rounded down, at least 1)."""
    if limits is None:
        return None
    shares = {}
    for name, limit in limits.items():
        update: dict[str, Any] = {}
        if limit.rpm is not None:
            update["rpm"] = limit.rpm / workers
        if limit.tpm is not None:
            update["tpm"] = limit.tpm / workers
        if limit.concurrency is not None:
            update["concurrency"] = max(1, limit.concurrency // workers)
        shares[name] = limit.model_copy(update=update)
    return shares


def _driver_keys() -> dict[str, str]:
    """The provider key variables set here, for the workers (a worker's own wins)."""
    keys = {}
    for name in provider_names():
        env = provider_class(name).api_key_env
        if env and (value := os.environ.get(env)):
            keys[env] = value
    return keys


@dataclass
class Slot:
    """One worker place: the actor holding it now (a new one after each death)."""

    number: int
    actor: Any
    generation: int = 0
    deaths_in_a_row: int = 0  # since the last chunk it finished


class WorkerPool:
    """The actors of one batch run and what their deaths mean."""

    def __init__(
        self,
        *,
        address: str | None,
        workers: int,
        worker_cpus: float,
        max_worker_deaths: int,
        runtime_env: Mapping[str, Any] | None,
        client_options: Mapping[str, Any],
    ) -> None:
        self.address = address
        self.workers = workers
        self.worker_cpus = worker_cpus
        self.max_worker_deaths = max_worker_deaths
        self._runtime_env = dict(runtime_env) if runtime_env else None
        self._client_options = dict(client_options)
        self._owns_ray = False
        self._remote: Any = None
        self.slots: list[Slot] = []
        self.deaths = 0
        """Workers that died during the run (each was replaced)."""

    def start(self) -> None:
        """Connect (or start a local cluster) and start the actors; raises
        ``ConfigurationError`` when Ray is missing, unreachable or too small."""
        ray = self._connect()
        options: dict[str, Any] = {
            "num_cpus": self.worker_cpus,
            "max_restarts": 0,  # a dead worker is replaced here, where it is counted
            "max_task_retries": 0,  # a lost chunk is sent again by the driver
            # No per-call event records for Ray's dashboard: the driver kept them, some
            # 30 bytes a line, so a long job's memory grew with its input.
            "enable_task_events": False,
        }
        if self._runtime_env is not None:
            options["runtime_env"] = self._runtime_env
        self._remote = ray.remote(BatchWorker).options(**options)
        self.slots = [Slot(number, self._new_actor()) for number in range(1, self.workers + 1)]

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ConfigurationError(
                "a batch on Ray needs the ray package: pip install 'asyncprov[ray]'"
            ) from None
        if not ray.is_initialized():
            import logging

            try:
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = self.address or "RAY_ADDRESS (or a local cluster)"
                raise ConfigurationError(
                    f"cannot connect to the Ray cluster at {where}: {first_line(error)}"
                ) from None
            self._owns_ray = True
        # ray leaves cluster_resources untyped
        cpus = ray.cluster_resources().get("CPU", 0.0)  # type: ignore[no-untyped-call]
        needed = self.workers * self.worker_cpus
        if needed > cpus:
            self.close()
            raise ConfigurationError(
                f"{self.workers} worker(s) of {self.worker_cpus:g} CPU each need {needed:g} "
                f"CPUs, and the Ray cluster has {cpus:g}: fewer workers, or fewer CPUs each"
            )
        return ray

    def _new_actor(self) -> Any:
        return self._remote.remote(self._client_options, _driver_keys())

    def died(self, slot: Slot, generation: int, error: BaseException) -> None:
        """``slot``'s actor of ``generation`` died: replace it (once, whichever call
        noticed first). Raises ``BatchWorkerError`` when that makes
        ``max_worker_deaths`` in a row without a finished chunk."""
        import ray

        if slot.generation != generation:
            return  # already replaced
        slot.deaths_in_a_row += 1
        self.deaths += 1
        with contextlib.suppress(Exception):
            ray.kill(slot.actor, no_restart=True)
        if slot.deaths_in_a_row >= self.max_worker_deaths:
            raise BatchWorkerError(
                f"Ray worker {slot.number} died {slot.deaths_in_a_row} times in a row "
                f"without finishing a request (last: {first_line(error)})"
            )
        slot.actor = self._new_actor()
        slot.generation += 1

    async def stats(self, names: list[str]) -> dict[str, RateLimitStats]:
        """Each provider's rate-limit counters summed over the workers; the workers'
        clients are closed on the way."""
        import anyio
        from ray.exceptions import RayError

        totals: dict[str, dict[str, float]] = {}
        with anyio.move_on_after(_STATS_TIMEOUT):
            for slot in self.slots:
                try:
                    stats = await slot.actor.stats.remote(names)
                    await slot.actor.close.remote()
                except RayError:
                    continue
                for name, one in stats.items():
                    into = totals.setdefault(name, {})
                    for key, value in one.model_dump().items():
                        into[key] = into.get(key, 0) + value
        return {name: RateLimitStats.model_validate(values) for name, values in totals.items()}

    def close(self) -> None:
        """Let every actor go (its client's requests end with its process), and stop
        the local cluster this pool started, if it did."""
        import ray

        for slot in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)
        if self._owns_ray:
            self._owns_ray = False
            ray.shutdown()
