"""Structured output: parse() asks each vendor its native way and validates the reply."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from asyncprov import AsyncClient, Client, StructuredOutputError
from asyncprov.providers import Anthropic, Gemini
from asyncprov.testing import AnthropicTestServer, GeminiTestServer, OpenAITestServer, Reply


class City(BaseModel):
    name: str
    country: str


async def test_openai_gets_a_strict_json_schema(server: OpenAITestServer) -> None:
    """OpenAI wire: response_format json_schema, strict, closed objects; parsed set."""
    server.add_reply('{"name": "Paris", "country": "France"}')
    async with AsyncClient(base_url=server.base_url) as client:
        reply = await client.chat.completions.parse(
            model="m", messages="capital of France?", response_format=City
        )
    assert reply.choices[0].message.parsed == City(name="Paris", country="France")
    sent = server.requests[-1].json["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["additionalProperties"] is False
    assert sent["json_schema"]["schema"]["required"] == ["name", "country"]
    assert "parsed" not in reply.model_dump()


async def test_a_reply_that_does_not_validate_is_typed(server: OpenAITestServer) -> None:
    """A reply that is not a City raises StructuredOutputError carrying the raw text."""
    server.add_reply('{"name": "Paris"}')
    async with AsyncClient(base_url=server.base_url, max_retries=0) as client:
        with pytest.raises(StructuredOutputError) as caught:
            await client.chat.completions.parse(model="m", messages="hi", response_format=City)
    assert caught.value.raw == '{"name": "Paris"}' and "country" in str(caught.value)


async def test_anthropic_answers_through_a_forced_tool() -> None:
    """Anthropic: the schema becomes a tool the model must call; its input is the reply."""
    call = {"id": "t1", "name": "City", "arguments": '{"name": "Rome", "country": "Italy"}'}
    async with (
        AnthropicTestServer(replies=[Reply(content="", tool_calls=[call])]) as server,
        AsyncClient(Anthropic(api_key="k", base_url=server.base_url)) as client,
    ):
        reply = await client.chat.completions.parse(messages="Italy?", response_format=City)
    assert reply.choices[0].message.parsed == City(name="Rome", country="Italy")
    assert reply.choices[0].finish_reason == "stop"
    sent = server.requests[-1].json
    assert sent["tool_choice"] == {"type": "tool", "name": "City"}
    assert sent["tools"][-1]["input_schema"]["required"] == ["name", "country"]
    assert "response_format" not in sent


async def test_gemini_gets_a_response_schema() -> None:
    """Gemini: responseMimeType application/json with the schema."""
    async with (
        GeminiTestServer(replies=['{"name": "Oslo", "country": "Norway"}']) as server,
        AsyncClient(Gemini(api_key="k", base_url=server.base_url)) as client,
    ):
        reply = await client.chat.completions.parse(messages="Norway?", response_format=City)
    assert reply.choices[0].message.parsed == City(name="Oslo", country="Norway")
    config = server.requests[-1].json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["properties"]["name"] == {"title": "Name", "type": "string"}


def test_the_sync_twin() -> None:
    """Client.chat.completions.parse works the same."""
    server = OpenAITestServer(replies=['{"name": "Bern", "country": "Switzerland"}'])
    with server.run_in_thread(), Client(base_url=server.base_url) as client:
        reply = client.chat.completions.parse(model="m", messages="hi", response_format=City)
    assert reply.choices[0].message.parsed == City(name="Bern", country="Switzerland")


async def test_a_refusal_is_reported_as_such(server: OpenAITestServer) -> None:
    """A refusal leaves parsed None and says why in message.refusal."""
    body = (
        b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":null,"refusal":"I cannot help."},'
        b'"finish_reason":"stop"}]}'
    )
    server.add_reply(Reply(raw=body))
    async with AsyncClient(base_url=server.base_url) as client:
        reply = await client.chat.completions.parse(model="m", messages="hi", response_format=City)
    message = reply.choices[0].message
    assert message.parsed is None and message.refusal == "I cannot help."
