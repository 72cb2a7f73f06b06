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
DSPy may spend at most ``dspy_share`` (default half; ``--dspy-share``) of it, so that the
race of what it found still fits; when its share (or the budget) runs out, DSPy stops and the programs
evaluated so far are proposed.

DSPy calls its LM one request at a time per thread. By default it runs single-threaded
(``num_threads=1``), which keeps a run reproducible from its seed to the last call but
sends the backend batches of one. With ``dspy_threads`` = N (``--dspy-threads``), DSPy's
evaluations run in N threads and a :class:`~promptopt.backends.coalesce.CoalescingBackend`
joins their concurrent requests into one backend call, so a local model answers them as
one batch. Answers do not depend on the grouping; what does is which examples DSPy gets
answered before a call limit is spent, so a rerun (or resume) may differ at the limit.
Bootstrapping and instruction proposal stay sequential in DSPy whatever N is.

Each policy states what it can spend (:meth:`DSPyPolicy.cost`, from DSPy's own loops), so
``--dry-run`` reports DSPy's calls and the race of what it evaluates instead of APE's
figures. ``dspy-mipro-matched`` is MIPROv2 sized by the search's call limit rather than
by ``auto="light"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.budget import Budget, BudgetedBackend
from promptopt.errors import BudgetExceeded, ConfigError, PromptOptError
from promptopt.policies.base import Policy, PolicySettings, Proposal, register_policy
from promptopt.policies.options import PolicyOptions, option
from promptopt.proposers import Proposer
from promptopt.types import Candidate, Example

if TYPE_CHECKING:
    from promptopt.search_config import SearchConfig
    from promptopt.tasks import Task

logger = logging.getLogger(__name__)
DEFAULT_DEV_SIZE = 30  # the light preset's, when the settings do not say
# DSPy's ChatAdapter retries a reply it cannot parse once, with its JSONAdapter: a DSPy
# prediction is at most two LM calls.
CALLS_PER_PREDICTION = 2
# Rough prompt overhead of DSPy's ChatAdapter (field list, structure, markers) and of
# one demo, in tokens, for the estimate's token figures.
ADAPTER_TOKENS = 150
DEMO_TOKENS = 120


@dataclass(frozen=True)
class DSPyCost:
    """What one DSPy optimizer run can spend at most, before the share of the call limit.

    ``predictions``: single-sample DSPy predictions (task answers and proposer calls);
    ``sampled``: requests of the calls that ask for ``n`` samples at once (COPRO's
    proposals); ``largest_call``: the most requests one LM call makes (how far a call
    that starts just under the share can go past it); ``programs``: the most programs
    it evaluates, i.e. the pool the controller races afterwards; ``demos``: the most
    demos in one of its prompts."""

    predictions: int
    sampled: int = 0
    largest_call: int = 1
    programs: int = 1
    demos: int = 0

    @property
    def calls(self) -> int:
        return CALLS_PER_PREDICTION * (self.predictions + self.sampled)


def dspy_share_of(max_calls: int | None, share: float) -> int | None:
    """The calls DSPy may make under a call limit (``None``: no limit)."""
    return None if max_calls is None else max(1, int(max_calls * share))


@dataclass(frozen=True)
class EvaluatedProgram:
    """One evaluation DSPy made: the program as a candidate, DSPy's score (0-100, in its
    own format) and on how many examples."""

    candidate: Candidate
    dspy_score: float | None
    n: int
    error: str | None = None


@dataclass(frozen=True)
class DSPyOptions(PolicyOptions):
    """The options of the dspy-* policies."""

    dspy_threads: int = option(
        1,
        "dspy-* policies: threads for DSPy's evaluations; their requests are joined into one backend batch "
        "(much faster on a local model). Above 1, which examples DSPy gets answered before a call limit is "
        "spent depends on timing, so a rerun or resume may differ there.",
        min=1,
        show_default=True,
    )
    dspy_share: float | None = option(
        None,
        "dspy-* policies: the share of --max-calls DSPy's optimizer may spend; the rest races the programs "
        "it evaluated. Default: half.",
        min=0.0,
        max=1.0,
        min_open=True,
    )


class DSPyPolicy(Policy):
    """Runs one DSPy optimizer on the task, then proposes every program it evaluated."""

    Options = DSPyOptions
    options: DSPyOptions
    optimizer: ClassVar[str] = ""
    sized_by_rounds: ClassVar[bool] = False
    dspy_share: float = 0.5
    max_bootstrapped_demos: int = 4
    max_labeled_demos: int = 4

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
        self.dspy_state: dict[str, Any] | None = None
        self.stopped: str | None = None
        self.lm: Any = None
        self.dspy_limit: int | None = None  # the calls DSPy may make (its share of a call limit)
        self.dspy_wall_s: float | None = None  # time inside DSPy's optimizer
        self.threads = max(1, int(self.options.dspy_threads))
        self.dspy_share = self.share(self.options.dspy_share)
        self._ran = False

    @classmethod
    def share(cls, configured: float | None) -> float:
        """DSPy's share of a call limit: the configured one (``--dspy-share``), else the policy's."""
        if configured is None:
            return cls.dspy_share
        if not 0.0 < configured <= 1.0:
            raise ConfigError(f"dspy share {configured!r} must be above 0 and at most 1")
        return float(configured)

    # -- what each optimizer does
    def compile(self, student: Any, trainset: list[Any], valset: list[Any], metric: Any) -> Any:
        raise NotImplementedError

    # -- data and metric
    def dev_size(self) -> int:
        return int(self.settings.dev_size or DEFAULT_DEV_SIZE)

    def datasets(self) -> tuple[list[Any], list[Any], dict[str, Example]]:
        from promptopt.dspy_interop import dspy_example

        train = self.task.examples("train")
        dev = self.task.examples("dev")[: self.dev_size()]
        by_id = {e.id: e for e in [*train, *dev]}
        return [dspy_example(e, self.task) for e in train], [dspy_example(e, self.task) for e in dev], by_id

    def metric(self, by_id: Mapping[str, Example]) -> Any:
        from promptopt.dspy_interop import answer_metric

        return answer_metric(self.task, by_id)

    def dspy_backend(self) -> Any:
        """The task backend, capped at ``dspy_share`` of what is left of a call limit."""
        backend = self.backend
        if isinstance(backend, BudgetedBackend) and backend.budget.max_calls is not None:
            left = max(0, backend.budget.max_calls - backend.spend.calls)
            self.dspy_limit = dspy_share_of(left, self.dspy_share)
            return BudgetedBackend(backend, Budget(max_calls=self.dspy_limit))
        return backend

    # -- the dry-run estimate
    @classmethod
    def cost(cls, n_proposals: int, rounds: int, dev: int, train: int, limit: int | None) -> DSPyCost:
        """The most this optimizer spends on ``dev`` valset and ``train`` trainset examples
        (``limit``: DSPy's share of a call limit, for optimizers sized by it)."""
        raise NotImplementedError

    @classmethod
    def estimate(cls, config: SearchConfig, task: Task) -> dict[str, Any]:
        """DSPy's calls — at most its optimizer's worst case (every bootstrapping attempt
        failing, every reply parsed only on the JSON retry), and at most its share of a
        call limit plus one call's overshoot — then the race of every program it may
        evaluate (plus the starting prompt and DSPy's pick) on dev."""
        from promptopt.policies.estimates import estimate_plan, final_calls, prompt_tokens
        from promptopt.racing import schedule_size

        dev = min(config.dev_size, len(task.examples("dev")))
        train = len(task.examples("train"))
        limit = dspy_share_of(config.budget.max_calls, cls.share(cls.options_of(config).dspy_share))
        cost = cls.cost(config.n_proposals, config.rounds, dev, train, limit)
        dspy_calls = cost.calls if limit is None else min(cost.calls, limit - 1 + cost.largest_call)
        per_eval = config.base.samples * (2 if config.base.two_stage or config.base.rescue else 1)
        race_calls = per_eval * schedule_size(
            cost.programs + 2, dev, start=config.race_start, eta=config.race_eta, keep=config.top_k
        )
        tokens_in = (
            prompt_tokens(config, task)
            + ADAPTER_TOKENS
            + DEMO_TOKENS * max(cost.demos, len(config.base.demo_ids))
        )
        tokens_out = 220 if config.base.cot_mode != "none" else 40
        test_n = len(task.examples("test", config.test_size))
        plan = estimate_plan(
            dspy_calls + race_calls, final_calls(config, task), tokens_in, tokens_out, dev, test_n
        )
        return {**plan, "dspy_calls": dspy_calls, "race_calls": race_calls, "dspy_programs": cost.programs}

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
        backend = self.dspy_backend()
        if self.threads > 1:  # DSPy's threads call one request each: join them into batches
            from promptopt.backends.coalesce import CoalescingBackend

            backend = CoalescingBackend(backend)
        # the starting prompt's token limit, as promptopt's own searches have (DSPy's default: 512)
        self.lm = PromptOptLM(backend, max_tokens=self.base.max_tokens)
        student = program_from_candidate(self.base, self.task, describe_answer=True)
        started = time.perf_counter()
        # DSPy's optimizers print their progress; stdout belongs to promptopt (--json).
        with dspy.context(lm=self.lm, callbacks=[self.recorder()]), contextlib.redirect_stdout(sys.stderr):
            try:
                compiled = self.compile(student, trainset, valset, self.metric(by_id))
            except Exception as exc:
                self.dspy_wall_s = time.perf_counter() - started
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
        self.dspy_wall_s = time.perf_counter() - started
        if self.lm.budget_exceeded is not None:  # DSPy went on without the failed calls
            self.stopped = self.lm.budget_exceeded.message
        state = compiled.dump_state()
        # DSPy's own program, kept as DSPy dumped it (made JSON-safe for the run summary):
        # its candidate below is the promptopt rendering, which does not send DSPy's exact
        # requests; the state loads back with ``program.load_state`` to score DSPy's pick
        # in DSPy's own format.
        self.dspy_state = json.loads(json.dumps(state, default=str))
        self.dspy_choice = candidate_from_state(state, self.task, base=self.base, strict=False)

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
            "dspy_best_state": self.dspy_state,
            "dspy_programs": [
                {"candidate": e.candidate.hash, "dspy_score": e.dspy_score, "n": e.n, "error": e.error}
                for e in self.evaluated
            ],
            "dspy_calls": usage.calls if usage else 0,
            "dspy_requests": usage.requests if usage else 0,
            "dspy_tokens_in": usage.tokens_in if usage else 0,
            "dspy_tokens_out": usage.tokens_out if usage else 0,
            "dspy_wall_s": self.dspy_wall_s,
            "dspy_threads": self.threads,
            "dspy_share": self.dspy_share,
            "dspy_limit": self.dspy_limit,
            "stopped": self.stopped,
        }


