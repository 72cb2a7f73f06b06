"""A DSPy language model that answers through a promptopt :class:`~promptopt.backends.Backend`.

``PromptOptLM(backend)`` is a ``dspy.BaseLM``: give it to ``dspy.context(lm=...)`` (or
``dspy.configure``) and every call DSPy makes goes through the promptopt backend chain it
wraps — the response cache, budgets, retries, the Ray pool, the store — exactly as
promptopt's own executor calls do. It speaks DSPy's legacy ``forward`` contract (an
OpenAI-shaped chat completion), which DSPy 3.x supports; the extra pins ``dspy<3.5``,
where that contract is scheduled to go.

Mapping: ``n`` (or ``num_generations``) samples become ``n`` requests with consecutive
``sample_index`` values (promptopt's own self-consistency convention, so each sample has
its own cache entry); DSPy's ``rollout_id`` moves that index range so that a rollout at
temperature > 0 gets fresh samples; ``temperature`` ``None`` is greedy (0.0). A failed
request raises :class:`~promptopt.errors.BackendError` (DSPy counts it as an error of
that example); :class:`~promptopt.errors.BudgetExceeded` is remembered in
``budget_exceeded`` as well as raised, because DSPy's evaluator catches per-example
exceptions and a caller must still be able to tell that the budget ended the run.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptopt.backends.base import Backend
from promptopt.dspy_interop._env import import_dspy
from promptopt.errors import BackendError, BudgetExceeded, ConfigError
from promptopt.types import Completion, GenerationRequest, Message

dspy = import_dspy()
_BaseLM: Any = dspy.BaseLM

DEFAULT_MAX_TOKENS = 512
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass
class ChatMessage:
    content: str
    role: str = "assistant"


@dataclass
class ChatChoice:
    message: ChatMessage
    index: int = 0
    finish_reason: str = "stop"


@dataclass
class ChatCompletion:
    """The OpenAI chat-completion shape DSPy's adapters read: ``choices[i].message.content``,
    ``usage`` (a dict), ``model``; ``cache_hit`` when every sample came from promptopt's cache."""

    choices: list[ChatChoice]
    model: str
    usage: dict[str, int] = field(default_factory=dict)
    cache_hit: bool = False
    object: str = "chat.completion"


@dataclass
class Usage:
    """What the adapter sent, summed over its life (thread-safe)."""

    calls: int = 0  # DSPy LM calls
    requests: int = 0  # promptopt requests (n per call)
    cache_hits: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    budget_exceeded: BudgetExceeded | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise ConfigError(f"{where}: promptopt backends take text only, got a {kind!r} part")
        return "".join(parts)
    if content is None:
        return ""
    raise ConfigError(f"{where}: unexpected message content of type {type(content).__name__}")


def to_messages(prompt: str | None, messages: Sequence[Mapping[str, Any]] | None) -> tuple[Message, ...]:
    """DSPy's OpenAI-style messages (or a bare prompt) as promptopt messages."""
    if messages is None:
        return (Message("user", prompt or ""),)
    out = []
    for index, message in enumerate(messages):
        role = _ROLES.get(str(message.get("role")))
        if role is None:
            raise ConfigError(
                f"message {index}: role {message.get('role')!r} is not supported (system, user, assistant)"
            )
        out.append(Message(role, _text(message.get("content"), f"message {index}")))  # type: ignore[arg-type]
    return tuple(out)


def rollout_offset(rollout_id: Any) -> int:
    """A stable non-negative integer for DSPy's ``rollout_id`` (an int, or any value)."""
    if rollout_id is None:
        return 0
    if isinstance(rollout_id, int) and rollout_id >= 0:
        return rollout_id + 1
    return zlib.crc32(repr(rollout_id).encode()) + 1


class PromptOptLM(_BaseLM):
    """DSPy LM over a promptopt backend. ``model`` defaults to the backend's ``model_id``."""

    def __init__(
        self,
        backend: Backend,
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        # DSPy's own cache is off: promptopt's response cache (inside ``backend``) is the one.
        super().__init__(
            model=model or f"promptopt/{backend.model_id}", model_type="chat", temperature=temperature,
            max_tokens=max_tokens, cache=False, num_retries=0, **kwargs,
        )  # fmt: skip
        self.backend = backend
        self.usage = Usage()  # shared with copies: DSPy copies an LM per rollout

    def requests_for(
        self, prompt: str | None, messages: Any, options: Mapping[str, Any]
    ) -> list[GenerationRequest]:
        n = int(options.get("n") or options.get("num_generations") or 1)
        temperature = options.get("temperature")
        max_tokens = options.get("max_tokens") or options.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
        stop = options.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        first = rollout_offset(options.get("rollout_id")) * n
        chat = to_messages(prompt, messages)
        return [
            GenerationRequest(
                messages=chat,
                temperature=float(temperature or 0.0),
                max_tokens=int(max_tokens),
                stop=stop,
                sample_index=first + i,
            )  # fmt: skip
            for i in range(max(1, n))
        ]

    def forward(self, prompt: str | None = None, messages: Any = None, **kwargs: Any) -> ChatCompletion:
        options = {**self.kwargs, **kwargs}
        requests = self.requests_for(prompt, messages, options)
        try:
            completions: list[Completion] = self.backend.generate(requests)
        except BudgetExceeded as exc:
            self.usage.budget_exceeded = exc
            raise
        failed = [c for c in completions if not c.ok]
        with self.usage.lock:
            self.usage.calls += 1
            self.usage.requests += len(requests)
            self.usage.cache_hits += sum(1 for c in completions if c.cached)
            self.usage.tokens_in += sum(c.tokens_in for c in completions)
            self.usage.tokens_out += sum(c.tokens_out for c in completions)
        if failed:
            raise BackendError(f"{self.backend.model_id}: {failed[0].error}", retryable=failed[0].retryable)
        tokens_in = sum(c.tokens_in for c in completions)
        tokens_out = sum(c.tokens_out for c in completions)
        return ChatCompletion(
            choices=[
                ChatChoice(ChatMessage(c.text), index=i, finish_reason=c.finish_reason)
                for i, c in enumerate(completions)
            ],
            model=self.model,
            usage={
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
            cache_hit=all(c.cached for c in completions),
        )

    async def aforward(
        self, prompt: str | None = None, messages: Any = None, **kwargs: Any
    ) -> ChatCompletion:
        # promptopt backends are synchronous (and batch-first); run the call in a thread.
        import asyncio

        return await asyncio.to_thread(self.forward, prompt, messages, **kwargs)

    @property
    def budget_exceeded(self) -> BudgetExceeded | None:
        """The budget error that stopped a call, if one did (DSPy may have swallowed it)."""
        return self.usage.budget_exceeded

    def dump_state(self) -> dict[str, Any]:
        # The backend is a live object; a saved program records only which model it was.
        return {"model": self.model, "model_type": self.model_type}
