"""``dspy-gepa`` (issue #21): DSPy's GEPA through the interop, on the scripted DSPy fake.

The DSPy parts run in the dspy Python as in ``tests/test_dspy_interop.py`` (whose helpers
they use: network guard, fresh HOME, the fake model). The fake gets every question whose
sum is a multiple of 3 wrong unless the prompt says "carefully"; GEPA's reflection (the
fake's JSON answer) proposes instructions from its list, some of which say it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptopt.budget import Budget
from promptopt.controller import SearchConfig, search
from promptopt.policies import POLICIES
from promptopt.policies.dspy_gepa import MINIBATCH, DSPyGEPAPolicy, metric_calls_for
from promptopt.tasks import Task, get_task
from promptopt.types import Candidate
from tests.test_dspy_interop import _write_task, assert_within_estimate, run_dspy, run_search


@pytest.fixture()
def task_file(tmp_path: Path) -> Path:
    folder = tmp_path / "task"
    folder.mkdir()
    return _write_task(folder)


@pytest.fixture()
def task(task_file: Path) -> Task:
    return get_task(str(task_file))


def plan(task_file: Path, task: Task, **options: object) -> dict:
    config = SearchConfig.from_preset(
        "light", task=str(task_file), model="fake", policy="dspy-gepa", dev_size=8, test_size=8,
        base=Candidate(instruction="Add the numbers.", answer_format=task.spec.answer_format), **options,
    )  # fmt: skip
    out = search(config, db="sqlite://", dry_run=True, task=task)
    assert isinstance(out, dict)
    return out


def test_gepa_is_registered_and_its_budget_comes_from_the_call_limit(task_file: Path, task: Task) -> None:
    assert POLICIES["dspy-gepa"] is DSPyGEPAPolicy
    # DSPy's share 100: less one iteration's overshoot (2 minibatches + dev 8), less a reflection per 2 minibatches
    assert metric_calls_for(100, 8, shared=True) == (100 - 2 * MINIBATCH - 8) * 6 // 7 == 73
    assert metric_calls_for(100, 8, shared=False) == 86
    assert metric_calls_for(5, 8, shared=True) == 1  # at least one
    capped = plan(task_file, task, budget=Budget(max_calls=60))
    assert capped["dspy_calls"] <= 30  # at most DSPy's share (half of 60)
    free = plan(task_file, task)
    assert free["dspy_calls"] > capped["dspy_calls"] and free["dspy_programs"] > 1  # auto="light"
    # another reflection model is capped apart: its calls come on top of DSPy's share
    other = plan(task_file, task, budget=Budget(max_calls=60), proposer_model="fake-proposer")
    assert other["reflection_calls"] > 0
    assert other["dspy_calls"] == capped["dspy_calls"] + other["reflection_calls"]


FEEDBACK = """
import json, sys
from promptopt.dspy_interop import dspy_example, feedback_metric, import_dspy
from promptopt.tasks import get_task
dspy = import_dspy()
task = get_task(sys.argv[1])
example = next(e for e in task.examples("train") if e.target == "5")
metric = feedback_metric(task, {example.id: example})
gold = dspy_example(example, task)
out = {}
for name, prediction in [("right", dspy.Prediction(answer="5")), ("wrong", dspy.Prediction(answer="6")),
                         ("none", dspy.Prediction(reasoning="hm")), ("text", dspy.Prediction(answer="no idea"))]:
    result = metric(gold, prediction, None, "predict", None)
    out[name] = [result.score, result.feedback]
print(json.dumps(out))
"""


def test_feedback_metric_gives_the_task_metrics_score_and_feedback(task_file: Path, tmp_path: Path) -> None:
    out = run_dspy(FEEDBACK, tmp_path, str(task_file))
    assert out["right"] == [1.0, "Correct."]
    assert out["wrong"][0] == 0.0 and out["wrong"][1] == "expected 5, got 6"  # exact_match's own feedback
    assert out["none"] == [0.0, "No final answer: the reply had no answer field."]
    assert out["text"][0] == 0.0 and out["text"][1]  # no number read: the metric says so


CHOICE = """
import json, sys
from promptopt.dspy_interop import answer_metric, dspy_example, feedback_metric, import_dspy, program_from_candidate
from promptopt.tasks.answer_format import answer_description
from promptopt.tasks import get_task
from promptopt.types import Candidate
dspy = import_dspy()
task = get_task(sys.argv[1])
example = task.examples("train")[0]
by_id = {example.id: example}
gold = dspy_example(example, task)
scores = {}
for name, answer in [("letter", example.target), ("text", sys.argv[2]), ("other", "(C)")]:
    prediction = dspy.Prediction(answer=answer)
    scores[name] = [answer_metric(task, by_id)(gold, prediction), feedback_metric(task, by_id)(gold, prediction).score]
