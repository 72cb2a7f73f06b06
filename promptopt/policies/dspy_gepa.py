"""``dspy-gepa``: DSPy's GEPA (reflective prompt evolution) as a promptopt policy.

It runs like the other dspy-* policies (:mod:`promptopt.policies.dspy_policies`): on its
one ``ask()`` ``dspy.GEPA`` optimizes the task's program to the end, every call through
:class:`~promptopt.dspy_interop.lm.PromptOptLM` over the run's backend (cache, budget,
retries, store), and the programs it evaluated are proposed to the controller's race.
What differs:

- **The metric returns feedback.** GEPA shows a reflection model the failed examples with
  the metric's feedback text; :func:`~promptopt.dspy_interop.feedback_metric` turns the
  task metric's :class:`~promptopt.metrics.MetricResult` (score, feedback) into GEPA's
  ``dspy.Prediction(score=..., feedback=...)``.
- **The reflection model is the proposer** (``--proposer-model``, default the task
  model). When it is the task model, its calls count in DSPy's share of the call limit
  like the task's; another model's calls are capped apart (at most two per iteration,
  DSPy's JSON retry included) and reported apart (``reflection_*`` in ``policy_state``).
- **GEPA's budget is derived from the call limit.** GEPA counts "metric calls" (one per
  example it runs); it checks them between iterations, so its last iteration can run past
  them by two minibatches and one full-valset evaluation. ``max_metric_calls`` is what
  DSPy's share pays for after that overshoot and (when the proposer is the task model)
  one reflection per two minibatches; the share itself stays a hard cap. Without a call
  limit, GEPA's own ``auto="light"``.
- **Only GEPA's candidates are raced.** GEPA evaluates each child on a minibatch of three
  training items and keeps it only if it beats its parent there; the kept ones are scored
  on the whole valset (promptopt's dev). Those full-valset programs are proposed; the
  rejected children count as proposals (``proposals`` / ``accepted`` in ``policy_state``).
- No merge (``use_merge=False``): the program has one predictor, so a merge of two
  candidates can only take one parent's instruction whole.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from promptopt.budget import Budget, BudgetedBackend
from promptopt.policies.base import register_policy
from promptopt.policies.dspy_policies import CALLS_PER_PREDICTION, DSPyCost, DSPyPolicy

if TYPE_CHECKING:
    from promptopt.search_config import SearchConfig
    from promptopt.tasks import Task

MINIBATCH = 3  # GEPA's reflection_minibatch_size (its default)
LIGHT_CANDIDATES = 6  # GEPA's auto="light" (dspy's AUTO_RUN_SETTINGS)


def light_metric_calls(dev: int) -> int:
    """What ``auto="light"`` gives one predictor on ``dev`` valset examples (dspy.GEPA's
    ``auto_budget``: the default program, 5 bootstrap tries per candidate, trials of 35
    and periodic full evaluations)."""
    trials = int(max(2 * 2 * math.log2(LIGHT_CANDIDATES), 1.5 * LIGHT_CANDIDATES))
    fulls = (trials + 1) // 5 + 1 + (1 if trials < 5 else 0)
    return dev + LIGHT_CANDIDATES * 5 + trials * 35 + fulls * dev


def metric_calls_for(limit: int | None, dev: int, shared: bool) -> int:
    """``max_metric_calls`` for DSPy's share ``limit`` of a call limit: the share less one
    iteration's overshoot (two minibatches and a full valset), less one reflection per
    two minibatches when the reflections share the limit (``shared``); at least one."""
    if limit is None:
        return light_metric_calls(dev)
    room = limit - (2 * MINIBATCH + dev)
    if shared:
        room = room * 2 * MINIBATCH // (2 * MINIBATCH + 1)
    return max(1, room)


@register_policy("dspy-gepa")
class DSPyGEPAPolicy(DSPyPolicy):
    """dspy.GEPA: reflective instruction evolution from the metric's feedback, with a
    per-item Pareto frontier; its candidates are raced on dev (see the module docstring)."""

    optimizer = "GEPA"
    metric_calls: int | None = None  # GEPA's max_metric_calls, once compiled

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reflection_lm: Any = None
        self.reflection_limit: int | None = None
        self.proposals = 0
        self.accepted = 0

    def shared_proposer(self) -> bool:
        """Whether the reflection model is the task model (its calls in DSPy's share)."""
        return self.proposer.backend is self.backend

    def metric(self, by_id: Any) -> Any:
        from promptopt.dspy_interop import feedback_metric

        return feedback_metric(self.task, by_id)

    @staticmethod
    def reflections(metric_calls: int) -> int:
        """The most reflection calls GEPA makes in ``metric_calls`` (one per iteration
        that shows failures; each such iteration runs two minibatches), and its last."""
        return metric_calls // (2 * MINIBATCH) + 1

    @classmethod
    def cost(cls, n_proposals: int, rounds: int, dev: int, train: int, limit: int | None) -> DSPyCost:
        # Task predictions: the metric calls plus the last iteration's overshoot; the
        # reflections (at most two calls each, as every prediction is counted); the
        # programs raced: the seed and every child kept (one per reflection at most).
        calls = metric_calls_for(limit, dev, shared=True)
        reflections = cls.reflections(calls)
        return DSPyCost(predictions=calls + 2 * MINIBATCH + dev + reflections, programs=1 + reflections)

    @classmethod
    def estimate(cls, config: SearchConfig, task: Task) -> dict[str, Any]:
        """As for every dspy-* policy; when the reflection model is another model its
        calls are capped apart (:meth:`reflection_cap`), so they are added on top."""
        plan = super().estimate(config, task)
        if config.proposer_model and config.proposer_model != config.model:
            from promptopt.policies.dspy_policies import dspy_share_of

            dev = min(config.dev_size, len(task.examples("dev")))
            limit = dspy_share_of(config.budget.max_calls, cls.share(cls.options_of(config).dspy_share))
            extra = cls.reflection_cap(metric_calls_for(limit, dev, shared=False))
            plan = {**plan, "dspy_calls": plan["dspy_calls"] + extra, "search_calls": plan["search_calls"] + extra,
                    "reflection_calls": extra}  # fmt: skip
        return plan

    @classmethod
    def reflection_cap(cls, metric_calls: int) -> int:
        return CALLS_PER_PREDICTION * cls.reflections(metric_calls)

    def compile(self, student: Any, trainset: list[Any], valset: list[Any], metric: Any) -> Any:
        from promptopt.dspy_interop.lm import PromptOptLM

        shared = self.shared_proposer()
        self.metric_calls = metric_calls_for(self.dspy_limit, len(valset), shared)
        if shared:  # the task backend DSPy runs on: capped at DSPy's share
            reflection_backend = self.lm.backend
        else:
            self.reflection_limit = self.reflection_cap(self.metric_calls)
            reflection_backend = BudgetedBackend(
                self.proposer.backend, Budget(max_calls=self.reflection_limit)
            )
        self.reflection_lm = PromptOptLM(
            reflection_backend, temperature=self.proposer.temperature, max_tokens=1024
        )
        optimizer = self.dspy.GEPA(
            metric=metric, max_metric_calls=self.metric_calls, reflection_lm=self.reflection_lm,
            reflection_minibatch_size=MINIBATCH, use_merge=False, num_threads=self.threads,
            seed=self.settings.seed, track_stats=False,
        )  # fmt: skip
        return optimizer.compile(student, trainset=trainset, valset=valset)

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.keep_full_evaluations()

    def keep_full_evaluations(self) -> None:
        """Count the proposals (children GEPA evaluated) and the accepted ones (scored on
        the whole valset), and keep only the latter to race."""
        valset = self.dev_size()
        seen = {e.candidate.hash for e in self.evaluated}
        full = [e for e in self.evaluated if e.n >= min(valset, len(self.task.examples("dev")))]
        full_hashes = {e.candidate.hash for e in full}
        self.proposals = len(seen - {self.base.hash})
        self.accepted = len(full_hashes - {self.base.hash})
        if full:
            self.evaluated = full

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        usage = self.reflection_lm.usage if self.reflection_lm is not None else None
        data["gepa"] = {
            "max_metric_calls": self.metric_calls,
            "minibatch": MINIBATCH,
            "shared_proposer": self.shared_proposer(),
            "reflection_limit": self.reflection_limit,
            "proposals": self.proposals,
            "accepted": self.accepted,
        }
        data.update(
            reflection_calls=usage.calls if usage else 0,
            reflection_requests=usage.requests if usage else 0,
            reflection_tokens_in=usage.tokens_in if usage else 0,
            reflection_tokens_out=usage.tokens_out if usage else 0,
        )
        return data


__all__ = ["DSPyGEPAPolicy", "light_metric_calls", "metric_calls_for"]
