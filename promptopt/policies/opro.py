"""OPRO (Yang et al., "Large Language Models as Optimizers").

Step 0 scores the seed prompt. Each later step shows the proposer the scored history
(best ``20``, worst to best) and a few task examples and asks for ``n_proposals``
texts that should score higher; the new texts race against the current ``top_k``.
``rounds`` is the number of optimization steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptopt.policies.base import Policy, Proposal, register_policy

if TYPE_CHECKING:
    from promptopt.search_config import SearchConfig
    from promptopt.tasks import Task


@register_policy("opro")
class OPROPolicy(Policy):
    _step = 0
    # OPRO learns from the scores of its own proposals, so a budget preset gives it several
    # small steps (the paper's loop) instead of one big one: light 4 steps x 2 (8 proposals,
    # APE's light writes 6 + 2 x 2), medium 6 x 4, heavy 8 x 8.
    presets = {
        "light": {"n_proposals": 2, "rounds": 4},
        "medium": {"n_proposals": 4, "rounds": 6},
        "heavy": {"n_proposals": 8, "rounds": 8},
    }

    @classmethod
    def estimate(cls, config: SearchConfig, task: Task) -> dict[str, Any]:
        from promptopt.policies.estimates import opro_estimate

        return opro_estimate(config, task)

    def ask(self) -> list[Proposal]:
        settings = self.settings
        if self._step > settings.rounds:
            return []
        step = self._step
        self._step += 1
        if step == 0:
            return [Proposal(self.base, "seed")]
        history = [(self.text_of(self.candidates[h]), s.mean) for h, s in self.standings.items()]
        parents = self.best(settings.top_k)
        pool = [Proposal(parent, "parent") for parent in parents]
        best_hash = parents[0].hash if parents else None
        for text in self.proposer.from_history(history, settings.n_proposals, step=step):
            candidate = self.with_text(text)
            if candidate.hash not in {p.candidate.hash for p in pool}:
                pool.append(Proposal(candidate, "opro", parent=best_hash))
        return pool
