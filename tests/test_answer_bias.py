"""Issue #28: option permutation and calibration undo a model's answer bias."""

from __future__ import annotations

import math
import re

import pytest

from promptopt.backends import CachingBackend, FakeBackend
from promptopt.bias import calibration as cal
from promptopt.bias.permute import find_options, map_letters, orderings, permuted_example
from promptopt.errors import ConfigError
from promptopt.executor import Executor
from promptopt.store import Store
from promptopt.tasks.task import Task
from promptopt.types import Candidate, GenerationRequest

CONTENTS = ["apple", "pear", "plum", "fig"]


def mc_task(n_items: int = 12, n_options: int = 3) -> Task:
    """Items whose right option is the one marked 'RIGHT', at every position in turn."""
    rows = []
    for i in range(n_items):
        gold = i % n_options
        options = [f"{CONTENTS[j]}{' RIGHT' if j == gold else ''}" for j in range(n_options)]
        block = "\n".join(f"({'ABCD'[j]}) {text}" for j, text in enumerate(options))
        rows.append(
            {"input": f"Question {i}: which is right?\nOptions:\n{block}", "target": f"({'ABCD'[gold]})"}
        )
    return Task.from_records(rows, dev=rows[:4], test=rows, input_fields=["input"], target_field="target",
                             extractor="choice", template="{input}")  # fmt: skip


def shown_options(request: GenerationRequest) -> list[str]:
    return re.findall(r"^\(([A-D])\) (.+)$", request.messages[-1].content, re.M)


def biased_reply(request: GenerationRequest) -> str:
    """Biased to (A): right only when the right option is shown first (then (A) is right)."""
    return "So the answer is (A)."


def biased_scores(request: GenerationRequest) -> dict[str, float]:
    """A strong prior on position A, a small bonus for the right content."""
    texts = dict(shown_options(request))
    out = {}
    for label in request.score_labels:
        letter = label[-2]
        out[label] = (-0.2 if letter == "A" else -1.5) + (0.6 if "RIGHT" in texts.get(letter, "") else 0.0)
    return out


def accuracy(results) -> float:  # type: ignore[no-untyped-def]
    return sum(r.score for r in results) / len(results)


# ------------------------------------------------------------------ the math, by hand


def test_batch_calibration_matches_a_hand_computation() -> None:
    batch = [{"A": math.log(0.9), "B": math.log(0.1)}, {"A": math.log(0.6), "B": math.log(0.4)},
             {"A": math.log(0.8), "B": math.log(0.2)}]  # fmt: skip
    prior = cal.batch_prior(batch)
    assert prior["A"] == pytest.approx(2.3 / 3) and prior["B"] == pytest.approx(0.7 / 3)
    # item 2: 0.6 / 0.7667 = 0.7826 against 0.4 / 0.2333 = 1.7143 -> B with 1.7143 / 2.4969
    second = cal.calibrate(batch[1], prior)
    assert cal.best_label(second) == "B"
    assert math.exp(second["B"]) == pytest.approx((0.4 / (0.7 / 3)) / (0.6 / (2.3 / 3) + 0.4 / (0.7 / 3)))
    assert cal.best_label(cal.calibrate(batch[0], prior)) == "A"


def test_contextual_calibration_matches_a_hand_computation() -> None:
    content_free = [{"A": math.log(0.7), "B": math.log(0.3)}, {"A": 0.0, "B": 0.0},  # 0.5 / 0.5
                    {"A": math.log(0.9), "B": math.log(0.1)}]  # fmt: skip
    prior = cal.contextual_prior(content_free)
    assert prior == pytest.approx({"A": 0.7, "B": 0.3})
    calibrated = cal.calibrate({"A": math.log(0.6), "B": math.log(0.4)}, prior)
    # 0.6 / 0.7 = 0.857, 0.4 / 0.3 = 1.333 -> B at 1.333 / 2.190 = 0.6087
    assert math.exp(calibrated["B"]) == pytest.approx((0.4 / 0.3) / (0.6 / 0.7 + 0.4 / 0.3))


def test_position_prior_matches_a_hand_computation() -> None:
    # shift 0 gives positions (0.8, 0.2), shift 1 (the contents swapped) (0.6, 0.4): the prior
    # is proportional to the geometric means, sqrt(0.48) and sqrt(0.08)
    shifted = [[math.log(0.8), math.log(0.2)], [math.log(0.6), math.log(0.4)]]
    prior = cal.item_position_prior(shifted)
    expected = math.sqrt(0.48) / (math.sqrt(0.48) + math.sqrt(0.08))
    assert prior == pytest.approx([expected, 1 - expected])
    assert cal.position_prior([shifted, shifted]) == pytest.approx(prior)
    fixed = cal.calibrate_positions([math.log(0.6), math.log(0.4)], prior)
    assert fixed[1] > fixed[0]  # 0.4 / 0.29 beats 0.6 / 0.71


