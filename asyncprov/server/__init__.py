"""The OpenAI-compatible gateway (``asyncprov serve``): ``create_app`` for an aiohttp
application of your own, or ``serve`` with a checked configuration."""

from ._app import create_app as create_app
from ._config import DEFAULT_MAX_BODY_SIZE as DEFAULT_MAX_BODY_SIZE
from ._config import GatewayConfig as GatewayConfig
from ._config import Route as Route
from ._config import SharedStateConfig as SharedStateConfig
from ._config import build_routes as build_routes
from ._config import load_config as load_config
from ._config import parse_config as parse_config
from ._serve import serve as serve
from ._workers import serve_workers as serve_workers

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "GatewayConfig",
    "Route",
    "SharedStateConfig",
    "build_routes",
    "create_app",
    "load_config",
    "parse_config",
    "serve",
    "serve_workers",
]
