"""asyncprov: one async-first, OpenAI-shaped client over many LLM chat providers.

Every public name loads on first use (a module ``__getattr__``): ``import asyncprov``
itself imports nothing heavy, and ``from asyncprov import AsyncClient`` loads the
client and what it needs. Type checkers see the imports below.
"""

from typing import TYPE_CHECKING

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from ._batch import AsyncBatch as AsyncBatch
    from ._batch import BatchRequest as BatchRequest
    from ._batch_results import BatchProgress as BatchProgress
    from ._batch_results import BatchResult as BatchResult
    from ._client import AsyncClient as AsyncClient
    from ._clock import set_testing as set_testing
    from ._errors import APIConnectionError as APIConnectionError
    from ._errors import APIError as APIError
    from ._errors import APITimeoutError as APITimeoutError
    from ._errors import AsyncProvError as AsyncProvError
    from ._errors import AuthenticationError as AuthenticationError
    from ._errors import BadRequestError as BadRequestError
    from ._errors import ClientClosedError as ClientClosedError
    from ._errors import ConfigurationError as ConfigurationError
    from ._errors import ConflictError as ConflictError
    from ._errors import ConnectTimeoutError as ConnectTimeoutError
    from ._errors import EventTooLargeError as EventTooLargeError
    from ._errors import FirstChunkTimeoutError as FirstChunkTimeoutError
    from ._errors import HTTPStatusError as HTTPStatusError
    from ._errors import IdleTimeoutError as IdleTimeoutError
    from ._errors import ImageError as ImageError
    from ._errors import ImagesNotSupportedError as ImagesNotSupportedError
    from ._errors import InternalServerError as InternalServerError
    from ._errors import InvalidRequestError as InvalidRequestError
    from ._errors import MissingAuthError as MissingAuthError
    from ._errors import ModelNotFoundError as ModelNotFoundError
    from ._errors import NotFoundError as NotFoundError
    from ._errors import PermissionDeniedError as PermissionDeniedError
    from ._errors import ProviderError as ProviderError
    from ._errors import ProviderNotFoundError as ProviderNotFoundError
    from ._errors import ProviderNotWorkingError as ProviderNotWorkingError
    from ._errors import ProxyError as ProxyError
    from ._errors import QueueTimeoutError as QueueTimeoutError
    from ._errors import RateLimitError as RateLimitError
    from ._errors import ResponseDecodeError as ResponseDecodeError
    from ._errors import RetryNoProviderError as RetryNoProviderError
    from ._errors import RetryProviderError as RetryProviderError
    from ._errors import SharedStateError as SharedStateError
    from ._errors import StreamInterruptedError as StreamInterruptedError
    from ._errors import StreamNotSupportedError as StreamNotSupportedError
    from ._errors import StreamTimeoutError as StreamTimeoutError
    from ._errors import StructuredOutputError as StructuredOutputError
    from ._errors import TotalTimeoutError as TotalTimeoutError
    from ._errors import UnprocessableEntityError as UnprocessableEntityError
    from ._ratelimit import RateLimit as RateLimit
    from ._ratelimit import RateLimits as RateLimits
    from ._ratelimit import RateLimitStats as RateLimitStats
    from ._request import CALL_SETTINGS as CALL_SETTINGS
    from ._request import CallSettings as CallSettings
    from ._request import CreateOptions as CreateOptions
    from ._retry import RetryPolicy as RetryPolicy
    from ._secrets import KeyMask as KeyMask
    from ._shared import SharedState as SharedState
    from ._streaming import AsyncStream as AsyncStream
    from ._sync import Client as Client
    from ._sync import Stream as Stream
    from ._sync_batch import Batch as Batch
    from ._timeouts import Timeout as Timeout
    from ._types import Attempt as Attempt
    from ._types import ChatCompletion as ChatCompletion
    from ._types import ChatCompletionChunk as ChatCompletionChunk
    from ._types import ChatMessage as ChatMessage
    from ._types import Choice as Choice
    from ._types import ChunkChoice as ChunkChoice
    from ._types import Delta as Delta
    from ._types import FunctionCall as FunctionCall
    from ._types import ImagePart as ImagePart
    from ._types import ImageURL as ImageURL
    from ._types import Message as Message
    from ._types import TextPart as TextPart
    from ._types import ToolCall as ToolCall
    from ._types import ToolCallDelta as ToolCallDelta
    from ._types import Usage as Usage

