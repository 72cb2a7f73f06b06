"""The leaderboard: every candidate of every run, ranked by its dev score.

The store does the work in the database (:func:`promptopt.store.queries.leaderboard_rows`,
one aggregate query); this module only turns the top ``K`` rows into Wilson intervals,
costs and text.

``show(store, ref)`` gathers everything known about one run or one candidate: the full
rendered prompt, its demos and its per-example results.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptopt.answer_counts import AnswerCounts, answer_distribution, gold_distribution
from promptopt.errors import ConfigError, StoreError
from promptopt.stats import mean_interval_from_sums, wilson_interval
from promptopt.store import RunRecord, Store
from promptopt.store.queries import (
    SPLITS_SHOWN,
    candidate_link,
    candidate_score_row,
    ids_starting_with,
    leaderboard_rows,
    request_rows,
    runs_of_candidate,
)
from promptopt.types import Candidate, EvalResult

if TYPE_CHECKING:
    from promptopt.tasks import Task

__all__ = [
    "CandidateDetails",
    "LeaderboardEntry",
    "RunDetails",
    "SplitScore",
    "best_by_calls",
    "candidate_scores",
    "leaderboard",
    "resolve",
    "show",
]


@dataclass(frozen=True)
class SplitScore:
    """A candidate's score on one split of one run. ``n`` counts scored examples (failures
    excluded, counted in ``n_failed``); ``ci_low``/``ci_high`` is the 95% interval (Wilson's
    for 0/1 scores, Student's t for partial credit)."""

    accuracy: float
    ci_low: float
    ci_high: float
    n: int
    n_failed: int
    # scored examples whose output held no answer / was cut off at the token limit
    n_no_answer: int = 0
    n_truncated: int = 0

    @property
    def counts(self) -> AnswerCounts:
        return AnswerCounts(self.n, self.n_no_answer, self.n_truncated)

    @property
    def n_examples(self) -> int:
        """Examples evaluated, failed ones included (dev evaluations are a prefix of dev)."""
        return self.n + self.n_failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "ci95": [self.ci_low, self.ci_high],
            "n": self.n,
            "n_failed": self.n_failed,
            "n_no_answer": self.n_no_answer,
            "n_truncated": self.n_truncated,
            "flagged": self.counts.flagged,
        }


def _split_score(
    correct: float | None,
    scored: int,
    total: int,
    sumsq: float | None = None,
    partial: int = 0,
    no_answer: int = 0,
    truncated: int = 0,
) -> SplitScore | None:
    """Wilson's interval when every score is 0 or 1; with partial credit, the normal
    interval of a mean (:func:`promptopt.stats.mean_interval_from_sums`)."""
    if not total:
        return None
    successes = float(correct or 0.0)
    accuracy = successes / scored if scored else 0.0
    if partial:
        _, low, high = mean_interval_from_sums(successes, float(sumsq or 0.0), int(scored))
    else:
        low, high = wilson_interval(successes, scored)
    return SplitScore(accuracy, low, high, int(scored), int(total - scored), int(no_answer), int(truncated))


def _row_score(row: Any, split: str) -> SplitScore | None:
    return _split_score(
        row[f"{split}_correct"], row[f"{split}_scored"], row[f"{split}_total"],
        row[f"{split}_sumsq"], int(row[f"{split}_partial"] or 0),
        int(row[f"{split}_no_answer"] or 0), int(row[f"{split}_truncated"] or 0),
    )  # fmt: skip


@dataclass(frozen=True)
class LeaderboardEntry:
    """One candidate in one run. ``cost_per_example`` is ``None`` when no price is known
    for the model (``--prices`` / ``$PROMPTOPT_PRICES``)."""

    rank: int
    run_id: str
    candidate: str
    task: str
    model: str
    kind: str
    policy: str
    origin: str
    dev: SplitScore | None
    test: SplitScore | None
    tokens_in_per_example: float
    tokens_out_per_example: float
    cost_per_example: float | None
    evaluations: int
    run_created_at: datetime
    spec: Candidate = field(repr=False)
    # On the Pareto front of dev accuracy against tokens per example, among the rows
    # returned for the same task and model: no other row is as good for fewer tokens.
    pareto: bool = False

    @property
    def tokens_per_example(self) -> float:
        return self.tokens_in_per_example + self.tokens_out_per_example

    def to_dict(self) -> dict[str, Any]:
        data = {
            "rank": self.rank,
            "run_id": self.run_id,
            "candidate": self.candidate,
            "task": self.task,
            "model": self.model,
            "kind": self.kind,
            "policy": self.policy,
            "origin": self.origin,
            "dev": self.dev.to_dict() if self.dev else None,
            "test": self.test.to_dict() if self.test else None,
            "tokens_per_example": self.tokens_per_example,
            "tokens_in_per_example": self.tokens_in_per_example,
            "tokens_out_per_example": self.tokens_out_per_example,
            "cost_per_example": self.cost_per_example,
            "evaluations": self.evaluations,
            "run_created_at": self.run_created_at.isoformat(),
            "prompt": self.spec.to_dict(),
            "pareto": self.pareto,
        }
        return data


