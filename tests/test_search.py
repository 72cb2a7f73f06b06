from __future__ import annotations

import pytest

from promptopt.budget import Budget
from promptopt.controller import SearchConfig, SearchResult, affordable, search
from promptopt.policies import POLICIES, Policy, PolicySettings, Proposal
from promptopt.proposers import Proposer
from promptopt.racing import full_evaluation, schedule_size, successive_halving
from promptopt.stats import paired_difference
from promptopt.store import Store
from promptopt.tasks import Task, get_task
from promptopt.testing.search_fakes import skill, skilled_backend
from promptopt.types import Candidate


@pytest.fixture(scope="module")
def task():  # type: ignore[no-untyped-def]
    return get_task("gsm-symbolic")


def config(policy: str = "ape", **overrides: object) -> SearchConfig:
    values = {"task": "gsm-symbolic", "model": "fake", "base": Candidate(instruction="Answer."), "policy": policy,
              "dev_size": 40, "test_size": 120, "n_proposals": 5, "rounds": 2, "race_start": 8}  # fmt: skip
    values.update(overrides)
    return SearchConfig.from_preset("light", **values)


@pytest.mark.parametrize("policy", ["ape", "opro"])
def test_search_finds_a_better_prompt_and_proves_it_on_test(policy: str, task, db_url: str) -> None:  # type: ignore[no-untyped-def]
    result = search(config(policy), backend=skilled_backend(task), db=db_url)
    assert isinstance(result, SearchResult)
    assert skill(result.winner.instruction) > skill("Answer.")
    assert result.test["winner"]["accuracy"] > result.test["baseline"]["accuracy"]
    assert result.significant and result.test["difference"]["p_value"] < 0.05
    assert result.test["n"] == 120
    store = Store(db_url)
    run = store.get_run(result.run_id)
    assert run.status == "finished" and run.summary and run.summary["winner"] == result.winner.hash
    dev_rows = store.get_evaluations(result.run_id, result.winner.hash, "dev")
    assert len(dev_rows) == 40  # the winner got the full dev set
    assert {r.split for r in store.get_evaluations(result.run_id)} == {"dev", "test"}
    store.close()


def test_budget_stops_cleanly_with_best_so_far(task, db_url: str) -> None:  # type: ignore[no-untyped-def]
    result = search(config(budget=Budget(max_calls=60)), backend=skilled_backend(task), db=db_url)
    assert isinstance(result, SearchResult)
    assert result.stopped_reason and "calls" in result.stopped_reason
    assert result.spent["calls"] <= 60 + 16  # at most one batch past the limit
    assert result.test["n"] == 120


def _calls_to_find(result: SearchResult, db_url: str) -> int:
    """The search's calls and its final dev scoring (the final's calls less the test's)."""
    store = Store(db_url)
    test_calls = len(store.get_evaluations(result.run_id, split="test"))
    store.close()
    return int(result.spent["calls"]) + result.final_calls - test_calls


def test_a_budget_that_covers_the_final_bounds_search_and_final_scoring(task, db_url: str) -> None:  # type: ignore[no-untyped-def]
    after = search(
        config(budget=Budget(max_calls=150), test_size=10), backend=skilled_backend(task), db=db_url
    )
    covered = search(config(budget=Budget(max_calls=150, covers_final=True), test_size=10),
                     backend=skilled_backend(task), db=db_url)  # fmt: skip
    assert isinstance(after, SearchResult) and isinstance(covered, SearchResult)
    assert _calls_to_find(after, db_url) > 150  # the final scoring comes after the cap
    assert _calls_to_find(covered, db_url) <= 150
    assert covered.stopped_reason and "kept for the final scoring" in covered.stopped_reason
    store = Store(db_url)
    assert (
        len(store.get_evaluations(covered.run_id, covered.winner.hash, "dev")) == 40
    )  # scored on all of dev
    store.close()
    again = search(db=db_url, resume=covered.run_id, backend=skilled_backend(task))
    assert isinstance(again, SearchResult) and again.winner == covered.winner and again.test == covered.test


def test_the_final_takes_the_best_ranked_finalists_the_calls_left_pay_for() -> None:
    need = {"a": 30, "b": 0, "c": 10, "d": 5}
    assert affordable(["a", "b", "c", "d"], need, 40, 3) == ["a", "b", "c"]
    assert affordable(["a", "b", "c", "d"], need, 20, 3) == ["b", "c", "d"]  # a does not fit
    assert affordable(["a", "c"], need, 4, 3) == ["a"]  # none fits: the best-ranked, on what it has
    assert affordable(["a", "b", "c"], need, 0, 3) == ["b"]  # nothing left: the fully scored only


