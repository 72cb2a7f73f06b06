"""One cell of the benchmark suite (``benchmarks/suite.py``): one entry on one task with
one seed, searched under the call cap and tested on the held-out items.

What a cell does depends on its entry's kind:

- ``baseline``: a fixed prompt (``benchmarks/baselines.py``'s ``BASELINES``), no search.
- ``search``: ``promptopt.search()`` with the entry's policy from zero-shot CoT under
  ``Budget(max_calls=cap)``; its winner is tested.
- ``native``: the entry's DSPy optimizer (``dspy-mipro``, ``dspy-gepa``) runs inside a
  promptopt search with the whole cap for DSPy (``dspy_share`` 1.0 by default); the
  program DSPy compiled is tested by ``dspy.Evaluate`` in DSPy's own format
  (:func:`native_test`), what a DSPy user deploys. Its calls to find are DSPy's requests
  (its reflections included). Needs the dspy venv.

Every cell's test keeps per-item scores (``test.scores``): the suite's paired tests need
them. Calls are split: ``task`` (the task model's requests in the search, cache hits
included: what the cap counts, less the proposer's part), ``proposer`` (the proposer's,
counted apart; for ``dspy-gepa`` its reflections), ``judge`` (an LLM judge's), ``select``
(the full-dev selection after the search) and ``test``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.baselines import BASELINES
from promptopt.backends.base import Backend
from promptopt.types import Completion, GenerationRequest

START = "zero-shot CoT"  # every search starts from this baseline's prompt


@dataclass(frozen=True)
class Entry:
    """A column of the suite: how its cells find their prompt."""

    name: str
    kind: str  # baseline | search | native
    policy: str | None = None  # search: the policy; native: the DSPy policy whose pick is tested
    baseline: str | None = None  # baseline: the key of BASELINES
    space: bool = False  # the policy searches a space (--space, the task's own, the fake's)
    options: tuple[tuple[str, Any], ...] = ()  # the policy's own options, as (name, value)

    @property
    def needs_dspy(self) -> bool:
        return self.kind == "native" or (self.policy or "").startswith("dspy-")


ENTRIES: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("zero-shot-cot", "baseline", baseline=START),
        Entry("plain", "baseline", baseline="plain"),
        Entry("8-shot-cot", "baseline", baseline="8-shot CoT"),
        Entry("3-shot-cot", "baseline", baseline="3-shot CoT"),
        Entry("bootstrap-random", "search", policy="bootstrap-random"),
        Entry("tpe", "search", policy="tpe", space=True),
        Entry("random", "search", policy="random", space=True),
        Entry("reinforce", "search", policy="reinforce", space=True),
        Entry("ape", "search", policy="ape"),
        Entry("opro", "search", policy="opro"),
        Entry("reflect", "search", policy="reflect"),
        # every other step swaps in K of the model's own correct worked solutions (Wan et al.)
        Entry("reflect-demos", "search", policy="reflect", options=(("reflect_demos", 4),)),
        Entry("dspy-mipro", "search", policy="dspy-mipro"),
        Entry("dspy-mipro-matched", "search", policy="dspy-mipro-matched"),
        Entry("dspy-gepa", "search", policy="dspy-gepa"),
        Entry("dspy-mipro-native", "native", policy="dspy-mipro"),
        Entry("dspy-gepa-native", "native", policy="dspy-gepa"),
    )
}
# The grid (#21): no search, the Wan et al. baseline, tpe, the reflective policy, DSPy's two.
DEFAULT_ENTRIES = (
    "zero-shot-cot",
    "bootstrap-random",
    "tpe",
    "reflect",
    "dspy-mipro-native",
    "dspy-gepa-native",
)


class CountingBackend(Backend):
    """Counts the requests that pass through it (the proposer's, under the search's cache)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.requests = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.requests += len(requests)
        return self.inner.generate(requests)


def policy_problem(entry: Entry) -> str | None:
    """Why the entry's policy cannot run here (not registered), or None."""
    from promptopt.policies import POLICIES

    if entry.policy is None or entry.policy in POLICIES:
        return None
    return (
        f"policy {entry.policy!r} is not registered in this promptopt (known: {', '.join(sorted(POLICIES))}); "
        f"the {entry.name!r} entry needs it"
    )


def start_prompt(task: Any, name: str, max_tokens: int) -> Any:
    from promptopt.evaluation import make_candidate

    return make_candidate(task, max_tokens=max_tokens, **BASELINES[name])  # type: ignore[arg-type]


