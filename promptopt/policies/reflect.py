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
skipped (no proposer call). With ``reflect_demos`` K > 0, every other step is a *demo
step* instead of a reflection: the child shows K demos with the model's own correct
worked solutions (bootstrapped once, from train items, as DSPy's BootstrapFewShot does),
those most alike in wording to the items the parent failed (never an item of the
minibatch itself), and is accepted on the same terms. With ``reflect_merge``, every third
step (when the frontier holds two different instructions) is a *merge*: a second
frontier candidate answers the minibatch too, one proposer call writes an instruction
that keeps the rules of both, and the child must beat the better of the two. There are ``n_proposals`` x ``rounds`` steps (at least one
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
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptopt.errors import ConfigError
from promptopt.failures import check_not_all_failed
from promptopt.policies.base import Policy, PolicySettings, Proposal, register_policy
from promptopt.policies.options import PolicyOptions, option
from promptopt.proposers import _META, Proposer
from promptopt.reflection import merge_prompt, read_reflection, reflection_prompt
from promptopt.selection import frontier_weights, item_scores, sample_parent
from promptopt.tasks.answer_format import render_answer_format
from promptopt.types import Candidate, EvalResult, Example, GenerationRequest, Message

if TYPE_CHECKING:
    from promptopt.search_config import SearchConfig
    from promptopt.tasks import Task

REFLECTION_MAX_TOKENS = 200
ORIGINS = {"reflection": "reflect", "demos": "reflect-demos", "merge": "reflect-merge"}
_SALT = 50_000  # the reflection calls' sample indices, apart from the other proposer calls


def bootstrap_tries(demos: int) -> int:
    """Train items the model answers to find ``3 * demos`` correct worked solutions, at most."""
    return 8 * demos


def _words(text: str) -> set[str]:
    """The words (and symbols such as %) of a text, for a likeness of two items."""
    return {w for w in re.findall(r"[a-z]+|[%$€£°/]", text.lower()) if len(w) > 2 or not w.isalpha()}


def steps_of(n_proposals: int, rounds: int) -> int:
    """Reflection steps of a search: ``n_proposals`` per round, at least one round."""
    return max(1, n_proposals) * max(1, rounds)


@dataclass(frozen=True)
class ReflectOptions(PolicyOptions):
    minibatch: int = option(
        6,
        "reflect: train items a parent and its rewrite answer before the rewrite is raced (default 6).",
        min=1,
    )
    reflect_demos: int = option(
        0,
        "reflect: every other step swaps in K demos of the model's own correct work, alike the failed "
        "items (0: off, the default).",
        min=0,
    )
    reflect_merge: bool = option(
        False,
        "reflect: every third step merges two frontier candidates' instructions into one (off by default).",
    )


@register_policy("reflect")
class ReflectPolicy(Policy):
    bootstraps = True  # its demo swap (reflect_demos)

    @classmethod
    def bootstraps_in(cls, config: SearchConfig, task: Task) -> bool:
        """Only with demo steps (``reflect_demos`` above 0)."""
        return bool(cls.options_of(config).reflect_demos > 0)

    Options = ReflectOptions
    options: ReflectOptions

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
        self.size = max(1, min(self.options.minibatch, len(self.train)))
        self.steps = steps_of(settings.n_proposals, settings.rounds)
        self.step = 0
        self.started = False
        self.log: list[dict[str, Any]] = []
        self._epochs: dict[int, list[int]] = {}
        sample = [self.task.render_input(e) for e in self.train[:20]]
        self.meta_allowed = any(_META.search(text) for text in sample)
        self.demos = max(0, self.options.reflect_demos)
        if self.demos and base.calibration != "none":
            raise ConfigError(
                f"policy 'reflect' with reflect_demos swaps in worked solutions (few-shot chain of thought), "
                f"which calibration {base.calibration} cannot read (it scores a direct answer); "
                "start from a prompt without calibration, or set reflect_demos 0"
            )
        self.merge = self.options.reflect_merge
        self._bootstrapped: list[tuple[str, str]] | None = None
        self.reflection_errors: list[str | None] = []  # per reflection call, None when it answered

    # -- the ask/tell loop
    def ask(self) -> list[Proposal]:
        if not self.started:
            self.started = True
            return [Proposal(self.base, "seed")]
        while self.step < self.steps:
            found = self._reflect_once()
            if found is not None:
                child, parent = found
                pool = [Proposal(child, ORIGINS[self.log[-1]["kind"]], parent=parent)]
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
        parent_items = item_scores(parent_results)
        parent_score = sum(parent_items.values())
        entry: dict[str, Any] = {
            "step": step, "parent": parent.hash, "minibatch": [e.id for e in batch],
            "parent_score": parent_score, "child": None, "child_score": None, "shown": [],
            "kind": "reflection", "reflected": False, "usable": False, "accepted": False, "reason": "", "text": "",
        }  # fmt: skip
        self.log.append(entry)
        # a request that failed is no wrong answer: not shown to the reflection, not compared
        failed = [
            (e, r)
            for e, r in zip(batch, parent_results, strict=True)
            if r.score is not None and r.score < 1.0
        ]
        if not failed:
            entry["reason"] = (
                "skipped: the parent is perfect on the minibatch" if parent_items
                else "skipped: every request of the parent failed on the minibatch"
            )  # fmt: skip
            return None
        other = self._merge_partner(parent, step)
        if other is not None:
            child, other_items = self._merge_child(parent, other, batch, entry, step)
            if child is not None and entry["parent"] != parent.hash:  # the other one scored higher
                parent, parent_items = other, other_items
        elif self.demos and step % 2 == 1:
            child = self._demo_child(parent, batch, failed, entry)
        else:
            child = self._reflection_child(parent, failed, entry, step)
        if child is None:
            return None
        entry["usable"] = True
        self.candidates[child.hash] = child
        entry["child"] = child.hash
        child_results = evaluate(child, batch, "train", ORIGINS[entry["kind"]], parent.hash)
        child_items = item_scores(child_results)
        entry["child_score"] = sum(child_items.values())
        common = [item for item in child_items if item in parent_items]  # the same items on both sides
        entry["accepted"] = sum(child_items[i] for i in common) > sum(parent_items[i] for i in common)
        if not entry["accepted"]:
            entry["reason"] = "rejected: not better than its parent on the minibatch"
            return None
        entry["reason"] = "accepted"
        return child, parent.hash

    def _reflection_child(
        self, parent: Candidate, failed: list[tuple[Example, EvalResult]], entry: dict[str, Any], step: int
    ) -> Candidate | None:
        prompt, shown = reflection_prompt(self.task, parent.instruction, failed)
        entry["shown"] = [{"example": s.example_id, "feedback": s.feedback} for s in shown]
        entry["reflected"] = True
        reply, cut_off, error = self._ask_reflection(prompt, step)
        if error is not None:
            entry["reason"] = f"the reflection request failed: {error}"
            return None
        shown_inputs = [self.task.render_input(e) for e, _ in failed[: len(shown)]]
        shown_outputs = [r.samples[0].raw_output for _, r in failed[: len(shown)] if r.samples]
        # the parent's lines besides its instruction, as the model saw them (an output may echo them)
        setup = [parent.cot_trigger] + [
            render_answer_format(parent.answer_format, self.task, e) for e, _ in failed[: len(shown)]
        ]
        known_texts = [c.instruction for c in self.candidates.values()]
        text, why = read_reflection(
            reply, current=parent.instruction, known=known_texts, shown_inputs=shown_inputs,
            shown_outputs=shown_outputs, setup=setup, meta_allowed=self.meta_allowed, cut_off=cut_off,
            shown_answers=[str(a) for _, r in failed[: len(shown)] for a in (r.gold, r.answer) if a is not None],
        )  # fmt: skip
        entry["reason"] = why
        entry["text"] = text if text is not None else " ".join(reply.split())[:300]
        return dataclasses.replace(parent, instruction=text) if text is not None else None

    def _merge_partner(self, parent: Candidate, step: int) -> Candidate | None:
        """With ``reflect_merge``, every third step: a second frontier candidate whose
        instruction differs from the parent's (None when there is none, or not this step)."""
        if not self.merge or step % 3 != 2:
            return None
        weights = {
            h: w for h, w in self.frontier().items() if self.candidates[h].instruction != parent.instruction
        }
        if not weights:
            return None
        order = [h for h in self.candidates if h in weights]
        rng = random.Random(f"{self.settings.seed}:reflect:merge:{step}")
        return self.candidates[sample_parent(weights, order, rng)]

    def _merge_child(
        self, first: Candidate, second: Candidate, batch: list[Example], entry: dict[str, Any], step: int
    ) -> tuple[Candidate | None, dict[str, float]]:
        """GEPA's merge, for one component: one instruction that keeps the rules of two
        frontier candidates; it must beat the better of the two on the minibatch. Also
        ``second``'s scores on the minibatch."""
        evaluate = self.settings.evaluate
        assert evaluate is not None
        second_items = item_scores(evaluate(second, batch, "train", "parent", None))
        second_score = sum(second_items.values())
        entry.update(kind="merge", reflected=True, other_parent=second.hash, other_score=second_score)
        if second_score > entry["parent_score"]:
            entry.update(parent=second.hash, parent_score=second_score, other_parent=first.hash)
            first, second = second, first
        reply, cut_off, error = self._ask_reflection(
            merge_prompt(first.instruction, second.instruction), step
        )
        if error is not None:
            entry["reason"] = f"the reflection request failed: {error}"
            return None, second_items
        known_texts = [c.instruction for c in self.candidates.values()]
        text, why = read_reflection(
            reply,
            current=first.instruction,
            known=known_texts,
            shown_inputs=[],
            meta_allowed=self.meta_allowed,
            cut_off=cut_off,
        )
        entry["reason"] = why
        entry["text"] = text if text is not None else " ".join(reply.split())[:300]
        return (dataclasses.replace(first, instruction=text) if text is not None else None), second_items

    def _demo_child(
        self,
        parent: Candidate,
        batch: list[Example],
        failed: list[tuple[Example, EvalResult]],
        entry: dict[str, Any],
    ) -> Candidate | None:
        """The parent with demos of the model's own correct work, most alike the failed items."""
        entry["kind"] = "demos"
        entry["shown"] = [{"example": e.id, "feedback": "(demos chosen for this item)"} for e, _ in failed]
        pool = [(i, s) for i, s in self.bootstrapped() if i not in {e.id for e in batch}]
        failed_words = [_words(self.task.render_input(e)) for e, _ in failed]
        by_id = {e.id: e for e in self.train}

        def likeness(item: str) -> float:
            words = _words(self.task.render_input(by_id[item]))
            return max((len(words & f) / max(1, len(words | f)) for f in failed_words), default=0.0)

        chosen = sorted(pool, key=lambda pair: -likeness(pair[0]))[: self.demos]
        if not chosen:
            entry["reason"] = "no bootstrapped demo (no train item answered right)"
            return None
        child = dataclasses.replace(
            parent, cot_mode="few_shot", demo_ids=tuple(i for i, _ in chosen), demo_solutions=tuple(chosen),
            similar_demos=0,
        )  # fmt: skip
        entry["text"] = "demos: " + ", ".join(i for i, _ in chosen)
        if child.hash in self.candidates:
            entry["reason"] = "a repeat"
            return None
        entry["reason"] = "usable"
        return child

    def bootstrapped(self) -> list[tuple[str, str]]:
        """Correct worked solutions on train items, computed once: the task model's own,
        or the teacher's (``SearchConfig.demo_teacher``)."""
        if self._bootstrapped is None:
            from promptopt.bootstrap import DEFAULT_TRIGGER, bootstrap_demos

            backend = self.settings.demo_backend
            if backend is None:
                raise ConfigError("reflect_demos needs a model to bootstrap demos with")
            report = bootstrap_demos(
                self.task, backend, k=3 * self.demos, seed=self.settings.seed, instruction=self.base.instruction,
                cot_trigger=self.base.cot_trigger or DEFAULT_TRIGGER, answer_format=self.base.answer_format or None,
                max_tries=bootstrap_tries(self.demos),
            )  # fmt: skip
            self._bootstrapped = list(report.demos.solutions)
        return self._bootstrapped

    def _ask_reflection(self, prompt: str, step: int) -> tuple[str, bool, str | None]:
        """One call to the proposer model (cached: a resumed search gets the same reply):
        its text, whether it was cut off at the token limit, and its error when it failed.
        Raises :class:`~promptopt.failures.AllRequestsFailed` when the first two calls (and
        every one since) failed."""
        request = GenerationRequest(
            messages=(Message("user", prompt),),
            temperature=self.proposer.temperature,
            max_tokens=REFLECTION_MAX_TOKENS,
            sample_index=_SALT + step,
        )
        self.proposer.calls += 1
        (completion,) = self.proposer.backend.generate([request])
        self.reflection_errors.append(None if completion.ok else completion.error or "unknown error")
        if len(self.reflection_errors) >= 2:  # a proposer model that cannot answer at all
            check_not_all_failed(self.reflection_errors, "the reflection model (--proposer-model)")
        if not completion.ok:
            return "", False, self.reflection_errors[-1]
        return completion.text, completion.finish_reason == "length", None

    # -- reporting and budgeting
    def describe(self) -> dict[str, Any]:
        proposed = [e for e in self.log if e["reflected"] or e["kind"] == "demos"]
        return {
            "reflection": {
                "steps": len(self.log),
                "proposals": len(proposed),
                "reflections": sum(1 for e in proposed if e["kind"] == "reflection"),
                "usable": sum(1 for e in proposed if e["usable"]),
                "accepted": sum(1 for e in proposed if e["accepted"]),
                "skipped": len(self.log) - len(proposed),
                "minibatch": self.size,
                "demo_steps": sum(1 for e in proposed if e["kind"] == "demos"),
                "merges": sum(1 for e in proposed if e["kind"] == "merge"),
            },
            "proposals": self.log,
            "frontier": self.frontier() if self.standings else {},
        }

    @classmethod
    def estimate(cls, config: SearchConfig, task: Task) -> dict[str, Any]:
        """An upper bound: the starting prompt's first race stage; per step, the parent
        and the child on the minibatch and one reflection call; per step that is accepted
        (every one, at most), a race of the child with the ``top_k`` incumbents."""
        from promptopt.bias.costs import calibration_overhead, candidate_calls, option_counts
        from promptopt.policies.estimates import base_shaped_plan
        from promptopt.racing import schedule_size

        options = cls.options_of(config)
        dev = min(config.dev_size, len(task.examples("dev")))
        size = max(1, min(options.minibatch, len(task.examples("train"))))
        steps = steps_of(config.n_proposals, config.rounds)
        race = dict(start=config.race_start, eta=config.race_eta, keep=config.top_k)
        first = schedule_size(1, dev, **race)  # type: ignore[arg-type]
        later = schedule_size(1 + config.top_k, dev, **race)  # type: ignore[arg-type]
        per_eval = candidate_calls(config.base)  # sampling, second stage, permutation
        demos = max(0, options.reflect_demos)
        boot = min(len(task.examples("train")), bootstrap_tries(demos)) if demos else 0
        answered = 3 if options.reflect_merge else 2  # a merge step runs both parents and the child
        # a calibration's content-free or permuted items, once per candidate: the starting
        # prompt, a child per step, and a second parent per merge step (every third)
        counts = option_counts(task) if config.base.calibration == "position" else (5,)
        candidates = 1 + steps + (steps // 3 if options.reflect_merge else 0)
        overhead = calibration_overhead(config.base.calibration, counts) * candidates
        search_calls = (first + steps * (answered * size + later)) * per_eval + steps + boot + overhead
        teacher = boot if config.demo_teacher == "proposer" else 0  # the proposer's model writes the demos
        plan = base_shaped_plan(config, task, search_calls, proposer_calls=steps + teacher)
        return {**plan, "reflection_steps": steps, "minibatch": size}
