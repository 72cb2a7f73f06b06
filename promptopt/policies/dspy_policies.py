"""``dspy-mipro``, ``dspy-copro``, ``dspy-bootstrap``: DSPy's optimizers as promptopt policies.

Design — why DSPy proposes and the controller scores. DSPy's optimizers drive their own
loop: they bootstrap demos, write instructions and evaluate programs with DSPy's own
prompt format (its ChatAdapter), which is not promptopt's rendering of a candidate. If
those DSPy scores were written to the store under a candidate's hash, the leaderboard
would claim that the promptopt prompt scored them, and ``promptopt.load``/export would
not reproduce them. So on its single ``ask()`` the policy runs the DSPy optimizer to the
end — every LM call through :class:`~promptopt.dspy_interop.lm.PromptOptLM` over the
run's task backend, so the cache, budget, retries, pool and store apply and the calls
count against the search budget — records every program DSPy evaluated (a DSPy
callback on ``dspy.Evaluate``), converts each to a candidate (instruction and demos, the
rest from the starting prompt; :mod:`promptopt.dspy_interop.programs`) and proposes them
all. The controller then races them on dev like any other pool, so every program DSPy
evaluated appears on the leaderboard with a score measured the same way as every other
policy's, and DSPy's own scores (its format, its minibatches) are kept beside them in
the run summary (``policy_state.dspy_programs``).

DSPy's valset is promptopt's dev set (the first ``dev_size`` items) and its trainset the
demo pool, so both select on dev and never see test. When the search has a call limit,
DSPy may spend at most ``dspy_share`` (default half) of it, so that the race of what it
found still fits; when its share (or the budget) runs out, DSPy stops and the programs
evaluated so far are proposed. DSPy runs single-threaded (``num_threads=1``): promptopt
backends batch on their own, and one thread keeps a run reproducible from its seed.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from promptopt.budget import Budget, BudgetedBackend
from promptopt.errors import BudgetExceeded, ConfigError, PromptOptError
from promptopt.policies.base import Policy, PolicySettings, Proposal, register_policy
from promptopt.proposers import Proposer
from promptopt.types import Candidate, Example

logger = logging.getLogger(__name__)
DEFAULT_DEV_SIZE = 30  # the light preset's, when the settings do not say


@dataclass(frozen=True)
class EvaluatedProgram:
    """One evaluation DSPy made: the program as a candidate, DSPy's score (0-100, in its
    own format) and on how many examples."""

    candidate: Candidate
    dspy_score: float | None
    n: int
    error: str | None = None


class DSPyPolicy(Policy):
    """Runs one DSPy optimizer on the task, then proposes every program it evaluated."""

    optimizer: ClassVar[str] = ""
    dspy_share: float = 0.5

    def __init__(self, base: Candidate, proposer: Proposer, settings: PolicySettings) -> None:
        super().__init__(base, proposer, settings)
        if settings.task is None or settings.backend is None:
            raise ConfigError(f"policy {self.name!r} needs the task and its model backend")
        from promptopt.dspy_interop import import_dspy

        self.dspy = import_dspy()  # fails early, with the install hint, when dspy is missing
        self.task = settings.task
        self.backend = settings.backend
        self.evaluated: list[EvaluatedProgram] = []
        self.dspy_choice: Candidate | None = None
        self.stopped: str | None = None
        self.lm: Any = None
        self._ran = False

    # -- what each optimizer does
    def compile(self, student: Any, trainset: list[Any], valset: list[Any], metric: Any) -> Any:
        raise NotImplementedError

    # -- data and metric
    def dev_size(self) -> int:
        return int(getattr(self.settings, "dev_size", None) or DEFAULT_DEV_SIZE)

    def datasets(self) -> tuple[list[Any], list[Any], dict[str, Example]]:
        from promptopt.dspy_interop import dspy_example

        train = self.task.examples("train")
        dev = self.task.examples("dev")[: self.dev_size()]
        by_id = {e.id: e for e in [*train, *dev]}
        return [dspy_example(e, self.task) for e in train], [dspy_example(e, self.task) for e in dev], by_id

    def metric(self, by_id: Mapping[str, Example]) -> Any:
        task = self.task

        def score(example: Any, prediction: Any, trace: Any = None, *args: Any, **kwargs: Any) -> float:
            item = by_id[example.promptopt_id]
            answer = getattr(prediction, "answer", None)
            return task.score(task.extract(str(answer)) if answer is not None else None, item)

        return score

    def dspy_backend(self) -> Any:
        """The task backend, capped at ``dspy_share`` of what is left of a call limit."""
        backend = self.backend
        if isinstance(backend, BudgetedBackend) and backend.budget.max_calls is not None:
            left = max(0, backend.budget.max_calls - backend.spend.calls)
            return BudgetedBackend(backend, Budget(max_calls=max(1, int(left * self.dspy_share))))
        return backend

    # -- recording what DSPy evaluates
    def recorder(self) -> Any:
        from dspy.utils.callback import BaseCallback

        from promptopt.dspy_interop import candidate_from_state

        policy = self
        pending: dict[str, tuple[Candidate, int]] = {}

        class Recorder(BaseCallback):
            def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
                program = inputs.get("program")
                devset = inputs.get("devset") or getattr(instance, "devset", None) or []
                if program is None:
                    return
                candidate = candidate_from_state(
                    program.dump_state(), policy.task, base=policy.base, where="DSPy program", strict=False
                )
                pending[call_id] = (candidate, len(devset))

            def on_evaluate_end(
                self, call_id: str, outputs: Any, exception: BaseException | None = None
            ) -> None:
                if call_id not in pending:
                    return
                candidate, n = pending.pop(call_id)
                score = getattr(outputs, "score", None) if exception is None else None
                error = None if exception is None else f"{type(exception).__name__}: {exception}"[:300]
                policy.evaluated.append(EvaluatedProgram(candidate, score, n, error))

        return Recorder()

    def run(self) -> None:
        from promptopt.dspy_interop import candidate_from_state, program_from_candidate
        from promptopt.dspy_interop.lm import PromptOptLM

        dspy = self.dspy
        trainset, valset, by_id = self.datasets()
        self.lm = PromptOptLM(self.dspy_backend())
        student = program_from_candidate(self.base, self.task)
        # DSPy's optimizers print their progress; stdout belongs to promptopt (--json).
        with dspy.context(lm=self.lm, callbacks=[self.recorder()]), contextlib.redirect_stdout(sys.stderr):
            try:
                compiled = self.compile(student, trainset, valset, self.metric(by_id))
            except Exception as exc:
                # DSPy wraps or swallows per-example errors; the adapter knows if the budget ended it.
                if self.lm.budget_exceeded is not None or isinstance(exc, BudgetExceeded):
                    self.stopped = (self.lm.budget_exceeded or exc).message  # type: ignore[union-attr]
                    return
                # Another failure inside DSPy (e.g. the model broke DSPy's output format in
                # a proposal step): keep what was evaluated, say so; nothing evaluated is an error.
                reason = f"{self.optimizer} (DSPy) failed: {type(exc).__name__}: {exc}"[:500]
                if not self.evaluated:
                    raise PromptOptError(reason, hint="the run summary has no DSPy program to race") from exc
                logger.warning("%s; racing the %d programs it evaluated", reason, len(self.evaluated))
                self.stopped = reason
                return
        if self.lm.budget_exceeded is not None:  # DSPy went on without the failed calls
            self.stopped = self.lm.budget_exceeded.message
        self.dspy_choice = candidate_from_state(
            compiled.dump_state(), self.task, base=self.base, strict=False
        )

    # -- the ask/tell loop
    def ask(self) -> list[Proposal]:
        if self._ran:
            return []
        self._ran = True
        self.run()
        proposals = [Proposal(self.base, "seed")]
        seen = {self.base.hash}
        ordered = ([self.dspy_choice] if self.dspy_choice is not None else []) + [
            e.candidate for e in self.evaluated
        ]
        for candidate in ordered:
            self.candidates[candidate.hash] = candidate
            if candidate.hash not in seen:
                seen.add(candidate.hash)
                best = self.dspy_choice is not None and candidate.hash == self.dspy_choice.hash
                proposals.append(Proposal(candidate, f"{self.name}-best" if best else self.name))
        return proposals

    def describe(self) -> dict[str, Any]:
        usage = self.lm.usage if self.lm is not None else None
        return {
            "optimizer": self.optimizer,
            "dspy_version": getattr(self.dspy, "__version__", None),
            "dspy_best": self.dspy_choice.hash if self.dspy_choice is not None else None,
            "dspy_programs": [
                {"candidate": e.candidate.hash, "dspy_score": e.dspy_score, "n": e.n, "error": e.error}
                for e in self.evaluated
            ],
            "dspy_calls": usage.calls if usage else 0,
            "dspy_requests": usage.requests if usage else 0,
            "stopped": self.stopped,
        }


@register_policy("dspy-bootstrap")
class DSPyBootstrapPolicy(DSPyPolicy):
    """BootstrapFewShotWithRandomSearch: ``n_proposals`` random demo sets (plus DSPy's
    zero-shot, labeled-only and unshuffled baselines), each scored on dev."""

    optimizer = "BootstrapFewShotWithRandomSearch"
    max_bootstrapped_demos = 4
    max_labeled_demos = 4

    def compile(self, student: Any, trainset: list[Any], valset: list[Any], metric: Any) -> Any:
        optimizer = self.dspy.BootstrapFewShotWithRandomSearch(
            metric=metric, max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos, num_candidate_programs=max(1, self.settings.n_proposals),
            num_threads=1,
        )  # fmt: skip
        return optimizer.compile(student, trainset=trainset, valset=valset)


@register_policy("dspy-copro")
class DSPyCOPROPolicy(DSPyPolicy):
    """COPRO: ``n_proposals`` instructions (breadth) refined for ``rounds`` + 1 steps
    (depth), each scored on dev (COPRO's "trainset" is the set it selects on)."""

    optimizer = "COPRO"

    def compile(self, student: Any, trainset: list[Any], valset: list[Any], metric: Any) -> Any:
        optimizer = self.dspy.COPRO(
            metric=metric, breadth=max(2, self.settings.n_proposals), depth=max(1, self.settings.rounds + 1),
            init_temperature=1.4,
        )  # fmt: skip
        return optimizer.compile(
            student, trainset=valset, eval_kwargs={"num_threads": 1, "display_progress": False}
        )


@register_policy("dspy-mipro")
class DSPyMIPROPolicy(DSPyPolicy):
    """MIPROv2 with ``auto="light"`` (DSPy's own sizing of candidates and trials); the
    search's call limit caps it (see the module docstring)."""

    optimizer = "MIPROv2"
    auto: str | None = "light"

    def compile(self, student: Any, trainset: list[Any], valset: list[Any], metric: Any) -> Any:
        optimizer = self.dspy.MIPROv2(
            metric=metric, auto=self.auto, num_threads=1, seed=self.settings.seed, verbose=False,
            track_stats=False, max_bootstrapped_demos=4, max_labeled_demos=4,
        )  # fmt: skip
        return optimizer.compile(student, trainset=trainset, valset=valset)


def with_options(cls: type[DSPyPolicy], **options: Any) -> type[DSPyPolicy]:
    """A variant of a DSPy policy with other class options (``dspy_share``, ``auto``,
    ``max_bootstrapped_demos``...), e.g. for a benchmark: register it under a new name
    with :func:`~promptopt.policies.register_policy`."""
    unknown = [k for k in options if not hasattr(cls, k)]
    if unknown:
        raise ConfigError(f"{cls.__name__} has no option(s) {', '.join(unknown)}")
    return type(f"{cls.__name__}Variant", (cls,), dict(options))


__all__ = [
    "DSPyBootstrapPolicy",
    "DSPyCOPROPolicy",
    "DSPyMIPROPolicy",
    "DSPyPolicy",
    "EvaluatedProgram",
    "with_options",
]