def describe_prompt(candidate: Any) -> str:
    parts = [repr(candidate.instruction[:80])]
    if candidate.cot_mode != "none":
        parts.append(f"{candidate.cot_mode} {candidate.cot_trigger[:40]!r}")
    if candidate.demo_ids:
        parts.append(f"{len(candidate.demo_ids)} demos")
    if candidate.samples > 1:
        parts.append(f"{candidate.samples} samples @ {candidate.temperature:g}")
    return ", ".join(parts)


def test_facts(report: Any) -> dict[str, Any]:
    """What a row keeps of a test evaluation (``promptopt.evaluate``'s report): accuracy,
    calls, tokens, per-item scores, and how the outputs look (shares of answers with code,
    an invented output block, no answer: ``benchmarks/baselines.py``'s columns)."""
    from benchmarks.baselines import CODE, OUTPUT_BLOCK

    outputs = [s.raw_output for r in report.results for s in r.samples]
    return {
        "n": report.n, "n_failed": report.n_failed, "accuracy": report.accuracy,
        "ci95": [report.ci_low, report.ci_high], "requests": sum(len(r.samples) for r in report.results),
        "model_calls": report.calls, "cache_hits": report.cache_hits, "tokens_in": report.tokens_in,
        "tokens_out": report.tokens_out, "wall_s": report.wall_s, "run_id": report.run_id,
        "code_answers": sum(1 for o in outputs if CODE.search(o)) / max(1, len(outputs)),
        "output_blocks": sum(1 for o in outputs if OUTPUT_BLOCK.search(o)) / max(1, len(outputs)),
        "no_answer": sum(1 for r in report.results if r.answer is None) / max(1, report.n),
        "scores": {r.example_id: r.score for r in report.results},
    }  # fmt: skip


def test_evaluation(task: Any, candidate: Any, backend: Backend, *, limit: int, db: str, batch_size: int,
                    seed: int) -> dict[str, Any]:  # fmt: skip
    """The held-out evaluation every non-native cell gets, through the cache in ``db``."""
    import promptopt

    report = promptopt.evaluate(task, candidate, backend, split="test", limit=limit, db=db,
                                batch_size=batch_size, seed=seed)  # fmt: skip
    return test_facts(report)


