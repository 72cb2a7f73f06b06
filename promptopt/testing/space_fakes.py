"""A fake model whose accuracy depends on several dimensions of the prompt, so that a
search over a space has a clearly best region to find (and a cost trade-off: samples).

Accuracy per sample (capped at 0.95):
  0.10
  + 0.30 if the prompt makes the model reason (a trigger containing "step by step" in the
         question, or demos with worked solutions)
  + 0.06 per demo, up to 4
  + 0.12 if the answer-format line asks for "The answer is"
  + 0.05 per good word of the instruction (see search_fakes.GOOD_WORDS)
Self-consistency samples are independent coin flips, so majority voting helps when the
per-sample accuracy is above one half. Proposals come from search_fakes.
"""

from __future__ import annotations

from typing import Any

from promptopt.backends import FakeBackend
from promptopt.tasks import Task
from promptopt.testing.search_fakes import GOOD_WORDS, PROPOSALS, _coin
from promptopt.types import GenerationRequest

ANSWER_IS = "The answer is"

# A small space over the parts this fake reacts to (no similar demos: no embedding model
# needed), for the policy tests and `benchmarks/policies.py --model fake`.
SPACE: dict[str, Any] = {
    "name": "fake",
    "dimensions": {
        "instruction": {"type": "pool", "seeds": ["Solve it.", "Work carefully and check the result."],
                        "grow": {"proposer": "ape", "max": 2}},
        "cot_mode": {"type": "categorical", "choices": ["none", "zero_shot"]},
        "cot_trigger": {"type": "categorical", "choices": ["Let's think step by step.", "Go."],
                        "when": {"cot_mode": ["zero_shot"]}},
        "n_demos": {"type": "integer", "low": 0, "high": 8},
        "demo_selection": {"type": "categorical", "choices": ["random", "fixed"], "when": {"n_demos": {"min": 1}}},
        "answer_format": {"type": "categorical",
                          "choices": [f'End with "{ANSWER_IS} N."', "Reply with a number.", "Be brief."]},
        "samples": {"type": "categorical", "choices": [1, 3, 5]},
        "temperature": {"type": "float", "low": 0.5, "high": 1.0, "step": 0.25, "when": {"samples": [3, 5]}},
    },
}  # fmt: skip


def prompt_skill(*, reasons: bool, n_demos: int, answer_is: bool, instruction: str = "") -> float:
    words = instruction.lower()
    value = 0.10 + (0.30 if reasons else 0.0) + 0.06 * min(n_demos, 4) + (0.12 if answer_is else 0.0)
    value += 0.05 * sum(1 for w in GOOD_WORDS if w in words)
    return min(0.95, value)


def request_skill(request: GenerationRequest) -> float:
    messages = request.messages
    instruction = messages[0].content if messages and messages[0].role == "system" else ""
    last = messages[-1].content
    demos = [m for m in messages if m.role == "assistant"]
    worked = any(len(m.content.split()) > 6 for m in demos)
    reasons = "step by step" in last.lower() or worked
    return prompt_skill(
        reasons=reasons, n_demos=len(demos), answer_is=ANSWER_IS in last, instruction=instruction
    )


def space_backend(task: Task) -> FakeBackend:
    answers = {
        e.inputs["question"]: task.target(e)
        for split in ("train", "dev", "test")
        for e in task.examples(split)
    }

    def respond(request: GenerationRequest) -> str:
        last = request.messages[-1].content
        if last.startswith("A teacher gave") or last.startswith("You are improving"):
            return f"Instruction: {PROPOSALS[int(_coin(last, request.sample_index) * len(PROPOSALS))]}"
        if last.startswith("Rewrite the following"):
            original = last.rsplit("\n\n", 1)[-1]
            return f"{original} Check your work."
        first_block = last.split("\n\n", 1)[0]
        question = first_block.removeprefix("Question: ")
        if question not in answers:
            return "I do not know."
        p = request_skill(request)
        key = "|".join(m.content for m in request.messages)
        right = _coin(key, request.sample_index, request.temperature) < p
        return f"Let me work it out. {ANSWER_IS} {answers[question] if right else '-1'}."

    return FakeBackend(respond)
