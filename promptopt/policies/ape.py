"""APE (Zhou et al., "Large Language Models Are Human-Level Prompt Engineers").

Round 0: the seed prompt and ``n_proposals`` instructions written by the proposer from
random demo subsets (forward generation). Rounds 1…``rounds``: the ``top_k`` so far are
paraphrased ``paraphrases`` times each (iterative Monte Carlo search); parents stay in
the pool and race again (their earlier results are reused). Chat models have no
insert mode, so only forward generation is used.
"""

from __future__ import annotations

from promptopt.policies.base import Policy, Proposal, register_policy


@register_policy("ape")
class APEPolicy(Policy):
    _round = 0

    def ask(self) -> list[Proposal]:
        settings = self.settings
        if self._round > settings.rounds:
            return []
        round_index = self._round
        self._round += 1
        if round_index == 0:
            pool = [Proposal(self.base, "seed")]
            for text in self.proposer.from_demos(settings.n_proposals, round_index=0):
                candidate = self.with_text(text)
                if candidate.hash != self.base.hash:
                    pool.append(Proposal(candidate, "ape"))
            return pool
        parents = self.best(settings.top_k)
        pool = [Proposal(parent, "parent") for parent in parents]
        for parent in parents:
            for text in self.proposer.paraphrase(
                self.text_of(parent), settings.paraphrases, round_index=round_index
            ):
                child = self.with_text(text)
                if child.hash not in {p.candidate.hash for p in pool}:
                    pool.append(Proposal(child, "ape-resample", parent=parent.hash))
        return pool
