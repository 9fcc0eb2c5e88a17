"""The OpenAI-compatible gateway (``asyncprov serve``)."""

from ._app import DEFAULT_MAX_BODY_SIZE as DEFAULT_MAX_BODY_SIZE
from ._app import create_app as create_app

__all__ = ["DEFAULT_MAX_BODY_SIZE", "create_app"]