def _policy(run: Any) -> str:
    if run["kind"] != "search":
        return str(run["kind"])
    try:
        config = json.loads(run["config"])
    except (TypeError, ValueError):
        return "search"
    return str(config.get("policy", "search"))


def leaderboard(
    store: Store,
    *,
    task: str | None = None,
    model: str | None = None,
    run: str | None = None,
    top: int | None = 20,
    min_dev_n: int = 0,
    prices: str | Path | None = None,
) -> list[LeaderboardEntry]:
    """Candidates across runs, best dev accuracy first (ties: more dev examples first);
    candidates never scored on dev come last. Filters: ``task`` and ``model`` (exact
    names as stored), ``run`` (a run id), ``min_dev_n`` (at least that many scored dev
    examples). ``top=None`` returns every row. Prices for the cost column come from
    ``prices`` (a YAML file) or ``$PROMPTOPT_PRICES``."""
    from promptopt.budget import load_prices

    if top is not None and top < 1:
        raise ConfigError(f"top must be at least 1, got {top}")
    rows = leaderboard_rows(store, task=task, model=model, run=run, top=top, min_dev_n=min_dev_n)
    if run is not None and not rows:
        store.get_run(run)  # an unknown run id gets the store's "did you mean" message
    price_cache: dict[str, tuple[float, float]] = {}
    entries = []
    for rank, row in enumerate(rows, start=1):
        evaluations = int(row["evaluations"])
        tokens_in = float(row["tokens_in"] or 0) / evaluations
        tokens_out = float(row["tokens_out"] or 0) / evaluations
        if row["model"] not in price_cache:
            price_cache[row["model"]] = load_prices(row["model"], prices)
        price_in, price_out = price_cache[row["model"]]
        cost = (tokens_in * price_in + tokens_out * price_out) / 1e6 if (price_in or price_out) else None
        created = row["created_at"]
        if isinstance(created, datetime) and created.tzinfo is None:
            from datetime import timezone

            created = created.replace(tzinfo=timezone.utc)
        entries.append(
            LeaderboardEntry(
                rank=rank,
                run_id=row["run_id"],
                candidate=row["candidate_hash"],
                task=row["task"],
                model=row["model"],
                kind=row["kind"],
                policy=_policy(row),
                origin=row["origin"],
                dev=_row_score(row, "dev"),
                test=_row_score(row, "test"),
                tokens_in_per_example=tokens_in,
                tokens_out_per_example=tokens_out,
                cost_per_example=cost,
                evaluations=evaluations,
                run_created_at=created,
                spec=Candidate.from_dict(json.loads(row["spec"])),
            )
        )
    return mark_pareto_by_task_model(entries)


def mark_pareto_by_task_model(entries: list[LeaderboardEntry]) -> list[LeaderboardEntry]:
    """Set ``pareto`` on the entries no other entry of the same task and model beats:
    higher-or-equal dev accuracy for fewer-or-equal tokens per example (and better in one).
    Self-consistency buys accuracy with calls; the front shows which trades are worth it."""
    from dataclasses import replace

    from promptopt.stats import pareto_front

    groups: dict[tuple[str, str], list[int]] = {}
    for i, entry in enumerate(entries):
        if entry.dev is not None and entry.dev.n > 0:
            groups.setdefault((entry.task, entry.model), []).append(i)
    front: set[int] = set()
    for members in groups.values():
        points = [(entries[i].tokens_per_example, entries[i].dev.accuracy) for i in members]  # type: ignore[union-attr]
        front.update(members[j] for j in pareto_front(points))
    return [replace(e, pareto=True) if i in front else e for i, e in enumerate(entries)]


