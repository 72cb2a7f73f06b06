"""Issue #28: an export carries the answer-bias strategy and `promptopt.load(...).run()` applies it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import promptopt
from promptopt.backends import FakeBackend
from promptopt.export import export, load
from promptopt.tasks import get_task
from promptopt.types import Candidate, GenerationRequest
from tests.test_answer_bias import biased_reply


def position_biased_scores(request: GenerationRequest) -> dict[str, float]:
    """Position (A) preferred; the option that contains 'not' a little more likely."""
    import re

    texts = dict(re.findall(r"^\(([A-D])\) (.+)$", request.messages[-1].content, re.M))
    return {
        label: (-0.2 if label[-2] == "A" else -1.5) + (0.6 if " not " in texts.get(label[-2], "") else 0.0)
        for label in request.score_labels
    }


@pytest.mark.parametrize(
    "strategy",
    [
        {"permute": 3},
        {"calibration": "raw"},
        {"calibration": "batch"},
        {"calibration": "position"},
        {"permute": 3, "calibration": "raw"},
        {"permute": 3, "calibration": "batch"},
    ],
)
def test_export_carries_the_strategy_with_parity(data_dir: Path, tmp_path: Path, strategy: dict) -> None:  # type: ignore[type-arg]
    task = get_task("bbh:snarks", data_dir)
    db = f"sqlite:///{tmp_path / 'bias.db'}"
    candidate = Candidate(instruction="Answer.", answer_format=task.spec.answer_format, **strategy)
    backend = FakeBackend(biased_reply, scorer=position_biased_scores)
    report = promptopt.evaluate(task, candidate, backend, split="dev", limit=8, db=db)
    path = tmp_path / "bias.yaml"
    export(db, report.run_id, "yaml", path)
    loaded = load(path)
    assert loaded.candidate == candidate and loaded.candidate.hash == candidate.hash
    request = tmp_path / "bias.json"
    export(db, report.run_id, "openai", request)  # one request cannot express it: it says what to add
    note = json.loads(request.read_text())["answer_bias"]
    assert set(strategy) <= set(note)
    assert ("mean of those averages over the batch" in note["how"]) == (
        strategy == {"permute": 3, "calibration": "batch"}
    )
    # parity: the loaded prompt reproduces the stored score from the cache, without a model call
    never = FakeBackend(lambda r: "The answer is (Z).", scorer=lambda r: dict.fromkeys(r.score_labels, 0.0))
    again = loaded.evaluate(task, backend=never, db=db, limit=8)
    assert again.accuracy == report.accuracy and never.history == []
    if "permute" in strategy:  # run() applies the permutation on one question
        example = task.examples("dev")[0]
        stored = next(r for r in report.results if r.example_id == example.id)
        answer = loaded.run(
            backend=FakeBackend(biased_reply, scorer=position_biased_scores), **example.inputs
        )
        assert answer.answer == stored.answer
        if "calibration" not in strategy:
            assert answer.parsed[:2] == ("(A)", "(B)")  # two orderings, mapped back


@pytest.mark.parametrize("strategy", [{"calibration": "batch"}, {"calibration": "batch", "permute": 3}])
def test_run_many_answers_a_batch_as_the_evaluation_did(
    data_dir: Path, tmp_path: Path, strategy: dict
) -> None:  # type: ignore[type-arg]
    """A batch calibration needs the questions together: `run_many` gives the stored
    evaluation's answers on the same items; `run` one at a time has no batch."""
    task = get_task("bbh:snarks", data_dir)
    db = f"sqlite:///{tmp_path / 'many.db'}"
    candidate = Candidate(instruction="Answer.", answer_format=task.spec.answer_format, **strategy)
    report = promptopt.evaluate(task, candidate, FakeBackend(biased_reply, scorer=position_biased_scores),
                                split="dev", limit=8, db=db)  # fmt: skip
    path = tmp_path / "many.yaml"
    export(db, report.run_id, "yaml", path)
    loaded = load(path)
    items = task.examples("dev")[:8]
    backend = FakeBackend(biased_reply, scorer=position_biased_scores)
    answers = loaded.run_many([e.inputs for e in items], backend=backend)
    stored = {r.example_id: r.answer for r in report.results}
    assert [a.answer for a in answers] == [stored[e.id] for e in items]
    if "permute" not in strategy:  # uncalibrated alone: the position lean comes back
        one_by_one = [loaded.run(backend=backend, **e.inputs).answer for e in items]
        assert one_by_one != [a.answer for a in answers]
    assert loaded.run_many([], backend=backend) == []


