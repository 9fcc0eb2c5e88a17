"""Folding a stream of chunks into one completion (the non-streaming path of a stream)."""

from __future__ import annotations

from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    FunctionCall,
    Message,
    ToolCall,
    Usage,
)


class _ChoiceState:
    __slots__ = ("content", "finish_reason", "reasoning", "refusal", "tool_calls")

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.finish_reason: str | None = None
        # index -> [id, name, argument fragments]
        self.tool_calls: dict[int, tuple[list[str], list[str], list[str]]] = {}


class CompletionAccumulator:
    """Collects chunks and builds the ``ChatCompletion`` they add up to."""

    __slots__ = ("_choices", "_first", "_usage")

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceState] = {}
        self._first: ChatCompletionChunk | None = None
        self._usage: Usage | None = None

    def add(self, chunk: ChatCompletionChunk) -> None:
        """Fold one chunk in."""
        if self._first is None:
            self._first = chunk
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            state = self._choices.get(choice.index)
            if state is None:
                state = self._choices[choice.index] = _ChoiceState()
            delta = choice.delta
            if delta.content:
                state.content.append(delta.content)
            if delta.reasoning_content:
                state.reasoning.append(delta.reasoning_content)
            if delta.refusal:
                state.refusal.append(delta.refusal)
            if delta.tool_calls:
                for call in delta.tool_calls:
                    parts = state.tool_calls.setdefault(call.index, ([], [], []))
                    if call.id:
                        parts[0].append(call.id)
                    if call.function is not None:
                        if call.function.name:
                            parts[1].append(call.function.name)
                        if call.function.arguments:
                            parts[2].append(call.function.arguments)
            if choice.finish_reason is not None:
                state.finish_reason = choice.finish_reason

    @property
    def text(self) -> str:
        """The text received so far (first choice)."""
        state = self._choices.get(0) or next(iter(self._choices.values()), None)
        return "".join(state.content) if state else ""

    def completion(self, *, provider: str | None = None) -> ChatCompletion:
        """The completion the chunks so far add up to."""
        first = self._first
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            tool_calls = [
                ToolCall(
                    id="".join(ids),
                    function=FunctionCall(name="".join(names), arguments="".join(args)),
                )
                for _, (ids, names, args) in sorted(state.tool_calls.items())
            ]
            message = Message(
                content="".join(state.content) if state.content or not tool_calls else None,
                tool_calls=tool_calls or None,
                reasoning_content="".join(state.reasoning) if state.reasoning else None,
                refusal="".join(state.refusal) if state.refusal else None,
            )
            choices.append(Choice(index=index, message=message, finish_reason=state.finish_reason))
        return ChatCompletion(
            id=first.id if first else "",
            created=first.created if first else 0,
            model=first.model if first else "",
            choices=choices,
            usage=self._usage,
            system_fingerprint=first.system_fingerprint if first else None,
            provider=provider if provider is not None else (first.provider if first else None),
        )
