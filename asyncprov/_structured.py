"""Structured output: a pydantic model as ``response_format``, and the reply validated
back into it (``chat.completions.parse``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ._errors import StructuredOutputError
from ._types import ChatCompletion

__all__ = ["json_schema_format", "parse_reply"]


def _strict(schema: Any) -> Any:
    """OpenAI's strict mode: every object closed, every property required."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if schema.get("type") == "object" and "properties" in schema:
            schema["additionalProperties"] = False
            schema["required"] = list(schema["properties"])
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def json_schema_format(model: type[BaseModel]) -> dict[str, Any]:
    """The ``response_format`` asking for ``model``'s JSON schema, strictly."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": model.__name__,
            "schema": _strict(model.model_json_schema()),
            "strict": True,
        },
    }


def parse_reply(completion: ChatCompletion, model: type[BaseModel]) -> ChatCompletion:
    """``completion`` with ``choices[i].message.parsed`` set: a ``model`` instance, or
    ``None`` when the provider refused (``message.refusal`` says why)."""
    for choice in completion.choices:
        message = choice.message
        if message.refusal:
            continue
        raw = message.content or ""
        try:
            message.__dict__["parsed"] = model.model_validate_json(raw)
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in error["loc"])
            raise StructuredOutputError(
                f"the reply is not a valid {model.__name__}"
                + (f": {where}: {error['msg']}" if where else f": {error['msg']}"),
                raw=raw,
                provider=completion.provider,
                model=completion.model,
            ) from None
    return completion