def test_under_a_budget_that_covers_the_final_no_batch_passes_the_cap() -> None:
    """A proposer's batch of proposals (or a candidate's samples) is refused whole where it
    would pass the cap: the calls kept for the final are not spent by one batch."""
    from promptopt.backends.fake import FakeBackend
    from promptopt.budget import BudgetedBackend
    from promptopt.errors import BudgetExceeded
    from promptopt.types import GenerationRequest, Message

    def ask(n: int) -> list[GenerationRequest]:
        return [GenerationRequest(messages=(Message("user", f"q{i}"),)) for i in range(n)]

    strict = BudgetedBackend(FakeBackend(), Budget(max_calls=10, covers_final=True))
    strict.generate(ask(8))
    with pytest.raises(BudgetExceeded, match=r"calls \(8 of 10; 3 more would pass it\)"):
        strict.generate(ask(3))
    assert strict.spend.calls == 8
    loose = BudgetedBackend(FakeBackend(), Budget(max_calls=10))
    loose.generate(ask(8))
    loose.generate(ask(3))  # let through whole: the cap is overshot by the batch
    assert loose.spend.calls == 11


def test_a_limit_other_than_calls_keeps_its_own_reason_under_covers_final(task, db_url: str) -> None:  # type: ignore[no-untyped-def]
    budget = Budget(max_calls=500, max_tokens=6000, covers_final=True)
    result = search(config(budget=budget, dev_size=16, test_size=4, race_start=4), backend=skilled_backend(task),
                    db=db_url)  # fmt: skip
    assert isinstance(result, SearchResult)
    assert result.stopped_reason and result.stopped_reason.startswith("budget spent: tokens")
    plan = search(config(budget=budget, dev_size=16, test_size=4), db=db_url, dry_run=True)
    assert isinstance(plan, dict) and plan["final_calls"] == 2 * 4  # the final dev scoring is inside the cap


def test_resume_replays_from_cache_to_the_same_result(task, db_url: str) -> None:  # type: ignore[no-untyped-def]
    first = search(config(seed=3), backend=skilled_backend(task), db=db_url)
    assert isinstance(first, SearchResult)
    backend = skilled_backend(task)
    again = search(db=db_url, resume=first.run_id, backend=backend)
    assert isinstance(again, SearchResult)
    assert again.winner == first.winner and again.test == first.test
    assert backend.history == [] and again.model_calls == 0  # nothing asked of the model again
    store = Store(db_url)
    rows = store.get_evaluations(first.run_id)
    assert len(rows) == len({(r.candidate_hash, r.split, r.example_id) for r in rows})  # no duplicates
    store.close()


