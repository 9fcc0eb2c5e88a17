"""Local servers for tests, examples and demos: an OpenAI-compatible server with
scripted replies and faults, and a small HTTP proxy."""

from .. import set_testing as set_testing
from ._anthropic import AnthropicTestServer as AnthropicTestServer
from ._gemini import GeminiTestServer as GeminiTestServer
from ._proxy import ProxiedRequest as ProxiedRequest
from ._proxy import ProxyServer as ProxyServer
from ._raycast import RaycastTestServer as RaycastTestServer
from ._server import Fault as Fault
from ._server import OpenAITestServer as OpenAITestServer
from ._server import RecordedRequest as RecordedRequest
from ._server import Reply as Reply
from ._switch import instant_retries as instant_retries

__all__ = [
    "AnthropicTestServer",
    "Fault",
    "GeminiTestServer",
    "OpenAITestServer",
    "ProxiedRequest",
    "ProxyServer",
    "RaycastTestServer",
    "RecordedRequest",
    "Reply",
    "instant_retries",
    "set_testing",
]
