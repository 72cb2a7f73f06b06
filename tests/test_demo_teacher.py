"""``demo_teacher="proposer"`` (issue #21): the proposer's model, not the task model,
writes the worked solutions of bootstrapped demos; checked against gold as the task
model's are, counted as the proposer's calls, and refused when there is no other model."""

from __future__ import annotations

import pytest

from promptopt.backends import FakeBackend
from promptopt.budget import Budget
from promptopt.controller import SearchConfig, SearchResult, search
from promptopt.errors import ConfigError
from promptopt.tasks import get_task
from promptopt.testing.space_fakes import ANSWER_IS, space_backend
from promptopt.types import Candidate, GenerationRequest

TEACHER_WORDS = "A teacher's careful worked steps, written out in full"


def teacher_backend(task):  # type: ignore[no-untyped-def]
    """Right on every item but the ones listed in ``wrong`` (it answers -1 there)."""
    answers = {
        e.inputs["question"]: task.target(e)
        for split in ("train", "dev", "test")
        for e in task.examples(split)
    }
    wrong = {e.inputs["question"] for e in task.examples("train")[::2]}

    def respond(request: GenerationRequest) -> str:
        last = request.messages[-1].content
        question = last.split("\n\n", 1)[0].removeprefix("Question: ")
        if question not in answers:
            return "Instruction: Solve it carefully."
        answer = "-1" if question in wrong else answers[question]
        return f"{TEACHER_WORDS}. {ANSWER_IS} {answer}."

    return FakeBackend(respond, model="fake-teacher"), wrong


def config(policy: str, teacher: str, **overrides):  # type: ignore[no-untyped-def]
    task = get_task("gsm-symbolic")
    base = Candidate(instruction=task.spec.instruction, answer_format=task.spec.answer_format,
                     cot_mode="zero_shot", cot_trigger="Let's think step by step.")  # fmt: skip
    values = dict(task="gsm-symbolic", model="fake", base=base, policy=policy, dev_size=12, test_size=10,
                  n_proposals=3, rounds=1, race_start=4, budget=Budget(max_calls=400), demo_teacher=teacher)  # fmt: skip
    values.update(overrides)
    return task, SearchConfig.from_preset("light", **values)


@pytest.mark.parametrize("policy", ["bootstrap-random", "tpe"])
def test_the_proposers_model_writes_the_bootstrapped_demos(policy: str) -> None:
    task, cfg = config(policy, "proposer", proposer_model="fake-teacher", space="demos")
    teacher, wrong = teacher_backend(task)
    model = space_backend(task)
    plan = search(cfg, db="sqlite://", dry_run=True, task=task, proposer_backend=teacher)
    result = search(cfg, backend=model, proposer_backend=teacher, db="sqlite://", task=task)
    assert isinstance(result, SearchResult) and isinstance(plan, dict)
    shown = [c for c in (r.candidate for r in result.leaderboard) if c.demo_solutions]
    assert shown, "no candidate showed bootstrapped demos"
    by_question = {e.id: e.inputs["question"] for e in task.examples("train")}
    for candidate in shown:
        for demo_id, solution in candidate.demo_solutions:
            assert solution.startswith(TEACHER_WORDS)  # the teacher's text, not the task model's
            assert by_question[demo_id] not in wrong  # only the teacher's right answers are kept
    # the task model answered no train item (it was never asked to write demos)
    asked = {r.messages[-1].content.split("\n\n", 1)[0].removeprefix("Question: ") for r in model.history}
    assert not asked & set(by_question.values())
    # the bootstrapping is the proposer's in the estimate
    assert plan["proposer_calls"] >= 16
    # and the summary says how many of the teacher's answers were kept (about half are wrong)
    state = result.policy_state
    assert state["bootstrapped"] == 16 and state["bootstrap_tried"] >= 32


def test_by_default_the_task_model_writes_them() -> None:
    task, cfg = config("bootstrap-random", "task")
    result = search(cfg, backend=space_backend(task), db="sqlite://", task=task)
    assert isinstance(result, SearchResult)
    solutions = [s for r in result.leaderboard for _, s in r.candidate.demo_solutions]
    assert solutions and not any(s.startswith(TEACHER_WORDS) for s in solutions)
    assert cfg.to_dict()["demo_teacher"] == "task"


def test_a_teacher_needs_a_proposer_model_other_than_the_task_model() -> None:
    task, cfg = config("bootstrap-random", "proposer")
    with pytest.raises(ConfigError, match="proposer is the task model"):
        search(cfg, db="sqlite://", dry_run=True, task=task)
    with pytest.raises(ConfigError, match="unknown demo teacher"):
        config("bootstrap-random", "teacher")


def test_reflects_demo_swap_shows_the_teachers_work() -> None:
    task, cfg = config("reflect", "proposer", proposer_model="fake-teacher", reflect_demos=2, n_proposals=6,
                       minibatch=6, dev_size=20)  # fmt: skip
    teacher, wrong = teacher_backend(task)
    model = space_backend(task)
    result = search(cfg, backend=model, proposer_backend=teacher, db="sqlite://", task=task)
    assert isinstance(result, SearchResult)
    assert result.policy_state["reflection"]["demo_steps"] >= 1
    train = {e.inputs["question"] for e in task.examples("train")}
    taught = {r.messages[-1].content.split("\n\n", 1)[0].removeprefix("Question: ") for r in teacher.history}
    assert taught & train  # the teacher answered train items (the bootstrapping)
    swapped = [r.candidate for r in result.leaderboard if r.origin == "reflect-demos"]
    assert swapped and all(s.startswith(TEACHER_WORDS) for c in swapped for _, s in c.demo_solutions)


def test_a_teacher_backend_that_is_the_task_model_or_a_policy_without_demos_is_refused() -> None:
    task, cfg = config("tpe", "proposer", space="demos")
    model = space_backend(task)
    with pytest.raises(ConfigError, match="proposer is the task model"):  # the same backend as both
        search(cfg, backend=model, proposer_backend=model, db="sqlite://", dry_run=True, task=task)
    task, cfg = config("ape", "proposer", proposer_model="fake-teacher")
    with pytest.raises(ConfigError, match="ape policy bootstraps no demos"):
        search(cfg, db="sqlite://", dry_run=True, task=task)


def test_a_search_that_would_never_ask_the_teacher_is_refused() -> None:
    from promptopt.testing.space_fakes import SPACE  # no bootstrapped demo selection in it

    task, cfg = config("tpe", "proposer", proposer_model="fake-teacher", space=SPACE)
    with pytest.raises(ConfigError, match="this tpe search bootstraps no demos"):
        search(cfg, db="sqlite://", dry_run=True, task=task)
    task, cfg = config("reflect", "proposer", proposer_model="fake-teacher")  # reflect_demos 0
    with pytest.raises(ConfigError, match="this reflect search bootstraps no demos"):
        search(cfg, db="sqlite://", dry_run=True, task=task)