program = program_from_candidate(Candidate(instruction=""), task, describe_answer=True)
field = program.predictors()[0].signature.output_fields["answer"]
print(json.dumps({"scores": scores, "desc": field.json_schema_extra.get("desc"),
                  "number": answer_description(get_task(sys.argv[3]))}))
"""


def test_dspy_metrics_read_an_answer_as_promptopt_does_and_the_answer_field_names_the_answer_set(
    task_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "choice"
    folder.mkdir()
    rows = [{"input": f"Item {i}: which one is a pear?\nOptions:\n(A) a red apple\n(B) a green pear\n(C) a blue plum",
             "target": "(B)"} for i in range(30)]  # fmt: skip
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:24]))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[24:]))
    choice = folder / "tiny-choice.yaml"
    choice.write_text(
        "name: tiny-choice\nversion: 1\n"
        "source: {type: records, files: {train: train.jsonl, test: test.jsonl}, target_field: target}\n"
        'input_fields: [input]\ntemplate: "{input}"\nextractor: choice\ndev: {size: 8, seed: 0}\n'
    )
    first = get_task(str(choice)).examples("train")[0]
    option_text = first.inputs["input"].split("(B) ")[1].splitlines()[0]  # the right option's own text
    out = run_dspy(CHOICE, tmp_path, str(choice), option_text, str(task_file))
    # the answer metric (MIPROv2's and the native test's) and GEPA's feedback metric agree, and an
    # answer that quotes the right option's text is that option, as promptopt's executor reads it
    assert out["scores"] == {"letter": [1.0, 1.0], "text": [1.0, 1.0], "other": [0.0, 0.0]}
    assert out["desc"] == "the letter of the chosen option, in parentheses, e.g. (A)"
    assert out["number"] == "a number"


def test_dspy_gepa_search_reflects_and_its_pick_is_raced(task_file: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gepa.db'}"
    out = run_search(tmp_path, task_file, policy="dspy-gepa", db=db, max_calls=200)
    state = out["policy_state"]
    assert state["optimizer"] == "GEPA" and state["stopped"] is None
    gepa = state["gepa"]
    assert gepa["max_metric_calls"] == metric_calls_for(100, 8, shared=True) and gepa["shared_proposer"]
    # it reflected (through the task model: the proposer) and kept at least one child
    assert state["reflection_calls"] >= 1 and gepa["accepted"] >= 1 and gepa["proposals"] >= gepa["accepted"]
    # only programs scored on the whole valset (promptopt's dev) are proposed and raced
    assert {p["n"] for p in state["dspy_programs"]} == {8}
    assert_within_estimate(out)
    assert state["dspy_requests"] + state["reflection_requests"] <= state["dspy_limit"]
    # every program GEPA scored on the valset is on the leaderboard (the seed and the kept children)
    assert {p["candidate"] for p in state["dspy_programs"]} <= {row[1] for row in out["rows"]}
    assert len(state["dspy_programs"]) == 1 + gepa["accepted"]
    # the fake is right on every question when asked to add "carefully": GEPA's pick says so
    best = next(row for row in out["rows"] if row[0] == "dspy-gepa-best")
    assert "carefully" in best[4] and best[1] == state["dspy_best"]
    assert json.dumps(state["dspy_best_state"])  # DSPy's own program, for dspy-gepa-native


def test_dspy_gepa_under_a_tight_cap_stays_within_its_estimate(task_file: Path, tmp_path: Path) -> None:
    out = run_search(tmp_path, task_file, policy="dspy-gepa", max_calls=40)
    state = out["policy_state"]
    assert state["dspy_limit"] == 20
    assert state["dspy_requests"] + state["reflection_requests"] <= 20
    assert_within_estimate(out)
    assert out["spent"] <= 40 + 8  # the cap, plus at most one batch's overshoot


def test_suite_runs_dspy_gepa_native_in_the_dspy_python(task_file: Path, tmp_path: Path) -> None:
    """benchmarks/suite.py's dspy-gepa-native cell: GEPA with the whole cap, its compiled
    program tested in DSPy's format, run in the dspy Python from this one."""
    import subprocess
    import sys

    from tests.test_dspy_interop import REPO, dspy_python

    python = dspy_python()
    out = tmp_path / "suite.jsonl"
    command = [sys.executable, str(REPO / "benchmarks" / "suite.py"), "run", "--model", "fake-dspy", "--tasks",
               str(task_file), "--entries", "zero-shot-cot,dspy-gepa-native", "--max-calls", "120", "--dev-size",
               "8", "--test-size", "8", "--out", str(out), "--dspy-python", python]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["entry"], r["status"]) for r in rows] == [("zero-shot-cot", "ok"), ("dspy-gepa-native", "ok")]
    native = rows[1]
    search, state = native["search"], native["search"]["policy_state"]
    assert native["kind"] == "native" and native["prompt_summary"].startswith("DSPy's format")
    assert state["dspy_share"] == 1.0 and state["dspy_limit"] == 120  # DSPy has the whole cap
    # calls to find: DSPy's requests and its reflections, within the cap
    assert search["calls"] == state["dspy_requests"] + state["reflection_requests"] <= 120
    assert search["proposer_calls"] == state["reflection_requests"] >= 1
    assert search["reflection"]["accepted"] >= 1 and "dspy" in native["versions"]
    assert native["test"]["n"] == 8 and native["test"]["accuracy"] == 1.0  # GEPA's "carefully" pick
    assert rows[0]["test"]["accuracy"] < 1.0


