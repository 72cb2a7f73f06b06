"""Render a :class:`Candidate` for one example into chat messages or plain text.

Layout (chat): an optional system message with the instruction; each demo as a user turn
(the task template and the answer-format line, as the real question will be shown) and an
assistant turn (worked solution in few-shot CoT mode, then "The answer is X.", or the
form the task's extractor reads); then the
question as the last user turn, followed by the answer-format line and, in zero-shot CoT
mode, the trigger phrase. Everything that is the same for every question comes first, so
backends can reuse the shared prefix.

The demos' user turns carry the answer-format line too. When only the last turn had it,
the model read it as something new: in 8-shot CoT on GSM8K with qwen2.5-coder-1.5b, 63
of 200 answers were the bare "The answer is N." sentence with no working (9 of them
right), unlike every demo before them.
"""

from __future__ import annotations

import re

from promptopt.errors import ConfigError
from promptopt.tasks import Task
from promptopt.tasks.answer_format import render_answer_format
from promptopt.types import Candidate, Example, Message


def demo_solution(candidate: Candidate, demo: Example) -> str | None:
    """A demo's worked solution under ``candidate``: its own (a bootstrapped one, or ""
    for the answer only) where it has one, else the data's. Shown in few-shot CoT. A
    solution of only whitespace is "": the demo shows its answer only."""
    own = candidate.solution_for(demo.id)
    solution = demo.solution if own is None else own
    return "" if solution is not None and not solution.strip() else solution


def demo_answer(candidate: Candidate, task: Task, demo: Example) -> str:
    """The assistant turn of a demo: reasoning (few-shot CoT) and the answer line, in the
    form the task's extractor reads (:meth:`Task.demo_answer`: "The answer is X.", or
    ``<answer>X</answer>`` for reasoning-gym's tasks)."""
    final = task.demo_answer(demo)
    solution = demo_solution(candidate, demo)
    if candidate.cot_mode == "few_shot" and solution:
        lead = f"{candidate.cot_trigger.strip()}\n" if candidate.cot_trigger.strip() else ""
        return f"{lead}{solution.strip()}\n{final}"
    return final


def demos_for(candidate: Candidate, task: Task, example: Example) -> list[Example]:
    """The demos shown before ``example``: the fixed ``demo_ids``, or the most similar
    items of the demo pool when ``similar_demos`` is set."""
    if candidate.similar_demos > 0:
        from promptopt.similarity import nearest_demos

        return nearest_demos(task, example, candidate.similar_demos)
    return [task.demo(demo_id) for demo_id in candidate.demo_ids]


def demo_turn(candidate: Candidate, task: Task, demo: Example) -> str:
    """The user turn of a demo: the input and the answer-format line, like the question's
    (its ``{answers}`` slot names what an answer to this item may be)."""
    parts = [task.render_input(demo)]
    if candidate.answer_format.strip():
        parts.append(render_answer_format(candidate.answer_format, task, demo))
    return "\n\n".join(parts)


def trigger_after_question(candidate: Candidate, task: Task, example: Example) -> bool:
    """Whether the trigger follows the question: in zero-shot CoT, and in few-shot CoT
    when no demo shown carries a worked solution (answer-only demos; else ``--shots N
    --cot`` silently became plain few-shot)."""
    if not candidate.cot_trigger.strip():
        return False
    if candidate.cot_mode == "zero_shot":
        return True
    if candidate.cot_mode != "few_shot":
        return False
    return not any(demo_solution(candidate, demo) for demo in demos_for(candidate, task, example))


def question_turn(candidate: Candidate, task: Task, example: Example) -> str:
    parts = [demo_turn(candidate, task, example)]
    if trigger_after_question(candidate, task, example):
        parts.append(candidate.cot_trigger.strip())
    return "\n\n".join(parts)


def render_messages(candidate: Candidate, task: Task, example: Example) -> tuple[Message, ...]:
    """The chat messages a model receives for ``example`` under ``candidate``."""
    messages: list[Message] = []
    if candidate.instruction.strip():
        messages.append(Message("system", candidate.instruction.strip()))
    for demo in demos_for(candidate, task, example):
        messages.append(Message("user", demo_turn(candidate, task, demo)))
        messages.append(Message("assistant", demo_answer(candidate, task, demo)))
    messages.append(Message("user", question_turn(candidate, task, example)))
    return tuple(messages)


def render_text(candidate: Candidate, task: Task, example: Example) -> str:
    """The same prompt as plain text, for completion-style models and for reading."""
    blocks: list[str] = []
    if candidate.instruction.strip():
        blocks.append(candidate.instruction.strip())
    for demo in demos_for(candidate, task, example):
        blocks.append(f"{demo_turn(candidate, task, demo)}\nAnswer: {demo_answer(candidate, task, demo)}")
    blocks.append(f"{question_turn(candidate, task, example)}\nAnswer:")
    return "\n\n".join(blocks)


def answer_followup(task: Task) -> Message:
    """The second-stage question of Kojima-style two-stage answer extraction."""
    return Message("user", task.spec.answer_prompt)


# --------------------------------------------------------------------------- placeholders
# The prompt rendered with ``{field}`` where each input goes (export, ``promptopt show``):
# each field is rendered as a sentinel that no text contains, then replaced.
SENTINEL = "\x00promptopt-field:{name}\x00"
SENTINEL_RE = re.compile("\x00promptopt-field:([A-Za-z_][A-Za-z0-9_]*)\x00")


def placeholder_messages(candidate: Candidate, task: Task) -> list[dict[str, str]]:
    """The chat messages of ``candidate`` with ``{field}`` where each input goes."""
    return [
        {"role": m["role"], "content": SENTINEL_RE.sub(lambda x: "{" + x.group(1) + "}", m["content"])}
        for m in sentinel_messages(candidate, task)
    ]


def sentinel_messages(candidate: Candidate, task: Task) -> list[dict[str, str]]:
    """The chat messages of ``candidate`` with a sentinel (``SENTINEL``) where each input goes."""
    fields = {name: SENTINEL.format(name=name) for name in task.spec.input_fields}
    example = Example(id="input", inputs=fields, target="")
    messages = [m.to_dict() for m in render_messages(candidate, task, example)]
    for message in messages[:-1]:
        if SENTINEL_RE.search(message["content"]):  # pragma: no cover - render puts inputs last only
            raise ConfigError("an input field appears outside the last message; cannot export placeholders")
    return messages