def test_averaging_over_orderings_matches_a_hand_computation() -> None:
    # two orderings of one item, already mapped back to the original letters: (A) at
    # 0.8 then 0.3, (B) at 0.2 then 0.7 -> mean log-probabilities (log 0.24 / 2, log 0.14 / 2)
    first = {"A": math.log(0.8), "B": math.log(0.2)}
    second = {"A": math.log(0.3) + 5.0, "B": math.log(0.7) + 5.0}  # any offset per ordering
    mean = cal.average_orderings([first, second])
    assert mean["A"] == pytest.approx(math.log(0.24) / 2) and mean["B"] == pytest.approx(math.log(0.14) / 2)
    assert cal.best_label(mean) == "A"
    # a pure position prior cancels: (A) is first in one ordering, second in the other
    prior_first = {"A": math.log(0.9 * 0.5), "B": math.log(0.1 * 0.5)}
    prior_second = {"A": math.log(0.1 * 0.5), "B": math.log(0.9 * 0.5)}
    assert cal.average_orderings([prior_first, prior_second]) == pytest.approx(
        {"A": math.log(0.3), "B": math.log(0.3)}
    )
    assert cal.average_orderings([]) == {}


def test_orderings_are_cyclic_or_seeded() -> None:
    assert orderings(3, 3, "x") == [(0, 1, 2), (1, 2, 0), (2, 0, 1)]
    assert orderings(2, 3, "x") == [(0, 1), (1, 0)]  # more would repeat
    four = orderings(4, 3, "item-1")
    assert four[0] == (0, 1, 2, 3) and len(set(four)) == 3 and four == orderings(4, 3, "item-1")
    for seed in range(50):  # k < n: each ordering puts a different option first
        eleven = orderings(11, 3, f"item-{seed}")
        assert len({order[0] for order in eleven}) == 3 and all(sorted(o) == list(range(11)) for o in eleven)


# ------------------------------------------------------------------ through the executor


def test_permutation_recovers_the_answers_of_a_model_biased_to_a() -> None:
    task = mc_task()
    plain = Executor(task, FakeBackend(biased_reply, scorer=biased_scores)).evaluate(
        Candidate(), task.examples("test"), "test"
    )
    assert accuracy(plain) == pytest.approx(1 / 3)  # right only where the gold is (A)
    backend = FakeBackend(biased_reply, scorer=biased_scores)
    permuted = Executor(task, backend).evaluate(Candidate(permute=3), task.examples("test"), "test")
    assert accuracy(permuted) == 1.0
    # three orderings, then (a three-way tie) three scoring calls, kept without an answer
    assert all(len(r.samples) == 6 for r in permuted)
    first = permuted[1]  # gold (B)
    assert [s.parsed_answer for s in first.samples] == ["(A)", "(B)", "(C)", None, None, None]
    assert first.answer == "(B)" and "tie-break" in first.samples[3].raw_output
    assert first.tokens_in == sum(s.tokens_in for s in first.samples) > 0


def test_the_tie_break_works_where_answers_are_read_as_lower_cased_labels() -> None:
    """A task with options whose golds are more than 5% no letter is read as labels: its
    answers are ``(a)``, the scored labels ``(A)``; the tie-break must still pick by the
    scores, not fall back to the first ordering's (biased) answer."""
    task = mc_task()
    rows = [{"input": e.inputs["input"], "target": e.target} for e in task.examples("test")]
    stray = [
        {"input": f"Which is right {i}?\nOptions:\n(A) fig\n(B) plum", "target": "fig"} for i in range(2)
    ]
    odd = [*rows, *stray]  # 2 of 30 golds are no letter
    task = Task.from_records(odd, dev=rows[:4], test=rows, input_fields=["input"], target_field="target",
                             template="{input}")  # fmt: skip
    assert task.extract("So the answer is (B).") == "(b)"
    permuted = Executor(task, FakeBackend(biased_reply, scorer=biased_scores)).evaluate(
        Candidate(permute=3), task.examples("test"), "test"
    )
    assert accuracy(permuted) == 1.0 and permuted[1].answer == "(b)"