def candidate_scores(store: Store, run_id: str, candidate_hash: str) -> dict[str, SplitScore | None]:
    """``{"dev": SplitScore | None, "test": SplitScore | None}`` of one candidate in one run."""
    row = candidate_score_row(store, run_id, candidate_hash)
    if row is None:
        return {split: None for split in SPLITS_SHOWN}
    return {split: _row_score(row, split) for split in SPLITS_SHOWN}


def best_by_calls(store: Store, run_id: str, *, min_n: int = 1) -> list[tuple[int, float]]:
    """The leader's dev accuracy against the model requests spent, for one run:
    ``[(requests, accuracy), ...]``, a point each time it changes. At each point it is the
    highest dev accuracy among the candidates scored so far, each on the dev examples it
    had been scored on then (a candidate counts once it has ``min_n``). It falls when the
    leader's score drops as it meets more examples, so it never stays above every
    candidate's final score: its last point is the best final dev accuracy among the
    candidates with ``min_n`` or more, the top of the leaderboard. (A running maximum of
    partial scores plateaued at a lucky early 4 of 5 = 80% while no candidate ended above
    73%.) Requests are the stored samples of the run's evaluations (dev and test) in the
    order they were recorded."""
    rows = request_rows(store, run_id)
    tally: dict[str, list[float]] = {}
    current: dict[str, float] = {}  # each counted candidate's dev accuracy so far
    spent = 0
    best: float | None = None
    points: list[tuple[int, float]] = []
    for candidate_hash, split, score, requests in rows:
        spent += int(requests)
        if split != "dev" or score is None:
            continue
        correct_n = tally.setdefault(candidate_hash, [0.0, 0.0])
        correct_n[0] += float(score)
        correct_n[1] += 1
        if correct_n[1] >= min_n:
            current[candidate_hash] = correct_n[0] / correct_n[1]
            leader = max(current.values())
            if best is None or leader != best:
                best = leader
                points.append((spent, leader))
    if points and points[-1][0] != spent and best is not None:
        points.append((spent, best))
    return points


# --------------------------------------------------------------------------- show


@dataclass(frozen=True)
class CandidateDetails:
    """Everything about one candidate in one run."""

    run: RunRecord
    candidate: Candidate
    origin: str
    parent: str | None
    scores: dict[str, SplitScore | None]
    messages: tuple[dict[str, str], ...] | None  # rendered with {field} placeholders
    demos: tuple[dict[str, Any], ...]
    results: tuple[EvalResult, ...]
    other_runs: tuple[str, ...]
    render_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.id,
            "task": self.run.task,
            "model": self.run.model,
            "candidate": self.candidate.hash,
            "prompt": self.candidate.to_dict(),
            "origin": self.origin,
            "parent": self.parent,
            "scores": {k: v.to_dict() if v else None for k, v in self.scores.items()},
            "messages": list(self.messages) if self.messages is not None else None,
            "render_error": self.render_error,
            "demos": list(self.demos),
            "results": [_result_dict(r) for r in self.results],
            "answer_distribution": answer_distribution(self.results, top=50),
            "gold_distribution": gold_distribution(self.results, top=50),
            "other_runs": list(self.other_runs),
        }


@dataclass(frozen=True)
class RunDetails:
    """A run with its leaderboard and its best (winning) candidate in detail."""

    run: RunRecord
    entries: tuple[LeaderboardEntry, ...]
    best: CandidateDetails | None

    def to_dict(self) -> dict[str, Any]:
        run = asdict(self.run)
        run["created_at"] = self.run.created_at.isoformat()
        run["finished_at"] = self.run.finished_at.isoformat() if self.run.finished_at else None
        return {
            "run": run,
            "leaderboard": [e.to_dict() for e in self.entries],
            "best": self.best.to_dict() if self.best else None,
        }


def _result_dict(result: EvalResult) -> dict[str, Any]:
    return {
        "example_id": result.example_id,
        "split": result.split,
        "answer": result.answer,
        "gold": result.gold,
        "score": result.score,
        "error": result.error,
        "no_answer": result.no_answer,
        "truncated": result.truncated,
        "feedback": result.feedback,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "outputs": [s.raw_output for s in result.samples],
    }