OTHER_PROPOSER = """
import json, sys
from promptopt.backends import FakeBackend
from promptopt.budget import Budget
from promptopt.controller import SearchConfig, search
from promptopt.tasks import get_task
from promptopt.testing.dspy_fakes import respond
from promptopt.types import Candidate
task_file, db = sys.argv[1:3]
task = get_task(task_file)
proposer = FakeBackend(respond, model="fake-proposer")
config = SearchConfig.from_preset(
    "light", task=task_file, model="fake", policy="dspy-gepa", proposer_model="fake-proposer",
    base=Candidate(instruction="Add the numbers.", answer_format=task.spec.answer_format),
    dev_size=8, test_size=8, race_start=4, budget=Budget(max_calls=200),
)
result = search(config, backend=fake_model(), proposer_backend=proposer, db=db, task=task)
print(json.dumps({"state": {k: v for k, v in result.policy_state.items() if k != "dspy_best_state"},
                  "proposer_requests": len(proposer.history), "spent": result.spent["calls"],
                  "estimate": dict(result.estimate)}))
"""


def test_dspy_gepa_reflects_with_another_proposer_model_capped_apart(task_file: Path, tmp_path: Path) -> None:
    out = run_dspy(OTHER_PROPOSER, tmp_path, str(task_file), f"sqlite:///{tmp_path / 'other.db'}")
    state, gepa = out["state"], out["state"]["gepa"]
    assert not gepa["shared_proposer"]
    # the reflections went to the proposer model, within their own cap; DSPy's task calls within its share
    assert out["proposer_requests"] == state["reflection_requests"] >= 1
    assert (
        state["reflection_requests"]
        <= gepa["reflection_limit"]
        == DSPyGEPAPolicy.reflection_cap(gepa["max_metric_calls"])
    )
    assert gepa["max_metric_calls"] == metric_calls_for(100, 8, shared=False)
    assert state["dspy_requests"] <= state["dspy_limit"] == 100
    assert out["estimate"]["reflection_calls"] == gepa["reflection_limit"]
    assert out["spent"] <= out["estimate"]["search_calls"]
    assert gepa["accepted"] >= 1
