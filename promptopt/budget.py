"""Budgets: calls, tokens, minutes and cost, enforced as a backend wrapper.

The search controller puts the wrapper *outside* the response cache: every logical
request is charged, cache hits included, so a resumed run (answered from the cache)
spends exactly what the uninterrupted run did. When a limit is reached, the next call raises
:class:`BudgetExceeded`; the controller catches it and finishes with the best prompt
found so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from promptopt.backends.base import Backend, OnResults
from promptopt.errors import BudgetExceeded, ConfigError
from promptopt.types import Completion, GenerationRequest

PRICES_ENV = "PROMPTOPT_PRICES"


@dataclass(frozen=True)
class Budget:
    """Limits; ``None`` means unlimited. Prices are per million tokens (in, out).

    ``covers_final``: ``max_calls`` bounds the search *and* the final full-dev scoring of
    its finalists (the controller keeps back, before each round and racing stage, what the
    current finalists' unscored dev items would take, and scores only the finalists the
    rest pays for). Off, the final scoring comes after the cap (its size is in the estimate)."""

    max_calls: int | None = None
    max_tokens: int | None = None
    max_minutes: float | None = None
    max_cost: float | None = None
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    covers_final: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_prices(model: str, path: str | Path | None = None) -> tuple[float, float]:
    """Per-model prices (USD per million input and output tokens) from a YAML file:

    ```yaml
    openai/gpt-4o-mini: {input: 0.15, output: 0.60}
    ```
    Local and fake models cost nothing unless the file says otherwise."""
    import os

    source = path or os.environ.get(PRICES_ENV)
    if not source:
        return 0.0, 0.0
    file = Path(source).expanduser()
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{file}: cannot read the price file ({exc})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{file}: expected a mapping of model → {{input: USD/Mtok, output: USD/Mtok}}")
    base = model.split("@", 1)[0]
    entry = data.get(model, data.get(base))
    if entry is None:
        return 0.0, 0.0
    if not isinstance(entry, Mapping) or not {"input", "output"} <= set(entry):
        raise ConfigError(
            f"{file}: the entry for {base!r} needs 'input' and 'output' prices per million tokens"
        )
    return _price(entry["input"], file, base, "input"), _price(entry["output"], file, base, "output")


def _price(value: Any, file: Path, model: str, which: str) -> float:
    import math

    try:
        price = float(value)
    except (TypeError, ValueError):
        price = math.nan
    if isinstance(value, bool) or not math.isfinite(price) or price < 0:
        raise ConfigError(
            f"{file}: the {which} price of {model!r} must be a number >= 0 (USD per million tokens), got {value!r}"
        )
    return price


@dataclass
class Spend:
    """What a run has spent. ``listener``, if set, is called after each charged batch (a
    live display's call count moves with the proposer's and the demos' calls too)."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    started: float = field(default_factory=time.monotonic)
    listener: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    @property
    def minutes(self) -> float:
        return (time.monotonic() - self.started) / 60

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": round(self.cost, 6),
            "minutes": round(self.minutes, 3),
        }


class BudgetedBackend(Backend):
    """Charges every real call to ``spend`` and refuses calls once ``budget`` is spent.

    A batch is let through whole when the budget is not yet exhausted; the executor sizes
    batches by :meth:`remaining_calls`, so ``max_calls`` is overshot by at most one
    example's self-consistency samples (token, time and cost limits by one batch). Under
    ``covers_final`` no batch may pass ``max_calls`` (a proposer's batch of proposals, a
    candidate's samples): it is refused whole."""

    def __init__(self, inner: Backend, budget: Budget, spend: Spend | None = None) -> None:
        self.inner = inner
        self.budget = budget
        self.spend = spend or Spend()

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def describe(self) -> dict[str, object]:
        return self.inner.describe()

    def remaining_calls(self) -> int | None:
        """Calls left under ``max_calls`` (``None``: no call limit). The executor sizes its
        backend calls by it, so a call cap is overshot by at most one example's samples."""
        if self.budget.max_calls is None:
            return None
        return max(0, self.budget.max_calls - self.spend.calls)

    def exhausted(self) -> str | None:
        """Which limit is spent, or ``None``."""
        b, s = self.budget, self.spend
        if b.max_calls is not None and s.calls >= b.max_calls:
            return f"calls ({s.calls} of {b.max_calls})"
        if b.max_tokens is not None and s.tokens >= b.max_tokens:
            return f"tokens ({s.tokens} of {b.max_tokens})"
        if b.max_minutes is not None and s.minutes >= b.max_minutes:
            return f"time ({s.minutes:.1f} of {b.max_minutes} minutes)"
        if b.max_cost is not None and s.cost >= b.max_cost:
            return f"cost (${s.cost:.4f} of ${b.max_cost})"
        return None

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return self.generate_each(requests, None)

    def generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """Answers are passed on as the inner backend reports them (progress, caching)."""
        reason = self.exhausted()
        if reason is not None:
            raise BudgetExceeded(f"budget spent: {reason}")
        b, s = self.budget, self.spend
        if b.covers_final and b.max_calls is not None and s.calls + len(requests) > b.max_calls:
            # the cap is what the final scoring was promised: no batch passes it
            raise BudgetExceeded(
                f"budget spent: calls ({s.calls} of {b.max_calls}; {len(requests)} more would pass it)"
            )
        completions = self.inner.generate_each(requests, on_results)
        self.spend.calls += len(requests)
        tokens_in = sum(c.tokens_in for c in completions)
        tokens_out = sum(c.tokens_out for c in completions)
        self.spend.tokens_in += tokens_in
        self.spend.tokens_out += tokens_out
        self.spend.cost += (
            tokens_in * self.budget.price_in_per_mtok + tokens_out * self.budget.price_out_per_mtok
        ) / 1e6
        if self.spend.listener is not None:
            self.spend.listener()
        return completions

    def close(self) -> None:
        self.inner.close()