def test_permutation_without_log_probs_keeps_the_first_orderings_answer() -> None:
    class NoScores(FakeBackend):
        def can_score_labels(self) -> bool:
            return False

    task = mc_task()
    results = Executor(task, NoScores(biased_reply)).evaluate(
        Candidate(permute=3), task.examples("test"), "test"
    )
    assert [r.answer for r in results] == ["(A)"] * len(results)


def test_an_item_without_an_options_block_is_reported_and_left_unpermuted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = [{"input": "Is water wet? Answer (A) yes or (B) no.", "target": "(A)"},
            {"input": "Is fire cold? Answer (A) yes or (B) no.", "target": "(B)"}]  # fmt: skip
    task = Task.from_records(rows, test=rows, input_fields=["input"], target_field="target", extractor="choice",
                             template="{input}")  # fmt: skip
    backend = FakeBackend(biased_reply)
    executor = Executor(task, backend)
    with caplog.at_level("WARNING"):
        results = executor.evaluate(Candidate(permute=3), task.examples("test"), "test")
    assert len(results) == 2 and all(len(r.samples) == 1 for r in results)
    assert [m.messages[-1].content for m in backend.history] == [r["input"] for r in rows]  # as written
    assert len(executor.notes) == 1 and "left unpermuted" in executor.notes[0]
    assert sum("left unpermuted" in r.message for r in caplog.records) == 1  # said once
    assert find_options(task.examples("test")[0])[0] is None


def test_calibration_on_scripted_log_probs_matches_a_hand_computation() -> None:
    task = mc_task(n_items=3, n_options=2)  # golds (A), (B), (A)
    scripted = {0: (0.9, 0.1), 1: (0.6, 0.4), 2: (0.8, 0.2)}

    def scorer(request: GenerationRequest) -> dict[str, float]:
        item = int(re.search(r"Question (\d+)", request.messages[-1].content).group(1))  # type: ignore[union-attr]
        return {label: math.log(scripted[item]["AB".index(label[-2])]) for label in request.score_labels}

    results = Executor(task, FakeBackend(scorer=scorer)).evaluate(
        Candidate(calibration="batch"), task.examples("test"), "test"
    )
    # by hand (test_batch_calibration_matches_a_hand_computation): A, B, A -> all right
    assert [r.answer for r in results] == ["(A)", "(B)", "(A)"] and accuracy(results) == 1.0
    plain = Executor(task, FakeBackend(scorer=scorer)).evaluate(
        Candidate(calibration="batch"), task.examples("test")[1:2], "test"
    )
    assert plain[0].answer == "(A)"  # a batch of one is answered uncalibrated (0.6 against 0.4)
    raw = Executor(task, FakeBackend(scorer=scorer)).evaluate(
        Candidate(calibration="raw"), task.examples("test"), "test"
    )
    # the best-scored label as it is: (A) everywhere, the lean batch calibration removes
    assert [r.answer for r in raw] == ["(A)", "(A)", "(A)"] and accuracy(raw) == pytest.approx(2 / 3)
    assert "calibrated" not in raw[1].samples[0].raw_output
    assert raw[1].samples[0].raw_output.endswith("So the answer is (A).")


def test_batch_calibration_takes_each_label_set_apart() -> None:
    """Items with 2 and with 4 options in one batch: a prior pooled over both would give
    (C) and (D) more weight than (A) and (B) have (these appear in every item, so their mean
    is diluted by the 2-option items' larger shares) and push the 4-option items toward
    (C) and (D); one prior per label set answers every item right (hand-computed below)."""
    rows = []
    for i, (n, gold) in enumerate([(2, 0), (2, 1), (4, 0), (4, 1), (4, 2), (4, 3)]):
        block = "\n".join(f"({'ABCD'[j]}) {CONTENTS[j]}" for j in range(n))
        rows.append({"input": f"Question {i}: which?\nOptions:\n{block}", "target": f"({'ABCD'[gold]})"})
    task = Task.from_records(rows, dev=rows, test=rows, input_fields=["input"], target_field="target",
                             extractor="choice", template="{input}")  # fmt: skip
    # 2 options: 0.6 on the gold; 4 options: 0.28 on the gold, 0.24 on each other option
    probs = {0: (0.6, 0.4), 1: (0.4, 0.6)}
    probs.update({2 + g: tuple(0.28 if j == g else 0.24 for j in range(4)) for g in range(4)})

    def scorer(request: GenerationRequest) -> dict[str, float]:
        item = int(re.search(r"Question (\d+)", request.messages[-1].content).group(1))  # type: ignore[union-attr]
        return {label: math.log(probs[item]["ABCD".index(label[-2])]) for label in request.score_labels}

    results = Executor(task, FakeBackend(scorer=scorer)).evaluate(
        Candidate(calibration="batch"), task.examples("test"), "test"
    )
    assert [r.answer for r in results] == [r["target"] for r in rows]
    # pooled, (A) would get (0.6 + 0.4 + 0.28 + 3 * 0.24) / 6 = 1/3 and (C) (0.28 + 3 * 0.24) / 4 = 1/4:
    # the 4-option item whose gold is (A) would read 0.28 / (1/3) = 0.84 against 0.24 / (1/4) = 0.96 for (C)
    pooled = cal.batch_prior(
        [{k: math.log(v) for k, v in zip("ABCD", probs[i], strict=False)} for i in probs]
    )
    assert (
        cal.best_label(cal.calibrate({k: math.log(v) for k, v in zip("ABCD", probs[2], strict=True)}, pooled))
        == "C"
    )