def test_a_proposer_given_as_a_backend_is_recorded_for_resume(task, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """optimize(proposer=<Backend>) and search(proposer_backend=...): the run stores the
    proposer's id, so a resume without the object rebuilds that model instead of
    proposing with the task model (as the task model's id is stored and rebuilt)."""
    from promptopt.backends import FakeBackend
    from promptopt.controller import prepare_search

    proposer = FakeBackend(skilled_backend(task)._responder, model="fake/proposer")
    first = search(config(), backend=skilled_backend(task), proposer_backend=proposer, db=db_url)
    assert isinstance(first, SearchResult) and proposer.history  # it proposed
    store = Store(db_url)
    assert store.get_run(first.run_id).config["proposer_model"] == "fake/proposer"
    store.close()
    with prepare_search(db=db_url, resume=first.run_id) as resumed:
        assert resumed.config.proposer_model == "fake/proposer"
    # A proposer named as a spec stays as it was given.
    with prepare_search(config(proposer_model="fake/named"), db=db_url, proposer_backend=proposer) as named:
        assert named.config.proposer_model == "fake/named"


def test_a_resume_refuses_another_task_or_other_data(task, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """A task given to a resume (optimize(task, resume=...), search(resume=..., task=...))
    must be the run's: another task or other rows would end the run with two datasets'
    scores under one dataset hash."""
    from promptopt.errors import ConfigError, DataError

    rows = [{"question": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(30)]
    mine = Task.from_records(rows, input_fields=["question"], target_field="answer", dev_size=10)
    first = search(config(task="records", dev_size=10, test_size=8), backend=skilled_backend(task), db=db_url,
                   task=mine)  # fmt: skip
    assert isinstance(first, SearchResult)
    with pytest.raises(ConfigError, match=r"searched task 'records', not 'gsm-symbolic'"):
        search(db=db_url, resume=first.run_id, task=task)
    other = Task.from_records([{**r, "answer": str(int(r["answer"]) + 1)} for r in rows],
                              input_fields=["question"], target_field="answer", dev_size=10)  # fmt: skip
    with pytest.raises(DataError, match="not the data run .* used"):
        search(db=db_url, resume=first.run_id, task=other)
    again = search(db=db_url, resume=first.run_id, task=mine, backend=skilled_backend(task))
    assert isinstance(again, SearchResult) and again.winner == first.winner
    import promptopt

    report = promptopt.evaluate(mine, first.winner, skilled_backend(task), split="dev", limit=2, db=db_url)
    with pytest.raises(ConfigError, match=f"run {report.run_id} is an eval run, not a search"):
        search(db=db_url, resume=report.run_id)


def test_dry_run_estimates_without_calls(task, db_url: str) -> None:  # type: ignore[no-untyped-def]
    backend = skilled_backend(task)
    plan = search(config(), backend=backend, db=db_url, dry_run=True)
    assert isinstance(plan, dict) and plan["search_calls"] > 0 and plan["final_calls"] > 0
    assert backend.history == []


def test_estimate_says_when_the_rounds_end_the_search_before_the_call_limit(task, db_url: str) -> None:  # type: ignore[no-untyped-def]
    plan = search(config(budget=Budget(max_calls=5000)), db=db_url, dry_run=True)
    assert isinstance(plan, dict)
    assert f"at most {plan['search_calls']} calls, under --max-calls 5000" in plan["note"]
    assert "raise --rounds" in plan["note"]
    # The note is true: the run ends by its rounds, under its estimate, with no limit hit.
    result = search(config(budget=Budget(max_calls=5000)), backend=skilled_backend(task), db=db_url)
    assert isinstance(result, SearchResult)
    assert result.stopped_reason is None and result.spent["calls"] <= plan["search_calls"]
    assert result.estimate["note"] == plan["note"]
    # No note when the limit binds, or without a limit.
    tight = search(config(budget=Budget(max_calls=60)), db=db_url, dry_run=True)
    assert isinstance(tight, dict) and "note" not in tight
    unlimited = search(config(), db=db_url, dry_run=True)
    assert isinstance(unlimited, dict) and "note" not in unlimited


def test_opro_spends_a_preset_in_several_small_steps(task, db_url: str) -> None:  # type: ignore[no-untyped-def]
    base = {"task": "gsm-symbolic", "model": "fake", "base": Candidate(instruction="Answer.")}
    opro, ape = (
        SearchConfig.from_preset("light", policy="opro", **base),
        SearchConfig.from_preset("light", **base),
    )
    assert (opro.n_proposals, opro.rounds) == (2, 4) and (ape.n_proposals, ape.rounds) == (6, 1)
    assert SearchConfig.from_preset("light", policy="opro", rounds=2, **base).rounds == 2  # an option wins
    backend = skilled_backend(task)
    result = search(SearchConfig.from_preset("light", policy="opro", dev_size=24, test_size=20, **base),
                     backend=backend, db=db_url)  # fmt: skip
    assert isinstance(result, SearchResult)
    steps = [r for r in backend.history if "<INS>" in r.messages[-1].content]  # OPRO's meta-prompts
    # the first step's history is only the short "Answer.": nothing to improve on, so it
    # asks what the instruction was from demos (APE's induction; issue #27) instead
    induced = [r for r in backend.history if r.messages[-1].content.startswith("A teacher gave")]
    assert len(steps) + len(induced) == 4 * 2 and len(induced) >= 2  # four steps of two proposals


class Recording(Policy):
    """Proposes one pool (the starting prompt and one variant); records what the
    controller did with it. ``fail`` makes ``ask`` raise, ``tell`` is where it fails."""

    name = "recording"
    events: list[str] = []
    fail: str | None = None
    seen_settings: PolicySettings | None = None

    def __init__(self, base: Candidate, proposer: Proposer, settings: PolicySettings) -> None:
        super().__init__(base, proposer, settings)
        type(self).seen_settings = settings
        self.asked = False

    def ask(self) -> list[Proposal]:
        if self.fail == "ask":
            raise RuntimeError("the policy broke")
        if self.asked:
            return []
        self.asked = True
        return [
            Proposal(self.base, "seed"),
            Proposal(self.with_text("Solve it step by step carefully."), "recording"),
        ]

    def describe(self) -> dict[str, object]:
        self.events.append("describe")
        return {}

    def close(self) -> None:
        self.events.append("close")


@pytest.mark.parametrize("how", ["finished", "budget", "error"])
def test_the_policy_is_closed_however_the_search_ends(
    how: str, task: Task, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(POLICIES, "recording", Recording)
    monkeypatch.setattr(Recording, "events", [])
    monkeypatch.setattr(Recording, "fail", "ask" if how == "error" else None)
    budget = Budget(max_calls=4) if how == "budget" else Budget()
    run = config("recording", dev_size=12, test_size=12, budget=budget)
    if how == "error":
        with pytest.raises(RuntimeError, match="the policy broke"):
            search(run, backend=skilled_backend(task), db=db_url)
        assert Recording.events == ["close"]
        assert Store(db_url).list_runs()[0].status == "failed"
        return
    result = search(run, backend=skilled_backend(task), db=db_url)
    assert isinstance(result, SearchResult)
    assert (result.stopped_reason is not None) == (how == "budget")
    assert Recording.events == ["describe", "close"]  # closed once, after the run summary was taken
    assert Recording.seen_settings is not None and Recording.seen_settings.dev_size == 12


def test_successive_halving_spends_less_and_keeps_the_best() -> None:
    truth = {f"c{i}": i / 20 for i in range(16)}

    def score(candidate: str, n: int) -> list[float | None]:
        p = truth[candidate]
        return [1.0 if ((k * 7919 + int(p * 1000)) % 100) / 100 < p else 0.0 for k in range(n)]

    asked: list[int] = []

    def counting(candidate: str, n: int) -> list[float | None]:
        asked.append(n)
        return score(candidate, n)

    raced = successive_halving(list(truth), counting, 80, start=10, keep=1)
    full = full_evaluation(list(truth), score, 80)
    best_raced = max(raced.values(), key=lambda s: (s.n, s.mean)).candidate
    best_full = max(full.values(), key=lambda s: s.mean).candidate
    assert best_raced == best_full
    assert schedule_size(16, 80, start=10) < 16 * 80 * 0.4


def test_a_balanced_race_drops_the_lean_that_the_mean_keeps() -> None:
    golds = ["(B)"] * 6 + ["(A)"] * 2 + ["(C)"] * 2  # the first dev items lean on (B), as the model does
    answers = {
        "lean": ["(B)"] * 10,  # every (B) item, no other: 60% by the mean, 1/3 balanced
        "reader": ["(B)", "(A)", "(A)", "(C)", "(C)", "(C)", "(A)", "(A)", "(C)", "(C)"],  # 50%, 7/9 balanced
    }

    def score(candidate: str, n: int) -> list[float | None]:
        return [float(a == g) for a, g in zip(answers[candidate][:n], golds[:n], strict=True)]

    by_mean = successive_halving(list(answers), score, 10, start=10, keep=1)
    balanced = successive_halving(list(answers), score, 10, start=10, keep=1, golds=golds)
    assert max(by_mean.values(), key=lambda s: s.mean).candidate == "lean"
    assert max(balanced.values(), key=lambda s: s.mean).candidate == "reader"
    assert balanced["lean"].mean == pytest.approx(1 / 3)
    assert balanced["reader"].mean == pytest.approx((1 / 6 + 1 + 1) / 3)
    # a stage on the first 4 items: balanced over the golds of those items only
    first = successive_halving(["lean", "reader"], score, 4, start=4, keep=2, golds=golds)
    assert first["lean"].mean == 1.0 and first["reader"].mean == pytest.approx(1 / 4)


def test_paired_difference_mcnemar() -> None:
    base = [0.0] * 50 + [1.0] * 50
    better = [1.0] * 30 + [0.0] * 20 + [1.0] * 50
    result = paired_difference(base, better)
    assert result["diff"] == pytest.approx(0.3) and result["p_value"] < 0.001
    same = paired_difference(base, base)
    assert same["diff"] == 0 and same["p_value"] == 1.0
