"""Outputs that hold no answer, and outputs cut off at the token limit, counted on their own.

Both are scored as wrong answers (the model did answer the request), but a score hides
them: on a chain-of-thought prompt, "24 of 50 outputs hold no answer" says the prompt or
the extractor is at fault, not the model's reasoning. Every place that shows a score
shows these two counts beside it, and flags a candidate where either passes
:data:`FLAG_SHARE` of its outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.types import EvalResult

FLAG_SHARE = 0.10


@dataclass(frozen=True)
class AnswerCounts:
    """Over ``n`` evaluated examples: ``no_answer`` scored with no answer found,
    ``truncated`` with an output cut off at the token limit (the two may overlap)."""

    n: int
    no_answer: int
    truncated: int

    @property
    def flagged(self) -> bool:
        return bool(self.n) and max(self.no_answer, self.truncated) > FLAG_SHARE * self.n

    def to_dict(self) -> dict[str, int | bool]:
        return {"no_answer": self.no_answer, "truncated": self.truncated, "flagged": self.flagged}

    def text(self) -> str:
        """``3 no answer found, 1 cut off at the token limit``."""
        return f"{self.no_answer} no answer found, {self.truncated} cut off at the token limit"

    def warning(self, what: str = "outputs") -> str | None:
        """A one-line warning when flagged, else None."""
        if not self.flagged:
            return None
        parts = []
        if self.no_answer > FLAG_SHARE * self.n:
            parts.append(f"{self.no_answer / self.n:.0%} of {what} hold no answer found")
        if self.truncated > FLAG_SHARE * self.n:
            parts.append(f"{self.truncated / self.n:.0%} were cut off at the token limit")
        return "; ".join(parts) + " (more than 10%): the prompt, the extractor or max tokens is at fault"


def count_answers(results: Iterable[EvalResult]) -> AnswerCounts:
    results = list(results)
    return AnswerCounts(
        n=len(results),
        no_answer=sum(1 for r in results if r.no_answer),
        truncated=sum(1 for r in results if r.truncated),
    )


def answer_distribution(results: Iterable[EvalResult], top: int = 8) -> list[tuple[str, int]]:
    """The model's answers, most common first (``None``: no answer found); failures left out."""
    counts = Counter("(no answer)" if r.answer is None else r.answer for r in results if r.score is not None)
    return counts.most_common(top)


def gold_distribution(results: Iterable[EvalResult], top: int = 8) -> list[tuple[str, int]]:
    """The gold answers of the same scored results, most common first: beside the model's
    answers, it shows a bias toward one answer (and its correction, issue #28)."""
    counts = Counter(r.gold for r in results if r.score is not None)
    return counts.most_common(top)


def raw_examples(results: Sequence[EvalResult], *, limit: int = 3) -> list[tuple[str, str, str]]:
    """A few raw outputs that held no answer or were cut off: (example id, why, output)."""
    shown: list[tuple[str, str, str]] = []
    for r in results:
        if len(shown) >= limit:
            break
        if (r.no_answer or r.truncated) and r.samples:
            why = "cut off at the token limit" if r.truncated else "no answer found"
            shown.append((r.example_id, why, r.samples[0].raw_output))
    return shown


def winner_dev_test(result: Any) -> dict[str, Any]:
    """A search winner's dev and test scores side by side (with the dev size), and
    whether its test score fell below the starting prompt's: a dev score picked as the
    best of many is optimistic, and on a small dev set it can hide a worse prompt."""
    row = next((r for r in result.leaderboard if r.candidate.hash == result.winner.hash), None)
    test = result.test
    winner_test, start_test = test["winner"]["accuracy"], test["baseline"]["accuracy"]
    return {
        "dev": {"accuracy": row.mean, "n": row.n} if row is not None else None,
        "test": {"accuracy": winner_test, "n": test["n"]},
        "starting_prompt_test": start_test,
        "test_below_starting_prompt": winner_test < start_test,
    }