def test_position_calibration_removes_a_pure_position_prior() -> None:
    task = mc_task()
    results = Executor(task, FakeBackend(scorer=biased_scores)).evaluate(
        Candidate(calibration="position"), task.examples("test"), "test"
    )
    assert accuracy(results) == 1.0
    # the uncalibrated argmax would pick (A) wherever the bonus does not beat the prior
    assert "position-calibrated" in results[0].samples[0].raw_output


def test_label_scores_averaged_over_orderings_remove_the_position_prior() -> None:
    """permute 3 with calibration raw: every cyclic shift of 3 options scored, mapped back,
    averaged: the prior on (A) cancels where raw label scores keep it."""
    task = mc_task()
    raw = Executor(task, FakeBackend(scorer=biased_scores)).evaluate(
        Candidate(calibration="raw"), task.examples("test"), "test"
    )
    assert accuracy(raw) == pytest.approx(1 / 3)  # (A) everywhere
    backend = FakeBackend(scorer=biased_scores)
    results = Executor(task, backend).evaluate(
        Candidate(calibration="raw", permute=3), task.examples("test"), "test"
    )
    assert accuracy(results) == 1.0
    assert len(backend.history) == 3 * len(task.examples("test"))  # one scoring call per ordering
    first = results[1].samples[0]
    assert len(results[1].samples) == 1 and first.raw_output.count("ordering ") == 3
    assert "mean over 3 orderings" in first.raw_output and first.raw_output.endswith("So the answer is (B).")
    one = (
        Executor(task, FakeBackend(scorer=biased_scores))
        .evaluate(Candidate(calibration="raw"), task.examples("test")[:1], "test")[0]
        .samples[0]
    )
    assert first.tokens_in > one.tokens_in  # the orderings' tokens are added up
    # with a calibration too: each ordering calibrated, then averaged
    batch = Executor(task, FakeBackend(scorer=biased_scores)).evaluate(
        Candidate(calibration="batch", permute=2), task.examples("test"), "test"
    )
    assert accuracy(batch) == 1.0 and "batch-calibrated" in batch[0].samples[0].raw_output


def test_an_items_own_orderings_are_no_batch() -> None:
    """batch with permute on one item: its orderings alone would make its own mean the
    prior (every label equal when the right option sits at one shown position in each),
    so it is answered uncalibrated, as a batch of one is without permute."""
    task = mc_task(n_items=8, n_options=4)

    def sure(request: GenerationRequest) -> dict[str, float]:  # the right content, no lean
        texts = dict(shown_options(request))
        return {
            label: (0.0 if "RIGHT" in texts.get(label[-2], "") else -3.0) for label in request.score_labels
        }

    for example in task.examples("test"):
        executor = Executor(task, FakeBackend(scorer=sure))
        (result,) = executor.evaluate(Candidate(calibration="batch", permute=2), [example], "test")
        assert result.score == 1.0, result.samples[0].raw_output
        assert any("answered uncalibrated" in note for note in executor.notes)
    together = Executor(task, FakeBackend(scorer=sure)).evaluate(
        Candidate(calibration="batch", permute=2), task.examples("test"), "test"
    )
    assert accuracy(together) == 1.0