@register_policy("dspy-bootstrap")
class DSPyBootstrapPolicy(DSPyPolicy):
    """BootstrapFewShotWithRandomSearch: ``n_proposals`` random demo sets (plus DSPy's
    zero-shot, labeled-only and unshuffled baselines), each scored on dev."""

    optimizer = "BootstrapFewShotWithRandomSearch"

    @classmethod
    def cost(cls, n_proposals: int, rounds: int, dev: int, train: int, limit: int | None) -> DSPyCost:
        # zero-shot, labeled-only, unshuffled and n random sets, each scored on dev; all
        # but the first two bootstrap by walking the trainset until enough demos pass.
        n = max(1, n_proposals)
        return DSPyCost(
            predictions=(n + 3) * dev + (n + 1) * train, programs=n + 3,
            demos=cls.max_bootstrapped_demos + cls.max_labeled_demos,
        )  # fmt: skip

    def compile(self, student: Any, trainset: list[Any], valset: list[Any], metric: Any) -> Any:
        optimizer = self.dspy.BootstrapFewShotWithRandomSearch(
            metric=metric, max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos, num_candidate_programs=max(1, self.settings.n_proposals),
            num_threads=self.threads,
        )  # fmt: skip
        return optimizer.compile(student, trainset=trainset, valset=valset)


