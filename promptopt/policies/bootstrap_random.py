"""``bootstrap-random``: random search over bootstrapped few-shot demo sets.

The baseline of Wan et al. 2024 ("Teach Better or Show Smarter?"): for small models the
demos matter more than the wording, and exemplars the model itself got right are the
ones to show. The task model answers demo-pool items (train minus dev) with the starting
prompt as zero-shot chain of thought, and up to ``shots × POOL_FACTOR`` of its correct
worked solutions are kept (:func:`promptopt.bootstrap.bootstrap_demos`: cached and
budgeted like every call of the search). Each round then proposes ``n_proposals`` random
sets of ``shots`` of them (seeded), as few-shot demos of the starting prompt (its
instruction, trigger and answer format unchanged), and the controller races them on dev
with the best ``top_k`` so far; ``rounds + 1`` rounds. It is DSPy's
``BootstrapFewShotWithRandomSearch`` without the labelled demos, raced the promptopt way.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.errors import ConfigError
from promptopt.policies.base import Policy, PolicySettings, Proposal, register_policy
from promptopt.proposers import Proposer
from promptopt.types import Candidate

if TYPE_CHECKING:
    from promptopt.search_config import SearchConfig
    from promptopt.spaces import DemoSolutions
    from promptopt.tasks import Task

POOL_FACTOR = 4  # bootstrap up to 4 × shots solutions to draw the sets from


@register_policy("bootstrap-random")
class BootstrapRandomPolicy(Policy):
    """Random ``shots``-demo sets drawn from the model's own correct worked solutions."""

    bootstraps = True

    shots: ClassVar[int] = 4

    def __init__(self, base: Candidate, proposer: Proposer, settings: PolicySettings) -> None:
        super().__init__(base, proposer, settings)
        if settings.task is None or settings.backend is None:
            raise ConfigError(f"policy {self.name!r} needs the task and its model backend")
        self.rng = random.Random(f"bootstrap-random:{settings.seed}")
        self.round = 0
        self.pool: DemoSolutions | None = None
        self.tried = 0

    @classmethod
    def pool_size(cls) -> int:
        return cls.shots * POOL_FACTOR

    @classmethod
    def bootstrap_tries(cls) -> int:
        """The most demo-pool items bootstrapping asks (``bootstrap_demos``' own limit)."""
        from promptopt.bootstrap import default_tries

        return default_tries(cls.pool_size())

    def bootstrap(self) -> DemoSolutions:
        if self.pool is None:
            from promptopt.bootstrap import DEFAULT_TRIGGER, bootstrap_demos

            backend = self.settings.demo_backend
            assert self.settings.task is not None and backend is not None
            report = bootstrap_demos(
                self.settings.task, backend, k=self.pool_size(), seed=self.settings.seed,
                instruction=self.base.instruction or None, cot_trigger=self.base.cot_trigger or DEFAULT_TRIGGER,
                answer_format=self.base.answer_format or None, max_tokens=self.base.max_tokens,
            )  # fmt: skip
            self.pool, self.tried = report.demos, report.tried
        return self.pool

    def demo_set(self, ids: tuple[str, ...], pool: DemoSolutions) -> Candidate:
        chosen = tuple(self.rng.sample(list(ids), min(self.shots, len(ids))))
        candidate = dataclasses.replace(
            self.base, cot_mode="few_shot" if self.base.cot_mode != "none" else "none", demo_ids=chosen,
            demo_solutions=tuple(p for p in pool.solutions if p[0] in chosen), similar_demos=0,
        )  # fmt: skip
        self.candidates[candidate.hash] = candidate
        return candidate

    def ask(self) -> list[Proposal]:
        if self.round > self.settings.rounds:
            return []
        pool = self.bootstrap()
        ids = pool.demo_ids
        proposals = [Proposal(self.base, "seed")] if self.round == 0 else []
        if self.round > 0:
            proposals += [Proposal(c, "parent") for c in self.best(self.settings.top_k)]
        self.round += 1
        if not ids:  # the model got no demo-pool item right: nothing to show but the start
            first = self.round == 1
            self.round = self.settings.rounds + 1
            return proposals if first else []
        seen = {p.candidate.hash for p in proposals} | set(self.standings)
        for _ in range(self.settings.n_proposals):
            for _attempt in range(20):  # a set raced already is drawn again
                candidate = self.demo_set(ids, pool)
                if candidate.hash not in seen:
                    break
            if candidate.hash not in seen:
                seen.add(candidate.hash)
                proposals.append(Proposal(candidate, self.name))
        return proposals

    def describe(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "shots": self.shots,
            "bootstrapped": len(pool.demo_ids) if pool is not None else 0,
            "bootstrap_tried": self.tried,
        }

    @classmethod
    def estimate(cls, config: SearchConfig, task: Task) -> dict[str, Any]:
        """``rounds + 1`` races of ``n_proposals`` sets (plus the starting prompt, then
        the kept ones), plus the bootstrapping (the proposer's calls when it is the demos'
        teacher; else no proposer calls)."""
        from promptopt.bias.costs import candidate_calls
        from promptopt.policies.estimates import estimate_plan, final_calls, prompt_tokens
        from promptopt.racing import schedule_size

        dev = min(config.dev_size, len(task.examples("dev")))
        races = sum(
            schedule_size(config.n_proposals + (1 if r == 0 else config.top_k), dev, start=config.race_start,
                          eta=config.race_eta, keep=config.top_k)
            for r in range(config.rounds + 1)
        )  # fmt: skip
        per_eval = candidate_calls(config.base)  # sampling, second stage, permutation
        search_calls = races * per_eval + cls.bootstrap_tries()
        test_n = len(task.examples("test", config.test_size))
        tokens_in = prompt_tokens(config, task) + 120 * cls.shots
        teacher = cls.bootstrap_tries() if config.demo_teacher == "proposer" else None  # the demos' writer
        return estimate_plan(
            search_calls, final_calls(config, task), tokens_in, 220, dev, test_n, proposer_calls=teacher
        )


__all__ = ["POOL_FACTOR", "BootstrapRandomPolicy"]