def test_the_position_prior_takes_an_item_once_not_each_of_its_orderings() -> None:
    """With too few dev items the prior falls back on the evaluated items; with permute
    those are one item's orderings, whose cyclic shifts are one set of requests."""
    full = mc_task(n_items=6)
    rows = [{"input": e.inputs["input"], "target": e.target} for e in full.examples("test")]
    task = Task.from_records(rows, dev=rows[:1], test=rows, input_fields=["input"], target_field="target",
                             extractor="choice", template="{input}")  # fmt: skip
    backend = FakeBackend(scorer=biased_scores)
    (result,) = Executor(task, backend).evaluate(
        Candidate(calibration="position", permute=3), task.examples("test")[4:5], "test"
    )
    assert result.score == 1.0
    # 3 orderings of the item + the prior: every shift of the dev item and of the item itself
    assert len(backend.history) == 3 + 3 * 2


def test_averaged_label_scores_leave_an_item_without_options_as_it_is() -> None:
    rows = [
        {"input": "Is it right? yes or no", "target": "yes"},
        {"input": "Is it wrong? yes or no", "target": "no"},
    ]
    task = Task.from_records(rows, dev=rows, test=rows, input_fields=["input"], target_field="target",
                             extractor="yesno", template="{input}")  # fmt: skip
    backend = FakeBackend(
        scorer=lambda r: {label: (0.0 if "yes" in label else -1.0) for label in r.score_labels}
    )
    executor = Executor(task, backend)
    results = executor.evaluate(Candidate(calibration="raw", permute=3), task.examples("test"), "test")
    assert [r.answer for r in results] == ["yes", "yes"] and len(backend.history) == 2  # one ordering each
    assert any("left unpermuted" in note for note in executor.notes)
    assert "mean over" not in results[0].samples[0].raw_output  # one ordering: no mean of one


def test_batch_with_permute_divides_out_the_batchs_lean_on_the_original_letters() -> None:
    """Over every cyclic shift the position prior cancels, but a lean on one option's
    *content* stays: here 'plum', always the original (C). batch with permute divides the
    batch's mean averaged distribution (over the original letters) out of each item's
    average; raw (and contextual, position) leave the lean."""
    task = mc_task(n_items=12, n_options=3)

    def leaning(request: GenerationRequest) -> dict[str, float]:
        texts = dict(shown_options(request))
        out = {}
        for label in request.score_labels:
            text = texts.get(label[-2], "")
            out[label] = (
                (0.8 if label[-2] == "A" else 0.0)
                + (1.0 if "plum" in text else 0.0)
                + (0.6 if "RIGHT" in text else 0.0)
            )
        return out

    raw = Executor(task, FakeBackend(scorer=leaning)).evaluate(
        Candidate(calibration="raw", permute=3), task.examples("test"), "test"
    )
    assert {r.answer for r in raw} == {"(C)"}  # plum everywhere: right on a third
    batch = Executor(task, FakeBackend(scorer=leaning)).evaluate(
        Candidate(calibration="batch", permute=3), task.examples("test"), "test"
    )
    assert accuracy(batch) == 1.0
    # by hand: the averages are the content scores up to a constant; gold (A): apple 0.6,
    # pear 0, plum 1.0, each item's softmax averaged over the 12 items is the prior
    soft = [cal.probabilities(s) for s in ({"A": 0.6, "B": 0.0, "C": 1.0}, {"A": 0.0, "B": 0.6, "C": 1.0},
                                           {"A": 0.0, "B": 0.0, "C": 1.6})]  # fmt: skip
    prior = {k: sum(p[k] for p in soft) / 3 for k in "ABC"}
    assert 0.6 - math.log(prior["A"]) > 1.0 - math.log(prior["C"])  # apple beats plum once divided
    assert "mean batch-calibrated" in batch[0].samples[0].raw_output


def test_batch_with_permute_is_batch_on_items_without_options() -> None:
    """Items whose options cannot be found have one ordering: batch-calibrated once, as
    without permute (not a second time after the average)."""
    rows = [{"input": f"Is item {i} right? yes or no", "target": "yes" if i % 3 else "no"} for i in range(9)]
    task = Task.from_records(rows, dev=rows, test=rows, input_fields=["input"], target_field="target",
                             extractor="yesno", template="{input}")  # fmt: skip

    def scorer(request: GenerationRequest) -> dict[str, float]:
        i = int(re.search(r"item (\d+)", request.messages[-1].content).group(1))  # type: ignore[union-attr]
        return {label: (0.1 * i if "yes" in label else 0.4) for label in request.score_labels}

    once = Executor(task, FakeBackend(scorer=scorer)).evaluate(
        Candidate(calibration="batch"), task.examples("test"), "test"
    )
    permuted = Executor(task, FakeBackend(scorer=scorer)).evaluate(
        Candidate(calibration="batch", permute=3), task.examples("test"), "test"
    )
    assert [r.answer for r in permuted] == [r.answer for r in once]
    assert "mean batch-calibrated" not in permuted[0].samples[0].raw_output