_LAZY = {
    "AsyncBatch": "._batch",
    "BatchRequest": "._batch",
    "BatchProgress": "._batch_results",
    "BatchResult": "._batch_results",
    "AsyncClient": "._client",
    "set_testing": "._clock",
    "APIConnectionError": "._errors",
    "APIError": "._errors",
    "APITimeoutError": "._errors",
    "AsyncProvError": "._errors",
    "AuthenticationError": "._errors",
    "BadRequestError": "._errors",
    "ClientClosedError": "._errors",
    "ConfigurationError": "._errors",
    "ConflictError": "._errors",
    "ConnectTimeoutError": "._errors",
    "EventTooLargeError": "._errors",
    "FirstChunkTimeoutError": "._errors",
    "HTTPStatusError": "._errors",
    "IdleTimeoutError": "._errors",
    "ImageError": "._errors",
    "ImagesNotSupportedError": "._errors",
    "InternalServerError": "._errors",
    "InvalidRequestError": "._errors",
    "MissingAuthError": "._errors",
    "ModelNotFoundError": "._errors",
    "NotFoundError": "._errors",
    "PermissionDeniedError": "._errors",
    "ProviderError": "._errors",
    "ProviderNotFoundError": "._errors",
    "ProviderNotWorkingError": "._errors",
    "ProxyError": "._errors",
    "QueueTimeoutError": "._errors",
    "RateLimitError": "._errors",
    "ResponseDecodeError": "._errors",
    "RetryNoProviderError": "._errors",
    "RetryProviderError": "._errors",
    "SharedStateError": "._errors",
    "StreamInterruptedError": "._errors",
    "StreamNotSupportedError": "._errors",
    "StreamTimeoutError": "._errors",
    "StructuredOutputError": "._errors",
    "TotalTimeoutError": "._errors",
    "UnprocessableEntityError": "._errors",
    "RateLimit": "._ratelimit",
    "RateLimitStats": "._ratelimit",
    "RateLimits": "._ratelimit",
    "CALL_SETTINGS": "._request",
    "CallSettings": "._request",
    "CreateOptions": "._request",
    "RetryPolicy": "._retry",
    "KeyMask": "._secrets",
    "SharedState": "._shared",
    "AsyncStream": "._streaming",
    "Client": "._sync",
    "Stream": "._sync",
    "Batch": "._sync_batch",
    "Timeout": "._timeouts",
    "Attempt": "._types",
    "ChatCompletion": "._types",
    "ChatCompletionChunk": "._types",
    "ChatMessage": "._types",
    "Choice": "._types",
    "ChunkChoice": "._types",
    "Delta": "._types",
    "FunctionCall": "._types",
    "ImagePart": "._types",
    "ImageURL": "._types",
    "Message": "._types",
    "TextPart": "._types",
    "ToolCall": "._types",
    "ToolCallDelta": "._types",
    "Usage": "._types",
}


if not TYPE_CHECKING:  # type checkers see the imports above, and flag misspelt names

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'asyncprov' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncBatch",
    "AsyncClient",
    "AsyncProvError",
    "AsyncStream",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchProgress",
    "BatchRequest",
    "BatchResult",
    "CALL_SETTINGS",
    "CallSettings",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "Client",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "ConnectTimeoutError",
    "CreateOptions",
    "Delta",
    "EventTooLargeError",
    "FirstChunkTimeoutError",
    "FunctionCall",
    "HTTPStatusError",
    "IdleTimeoutError",
    "ImageError",
    "ImagePart",
    "ImageURL",
    "ImagesNotSupportedError",
    "InternalServerError",
    "InvalidRequestError",
    "KeyMask",
    "Message",
    "MissingAuthError",
    "ModelNotFoundError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderError",
    "ProviderNotFoundError",
    "ProviderNotWorkingError",
    "ProxyError",
    "QueueTimeoutError",
    "RateLimit",
    "RateLimitError",
    "RateLimitStats",
    "RateLimits",
    "ResponseDecodeError",
    "RetryNoProviderError",
    "RetryPolicy",
    "RetryProviderError",
    "SharedState",
    "SharedStateError",
    "Stream",
    "StreamInterruptedError",
    "StreamNotSupportedError",
    "StreamTimeoutError",
    "StructuredOutputError",
    "TextPart",
    "Timeout",
    "ToolCall",
    "ToolCallDelta",
    "TotalTimeoutError",
    "UnprocessableEntityError",
    "Usage",
    "__version__",
    "set_testing",
]
