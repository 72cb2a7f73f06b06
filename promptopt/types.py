"""Immutable values that cross module boundaries.

Every value here is a frozen dataclass. Those that have an identity in the store
(``Candidate``, ``GenerationRequest``) expose a stable content hash computed from a
canonical JSON form, so the same prompt gets the same id on every machine and run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any, Literal

from promptopt.bias.checks import check_bias_fields

Role = Literal["system", "user", "assistant"]
CotMode = Literal["none", "zero_shot", "few_shot"]
COT_MODES: tuple[str, ...] = ("none", "zero_shot", "few_shot")


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""The encoder ``json.dumps`` would build for these options at every call; it keeps no
state between calls, so one serves every call (and thread)."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every content hash."""
    return _CANONICAL.encode(value)


def content_hash(value: Any, length: int = 16) -> str:
    """Hex sha256 of ``canonical_json(value)``, truncated to ``length`` characters."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Example:
    """One task item. ``inputs`` maps the task's input fields to text.

    ``target`` is the gold answer as the task's metric compares it; ``solution`` is a
    worked solution (used for few-shot chain-of-thought demos) when the data has one.
    """

    id: str
    inputs: Mapping[str, str]
    target: str
    solution: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "inputs": dict(self.inputs),
            "target": self.target,
            "solution": self.solution,
        }


# Fields added after the first release: omitted from to_dict() (and so from the hash)
# while they hold their default, so that stored candidates keep their identity.
_OPTIONAL_WHEN_DEFAULT: dict[str, Any] = {
    "similar_demos": 0,
    "demo_solutions": [],
    "permute": 1,
    "calibration": "none",
    "rescue": False,
}


@dataclass(frozen=True)
class Candidate:
    """A complete prompt configuration: everything that decides what the model sees
    and how its answer is read.

    ``demo_ids`` name examples of the task's demo pool (the train split minus dev), in
    the order they are shown. ``cot_mode``:

    - ``none``: the model answers directly;
    - ``zero_shot``: ``cot_trigger`` (e.g. "Let's think step by step.") starts the answer;
    - ``few_shot``: demos are shown with their worked solutions; ``cot_trigger`` is optional.

    ``samples`` > 1 means self-consistency: that many samples at ``temperature``,
    majority vote over the extracted answers. ``two_stage`` asks a second, short
    question ("Therefore, the answer is") after the reasoning, as in Kojima et al.;
    ``rescue`` asks it only of the outputs that hold no answer (reasoning cut off at the
    token limit, or ended without stating one), one extra call for each of those;
    with ``two_stage`` on it adds nothing and is dropped (the two are one candidate).

    ``similar_demos`` > 0 picks that many demos *per question*, the most similar items
    of the demo pool (sentence embeddings; :mod:`promptopt.similarity`), instead of
    ``demo_ids``. ``demo_solutions`` replaces the worked solution of the named demos
    (bootstrapped demos: the model's own correct solutions), as ``(demo_id, text)`` pairs;
    an empty text shows that demo with its answer only, no worked solution (a DSPy
    "labelled" demo in a chain-of-thought program).
    ``permute`` > 1 shows a multiple-choice item that many times with its options
    reordered and votes over the answers mapped back to the original letters;
    ``calibration`` (``contextual``, ``batch``, ``position``) answers from the labels'
    log-probabilities with the model's label prior divided out (:mod:`promptopt.bias`);
    ``raw`` from the label log-probabilities as they are.
    These and ``rescue`` are left out of the hash while unused, so older candidates keep their identity.
    """

    instruction: str = ""
    demo_ids: tuple[str, ...] = ()
    cot_mode: CotMode = "none"
    cot_trigger: str = ""
    answer_format: str = ""
    samples: int = 1
    temperature: float = 0.0
    max_tokens: int = 512
    two_stage: bool = False
    similar_demos: int = 0
    demo_solutions: tuple[tuple[str, str], ...] = ()
    permute: int = 1
    calibration: str = "none"
    rescue: bool = False

    def __post_init__(self) -> None:
        # Accept lists from YAML/JSON but keep the value hashable and immutable.
        if not isinstance(self.demo_ids, tuple):
            object.__setattr__(self, "demo_ids", tuple(self.demo_ids))
        solutions = self.demo_solutions
        if isinstance(solutions, Mapping):
            solutions = tuple(sorted(solutions.items()))
        object.__setattr__(self, "demo_solutions", tuple(tuple(pair) for pair in solutions))
        if self.cot_mode not in COT_MODES:
            from promptopt.errors import ConfigError

            raise ConfigError(
                f"unknown chain-of-thought mode {self.cot_mode!r}; expected one of {', '.join(COT_MODES)}"
            )
        if self.samples < 1:
            from promptopt.errors import ConfigError

            raise ConfigError(f"samples must be at least 1, got {self.samples}")
        if self.two_stage and self.rescue:  # two_stage already asks every output
            object.__setattr__(self, "rescue", False)
        check_bias_fields(self)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["demo_ids"] = list(self.demo_ids)
        data["demo_solutions"] = [list(pair) for pair in self.demo_solutions]
        for optional, default in _OPTIONAL_WHEN_DEFAULT.items():
            if data[optional] == default:
                del data[optional]
        return data

    def solution_for(self, demo_id: str) -> str | None:
        """This candidate's worked solution for a demo, when it overrides the data's
        (``""``: none, the answer only); None when it does not."""
        for key, text in self.demo_solutions:
            if key == demo_id:
                return text
        return None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            from promptopt.errors import ConfigError

            raise ConfigError(
                f"unknown candidate field(s): {', '.join(sorted(unknown))}; "
                f"expected some of {', '.join(sorted(known))}"
            )
        return cls(**dict(data))

    @cached_property
    def hash(self) -> str:
        """Stable identity of this prompt in the store, the cache and the leaderboard.
        Computed once per value (it is read on every stored row and memo lookup)."""
        return content_hash(self.to_dict())


@dataclass(frozen=True)
class GenerationRequest:
    """One call to a chat model. ``sample_index`` separates the n samples of
    self-consistency so that each has its own cache entry and its own seed."""

    messages: tuple[Message, ...]
    temperature: float = 0.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    sample_index: int = 0
    # "json": ask a backend that can constrain its output to emit one JSON object (an
    # OpenAI-compatible server's response_format); backends that cannot ignore it.
    response_format: str | None = None
    # with response_format "json": the JSON Schema (canonical JSON text) the object must
    # follow, where the task gives one; the backend constrains to it where it can.
    json_schema: str | None = None
    # Label scoring instead of generation: the log-probability of each of these texts as
    # the start of the answer (promptopt.backends.scoring); the completion carries them.
    score_labels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "messages": [m.to_dict() for m in self.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stop": list(self.stop),
            "sample_index": self.sample_index,
        }
        if self.response_format is not None:  # left out when unset: cache keys stay as they were
            data["response_format"] = self.response_format
        if self.json_schema is not None:
            data["json_schema"] = self.json_schema
        if self.score_labels:  # likewise
            data["score_labels"] = list(self.score_labels)
        return data

    def cache_key(self, model: str) -> str:
        """Key of the response cache: model, messages, sampling parameters, sample index."""
        return content_hash({"model": model, "request": self.to_dict()}, length=64)


@dataclass(frozen=True)
class Completion:
    """What a backend returns for one request.

    A failed request is a ``Completion`` with ``error`` set (never an empty text taken
    for a wrong answer); ``retryable`` says whether trying again may help and
    ``retry_after`` carries the server's requested wait.
    """

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str = "stop"
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SampleResult:
    """One sampled generation for one example, with its extracted answer.
    ``finish_reason`` is the backend's: ``length`` when the output was cut off at the
    token limit (then only an explicitly stated answer is taken)."""

    sample_index: int
    raw_output: str
    parsed_answer: str | None
    score: float | None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    finish_reason: str = "stop"
    feedback: str | None = None  # the metric's reason for this sample's score


@dataclass(frozen=True)
class EvalResult:
    """The result of one candidate on one example: the voted answer and its score,
    with every sample kept. ``score`` is ``None`` when every sample failed: a failure
    is not a wrong answer, and scores exclude it. ``feedback`` is the metric's reason
    for the score (empty when it has nothing to say)."""

    candidate_hash: str
    example_id: str
    split: str
    answer: str | None
    gold: str
    score: float | None
    samples: tuple[SampleResult, ...] = field(default_factory=tuple)
    error: str | None = None
    feedback: str | None = None

    @property
    def no_answer(self) -> bool:
        """Scored, but no answer was found in the output: a wrong answer, counted on its own."""
        return self.score is not None and self.answer is None

    @property
    def truncated(self) -> bool:
        """An output was cut off at the token limit (finish reason ``length``)."""
        return any(s.finish_reason == "length" and s.error is None for s in self.samples)

    @property
    def tokens_in(self) -> int:
        return sum(s.tokens_in for s in self.samples)

    @property
    def tokens_out(self) -> int:
        return sum(s.tokens_out for s in self.samples)

    @property
    def calls(self) -> int:
        """Backend calls actually made (cache hits excluded)."""
        return sum(1 for s in self.samples if not s.cached)

    @property
    def cache_hits(self) -> int:
        return sum(1 for s in self.samples if s.cached)

    @property
    def latency_s(self) -> float:
        return sum(s.latency_s for s in self.samples)