def test_an_ordering_that_fails_fails_its_item_not_the_others() -> None:
    task = mc_task(n_items=2)

    def scorer(request: GenerationRequest) -> dict[str, float]:
        if shown_options(request)[0][1].startswith("pear") and "Question 1" in request.messages[-1].content:
            return {}  # unreadable label scores: the request fails
        return biased_scores(request)

    results = Executor(task, FakeBackend(scorer=scorer)).evaluate(
        Candidate(calibration="raw", permute=3), task.examples("test"), "test"
    )
    assert results[0].answer == "(A)" and results[0].error is None
    assert results[1].answer is None and results[1].score is None and results[1].error


def test_calibration_refuses_a_backend_without_log_probs_and_bad_mixes() -> None:
    class NoScores(FakeBackend):
        def can_score_labels(self) -> bool:
            return False

    task = mc_task()
    from promptopt.backends.scoring import LabelScoringError

    with pytest.raises(LabelScoringError, match="cannot give label log-probabilities"):
        Executor(task, NoScores()).evaluate(
            Candidate(calibration="contextual"), task.examples("test"), "test"
        )
    with pytest.raises(ConfigError, match="cannot be combined with cot_mode"):
        Candidate(calibration="batch", cot_mode="zero_shot", cot_trigger="Think.")
    with pytest.raises(ConfigError):
        Candidate(permute=0)
    assert Candidate().hash == Candidate(permute=1, calibration="none").hash  # old identities kept
    assert Candidate(permute=3).hash != Candidate().hash


def test_resume_after_a_kill_mid_permutation_gives_the_identical_result(db_url: str) -> None:
    task = mc_task()
    examples = task.examples("test")
    whole = Executor(task, FakeBackend(biased_reply, scorer=biased_scores)).evaluate(
        Candidate(permute=3), examples, "test"
    )

    class Killed(Exception):
        pass

    answered = 0

    def dies(request: GenerationRequest) -> str:
        nonlocal answered
        answered += 1
        if answered == 5:  # in the middle of the second item's orderings
            raise Killed
        return biased_reply(request)

    store = Store(db_url)
    with pytest.raises(Killed):
        Executor(
            task, CachingBackend(FakeBackend(dies, scorer=biased_scores, latency_s=1e-6), store), batch_size=4
        ).evaluate(Candidate(permute=3), examples, "test")
    fresh = FakeBackend(biased_reply, scorer=biased_scores)
    resumed = Executor(task, CachingBackend(fresh, store), batch_size=4).evaluate(
        Candidate(permute=3), examples, "test"
    )
    assert [(r.answer, r.score, [s.parsed_answer for s in r.samples]) for r in resumed] == [
        (r.answer, r.score, [s.parsed_answer for s in r.samples]) for r in whole
    ]
    generated = [r for r in fresh.history if not r.score_labels]
    assert len(generated) == 3 * len(examples) - 4  # the 4 answered before the kill came from the cache
    store.close()


def test_permuted_example_moves_texts_not_letters() -> None:
    example = mc_task().examples("test")[1]
    block, _ = find_options(example)
    assert block is not None
    shifted = permuted_example(example, block, (1, 2, 0), 1)
    assert "(A) pear RIGHT\n(B) plum\n(C) apple" in shifted.inputs["input"] and shifted.target == "(A)"


def test_a_lower_case_answer_is_mapped_back_too() -> None:
    """A task with options read as labels (more than 5% of its golds no letter) reads its
    answers as lower-cased labels: ``(b)`` under a permutation is still a shown letter,
    and keeping it unmapped would count another option."""
    back = {"A": "C", "B": "A", "C": "B"}
    assert (
        map_letters("(b)", back) == "(a)"
        and map_letters("(B)", back) == "(A)"
        and map_letters("c", back) == "b"
    )
    assert map_letters("(z)", back) == "(z)" and map_letters("monsters, inc", back) == "monsters, inc"


def test_the_estimate_counts_the_extra_calls() -> None:
    from promptopt.bias.costs import calls_per_example, candidate_calls

    assert candidate_calls(Candidate()) == 1
    assert candidate_calls(Candidate(permute=3)) == 3 + 3  # 3 orderings + tie-break scoring
    assert candidate_calls(Candidate(calibration="batch")) == 1
    assert candidate_calls(Candidate(calibration="raw", permute=3)) == 3  # a scoring call per ordering
    assert calls_per_example(samples=3, two_stage=True, permute=3) == 3 * 6 + 3