@register_policy("dspy-copro")
class DSPyCOPROPolicy(DSPyPolicy):
    """COPRO: ``n_proposals`` instructions (breadth) refined for ``rounds`` + 1 steps
    (depth), each scored on dev (COPRO's "trainset" is the set it selects on)."""

    optimizer = "COPRO"

    @staticmethod
    def shape(n_proposals: int, rounds: int) -> tuple[int, int]:
        """COPRO's breadth and depth."""
        return max(2, n_proposals), max(1, rounds + 1)

    @classmethod
    def cost(cls, n_proposals: int, rounds: int, dev: int, train: int, limit: int | None) -> DSPyCost:
        # one call for breadth-1 proposals, then per depth: breadth programs scored on dev
        # and (but the last) one call for breadth new proposals.
        breadth, depth = cls.shape(n_proposals, rounds)
        return DSPyCost(
            predictions=depth * breadth * dev, sampled=breadth - 1 + (depth - 1) * breadth,
            largest_call=breadth, programs=depth * breadth,
        )  # fmt: skip

    def compile(self, student: Any, trainset: list[Any], valset: list[Any], metric: Any) -> Any:
        breadth, depth = self.shape(self.settings.n_proposals, self.settings.rounds)
        optimizer = self.dspy.COPRO(metric=metric, breadth=breadth, depth=depth, init_temperature=1.4)
        return optimizer.compile(
            student, trainset=valset, eval_kwargs={"num_threads": self.threads, "display_progress": False}
        )


