"""OPRO (Yang et al., "Large Language Models as Optimizers").

Step 0 scores the seed prompt. Each later step shows the proposer the scored history
(best ``20``, worst to best) and a few task examples and asks for ``n_proposals``
texts that should score higher; the new texts race against the current ``top_k``.
``rounds`` is the number of optimization steps.
"""

from __future__ import annotations

from promptopt.policies.base import Policy, Proposal, register_policy


@register_policy("opro")
class OPROPolicy(Policy):
    _step = 0

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