def test_the_eval_bar_steps_by_the_orderings_and_never_runs_ahead(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`promptopt eval --permute 3` feeds its bar 3 requests per item: an item is shown
    done once its orderings are answered (it ran 3 items ahead per 3 answers before)."""
    import promptopt
    from promptopt.bias.costs import steady_calls
    from promptopt.progress import EvalProgressBar

    task = mc_task(n_items=12)
    for candidate in (Candidate(permute=3), Candidate(calibration="raw", permute=3)):
        assert steady_calls(candidate, task.examples("test")) == 36  # 3 options: every shift
        bar = EvalProgressBar("mc test", enabled=False)
        bar.start(12, steady_calls(candidate, task.examples("test")) / 12)
        answered = [0]

        def on_answers(count: int, bar: EvalProgressBar = bar, answered: list[int] = answered) -> None:
            answered[0] += count
            bar.answered(count)
            assert bar.shown <= answered[0] // 3

        backend = FakeBackend(biased_reply, scorer=biased_scores)
        report = promptopt.evaluate(task, candidate, backend, split="test", batch_size=4, progress=bar.update,
                                    on_answers=on_answers, db=f"sqlite:///{tmp_path / 'bar.db'}")  # fmt: skip
        assert report.n == 12 and bar.shown == 12 and answered[0] >= 36
    for calibration in ("contextual", "position"):  # their priors' calls answer no item: not counted
        candidate = Candidate(calibration=calibration)
        counted = [0]
        promptopt.evaluate(task, candidate, FakeBackend(biased_reply, scorer=biased_scores), split="test",
                           on_answers=lambda n, counted=counted: counted.__setitem__(0, counted[0] + n),
                           db=f"sqlite:///{tmp_path / f'{calibration}.db'}")  # fmt: skip
        assert counted[0] == steady_calls(candidate, task.examples("test")) == 12
    assert steady_calls(Candidate(samples=2, two_stage=True, permute=3), task.examples("test")) == 12 * 12
    two = mc_task(n_items=4, n_options=2).examples("test")  # 2 options: 2 orderings, not 3
    assert steady_calls(Candidate(permute=3, calibration="raw"), two) == 8


def test_the_position_overhead_counts_every_option_count_of_the_task() -> None:
    from promptopt.bias.costs import calibration_overhead, option_counts

    rows = []
    for i, n in enumerate([2, 2, 4, 4]):
        block = "\n".join(f"({'ABCD'[j]}) {CONTENTS[j]}" for j in range(n))
        rows.append({"input": f"Question {i}: which?\nOptions:\n{block}", "target": "(A)"})
    task = Task.from_records(rows, dev=rows, test=rows, input_fields=["input"], target_field="target",
                             extractor="choice", template="{input}")  # fmt: skip
    assert option_counts(task) == (2, 4)
    assert calibration_overhead("position", option_counts(task)) == 4 * (2 + 4)
    backend = FakeBackend(scorer=biased_scores)
    Executor(task, backend).evaluate(Candidate(calibration="position"), task.examples("test"), "test")
    assert len(backend.history) == 4 + calibration_overhead("position", option_counts(task))  # items + prior


# ------------------------------------------------------------------ a real HTTP server on loopback


def test_calibration_through_an_openai_compatible_server_with_logprobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from promptopt.backends.openai_backend import OpenAIBackend
    from promptopt.testing.openai_server import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    task = mc_task(n_items=3, n_options=2)
    scripted = {0: (0.9, 0.1), 1: (0.6, 0.4), 2: (0.8, 0.2)}  # as the hand computation above
    prefixes: list[str] = []

    def top(request: dict) -> list[tuple[str, float]]:  # type: ignore[type-arg]
        prefixes.append(request["messages"][-1]["content"])
        item = int(re.search(r"Question (\d+)", request["messages"][-2]["content"]).group(1))  # type: ignore[union-attr]
        a, b = scripted[item]
        return [("A", math.log(a)), ("B", math.log(b))]

    with FakeOpenAIServer(responder=lambda r: "x", top_logprobs=top) as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url)
        assert backend.can_score_labels()
        results = Executor(task, backend).evaluate(
            Candidate(calibration="batch"), task.examples("test"), "test"
        )
        backend.close()
    assert [r.answer for r in results] == ["(A)", "(B)", "(A)"]
    assert set(prefixes) == {"So the answer is ("}  # the labels' common beginning, continued by the server

    with FakeOpenAIServer(responder=lambda r: "x") as server:  # returns no logprobs
        backend = OpenAIBackend("fake-model", base_url=server.base_url)
        results = Executor(task, backend).evaluate(
            Candidate(calibration="batch"), task.examples("test"), "test"
        )
        backend.close()
    assert all(r.score is None and "returned no logprobs" in (r.error or "") for r in results)


@pytest.mark.parametrize("calibration", ["contextual", "position"])
def test_a_candidates_prior_is_estimated_once_per_executor(calibration: str) -> None:
    """Racing evaluates a candidate in stages: its content-free or permuted dev requests are
    sent once, not at every stage (each would be charged to the budget again)."""
    task = mc_task(n_items=8)
    backend = FakeBackend(scorer=biased_scores)
    executor = Executor(task, backend)
    candidate = Candidate(calibration=calibration)
    items = task.examples("test")
    executor.evaluate(candidate, items[:4], "test")
    first = len(backend.history)
    executor.evaluate(candidate, items[4:], "test")
    assert len(backend.history) - first == 4  # the items only
    assert first == 4 + (
        3 if calibration == "contextual" else 4 * 3
    )  # items + content-free / 4 dev x 3 shifts


def test_an_openai_compatible_server_scores_labels_one_token_tells_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Word labels continue after ``So the answer is`` (no bare trailing space); labels one
    token cannot tell apart (``1`` and ``10`` after a tokenizer that splits digits), or none
    among the top tokens, are a clear error, not a tie settled by the label order."""
    from promptopt.backends.openai_backend import OpenAIBackend
    from promptopt.backends.openai_scores import common_prefix
    from promptopt.testing.openai_server import FakeOpenAIServer

    assert common_prefix(("So the answer is yes", "So the answer is no")) == "So the answer is"
    assert common_prefix(("So the answer is yes", "So the answer is yet")) == "So the answer is"
    assert common_prefix(("So the answer is (A)", "So the answer is (B)")) == "So the answer is ("
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    rows = [{"input": f"How many in {i}?", "target": t} for i, t in enumerate(["1", "10", "2"] * 3)]
    task = Task.from_records(rows, test=rows, input_fields=["input"], target_field="target", extractor="number",
                             template="{input}")  # fmt: skip
    assert task.labels is not None and set(task.labels) == {"1", "2", "10"}
    replies = {
        "split digits": [(" 1", -0.5), (" 2", -1.0)],  # "10" can only be read from " 1"
        "whole numbers": [(" 1", -0.5), (" 10", -0.7), (" 2", -1.0)],
        "none": [(" the", -0.1), (" a", -0.2)],
    }
    for name, top in replies.items():
        with FakeOpenAIServer(responder=lambda r: "x", top_logprobs=lambda r, top=top: top) as server:
            backend = OpenAIBackend("fake-model", base_url=server.base_url)
            results = Executor(task, backend).evaluate(
                Candidate(calibration="raw"), task.examples("test"), "test"
            )
            backend.close()
        errors = {r.error for r in results}
        if name == "whole numbers":
            assert errors == {None} and {r.answer for r in results} == {"1"}
        elif name == "split digits":
            assert all(r.score is None for r in results)
            assert "'1', '10' begin with the same token '1'" in str(errors) or "'10', '1'" in str(errors)
        else:
            assert all(r.score is None for r in results) and "none of the labels" in str(errors)


def test_a_calibration_the_task_or_backend_cannot_use_is_refused_before_a_run_is_stored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import promptopt
    from promptopt.backends.scoring import LabelScoringError
    from promptopt.store import Store

    class NoScores(FakeBackend):
        def can_score_labels(self) -> bool:
            return False

    db = f"sqlite:///{tmp_path / 'refused.db'}"
    labels = Task.from_records([{"q": f"{i}?", "a": ["yes", "no"][i % 2]} for i in range(8)],
                               input_fields=["q"], target_field="a", test_size=4)  # fmt: skip
    with pytest.raises(ConfigError, match="calibration position: task records is not multiple choice"):
        promptopt.evaluate(labels, Candidate(calibration="position"), FakeBackend(), db=db)
    with pytest.raises(LabelScoringError, match="cannot give label log-probabilities"):
        promptopt.evaluate(mc_task(), Candidate(calibration="batch"), NoScores(), db=db)
    with Store(db) as store:
        assert store.list_runs() == []