@dataclass(frozen=True)
class MIPROSizes:
    """How big a MIPROv2 run is: instruction and demo-set candidates, trials, the valset
    it scores on, and whether trials score a minibatch (of ``minibatch_size``) with a
    full evaluation every ``full_eval_steps`` trials."""

    instruction_candidates: int
    demo_sets: int
    trials: int
    valset: int
    minibatch: bool
    minibatch_size: int = 35
    full_eval_steps: int = 5


# MIPROv2's auto presets (dspy/teleprompt/mipro_optimizer_v2.py, AUTO_RUN_SETTINGS) and
# the valset size above which it scores trials on minibatches.
MIPRO_AUTO = {"light": (6, 100), "medium": (12, 300), "heavy": (18, 1000)}
MIPRO_MIN_MINIBATCH = 50


@register_policy("dspy-mipro")
class DSPyMIPROPolicy(DSPyPolicy):
    """MIPROv2 with ``auto="light"`` (DSPy's own sizing of candidates and trials); the
    search's call limit caps it (see the module docstring). With ``auto = None``
    (``dspy-mipro-matched``) it is sized by the search instead: see :meth:`sizes`."""

    optimizer = "MIPROv2"
    auto: str | None = "light"
    sized: MIPROSizes | None = None  # the sizes of the run, once compiled

    @staticmethod
    def trials_rule(candidates: int) -> int:
        """MIPROv2's own number of trials for ``candidates`` (one predictor, with demos)."""
        return int(max(2 * 2 * math.log2(max(1, candidates)), 1.5 * candidates))

    @classmethod
    def sizes(cls, n_proposals: int, dev: int, train: int, limit: int | None) -> MIPROSizes:
        """With ``auto``: DSPy's preset (``n`` demo sets, ``n // 2`` instructions, its
        trial rule; valset at most the preset's). Without: ``n_proposals`` of each; the
        trials are what ``limit`` (DSPy's share of the call limit) pays for after the
        default program's evaluation, the bootstrapping (assumed to need twice
        ``max_bootstrapped_demos`` attempts per demo set) and the proposals — at least
        one; without a limit, DSPy's trial rule."""
        if cls.auto is not None:
            n, val_size = MIPRO_AUTO[cls.auto]
            valset = min(dev, val_size)
            return MIPROSizes(n // 2, n, cls.trials_rule(n), valset, valset > MIPRO_MIN_MINIBATCH)
        n = max(2, n_proposals)
        minibatch = dev > MIPRO_MIN_MINIBATCH
        sizes = MIPROSizes(n, n, cls.trials_rule(n), dev, minibatch)
        if limit is None:
            return sizes
        fixed = (
            dev
            + max(0, n - 2) * min(train, 2 * cls.max_bootstrapped_demos)
            + cls.proposal_predictions(n, train)
        )
        per_trial = (sizes.minibatch_size + dev / sizes.full_eval_steps) if minibatch else dev
        trials = max(1, int((limit - fixed) // per_trial))
        return MIPROSizes(n, n, trials, dev, minibatch)

    @staticmethod
    def proposal_predictions(instructions: int, train: int) -> int:
        """The grounded proposer: a dataset summary (one call per 10 train examples, at
        most 10, and a summary), then per instruction a program description, a module
        description and the instruction."""
        return 2 + min(9, max(0, math.ceil(train / 10) - 1)) + 3 * instructions

    @classmethod
    def cost(cls, n_proposals: int, rounds: int, dev: int, train: int, limit: int | None) -> DSPyCost:
        size = cls.sizes(n_proposals, dev, train, limit)
        full_evals = (size.trials // (size.full_eval_steps + 1) + 1) if size.minibatch else 0
        per_trial = size.minibatch_size if size.minibatch else size.valset
        evaluations = size.valset * (1 + full_evals) + size.trials * per_trial
        bootstrap = max(0, size.demo_sets - 2) * train  # the n sets but zero-shot and labeled-only
        return DSPyCost(
            predictions=evaluations + bootstrap + cls.proposal_predictions(size.instruction_candidates, train),
            programs=1 + size.trials + full_evals,
            demos=cls.max_bootstrapped_demos + cls.max_labeled_demos,
        )  # fmt: skip

    def compile(self, student: Any, trainset: list[Any], valset: list[Any], metric: Any) -> Any:
        options: dict[str, Any] = {}
        sizes = self.sizes(self.settings.n_proposals, len(valset), len(trainset), self.dspy_limit)
        if self.auto is None:
            options = {"num_trials": sizes.trials, "minibatch": sizes.minibatch,
                       "minibatch_size": min(sizes.minibatch_size, len(valset))}  # fmt: skip
        self.sized = sizes
        # the instruction proposer (DSPy's prompt_model, else the task LM) keeps DSPy's own token
        # limit: the task LM's is the starting prompt's, which may cut a proposal off
        from promptopt.dspy_interop.lm import DEFAULT_MAX_TOKENS

        proposer = self.lm.copy(max_tokens=max(DEFAULT_MAX_TOKENS, self.base.max_tokens))
        optimizer = self.dspy.MIPROv2(
            metric=metric, prompt_model=proposer, auto=self.auto, num_threads=self.threads,
            seed=self.settings.seed, verbose=False,
            track_stats=False, max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos,
            num_candidates=None if self.auto is not None else sizes.instruction_candidates,
        )  # fmt: skip
        return optimizer.compile(student, trainset=trainset, valset=valset, **options)

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        if self.sized is not None:
            data["mipro"] = {"auto": self.auto, **dataclasses.asdict(self.sized)}
        return data


@register_policy("dspy-mipro-matched")
class DSPyMIPROMatchedPolicy(DSPyMIPROPolicy):
    """MIPROv2 sized by the search rather than by ``auto="light"``: ``--proposals``
    instruction and demo-set candidates, and as many trials as DSPy's share of
    ``--max-calls`` pays for (DSPy's own trial rule without a call limit)."""

    auto = None


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
    "DSPyMIPROMatchedPolicy",
    "DSPyMIPROPolicy",
    "DSPyCost",
    "DSPyOptions",
    "MIPROSizes",
    "DSPyPolicy",
    "EvaluatedProgram",
    "with_options",
]