def resolve(store: Store, ref: str) -> tuple[str, str]:
    """What ``ref`` names: ``("run", run_id)`` or ``("candidate", candidate_hash)``. A
    full id or a unique prefix of a run id or a candidate hash is accepted."""
    ref = ref.strip()
    if not ref:
        raise ConfigError("name a run id or a candidate hash")
    runs, hashes = ids_starting_with(store, ref)
    if ref in runs:
        return "run", ref
    if ref in hashes:
        return "candidate", ref
    matches = [("run", r) for r in runs] + [("candidate", h) for h in hashes]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise StoreError(
            f"no run or candidate {ref!r} in {store.display_url!r}",
            hint="`promptopt runs` lists runs; `promptopt leaderboard` lists candidates",
        )
    shown = ", ".join(f"{kind} {value}" for kind, value in matches[:5])
    raise ConfigError(f"{ref!r} is ambiguous: it starts {shown}; give more characters")


def best_run_for_candidate(store: Store, candidate_hash: str) -> tuple[str, list[str]]:
    """The run where ``candidate_hash`` has the most dev evaluations (then the newest),
    and every run it appears in."""
    run_ids = runs_of_candidate(store, candidate_hash)
    if not run_ids:
        raise StoreError(f"candidate {candidate_hash} is not part of any run in {store.display_url!r}")
    return run_ids[0], run_ids


def run_candidate(run: RunRecord) -> str | None:
    """The candidate a finished run stands for: a search's winner, an eval's prompt."""
    summary = run.summary or {}
    if run.kind == "search":
        winner = summary.get("winner")
        return str(winner) if run.status == "finished" and winner else None
    if run.status != "finished":
        return None
    spec = run.config.get("candidate")
    return Candidate.from_dict(spec).hash if isinstance(spec, Mapping) else summary.get("candidate")


def candidate_details(
    store: Store,
    run_id: str,
    candidate_hash: str,
    *,
    data_dir: str | Path | None = None,
    task: Any = None,
    results: bool = True,
) -> CandidateDetails:
    """One candidate in one run: scores, the full prompt rendered with ``{field}``
    placeholders (needs the task's data for demos), its demos and per-example results."""
    from promptopt.prompt import demo_solution, placeholder_messages

    run = store.get_run(run_id)
    candidate = store.get_candidate(candidate_hash)
    link = candidate_link(store, run_id, candidate_hash)
    if link is None:
        raise StoreError(f"candidate {candidate_hash} is not part of run {run_id}")
    _, all_runs = best_run_for_candidate(store, candidate_hash)
    messages: tuple[dict[str, str], ...] | None = None
    demos: tuple[dict[str, Any], ...] = ()
    render_error = None
    try:
        task_obj = task if task is not None else load_run_task(run, data_dir)
        messages = tuple(placeholder_messages(candidate, task_obj))
        shown = [task_obj.demo(d) for d in candidate.demo_ids]
        demos = tuple({**d.to_dict(), "solution": demo_solution(candidate, d)} for d in shown)
    except Exception as exc:  # the task or its data may be unavailable here; say why
        from promptopt.errors import PromptOptError

        if not isinstance(exc, PromptOptError):
            raise
        render_error = exc.message
    return CandidateDetails(
        run=run,
        candidate=candidate,
        origin=link.origin,
        parent=link.parent_hash,
        scores=candidate_scores(store, run_id, candidate_hash),
        messages=messages,
        demos=demos,
        results=tuple(store.get_evaluations(run_id, candidate_hash)) if results else (),
        other_runs=tuple(r for r in all_runs if r != run_id),
        render_error=render_error,
    )


def show(
    store: Store, ref: str, *, data_dir: str | Path | None = None, top: int = 10
) -> RunDetails | CandidateDetails:
    """Details of a run (its leaderboard and best candidate) or of a candidate (in the
    run where it was evaluated most on dev)."""
    kind, value = resolve(store, ref)
    if kind == "candidate":
        run_id, _ = best_run_for_candidate(store, value)
        return candidate_details(store, run_id, value, data_dir=data_dir)
    run = store.get_run(value)
    entries = tuple(leaderboard(store, run=value, top=top))
    best_hash = run_candidate(run) or (entries[0].candidate if entries else None)
    best = candidate_details(store, value, best_hash, data_dir=data_dir) if best_hash else None
    return RunDetails(run=run, entries=entries, best=best)


def load_run_task(run: RunRecord, data_dir: str | Path | None = None) -> Task:
    """The task a run used: the name or path its config recorded, with ``data_dir`` or the
    run's own data directory."""
    from promptopt.tasks import load_recorded_task

    return load_recorded_task(run.config, run.task, data_dir, run.dataset_hash)
