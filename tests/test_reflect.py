"""The reflect policy on fakes: it learns the rule a fake model needs from its failures,
refuses a worse rewrite, keeps an item specialist on its frontier, resumes after a kill
to the same result, and spends within its estimate. Also the reflection prompt's
parsing and the noise-aware final pick."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from promptopt.backends import FakeBackend
from promptopt.controller import SearchConfig, SearchResult, search
from promptopt.reflection import MERGE_OPENING, OPENING, failure_feedback, read_reflection
from promptopt.selection import Finalist, frontier_weights, item_frontier, noise_aware_pick, sample_parent
from promptopt.store import Store
from promptopt.tasks import Task, get_task
from promptopt.testing.contracts import InterruptingBackend
from promptopt.types import Candidate, EvalResult, GenerationRequest, SampleResult

RULE = "For questions with a percent, turn the percent into a fraction first."
MONEY = "For questions about money, keep the cents."
HARMFUL = "Guess the answer quickly without working it out."


@functools.lru_cache(maxsize=1)
def _task() -> Task:
    return get_task("gsm-symbolic")


@pytest.fixture
def task() -> Task:
    return _task()


def is_percent(question: str) -> bool:
    return "%" in question or "percent" in question


def _coin(*parts: object) -> float:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:4], "big") / 2**32


def kind_backend(task: Task, *, reflection: str = "rule") -> FakeBackend:
    """A model that gets percent questions wrong unless its instruction speaks of percents
    (others right 9 times in 10; "guess" in the instruction makes everything wrong). As the
    reflection model: with ``reflection="rule"`` it names the rule when the failed items it
    is shown are percent questions; with ``"harmful"`` it always writes a harmful rewrite."""
    answers = {
        e.inputs["question"]: task.target(e) for s in ("train", "dev", "test") for e in task.examples(s)
    }

    def respond(request: GenerationRequest) -> str:
        last = request.messages[-1].content
        if last.startswith(MERGE_OPENING):  # keep the sentences of both
            a, b = re.search(r"Instruction A:\n(.*?)\n\nInstruction B:\n(.*?)\n\n", last, re.DOTALL).groups()  # type: ignore[union-attr]
            extra = " ".join(x.strip() + "." for x in b.split(".") if x.strip() and x.strip() not in a)
            return f"<new>{a} {extra}</new>"
        if last.startswith(OPENING):
            current = re.search(r"Current instruction:\n(.*?)\n\n", last, re.DOTALL)
            base = current.group(1) if current else ""
            if reflection == "harmful":
                return f"Here it is:\n<new>{HARMFUL}</new>"
            if reflection == "rambling":  # the rule, then on past the token limit (200 words)
                return f"<new>{base} {RULE} Then " + "check again and " * 80
            failed_part = last.split("Current instruction:", 1)[1]
            if reflection == "two":  # a specialist: one rule, for the kind that failed, and no other
                rule = MONEY if "$" in failed_part and "money" not in base else RULE
                how = ("", " Be exact.", " Take care.", " Go slowly.")[request.sample_index % 4]
                return f"<new>Solve the math word problem. {rule}{how}</new>"
            if reflection == "better":  # every rewrite adds a check, and each check helps
                how = ("again", "twice", "carefully", "slowly")[request.sample_index % 4]
                return f"<new>{base} Check step {base.count('Check') + 1} {how}.</new>"
            if is_percent(last.split("Current instruction:", 1)[1]) and "percent" not in base:
                return f"Sure! <new>{base} {RULE}</new>"
            return f"<new>{base} Check the arithmetic.</new>"
        question = next((q for q in answers if q in last), None)
        if question is None:
            return "I do not know."
        instruction = request.messages[0].content if request.messages[0].role == "system" else ""
        # a demo of a percent question (its worked solution shown) teaches the percent rule too
        if any(m.role == "assistant" for m in request.messages[:-1]) and any(
            is_percent(m.content) for m in request.messages[:-1] if m.role == "user"
        ):
            instruction += " percent"
        if "Guess" in instruction:
            right = False
        elif reflection == "better":
            right = _coin(question, instruction) < 0.2 + 0.3 * instruction.count("Check")
        elif reflection == "two" and "$" in question and "money" not in instruction:
            right = False
        elif is_percent(question) and "percent" not in instruction:
            right = _coin(question, request.sample_index) < 0.4  # the model's own lucky work
        else:
            right = _coin(question, request.sample_index) < 0.9
        return f"Some reasoning. The answer is {answers[question] if right else '-1'}."

    return FakeBackend(respond)


def config(**overrides: Any) -> SearchConfig:
    values: dict[str, Any] = {
        "task": "gsm-symbolic", "model": "fake", "policy": "reflect", "seed": 0,
        "base": Candidate(instruction="Solve the math word problem."), "dev_size": 40, "test_size": 60,
        "n_proposals": 4, "rounds": 1, "race_start": 10, "minibatch": 6,
    }  # fmt: skip
    values.update(overrides)
    return SearchConfig.from_preset("light", **values)


def run(task: Task, db: str, *, reflection: str = "rule", **overrides: Any) -> SearchResult:
    result = search(config(**overrides), backend=kind_backend(task, reflection=reflection), db=db, task=task)
    assert isinstance(result, SearchResult)
    return result


def test_reflect_learns_the_rule_the_model_needs(task: Task, tmp_path: Path) -> None:
    result = run(task, f"sqlite:///{tmp_path / 'r.db'}")
    state = result.policy_state["reflection"]
    assert state["accepted"] >= 1 and state["usable"] >= state["accepted"]
    assert RULE in result.winner.instruction
    rows = {row.candidate.hash: row for row in result.leaderboard}
    assert rows[result.winner.hash].mean > rows[result.baseline.hash].mean
    assert result.test["winner"]["accuracy"] > result.test["baseline"]["accuracy"]
    # the accepted child's reflection was shown percent items that failed, with their feedback
    accepted = next(e for e in result.policy_state["proposals"] if e["accepted"])
    shown = {e.id: e for e in task.examples("train")}
    assert any(is_percent(shown[s["example"]].inputs["question"]) for s in accepted["shown"])
    assert all(s["feedback"] for s in accepted["shown"])
    # the lineage is stored: the child is a run candidate with its parent
    with Store(f"sqlite:///{tmp_path / 'r.db'}") as store:
        summary = store.get_run(result.run_id).summary
    assert summary is not None and summary["policy_state"]["proposals"][0]["parent"] == result.baseline.hash


def test_a_reflection_cut_off_at_the_token_limit_keeps_only_finished_sentences(
    task: Task, tmp_path: Path
) -> None:
    result = run(task, f"sqlite:///{tmp_path / 'r.db'}", reflection="rambling")
    children = [e for e in result.policy_state["proposals"] if e["accepted"]]
    assert children, "the rule it found was not kept"
    assert all(e["text"].endswith(RULE) for e in children)
    assert RULE in result.winner.instruction and "check again" not in result.winner.instruction


def test_acceptance_rejects_a_worse_child(task: Task, tmp_path: Path) -> None:
    result = run(task, f"sqlite:///{tmp_path / 'r.db'}", reflection="harmful")
    proposals = result.policy_state["proposals"]
    reflected = [e for e in proposals if e["reflected"]]
    assert reflected and all(e["usable"] for e in reflected[:1])
    assert result.policy_state["reflection"]["accepted"] == 0
    assert all(e["child_score"] < e["parent_score"] for e in reflected if e["usable"])
    # a rejected child is never raced on dev: the search keeps the starting prompt
    assert [row.candidate.hash for row in result.leaderboard] == [result.baseline.hash]
    assert result.winner.hash == result.baseline.hash


def test_the_frontier_keeps_an_item_specialist() -> None:
    generalist = {f"i{k}": 1.0 for k in range(9)} | {"i9": 0.0}
    specialist = {f"i{k}": 0.0 for k in range(9)} | {"i9": 1.0}
    weaker = {f"i{k}": 1.0 for k in range(5)} | {f"i{k}": 0.0 for k in range(5, 10)}
    scores = {"g": generalist, "s": specialist, "w": weaker}
    means = {c: sum(v.values()) / 10 for c, v in scores.items()}
    assert item_frontier(scores)["i9"] == {"s"}
    weights = frontier_weights(scores, ["g", "s", "w"], means)
    # the specialist (mean 0.1) stays, weighted by its one item; the weaker generalist is
    # best only where the generalist is best too: dominated
    assert weights == {"g": 9, "s": 1}
    import random

    draws = [sample_parent(weights, ["g", "s", "w"], random.Random(seed)) for seed in range(200)]
    assert 5 <= draws.count("s") <= 40 and "w" not in draws


def test_an_item_only_one_candidate_was_scored_on_is_no_contest() -> None:
    # a went further in the race (16 dev items), b stopped at 8: on the 8 both have, b is
    # right wherever a is and on 2 more; a's zeros on the items b never saw win it nothing
    a = {f"i{k}": 1.0 for k in range(4)} | {f"i{k}": 0.0 for k in range(4, 16)}
    b = {f"i{k}": 1.0 for k in range(6)} | {f"i{k}": 0.0 for k in range(6, 8)}
    assert set(item_frontier({"a": a, "b": b})) == {f"i{k}" for k in range(8)}
    assert frontier_weights({"a": a, "b": b}, ["a", "b"], {"a": 4 / 16, "b": 6 / 8}) == {"b": 8}
    assert item_frontier({"a": a}) == {item: {"a"} for item in a}  # one candidate: every item


def test_a_request_that_failed_is_no_wrong_answer_on_the_minibatch(task: Task, tmp_path: Path) -> None:
    # the reflection adds words that change no answer; two of the parent's minibatch
    # requests fail once (not retried): the child must not win on those two items
    from promptopt.types import Completion

    inner = kind_backend(task)
    train = {e.inputs["question"] for e in task.examples("train")}
    failures = {"left": 2}

    def respond(request: GenerationRequest) -> str | Completion:
        last = request.messages[-1].content
        if last.startswith(OPENING):
            current = re.search(r"Current instruction:\n(.*?)\n\n", last, re.DOTALL)
            assert current is not None
            return f"<new>{current.group(1)} Check the arithmetic.</new>"
        system = request.messages[0].content if request.messages[0].role == "system" else ""
        if (
            failures["left"]
            and system.strip() == "Solve the math word problem."
            and any(q in last for q in train)
        ):
            failures["left"] -= 1
            return Completion("", error="HTTP 500 (a test failure)", retryable=False)
        return inner._responder(request)  # type: ignore[misc]

    result = search(config(n_proposals=1, rounds=1), backend=FakeBackend(respond),
                    db=f"sqlite:///{tmp_path / 'r.db'}", task=task)  # fmt: skip
    assert isinstance(result, SearchResult) and failures["left"] == 0
    (step,) = result.policy_state["proposals"]
    assert step["usable"] and step["child_score"] > step["parent_score"]  # the parent lost 2 items...
    assert not step["accepted"]  # ... to failures: on the items both answered, no better
    assert not any("HTTP 500" in shown["feedback"] for shown in step["shown"])


def test_resume_after_a_kill_gives_the_identical_result(task: Task, tmp_path: Path) -> None:
    reference = run(task, f"sqlite:///{tmp_path / 'ref.db'}")
    db = f"sqlite:///{tmp_path / 'killed.db'}"
    interrupting = InterruptingBackend(kind_backend(task), after=reference.model_calls // 2)
    with pytest.raises(KeyboardInterrupt):
        search(config(), backend=interrupting, db=db, task=task)
    with Store(db) as store:
        (record,) = store.list_runs()
    resumed = search(db=db, resume=record.id, backend=kind_backend(task), task=task)
    assert isinstance(resumed, SearchResult)
    assert resumed.winner.hash == reference.winner.hash
    assert resumed.policy_state == reference.policy_state
    assert [(r.candidate.hash, r.mean, r.n) for r in resumed.leaderboard] == [
        (r.candidate.hash, r.mean, r.n) for r in reference.leaderboard
    ]
    assert resumed.spent["calls"] == reference.spent["calls"] and resumed.test == reference.test


@pytest.mark.parametrize("reflection", ["rule", "harmful", "better"])
def test_the_estimate_bounds_the_spend(task: Task, tmp_path: Path, reflection: str) -> None:
    overrides = {"n_proposals": 3, "rounds": 2}
    plan = search(config(**overrides), db=f"sqlite:///{tmp_path / 'e.db'}", task=task, dry_run=True)
    assert isinstance(plan, dict)
    result = run(task, f"sqlite:///{tmp_path / 'r.db'}", reflection=reflection, **overrides)
    assert 0 < result.spent["calls"] <= plan["search_calls"]
    assert result.final_calls <= plan["final_calls"]
    assert result.policy_state["reflection"]["steps"] == plan["reflection_steps"] == 6
    if reflection == "better":  # every step that reflects is accepted and raced
        assert result.policy_state["reflection"]["accepted"] >= 3
        assert result.spent["calls"] >= 0.25 * plan["search_calls"], (result.spent, plan)


def _calibrated_mc(calibration: str, **options: Any) -> tuple[Task, SearchConfig, FakeBackend]:
    """A 3-option task whose fake model scores the right option higher the more
    "Check" rules its instruction has, a reflection that adds one, and a calibrated start."""
    from tests.test_answer_bias import mc_task, shown_options

    def reply(request: GenerationRequest) -> str:
        last = request.messages[-1].content
        if last.startswith(OPENING):
            current = re.search(r"Current instruction:\n(.*?)\n\n", last, re.DOTALL)
            assert current is not None
            how = ("again", "twice", "carefully", "slowly")[request.sample_index % 4]
            return f"<new>{current.group(1)} Check step {current.group(1).count('Check') + 1} {how}.</new>"
        return "So the answer is (A)."

    def scores(request: GenerationRequest) -> dict[str, float]:
        system = " ".join(m.content for m in request.messages if m.role == "system")
        texts = dict(shown_options(request))
        right = _coin(request.messages[-1].content, system) < 0.2 + 0.3 * system.count("Check")
        return {
            label: 0.0 if right and "RIGHT" in texts.get(label[-2], "") else -1.0
            for label in request.score_labels
        }

    made = SearchConfig.from_preset(
        "light", task="records", model="fake", policy="reflect", seed=0, dev_size=12, test_size=8, n_proposals=4,
        rounds=1, race_start=4, minibatch=4, base=Candidate(instruction="Pick the right option.", calibration=calibration),
        policy_options=options,
    )  # fmt: skip
    return mc_task(n_items=24), made, FakeBackend(reply, scorer=scores)


@pytest.mark.parametrize("calibration", ["position", "contextual"])
def test_the_estimate_counts_a_calibrations_calls_for_every_child(calibration: str, tmp_path: Path) -> None:
    mc, made, backend = _calibrated_mc(calibration)
    plan = search(made, task=mc, dry_run=True, db=f"sqlite:///{tmp_path / 'p.db'}")
    result = search(made, task=mc, backend=backend, db=f"sqlite:///{tmp_path / 'r.db'}")
    assert isinstance(plan, dict) and isinstance(result, SearchResult)
    assert result.policy_state["reflection"]["accepted"] >= 1
    assert 0 < result.spent["calls"] <= plan["search_calls"]


def test_reflect_demos_with_a_calibrated_start_is_refused_before_any_call(tmp_path: Path) -> None:
    from promptopt.errors import ConfigError

    mc, made, backend = _calibrated_mc("contextual", reflect_demos=2)
    with pytest.raises(ConfigError, match="calibration contextual cannot read"):
        search(made, task=mc, backend=backend, db=f"sqlite:///{tmp_path / 'r.db'}")
    assert not backend.history


def test_a_reflection_model_that_cannot_answer_stops_the_search_with_its_error(
    task: Task, tmp_path: Path
) -> None:
    from promptopt.failures import AllRequestsFailed
    from promptopt.types import Completion

    def refused(request: GenerationRequest) -> Completion:
        return Completion("", error="HTTP 401 Unauthorized", retryable=False)

    with pytest.raises(AllRequestsFailed, match="reflection model.*HTTP 401") as caught:
        search(config(), backend=kind_backend(task), proposer_backend=FakeBackend(refused),
               db=f"sqlite:///{tmp_path / 'r.db'}", task=task)  # fmt: skip
    assert caught.value.hint and "key" in caught.value.hint


def test_a_failed_reflection_is_a_step_that_says_why(task: Task, tmp_path: Path) -> None:
    from promptopt.types import Completion

    inner = kind_backend(task)
    calls = {"n": 0}

    def once_refused(request: GenerationRequest) -> str | Completion:
        calls["n"] += 1
        if calls["n"] == 2:  # the second reflection fails, the others answer
            return Completion("", error="HTTP 503 overloaded", retryable=False)
        return inner._responder(request)  # type: ignore[misc]

    result = search(config(), backend=kind_backend(task), proposer_backend=FakeBackend(once_refused),
                    db=f"sqlite:///{tmp_path / 'r.db'}", task=task)  # fmt: skip
    assert isinstance(result, SearchResult)
    reasons = [e["reason"] for e in result.policy_state["proposals"] if e["reflected"]]
    assert "the reflection request failed: HTTP 503 overloaded" in reasons
    assert result.policy_state["reflection"]["accepted"] >= 1


def test_a_call_limit_stops_reflect(task: Task, tmp_path: Path) -> None:
    from promptopt.budget import Budget

    result = run(task, f"sqlite:///{tmp_path / 'r.db'}", budget=Budget(max_calls=40))
    assert result.spent["calls"] <= 41 and result.stopped_reason and "calls" in result.stopped_reason


# -- the reflection reply


@pytest.mark.parametrize(
    ("reply", "text", "why"),
    [
        ("<new>Solve it step by step. Write the final number after 'The answer is'.</new>",
         "Solve it step by step. Write the final number after 'The answer is'.", "usable"),
        ("Sure! Here is the new instruction:\n<new>\n\"Work out each step, then check it.\"\n</new>\nHope it helps",
         "Work out each step, then check it.", "usable"),
        ("<new>Rule 1: read carefully.\n\nRule 2: check units.</new>", "Rule 1: read carefully.\nRule 2: check units.",
         "usable"),
        ("<new>Work it out and then check the sum.", "Work it out and then check the sum.", "usable"),
        ("<new></new>", None, "empty"),
        ("<new>Think.</new>", None, "too short"),
        ("<new>Solve the math word problem.</new>", None, "a repeat"),
        ("<new>The instruction should say to be careful.</new>", None, "speaks of the instruction, not the task"),
        ("<new>Remember that Olivia hid 84 eggs in the yard.</new>", None, "copies the shown items"),
        ("<new>Solve the problem step by step. ...</new>", None, "copies the reply format's example"),
        ("<new>Count each item once, then add.\n\n**Question 1:** I have a garlic and two yams. How many?",
         "Count each item once, then add.", "usable"),
        ("<new>You count the objects. For example:\nQuestion: I have a yam.\nModel's answer: 3</new>",
         "You count the objects.", "usable"),
        ("<new>The model should count more carefully and give one number.</new>", None,
         "speaks of the model, not to it"),
        # what the real 0.5B wrote: stray tags, and sentences about the setup among rules
        ("<new>Count each item. <new>Express your answer clearly.<new>Keep in mind that the model was "
         "wrong.</new> Please provide the initial instructions.",
         "Count each item. Express your answer clearly.", "usable"),
        # what the real 0.5B wrote on rg:leg_counting, accepted before as an instruction
        ("<new>Model's answer is - Answer <new", None, "speaks of the model, not to it"),
        ("<new><Count each item once, then add them up.</new>", "Count each item once, then add them up.", "usable"),
        ("<new>\n< Count each item once, then add them up.", "Count each item once, then add them up.", "usable"),
        ("<new>1. Count each item.\n2. Add them up. The instruction says so.</new>",
         "1. Count each item.\n2. Add them up.", "usable"),
    ],
)  # fmt: skip
def test_read_reflection(reply: str, text: str | None, why: str) -> None:
    shown = ["Olivia hid 7 dozen eggs in the yard for the Easter egg hunt. Isabella finds 14 eggs."]
    got, reason = read_reflection(reply, current="Solve the math word problem.", known=[], shown_inputs=shown)
    assert (got, reason) == (text, why)


# what the real 1.5B wrote on bbh:date_understanding: a rule list cut off at the token limit
_CUT_LIST = (
    "<new>1. **Read the question carefully**: Make sure you understand what it asks.\n"
    "2. **Analyze all options**: Look at every option given.\n"
    "3. **Write the final answer**: Once you have chosen, write"
)


def test_a_reply_that_repeats_a_shown_answer_is_not_an_instruction() -> None:
    # the 0.5B's reflection on bbh:sports_understanding (seed 0): one of the answers it was shown,
    # which the reader took for an instruction and which then won the search
    shown = ("3. **Conclusion**: Based on the information provided, the sentence is plausible. It accurately "
             "describes the player's performance in a specific period of time.\n\nTherefore, the answer is: yes.")  # fmt: skip
    reply = "<new>Based on the information provided, the sentence is plausible. Therefore, the answer is: yes.</new>"
    common = {"known": [], "shown_inputs": ["Is the following sentence plausible? X scored."]}
    assert read_reflection(reply, current="", shown_outputs=[shown], **common) == (
        None,
        "copies a shown answer",
    )
    assert read_reflection(reply, current="", **common)[1] == "usable"  # what it read before
    # an output that echoes its instruction: a rewrite may keep that instruction's words
    current = "Decide whether the sentence is plausible for the sport the player is known for."
    echo = f"{current} The player is a hockey player, so it is plausible. So the answer is yes."
    rewrite = f"<new>{current} Check the sport of the action too.</new>"
    text, why = read_reflection(rewrite, current=current, shown_outputs=[echo], **common)
    assert why == "usable" and text is not None and text.endswith("Check the sport of the action too.")
    # nor an output that restates the question's shared wording or the answer-format line
    shared = "Which of the following is a humorous edit of this artist or movie name"
    inputs = [f"{shared}: 'the beatles'?", f"{shared}: 'star wars'?"]
    restates = "To find which of the following is a humorous edit of this artist or movie name, read them."
    kept = "<new>To find which of the following is a humorous edit of this artist or movie name, compare letters.</new>"
    assert (
        read_reflection(kept, current="", known=[], shown_inputs=inputs, shown_outputs=[restates])[1]
        == "usable"
    )
    # the start of a long output was cut from the prompt (its last 300 characters are shown)
    unseen = "Based on the information provided, the sentence is plausible. " + "and so on " * 40
    assert read_reflection(reply, current="", shown_outputs=[unseen], **common)[1] == "usable"
    line = 'End your answer with "So the answer is" followed by (A), (B) or (C).'
    echoed = f"The answer is the second one. {line}"
    rule = '<new>Compare each option with the question. End your answer with "So the answer is" followed by the letter.</new>'
    assert read_reflection(rule, current="", known=[], shown_inputs=inputs, shown_outputs=[echoed])[1] == (
        "copies a shown answer"
    )  # without the parent's own line as setup: its words count as the output's
    assert read_reflection(rule, current="", known=[], shown_inputs=inputs, shown_outputs=[echoed],
                           setup=[line])[1] == "usable"  # fmt: skip


def test_a_reply_that_names_a_shown_answer_is_not_an_instruction() -> None:
    # the 0.5B's reflection on rg:basic_arithmetic (seed 0) carried a gold it was shown,
    # shorter than the words a copied output needs
    reply = "<new>Work out the expression step by step, then give it as <answer>-102</answer</new>"
    common = {"current": "", "known": [], "shown_inputs": ["Calculate -34 * 3."]}
    assert read_reflection(reply, shown_answers=["-102", "-98"], **common) == (None, "names a shown answer")
    assert read_reflection(reply, shown_answers=["(A)", "7"], **common)[1] == "usable"  # letters, one digit
    example = "<new>Work out the expression step by step, then give it as <answer>42</answer>.</new>"
    assert read_reflection(example, shown_answers=["-102"], **common)[1] == "usable"  # a format example
    # a number the parent's instruction already holds may stay in its rewrite
    parent = "Convert times to the 24-hour clock before you compare them."
    kept = f"<new>{parent} Check the day too.</new>"
    assert (
        read_reflection(kept, current=parent, known=[], shown_inputs=[], shown_answers=["24"])[1] == "usable"
    )


# what the real 1.5B wrote on bbh:date_understanding, whole (163 tokens): five rules, kept
# whole; the 400-character cap of a proposal used to cut the fourth mid-sentence
_FIVE_RULES = [
    "1. **Read the question carefully**: Make sure you understand what the question is asking, including "
    "the specific information provided.",
    "2. **Analyze all options**: Look at all the options given and consider their relevance to the question.",
    "3. **Choose the correct answer**: Select the option that best answers the question.",
    "4. **Write the final answer**: Once you've selected the correct answer, write the answer in the provided "
    "format, ensuring it is in MM/DD/YYYY format.",
    "5. **Verify your answer**: Check if all parts of the question have been addressed and if the answer is "
    "correct.",
]


def test_a_long_rule_list_is_kept_whole_up_to_its_cap() -> None:
    reply = (
        "<new>When answering questions, make sure to follow these rules to prevent these mistakes:\n\n"
        + "\n\n".join(_FIVE_RULES)
        + "\n\nBy following these rules, you can prevent getting these mistakes and ensure the model provides "
        "accurate answers. Thank you for helping."
    )
    text, why = read_reflection(reply, current="Solve it.", known=[], shown_inputs=[])
    assert (text, why) == ("\n".join(_FIVE_RULES), "usable")
    # over the cap (700 characters), whole rules only
    text, _ = read_reflection(
        "<new>" + "\n".join(_FIVE_RULES * 2), current="Solve it.", known=[], shown_inputs=[]
    )
    assert (
        text is not None
        and len(text) <= 700
        and text.splitlines() == (_FIVE_RULES * 2)[: len(text.splitlines())]
    )


@pytest.mark.parametrize(
    ("reply", "text", "why"),
    [
        (_CUT_LIST, "1. **Read the question carefully**: Make sure you understand what it asks.\n"
         "2. **Analyze all options**: Look at every option given.", "usable"),
        ("<new>Check each date. Then count the days from the", "Check each date.", "usable"),
        ("<new>Check each date and then count the days from the", None, "cut off before its first sentence ended"),
        # closed before the limit: nothing is dropped
        ("<new>Check each date and count the days</new> and then some more", "Check each date and count the days",
         "usable"),
        ("<new>Check each date. Count the days.", "Check each date. Count the days.", "usable"),
    ],
)  # fmt: skip
def test_a_reflection_cut_off_at_the_token_limit_loses_its_unfinished_end(
    reply: str, text: str | None, why: str
) -> None:
    got, reason = read_reflection(reply, current="Solve it.", known=[], shown_inputs=[], cut_off=True)
    assert (got, reason) == (text, why)
    if why == "usable" and "</new>" not in reply and text != reply.removeprefix("<new>"):
        # the same reply, not cut off, keeps its end
        whole, _ = read_reflection(reply, current="Solve it.", known=[], shown_inputs=[])
        assert whole is not None and len(whole) > len(text or "")


def _result(raw: str, answer: str | None, *, finish: str = "stop", feedback: str | None = None) -> EvalResult:
    sample = SampleResult(0, raw, answer, 0.0, finish_reason=finish)
    return EvalResult("c", "e", "train", answer, "42", 0.0, (sample,), feedback=feedback)


def test_a_missing_answer_is_feedback_too() -> None:
    assert failure_feedback(_result("I think so", None, feedback="no answer found in the output")) == (
        "no final answer found"
    )
    cut = failure_feedback(_result("First, we", None, finish="length", feedback="no answer found: cut off"))
    assert cut == "cut off at the token limit before a final answer"
    code = failure_feedback(_result("```python\nprint(6 * 7)\n```", None))
    assert "no final answer found" in code and "Python code" in code
    assert (
        failure_feedback(_result("The answer is 41.", "41", feedback="expected 42, got 41"))
        == "expected 42, got 41"
    )


# -- the final pick


def test_noise_aware_pick_prefers_a_cheaper_tied_finalist() -> None:
    items = [f"i{k}" for k in range(30)]
    best = Finalist("best", {i: 1.0 if k < 24 else 0.0 for k, i in enumerate(items)}, 300.0)
    tied_cheap = Finalist("cheap", {i: 1.0 if k < 23 else 0.0 for k, i in enumerate(items)}, 100.0)
    worse_cheaper = Finalist("worse", {i: 1.0 if k < 10 else 0.0 for k, i in enumerate(items)}, 50.0)
    tied_dear = Finalist("dear", {i: 1.0 if k < 23 else 0.0 for k, i in enumerate(items)}, 290.0)
    chosen, report = noise_aware_pick([best, tied_cheap, worse_cheaper, tied_dear], "best")
    assert chosen == "cheap"
    tied = {row["candidate"]: row["tied"] for row in report["compared"]}
    assert tied == {"cheap": True, "worse": False, "dear": True}
    # a tied finalist that saves less than 10% of the tokens does not replace the best
    assert noise_aware_pick([best, tied_dear], "best")[0] == "best"


def test_selection_is_best_by_default_and_noise_aware_on_request(task: Task, tmp_path: Path) -> None:
    default = run(task, f"sqlite:///{tmp_path / 'a.db'}")
    assert default.summary()["selection"]["selection"] == "best"
    assert default.selection["chosen"] == default.selection["best_by_mean"] == default.winner.hash
    aware = run(task, f"sqlite:///{tmp_path / 'b.db'}", selection="noise-aware")
    assert aware.selection["selection"] == "noise-aware"
    assert aware.winner.hash == aware.selection["chosen"]
    with pytest.raises(Exception, match="unknown selection"):
        config(selection="cheapest")


def test_balanced_pick_does_not_reward_a_lean_on_the_dev_splits_most_common_answer() -> None:
    from types import SimpleNamespace

    from promptopt.selection import balanced_pick, final_pick

    golds = ["(B)"] * 6 + ["(A)"] * 2 + ["(C)"] * 2  # dev leans on (B) as the model does

    def results(name: str, answers: list[str]) -> list[EvalResult]:
        return [
            EvalResult(name, f"d{i}", "dev", a, g, float(a == g))
            for i, (a, g) in enumerate(zip(answers, golds, strict=True))
        ]

    lean = results("lean", ["(B)"] * 10)  # 60% on dev: every (B) item, no other
    reader = results("reader", ["(B)", "(A)", "(A)", "(C)", "(C)", "(C)", "(A)", "(A)", "(C)", "(C)"])  # 50%
    known = {"lean": lean, "reader": reader}

    def row(name: str) -> SimpleNamespace:
        scores = [r.score for r in known[name]]
        return SimpleNamespace(candidate=SimpleNamespace(hash=name), mean=sum(scores) / len(scores),
                               tokens_per_example=100.0)  # fmt: skip

    rows = [row("lean"), row("reader")]
    chosen, balanced = balanced_pick(rows, lambda c, split: known[c.hash])
    assert chosen == "reader"
    assert balanced == pytest.approx({"lean": 1 / 3, "reader": (1 / 6 + 1 + 1) / 3})
    winner, report = final_pick("balanced", rows, rows[0].candidate, lambda c, split: known[c.hash])
    assert winner.hash == "reader" and report["chosen"] == "reader" and report["best_by_mean"] == "lean"
    assert final_pick("best", rows, rows[0].candidate, lambda c, split: known[c.hash])[0].hash == "lean"


def test_balanced_selection_runs_a_search(
    task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promptopt.controller as controller
    from promptopt.racing import successive_halving

    raced_with: list[Any] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        raced_with.append(kwargs.get("golds"))
        return successive_halving(*args, **kwargs)

    monkeypatch.setattr(controller, "successive_halving", recording)
    result = run(task, f"sqlite:///{tmp_path / 'r.db'}", selection="balanced")
    assert result.selection["selection"] == "balanced" and result.winner.hash == result.selection["chosen"]
    assert set(result.selection["balanced_accuracy"]) >= {result.winner.hash}
    # the race ranks by balanced accuracy too: every stage was given the dev golds
    dev = [task.target(e) for e in task.examples("dev", 40)]
    assert raced_with and all(golds == dev for golds in raced_with)
    raced_with.clear()
    run(task, f"sqlite:///{tmp_path / 'b.db'}")
    assert raced_with and all(golds is None for golds in raced_with)
    # the live display says the best dev score it shows is a balanced accuracy
    states: list[Any] = []
    search(config(selection="balanced"), backend=kind_backend(task), db=f"sqlite:///{tmp_path / 'c.db'}",
           task=task, progress=states.append)  # fmt: skip
    assert states and all(s.balanced for s in states)


def test_demo_steps_swap_in_the_models_own_work_on_the_failing_kind(task: Task, tmp_path: Path) -> None:
    # instruction rewrites are harmful here: only a demo step can help, by showing a
    # bootstrapped percent question (the kind the parent fails)
    result = run(task, f"sqlite:///{tmp_path / 'r.db'}", reflection="harmful", reflect_demos=2, n_proposals=6)
    state = result.policy_state["reflection"]
    assert state["demo_steps"] >= 1 and state["accepted"] >= 1
    accepted = [e for e in result.policy_state["proposals"] if e["accepted"]]
    assert all(e["kind"] == "demos" for e in accepted)
    winner = result.winner
    assert winner.cot_mode == "few_shot" and len(winner.demo_ids) == 2 and winner.demo_solutions
    shown = {e.id: e for e in task.examples("train")}
    assert any(is_percent(shown[i].inputs["question"]) for i in winner.demo_ids)
    assert not set(winner.demo_ids) & {i for e in accepted for i in e["minibatch"]}
    assert {row.origin for row in result.leaderboard} >= {"seed", "reflect-demos"}
    plan = search(
        config(reflect_demos=2, n_proposals=6), db=f"sqlite:///{tmp_path / 'e.db'}", task=task, dry_run=True
    )
    assert isinstance(plan, dict) and result.spent["calls"] <= plan["search_calls"]


def test_cli_summary_and_report_lineage(task: Task, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from promptopt.cli import cli
    from promptopt.report import render_report

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["search", "--task", "gsm-symbolic", "--model", "fake", "--db", db, "--policy", "reflect",
            "--dev-size", "10", "--test-size", "10", "--proposals", "3", "--minibatch", "4", "--no-progress",
            "--selection", "noise-aware"]  # fmt: skip
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert re.search(r"reflect +3 steps: \d+ reflections, \d+ usable, \d+ accepted", out.output)
    run_id = re.search(r"run +(\w+) in", out.output).group(1)  # type: ignore[union-attr]
    shown = CliRunner().invoke(cli, ["show", run_id, "--db", db])
    assert shown.exit_code == 0 and re.search(r"reflect 3 steps: .* usable, \d+ accepted", shown.output), (
        shown.output
    )
    refused = CliRunner().invoke(cli, [*args[:8], "ape", "--minibatch", "4"])
    assert refused.exit_code == 2 and "--minibatch is for the reflect policy" in refused.output
    # the report draws the lineage of a reflect run (here on the kind fake: one accepted child)
    result = run(task, db)
    with Store(db) as store:
        page = render_report(store, result.run_id)
    accepted = next(e for e in result.policy_state["proposals"] if e["accepted"])
    assert "Reflection lineage" in page and accepted["child"][:10] in page and "accepted" in page


def test_merge_combines_two_specialists(task: Task, tmp_path: Path) -> None:
    # two kinds of item, each fixed by its own rule: reflections find one rule at a time,
    # a merge of the two frontier specialists keeps both
    overrides: dict[str, Any] = {"reflect_merge": True, "n_proposals": 9, "minibatch": 8}
    result = run(task, f"sqlite:///{tmp_path / 'r.db'}", reflection="two", **overrides)
    merges = [e for e in result.policy_state["proposals"] if e["kind"] == "merge"]
    assert merges and result.policy_state["reflection"]["merges"] == len(merges)
    assert all(e["other_parent"] != e["parent"] for e in merges)
    accepted = [e for e in merges if e["accepted"]]
    assert accepted and all(e["child_score"] > max(e["parent_score"], e["other_score"]) for e in accepted)
    assert RULE in result.winner.instruction and MONEY in result.winner.instruction
    assert "reflect-merge" in {row.origin for row in result.leaderboard}
    plan = search(config(**overrides), db=f"sqlite:///{tmp_path / 'e.db'}", task=task, dry_run=True)
    assert isinstance(plan, dict) and result.spent["calls"] <= plan["search_calls"]


def test_the_lineage_names_a_skipped_step_apart_from_an_unusable_one() -> None:
    from promptopt.report_reflect import lineage_section

    proposals = [
        {"step": 0, "parent": "p", "child": None, "usable": False, "accepted": False, "parent_score": 6,
         "reason": "skipped: the parent is perfect on the minibatch"},
        {"step": 1, "parent": "p", "child": None, "usable": False, "accepted": False, "parent_score": 3,
         "reason": "empty"},
    ]  # fmt: skip
    html = lineage_section({"policy_state": {"proposals": proposals, "reflection": {}}}, "p", None)
    assert "<td>skipped</td><td>skipped: the parent is perfect" in html
    assert "<td>not usable</td><td>empty</td>" in html