def test_run_many_answers_a_repeated_question_once(data_dir: Path, tmp_path: Path) -> None:
    """Two copies of one question under batch calibration would be each other's batch (and
    tie every label): the question is answered once, as run answers it."""
    from promptopt.errors import ConfigError
    from promptopt.export.loaded import PromptEditedWarning, warn_if_other_model

    task = get_task("bbh:snarks", data_dir)
    db = f"sqlite:///{tmp_path / 'twice.db'}"
    candidate = Candidate(instruction="Answer.", answer_format=task.spec.answer_format, calibration="batch")
    report = promptopt.evaluate(task, candidate, FakeBackend(biased_reply, scorer=position_biased_scores),
                                split="dev", limit=4, db=db)  # fmt: skip
    export(db, report.run_id, "yaml", tmp_path / "twice.yaml")
    loaded = load(tmp_path / "twice.yaml")
    question = task.examples("dev")[0].inputs
    leans_b = FakeBackend(
        biased_reply, scorer=lambda r: {k: 0.0 if "(B)" in k else -3.0 for k in r.score_labels}
    )
    twice = loaded.run_many([question, question], backend=leans_b)
    assert [a.answer for a in twice] == [loaded.run(backend=leans_b, **question).answer] * 2 == ["(B)"] * 2
    backend = leans_b
    with pytest.raises(ConfigError, match="list of input mappings"):
        loaded.run_many(question, backend=backend)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="list of input mappings"):
        loaded.run_many("what is 2+2?", backend=backend)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="question 1 is a str, not a mapping of input fields"):
        loaded.run_many([question, "q2"], backend=backend)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="question 2: missing input field.*unknown input field"):
        loaded.run_many([question, question, {"questoin": "?"}], backend=backend)
    with pytest.warns(PromptEditedWarning, match="tuned on local/m:openvino"):
        warn_if_other_model("local/m", "local/m:openvino")


