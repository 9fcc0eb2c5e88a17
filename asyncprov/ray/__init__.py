"""Batch runs on a Ray cluster (``pip install 'asyncprov[ray]'``): ``RayBatch`` for
requests from Python, ``run_batch`` / ``arun_batch`` for OpenAI Batch API files (what
``asyncprov batch IN OUT --ray`` runs). Ray itself is imported when a batch starts."""

from ._batch import RayBatch as RayBatch
from ._files import arun_batch as arun_batch
from ._files import run_batch as run_batch
from ._pool import BatchWorkerError as BatchWorkerError

__all__ = ["BatchWorkerError", "RayBatch", "arun_batch", "run_batch"]
