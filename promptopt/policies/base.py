"""The policy interface and its registry.

A policy proposes; the controller decides where and how far candidates are evaluated
(racing on dev) and tells the policy how they stood. Contract:

- ``ask()`` returns the next pool of candidates to race, parents included when they
  should compete again; an empty list means the policy is done.
- ``tell(standings)`` receives the standing of every candidate of that pool.
- A policy is deterministic given its seed and the standings it is told, so a resumed
  search makes the same choices.
"""

from __future__ import annotations

import dataclasses
import difflib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from promptopt.errors import ConfigError
from promptopt.proposers import Proposer
from promptopt.racing import Standing, rank
from promptopt.types import Candidate


@dataclass(frozen=True)
class Proposal:
    candidate: Candidate
    origin: str  # "seed", "ape", "ape-resample", "opro", ...
    parent: str | None = None


@dataclass(frozen=True)
class PolicySettings:
    """How much a policy proposes. Presets live in :mod:`promptopt.controller`."""

    n_proposals: int = 8
    rounds: int = 2
    paraphrases: int = 3
    top_k: int = 2
    seed: int = 0


class Policy(ABC):
    name: ClassVar[str]

    def __init__(self, base: Candidate, proposer: Proposer, settings: PolicySettings) -> None:
        self.base = base
        self.proposer = proposer
        self.settings = settings
        self.standings: dict[str, Standing] = {}
        self.candidates: dict[str, Candidate] = {base.hash: base}

    @abstractmethod
    def ask(self) -> list[Proposal]: ...

    def tell(self, standings: Mapping[str, Standing]) -> None:
        for candidate, standing in standings.items():
            previous = self.standings.get(candidate)
            if previous is None or standing.n >= previous.n:
                self.standings[candidate] = standing

    def should_prune(self, standing: Standing) -> bool:
        """Called after every racing stage; True drops the candidate at once (on top of
        successive halving). Policies with their own pruner (Optuna) override this."""
        return False

    def with_text(self, text: str) -> Candidate:
        """The base candidate with the searched slot replaced by ``text``."""
        slot = self.proposer.slot
        changes: dict[str, object] = {slot: text}
        if slot == "cot_trigger" and self.base.cot_mode == "none":
            changes["cot_mode"] = "zero_shot"
        candidate = dataclasses.replace(self.base, **changes)  # type: ignore[arg-type]
        self.candidates[candidate.hash] = candidate
        return candidate

    def text_of(self, candidate: Candidate) -> str:
        return str(getattr(candidate, self.proposer.slot))

    def best(self, k: int) -> list[Candidate]:
        return [self.candidates[s.candidate] for s in rank(list(self.standings.values()))[:k]]


POLICIES: dict[str, type[Policy]] = {}


def register_policy(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: make a policy choosable by name (``--policy NAME``)."""

    def decorate(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        POLICIES[name] = cls
        return cls

    return decorate


def get_policy(name: str) -> type[Policy]:
    try:
        return POLICIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(POLICIES), n=2)
        hint = (
            f"did you mean {' or '.join(close)}?" if close else f"choose one of {', '.join(sorted(POLICIES))}"
        )
        raise ConfigError(f"unknown policy {name!r}", hint=hint) from None