@pytest.mark.parametrize(
    ("name", "calibration"),
    [("bbh:snarks", "contextual"), ("bbh:snarks", "position"), ("bbh:date_understanding", "contextual"),
     ("bbh:date_understanding", "position"), ("bbh:sports_understanding", "contextual")],
)  # fmt: skip
def test_a_fixed_prior_travels_in_the_export_and_answers_each_question_as_the_evaluation_did(
    data_dir: Path, tmp_path: Path, name: str, calibration: str
) -> None:
    """The export writes the prior the evaluation divided out (read from the response
    cache), so `run` on one question, `run_many` on many, give the stored answers and ask
    the model for the item only: a position prior is not estimated from the call's own
    questions, a contextual one is not asked again on every call (date_understanding: a
    5-option question under the prior over the task's 6 letters; sports_understanding: a
    yes/no task, whose labels the export carries)."""
    from promptopt.errors import ConfigError

    task = get_task(name, data_dir)
    db = f"sqlite:///{tmp_path / 'fixed.db'}"
    candidate = Candidate(
        instruction="Answer.", answer_format=task.spec.answer_format, calibration=calibration
    )
    report = promptopt.evaluate(task, candidate, FakeBackend(biased_reply, scorer=position_biased_scores),
                                split="dev", limit=8, db=db)  # fmt: skip
    export(db, report.run_id, "yaml", tmp_path / "fixed.yaml")
    loaded = load(tmp_path / "fixed.yaml")
    assert set(loaded.document["sampling"]["calibration_prior"]) == {calibration}
    export(db, report.run_id, "openai", tmp_path / "fixed.json")  # the one-request format says it too
    note = json.loads((tmp_path / "fixed.json").read_text())["answer_bias"]
    assert note["prior"] == loaded.document["sampling"]["calibration_prior"]
    items = task.examples("dev")[:8]
    stored = {r.example_id: r.answer for r in report.results}
    backend = FakeBackend(biased_reply, scorer=position_biased_scores)
    assert [loaded.run(backend=backend, **e.inputs).answer for e in items] == [stored[e.id] for e in items]
    assert [a.answer for a in loaded.run_many([e.inputs for e in items[::-1]], backend=backend)] == [
        stored[e.id] for e in items[::-1]
    ]
    assert len(backend.history) == 8 + 8  # one scoring request per question asked, no prior's
    edited = (tmp_path / "fixed.yaml").read_text().replace("system: Answer.", "system: Answer carefully.")
    (tmp_path / "edited.yaml").write_text(edited)
    with pytest.warns(UserWarning, match="changed after export"):
        changed = load(tmp_path / "edited.yaml")
    asks = FakeBackend(biased_reply, scorer=position_biased_scores)
    changed.run(backend=asks, **items[0].inputs)
    assert len(asks.history) > 1  # an edited prompt's prior is its own, asked of the model
    if name != "bbh:snarks":
        return
    # another model's answers get their own prior, asked of that model once
    other = FakeBackend(biased_reply, scorer=position_biased_scores, model="other")
    fresh = load(tmp_path / "fixed.yaml")
    for e in items[:2]:
        fresh.run(backend=other, **e.inputs)
    assert len(other.history) > 2
    asked = len(other.history)
    fresh.run(backend=other, **items[2].inputs)
    # position without dev items: a prior from the question's own 2 orderings, each call anew
    assert len(other.history) == asked + (1 if calibration == "contextual" else 1 + 2)
    # a run without the cache has no stored answers to build the prior from: no field, the model is asked
    bare = promptopt.evaluate(task, candidate, FakeBackend(biased_reply, scorer=position_biased_scores),
                              split="dev", limit=8, db=f"sqlite:///{tmp_path / 'bare.db'}", cache=False)  # fmt: skip
    export(f"sqlite:///{tmp_path / 'bare.db'}", bare.run_id, "yaml", tmp_path / "bare.yaml")
    assert "calibration_prior" not in load(tmp_path / "bare.yaml").document["sampling"]
    # a broken prior field says where
    text = (tmp_path / "fixed.yaml").read_text().replace("calibration_prior:", "calibration_prior: 3\n  was:")
    (tmp_path / "broken.yaml").write_text(text)
    with pytest.raises(
        ConfigError, match=r"broken.yaml: field 'sampling.calibration_prior' must hold"
    ) as caught:
        load(tmp_path / "broken.yaml")
    assert caught.value.message.count("broken.yaml") == 1


@pytest.mark.parametrize("name", ["bbh:sports_understanding", "bbh:formal_fallacies", "bbh:object_counting"])
def test_a_label_tasks_export_renders_and_reads_answers_as_the_task_did(
    data_dir: Path, tmp_path: Path, name: str
) -> None:
    """The answer-format line of a yes/no or label task names its answers as the data
    spells them ("followed by yes or no"); a loaded prompt has no data, so the export
    carries them (it said "followed by your answer"), and a `labels` task loads at all."""
    from promptopt.evaluation import make_candidate
    from promptopt.prompt import render_messages

    task = get_task(name, data_dir)
    candidate = make_candidate(task)
    db = f"sqlite:///{tmp_path / 'l.db'}"
    report = promptopt.evaluate(task, candidate, FakeBackend(), split="dev", limit=3, db=db)
    export(db, report.run_id, "yaml", tmp_path / "l.yaml")
    loaded = load(tmp_path / "l.yaml")
    for example in task.examples("dev")[:3]:
        assert loaded.messages(**example.inputs) == [
            m.to_dict() for m in render_messages(candidate, task, example)
        ]
    for text in (
        "So the answer is valid.",
        "So the answer is invalid.",
        "So the answer is yes.",
        "So the answer is 7.",
    ):
        assert loaded.parse(text) == task.extract(text)
    if name == "bbh:sports_understanding":  # the request body a service sends says it too
        export(db, report.run_id, "openai", tmp_path / "l.json")
        assert "followed by yes or no" in (tmp_path / "l.json").read_text()
