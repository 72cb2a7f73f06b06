"""What a search gives back: :class:`SearchResult` (the winner, how it was chosen and what
it cost), its leaderboard rows, and the :class:`SearchProgress` reports sent while it runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptopt.answer_counts import AnswerCounts, winner_dev_test
from promptopt.types import Candidate


@dataclass(frozen=True)
class LeaderboardRow:
    candidate: Candidate
    origin: str
    mean: float
    ci_low: float
    ci_high: float
    n: int
    tokens_per_example: float
    pareto: bool = False  # on the front of dev accuracy against tokens per example
    counts: AnswerCounts | None = None  # no answer found / cut off, on dev


@dataclass(frozen=True)
class SearchResult:
    """The outcome of a search: the winner, how it was chosen, and what it cost."""

    run_id: str
    winner: Candidate
    baseline: Candidate
    leaderboard: tuple[LeaderboardRow, ...]
    test: Mapping[str, Any]
    significant: bool
    spent: Mapping[str, Any]
    final_calls: int
    model_calls: int
    cache_hits: int
    estimate: Mapping[str, Any]
    stopped_reason: str | None
    wall_s: float
    policy_state: Mapping[str, Any] = field(default_factory=dict)
    faults: Mapping[str, int] = field(default_factory=dict)
    constant_baseline: Mapping[str, Any] | None = None  # always the best single answer, dev and test
    metric: str = "exact_match"
    judge: Mapping[str, Any] = field(default_factory=dict)  # the judge's own calls (llm_judge)
    selection: Mapping[str, Any] = field(default_factory=dict)  # the final pick's paired comparisons

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "metric": self.metric,
            "judge": dict(self.judge),
            "winner": self.winner.hash,
            "winner_prompt": self.winner.to_dict(),
            "baseline": self.baseline.hash,
            "leaderboard": [
                {
                    "candidate": r.candidate.hash,
                    "origin": r.origin,
                    "dev": r.mean,
                    "ci95": [r.ci_low, r.ci_high],
                    "n": r.n,
                    "tokens_per_example": r.tokens_per_example,
                    "pareto": r.pareto,
                    **(r.counts.to_dict() if r.counts else {}),
                    "text": r.candidate.instruction,
                }
                for r in self.leaderboard
            ],  # fmt: skip
            "test": dict(self.test),
            "significant": self.significant,
            "spent": dict(self.spent),
            "final_calls": self.final_calls,
            "model_calls": self.model_calls,
            "cache_hits": self.cache_hits,
            "faults": dict(self.faults),
            "estimate": dict(self.estimate),
            "stopped_reason": self.stopped_reason,
            "wall_s": self.wall_s,
            "pareto_front": [r.candidate.hash for r in self.pareto_front],
            "policy_state": dict(self.policy_state),
            "constant_baseline": dict(self.constant_baseline) if self.constant_baseline else None,
            "winner_dev_test": winner_dev_test(self),
            "selection": dict(self.selection),
        }

    @property
    def pareto_front(self) -> list[LeaderboardRow]:
        """Rows no other row beats on both dev accuracy and tokens per example, cheapest first."""
        return sorted((r for r in self.leaderboard if r.pareto), key=lambda r: r.tokens_per_example)


@dataclass(frozen=True)
class SearchProgress:
    phase: str  # "search", "final", "test"
    round: int
    pool: int
    best_dev: float | None
    spent: Mapping[str, Any]
    budget_fraction: float | None
    elapsed_s: float
    pool_stats: Mapping[str, Any] | None = None  # Ray pool: workers, in_flight, throughput_rps, ...
    balanced: bool = False  # best_dev is a balanced accuracy (selection "balanced": the race ranks by it)
