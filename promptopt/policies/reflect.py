"""``reflect``: learn from failures (after GEPA, Agrawal et al. 2025).

Each step:

1. a parent is drawn from the per-item Pareto frontier on dev (the candidates that are
   best on some dev item, weighted by how many; :mod:`promptopt.selection`), seeded;
2. the parent answers a minibatch of train items (``minibatch``, default 6; the train
   split shuffled once per epoch and walked in order, seeded);
3. one reflection call (the proposer model: ``--proposer-model``, default the task
   model) sees the items it failed, with the metric's feedback and what the output says
   when no answer was read, and writes an improved instruction
   (:mod:`promptopt.reflection`); a reply that is empty, a repeat, about the instruction
   rather than the task, or a copy of the shown items is counted as not usable;
4. the child answers the same minibatch and is accepted only if it scores higher than
   the parent there; an accepted child is then raced on dev with the ``top_k`` best so
   far, as every candidate is, and joins the frontier.

A parent that is perfect on its minibatch gives nothing to reflect on: the step is
skipped (no proposer call). There are ``n_proposals`` x ``rounds`` steps (at least one
round); ``ask()`` runs steps until one child is accepted and returns it with the
incumbents, so every accepted child is raced before the next parent is drawn.

Every step is logged (parent, items shown with their feedback, the text, usable,
accepted, minibatch scores) in :meth:`describe`, which the run summary stores and the
report draws as a lineage. Evaluations go through the controller's evaluator (the Ray
pool when there is one; stored; budgeted; cached), minibatch ones on split ``train``.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Any

from promptopt.errors import ConfigError
from promptopt.policies.base import Policy, PolicySettings, Proposal, register_policy
from promptopt.proposers import _META, Proposer
from promptopt.reflection import read_reflection, reflection_prompt
from promptopt.selection import frontier_weights, item_scores, sample_parent
from promptopt.types import Candidate, Example, GenerationRequest, Message

if TYPE_CHECKING:
    from promptopt.controller import SearchConfig
    from promptopt.tasks import Task

REFLECTION_MAX_TOKENS = 300
_SALT = 50_000  # the reflection calls' sample indices, apart from the other proposer calls


def steps_of(n_proposals: int, rounds: int) -> int:
    """Reflection steps of a search: ``n_proposals`` per round, at least one round."""
    return max(1, n_proposals) * max(1, rounds)


@register_policy("reflect")
class ReflectPolicy(Policy):
    def __init__(self, base: Candidate, proposer: Proposer, settings: PolicySettings) -> None:
        super().__init__(base, proposer, settings)
        if settings.task is None or settings.evaluate is None or settings.known is None:
            raise ConfigError(
                "policy 'reflect' runs inside promptopt.search() (it needs the task and evaluator)"
            )
        if proposer.slot != "instruction":
            raise ConfigError(
                "policy 'reflect' rewrites the instruction; it does not take --search cot_trigger"
            )
        self.task: Task = settings.task
        self.train: list[Example] = list(self.task.examples("train"))
        if not self.train:
            raise ConfigError(
                f"policy 'reflect' needs train items for its minibatches; {self.task.name} has none"
            )
        self.size = max(1, min(settings.minibatch, len(self.train)))
        self.steps = steps_of(settings.n_proposals, settings.rounds)
        self.step = 0
        self.started = False
        self.log: list[dict[str, Any]] = []
        self._epochs: dict[int, list[int]] = {}
        sample = [self.task.render_input(e) for e in self.train[:20]]
        self.meta_allowed = any(_META.search(text) for text in sample)

    # -- the ask/tell loop
    def ask(self) -> list[Proposal]:
        if not self.started:
            self.started = True
            return [Proposal(self.base, "seed")]
        while self.step < self.steps:
            found = self._reflect_once()
            if found is not None:
                child, parent = found
                pool = [Proposal(child, "reflect", parent=parent)]
                pool += [
                    Proposal(c, "parent") for c in self.best(self.settings.top_k) if c.hash != child.hash
                ]
                return pool
        return []

    # -- one step
    def _minibatch(self, step: int) -> list[Example]:
        """Step ``step``'s items: the train split shuffled once per epoch, in chunks."""
        per_epoch = max(1, len(self.train) // self.size)
        epoch, chunk = divmod(step, per_epoch)
        if epoch not in self._epochs:
            order = list(range(len(self.train)))
            random.Random(f"{self.settings.seed}:reflect:epoch:{epoch}").shuffle(order)
            self._epochs[epoch] = order
        picked = self._epochs[epoch][chunk * self.size : (chunk + 1) * self.size]
        return [self.train[i] for i in picked]

    def frontier(self) -> dict[str, int]:
        """The non-dominated per-item frontier on dev: ``{candidate: items it is best on}``."""
        order = [h for h in self.candidates if h in self.standings]
        known = self.settings.known
        assert known is not None
        scores = {h: item_scores(known(self.candidates[h], "dev")) for h in order}
        means = {h: self.standings[h].mean for h in order}
        return frontier_weights({h: s for h, s in scores.items() if s}, order, means)

    def _parent(self, rng: random.Random) -> Candidate:
        weights = self.frontier()
        if not weights:
            return self.base
        order = [h for h in self.candidates if h in weights]
        return self.candidates[sample_parent(weights, order, rng)]

    def _reflect_once(self) -> tuple[Candidate, str] | None:
        step = self.step
        self.step += 1
        evaluate = self.settings.evaluate
        assert evaluate is not None
        parent = self._parent(random.Random(f"{self.settings.seed}:reflect:parent:{step}"))
        batch = self._minibatch(step)
        parent_results = evaluate(parent, batch, "train", "parent", None)
        parent_score = sum(r.score or 0.0 for r in parent_results)
        entry: dict[str, Any] = {
            "step": step, "parent": parent.hash, "minibatch": [e.id for e in batch],
            "parent_score": parent_score, "child": None, "child_score": None, "shown": [],
            "reflected": False, "usable": False, "accepted": False, "reason": "", "text": "",
        }  # fmt: skip
        self.log.append(entry)
        failed = [(e, r) for e, r in zip(batch, parent_results, strict=True) if (r.score or 0.0) < 1.0]
        if not failed:
            entry["reason"] = "skipped: the parent is perfect on the minibatch"
            return None
        prompt, shown = reflection_prompt(self.task, parent.instruction, failed)
        entry["shown"] = [{"example": s.example_id, "feedback": s.feedback} for s in shown]
        entry["reflected"] = True
        reply = self._ask_reflection(prompt, step)
        shown_inputs = [self.task.render_input(e) for e, _ in failed[: len(shown)]]
        known_texts = [c.instruction for c in self.candidates.values()]
        text, why = read_reflection(
            reply, current=parent.instruction, known=known_texts, shown_inputs=shown_inputs,
            meta_allowed=self.meta_allowed,
        )  # fmt: skip
        entry["reason"] = why
        entry["text"] = text if text is not None else " ".join(reply.split())[:300]
        if text is None:
            return None
        entry["usable"] = True
        child = dataclasses.replace(parent, instruction=text)
        self.candidates[child.hash] = child
        entry["child"] = child.hash
        child_results = evaluate(child, batch, "train", "reflect", parent.hash)
        child_score = sum(r.score or 0.0 for r in child_results)
        entry["child_score"] = child_score
        entry["accepted"] = child_score > parent_score
        if not entry["accepted"]:
            entry["reason"] = "rejected: not better than its parent on the minibatch"
            return None
        entry["reason"] = "accepted"
        return child, parent.hash

    def _ask_reflection(self, prompt: str, step: int) -> str:
        """One call to the proposer model (cached: a resumed search gets the same reply)."""
        request = GenerationRequest(
            messages=(Message("user", prompt),),
            temperature=self.proposer.temperature,
            max_tokens=REFLECTION_MAX_TOKENS,
            sample_index=_SALT + step,
        )
        self.proposer.calls += 1
        (completion,) = self.proposer.backend.generate([request])
        return completion.text if completion.ok else ""

    # -- reporting and budgeting
    def describe(self) -> dict[str, Any]:
        reflected = [e for e in self.log if e["reflected"]]
        return {
            "reflection": {
                "steps": len(self.log),
                "proposals": len(reflected),
                "usable": sum(1 for e in reflected if e["usable"]),
                "accepted": sum(1 for e in reflected if e["accepted"]),
                "skipped": len(self.log) - len(reflected),
                "minibatch": self.size,
            },
            "proposals": self.log,
            "frontier": self.frontier() if self.standings else {},
        }

    @classmethod
    def estimate(cls, config: SearchConfig, task: Task) -> dict[str, Any]:
        """An upper bound: the starting prompt's first race stage; per step, the parent
        and the child on the minibatch and one reflection call; per step that is accepted
        (every one, at most), a race of the child with the ``top_k`` incumbents."""
        from promptopt.controller import estimate_plan, final_calls, prompt_tokens
        from promptopt.racing import schedule_size

        dev = min(config.dev_size, len(task.examples("dev")))
        size = max(1, min(config.minibatch, len(task.examples("train"))))
        steps = steps_of(config.n_proposals, config.rounds)
        race = dict(start=config.race_start, eta=config.race_eta, keep=config.top_k)
        first = schedule_size(1, dev, **race)  # type: ignore[arg-type]
        later = schedule_size(1 + config.top_k, dev, **race)  # type: ignore[arg-type]
        per_eval = config.base.samples * (2 if config.base.two_stage else 1)
        search_calls = (first + steps * (2 * size + later)) * per_eval + steps
        test_n = len(task.examples("test", config.test_size))
        tokens_out = 220 if config.base.cot_mode != "none" else 40
        plan = estimate_plan(
            search_calls, final_calls(config, task), prompt_tokens(config, task), tokens_out, dev, test_n
        )
        return {**plan, "reflection_steps": steps, "minibatch": size}