def reflection_counts(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """Proposals and accepted ones, where the policy reports them (``dspy-gepa``'s
    ``gepa``, ``reflect``'s own state: top level or one level down)."""
    for scope in (state, *(v for v in state.values() if isinstance(v, Mapping))):
        if "accepted" in scope and "proposals" in scope:
            accepted, proposals = scope["accepted"], scope["proposals"]
            if isinstance(accepted, list | tuple):
                accepted = len(accepted)
            if isinstance(proposals, list | tuple):
                proposals = len(proposals)
            return {"proposals": proposals, "accepted": accepted}
    return None


def run_search_cell(config: Any, task: Any, backend: Backend, proposer: Backend | None, db: str,
                    trace: list[list[Any]], *, count_proposer: bool = True) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """``promptopt.search()`` of ``config``; the winner and the search facts of the row.
    ``count_proposer``: count the proposer's requests (those that reach it: the search's
    cache is above) with a wrapper; off for the dspy-* policies, whose reflections
    ``dspy-gepa`` counts itself (a wrapper would make the proposer look like another model)."""
    from promptopt.controller import SearchProgress, SearchResult, search

    counting = CountingBackend(proposer if proposer is not None else backend) if count_proposer else None
    at_selection: dict[str, Any] = {}

    def progress(p: SearchProgress) -> None:
        if p.phase == "final" and not at_selection:
            at_selection.update(p.spent)
        if p.best_dev is not None and p.phase in ("search", "final"):
            trace.append([p.spent["calls"], round(p.best_dev, 4), p.phase])

    result = search(config, backend=backend, proposer_backend=counting or proposer, db=db, progress=progress,
                    task=task)  # fmt: skip
    assert isinstance(result, SearchResult)
    spent = result.spent
    state = dict(result.policy_state)
    calls = int(at_selection.get("calls", spent["calls"] - result.final_calls))
    proposer_calls = counting.requests if counting is not None else 0
    proposer_calls += int(state.get("reflection_requests", 0))  # dspy-gepa's reflections, counted by it
    winner_row = next((r for r in result.leaderboard if r.candidate.hash == result.winner.hash), None)
    info = {
        "run_id": result.run_id, "cap": config.budget.max_calls, "calls": calls,
        "proposer_calls": proposer_calls, "task_calls": max(0, calls - proposer_calls),
        "judge_calls": int((result.judge or {}).get("calls", 0) or 0), "selection_calls": result.final_calls,
        "cache_hits": result.cache_hits, "model_calls": result.model_calls,
        "tokens": int(spent["tokens_in"] + spent["tokens_out"]), "wall_s": result.wall_s,
        "winner_dev": winner_row.mean if winner_row else None, "winner_origin": winner_row.origin if winner_row else None,
        "candidates": len(result.leaderboard), "stopped": result.stopped_reason,
        "estimate_calls": result.estimate.get("search_calls"), "reflection": reflection_counts(state),
        "policy_state": {k: v for k, v in state.items() if k not in ("dspy_best_state", "dspy_programs")},
        "trace": trace,
    }  # fmt: skip
    return result, info


def native_test(task: Any, base: Any, program_state: Mapping[str, Any], backend: Backend, *,
                examples: Sequence[Any], db: str, threads: int = 1) -> dict[str, Any]:  # fmt: skip
    """A DSPy program (``program_state`` as DSPy dumped it, over ``base``'s program) scored
    on ``examples`` by ``dspy.Evaluate`` in DSPy's own format, through ``backend`` and the
    response cache in ``db``: what a DSPy user who deploys it gets. The test facts, with
    per-item scores (an item without an answer scores 0, as DSPy does)."""
    import contextlib
    import sys

    from promptopt.backends.coalesce import CoalescingBackend
    from promptopt.dspy_interop import answer_metric, dspy_example, import_dspy, program_from_candidate
    from promptopt.dspy_interop.lm import PromptOptLM
    from promptopt.session import ModelStack
    from promptopt.stats import mean_interval
    from promptopt.store import Store

    dspy = import_dspy()
    program = program_from_candidate(base, task, describe_answer=True)  # as the search's student
    program.load_state(program_state)
    metric = answer_metric(task, {e.id: e for e in examples})
    started = time.perf_counter()
    with Store(db) as store:
        caching = ModelStack(backend, store).backend
        inner = CoalescingBackend(caching) if threads > 1 else caching
        lm = PromptOptLM(inner, max_tokens=base.max_tokens)  # the search's limit, as for every entry
        evaluator = dspy.Evaluate(devset=[dspy_example(e, task) for e in examples], metric=metric,
                                  num_threads=threads, display_progress=True,
                                  max_errors=len(examples) + 1, failure_score=0.0)  # fmt: skip
        with dspy.context(lm=lm), contextlib.redirect_stdout(sys.stderr):  # stdout: the driver's table
            outcome = evaluator(program)
        inner.close()
    usage = lm.usage
    scores = {ex.promptopt_id: float(score) for ex, _, score in outcome.results}
    failed = sum(1 for _, prediction, _ in outcome.results if getattr(prediction, "answer", None) is None)
    mean, low, high = mean_interval(list(scores.values()))
    return {
        "n": len(scores), "n_failed": failed, "accuracy": mean, "ci95": [low, high],
        "dspy_score": float(outcome.score), "requests": usage.requests,
        "model_calls": usage.requests - usage.cache_hits, "cache_hits": usage.cache_hits,
        "tokens_in": usage.tokens_in, "tokens_out": usage.tokens_out, "wall_s": time.perf_counter() - started,
        "run_id": None, "scores": scores,
    }  # fmt: skip


def native_search_facts(info: dict[str, Any]) -> dict[str, Any]:
    """A native cell's calls to find: DSPy's own requests (and its reflections), not the
    race promptopt ran after it."""
    state = info["policy_state"]
    dspy_calls = int(state.get("dspy_requests", 0))
    reflections = int(state.get("reflection_requests", 0))
    tokens = sum(int(state.get(k, 0)) for k in ("dspy_tokens_in", "dspy_tokens_out", "reflection_tokens_in",
                                                  "reflection_tokens_out"))  # fmt: skip
    return {**info, "calls": dspy_calls + reflections, "task_calls": dspy_calls, "proposer_calls": reflections,
            "selection_calls": 0, "tokens": tokens, "wall_s": state.get("dspy_wall_s"),
            "race_calls": info["calls"]}  # fmt: skip


def with_dspy_share(config: Any, share: float) -> Any:
    return dataclasses.replace(config, policy_options={**config.policy_options, "dspy_share": share})


__all__ = [
    "DEFAULT_ENTRIES", "ENTRIES", "START", "CountingBackend", "Entry", "describe_prompt", "native_search_facts",
    "native_test", "policy_problem", "reflection_counts", "run_search_cell", "start_prompt", "test_evaluation",
    "test_facts", "with_dspy_share",
]  # fmt: skip
