"""A fake 'skilled' model for search tests: its accuracy depends on the instruction, so
a search has something real to find; it also plays the proposer."""

from __future__ import annotations

import hashlib

from promptopt.backends import FakeBackend
from promptopt.reflection import OPENING as REFLECTION_OPENING
from promptopt.tasks import Task
from promptopt.types import GenerationRequest

GOOD_WORDS = ("carefully", "step", "check", "verify")
PROPOSALS = [
    "Answer the question.",
    "Solve the problem carefully.",
    "Solve it step by step and check the arithmetic.",
    "Give the number.",
    "Work step by step, verify each step, and check the result carefully.",
    "Think.",
]


def skill(instruction: str) -> float:
    words = instruction.lower()
    return min(0.95, 0.2 + 0.18 * sum(1 for w in GOOD_WORDS if w in words))


def _coin(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def skilled_backend(task: Task, *, latency_s: float = 0.0) -> FakeBackend:
    answers = {
        e.inputs["question"]: task.target(e)
        for split in ("train", "dev", "test")
        for e in task.examples(split)
    }

    def respond(request: GenerationRequest) -> str:
        first = request.messages[0].content if request.messages else ""
        last = request.messages[-1].content
        if last.startswith("A teacher gave") or last.startswith("You are improving"):
            return f"Instruction: {PROPOSALS[int(_coin(last, request.sample_index) * len(PROPOSALS))]}"
        if last.startswith(REFLECTION_OPENING):  # the reflect policy's reflection
            return f"<new>{PROPOSALS[int(_coin(last, request.sample_index) * len(PROPOSALS))]}</new>"
        if last.startswith("Rewrite the following"):
            original = last.rsplit("\n\n", 1)[-1]
            extra = ["Check your work.", "Verify the answer.", "Go step by step."][request.sample_index % 3]
            return f'"{original} {extra}"'
        question = next((q for q in answers if q in last), None)
        if question is None:
            return "I do not know."
        instruction = first if request.messages[0].role == "system" else ""
        right = _coin(question, instruction, request.sample_index) < skill(instruction)
        return f"Some reasoning. The answer is {answers[question] if right else '-1'}."

    return FakeBackend(respond, latency_s=latency_s)
