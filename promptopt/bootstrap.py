"""Bootstrapped demos (as in DSPy's BootstrapFewShot): the model's own correct worked
solutions on demo-pool items become the worked solutions of few-shot demos.

The model answers demo-pool items (train minus dev, in a seeded order) with a zero-shot
chain-of-thought prompt; an answer that scores 1.0 is kept, with its final "The answer
is N." sentence removed (the demo's assistant turn adds it back). Items are asked in
batches until ``k`` solutions are found or ``max_tries`` items have been tried. Every
call goes through the backend it is given — in a search, the cached and budgeted one —
so a resumed search gets the same solutions back from the response cache.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from promptopt.backends.base import Backend
from promptopt.executor import Executor
from promptopt.spaces import DemoSolutions
from promptopt.tasks import Task
from promptopt.types import Candidate

DEFAULT_TRIGGER = "Let's think step by step."
_FINAL_MARKERS = ("the answer is", "####")
# what is left dangling when the answer itself is cut: "So, the final answer is" (<answer>3</answer>)
_LEAD_IN = re.compile(r"(?:\b(?:so|thus|therefore|hence)\b,?\s*)?(?:the\s+)?(?:final\s+)?answer\s*(?:is\s*:?|:)\s*$",
                      re.IGNORECASE)  # fmt: skip


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def solution_text(output: str, lead: str = "") -> str:
    """A model's worked solution without its final answer (the demo's assistant turn adds
    it back, as the task states it: "The answer is N.", ``<answer>N</answer>``); ``lead``
    is that form's text before the answer ("<answer>"), cut too. An output that is its
    answer sentence alone gives an empty solution: the demo then shows the answer once."""
    text = output.strip()
    lowered = text.lower()
    markers = (*_FINAL_MARKERS, lead.strip().lower()) if lead.strip() else _FINAL_MARKERS
    cut = max(lowered.rfind(marker) for marker in markers)
    if cut < 0:
        return text
    head = _LEAD_IN.sub("", text[:cut]).rstrip()
    if head:
        return head
    # nothing before the answer: an output that is its answer sentence alone has no worked
    # solution (the demo shows the answer once); one that reasons after it is kept whole
    after = _SENTENCE_END.split(text[cut:], maxsplit=1)
    return text if len(after) > 1 and len(after[1].split()) >= 3 else ""


@dataclass(frozen=True)
class BootstrapReport:
    demos: DemoSolutions
    tried: int
    correct: int


def default_tries(k: int) -> int:
    """The most train items :func:`bootstrap_demos` asks for ``k`` demos when not told."""
    return max(4 * k, k + 8)


def bootstrap_demos(
    task: Task,
    backend: Backend,
    *,
    k: int,
    seed: int = 0,
    instruction: str | None = None,
    cot_trigger: str = DEFAULT_TRIGGER,
    answer_format: str | None = None,
    max_tries: int | None = None,
    batch_size: int = 8,
    max_tokens: int = 512,
) -> BootstrapReport:
    """Up to ``k`` demos whose worked solutions the model wrote itself and got right."""
    pool = task.examples("train")
    order = list(range(len(pool)))
    random.Random(f"bootstrap:{seed}").shuffle(order)
    limit = min(len(pool), max_tries if max_tries is not None else default_tries(k))
    prompt = Candidate(
        instruction=task.spec.instruction if instruction is None else instruction,
        cot_mode="zero_shot",
        cot_trigger=cot_trigger,
        answer_format=task.spec.answer_format if answer_format is None else answer_format,
        max_tokens=max_tokens,
    )
    executor = Executor(task, backend, batch_size=batch_size)
    lead = task.demo_answer_form.split("{answer}")[0]
    ids: list[str] = []
    solutions: list[tuple[str, str]] = []
    tried = 0
    while len(ids) < k and tried < limit:
        chunk = [pool[i] for i in order[tried : min(limit, tried + max(1, batch_size))]]
        tried += len(chunk)
        for example, result in zip(chunk, executor.evaluate(prompt, chunk, "train"), strict=True):
            if result.score == 1.0 and result.samples and len(ids) < k:
                ids.append(example.id)
                output = result.samples[0].raw_output
                if task.extractor_name == "json":  # the demo adds the gold object: cut the model's
                    from promptopt.metrics.jsonout import json_start

                    start = json_start(output)
                    output = output[:start] if start >= 0 else output
                solutions.append((example.id, solution_text(output, lead)))
    return BootstrapReport(DemoSolutions(tuple(ids), tuple(solutions)), tried, len(ids))
