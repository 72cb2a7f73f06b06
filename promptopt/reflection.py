"""The reflection step of the ``reflect`` policy: show a model the items a prompt failed
on, with why, and read back an improved instruction.

The prompt is written for small local models (0.5B-1.5B): short, concrete, one job, the
answer between two markers that are easy to copy (``<new>`` and ``</new>``). Each failed
item shows its input, the end of the model's output (where the answer is), the gold
answer and the feedback: the metric's, or what the output itself says when no answer was
read ("no final answer found", "cut off at the token limit", "answered with Python code").

:func:`read_reflection` takes the text between the markers (or, without them, the
reply as a proposal), cleans it the way proposals are cleaned (labels, quotes, chatter;
:func:`promptopt.proposers.clean_proposal`) and says why a reply is not usable: empty,
the same as the current instruction or an earlier one, talk *about* the instruction, or
a copy of the shown items (their numbers or names: a rule for those items, not the task).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from promptopt.proposers import (
    _META,
    _NUMBER,
    QUOTE_WORDS,
    _word_runs,
    clean_proposal,
    finished_part,
    mentions_examples,
)
from promptopt.tasks import Task
from promptopt.types import EvalResult, Example

MAX_SHOWN = 4  # failed items shown in one reflection
MAX_INPUT_CHARS = 500
MAX_OUTPUT_CHARS = 300
MAX_INSTRUCTION_CHARS = 700
MIN_WORDS = 3
#: The first line of every reflection prompt (the test fakes recognise it).
OPENING = "Improve an instruction for a model that answers questions."
MERGE_OPENING = "Combine two instructions for a model that answers questions."
# Where a small model goes on to copy the prompt's item blocks or to explain itself: the
# instruction ends before such a line
_ITEM_LINE = re.compile(
    r"^\W*(?:question\s*\d*|model'?s answer|correct answer|problem|example\s*\d*|explanation|"
    r"for example|current instruction|note)\b[^\n]*$",
    re.IGNORECASE | re.MULTILINE,
)
_TRAILING_EXAMPLE = re.compile(r"\s*\b(?:for example|for instance|e\.g\.|example)\s*:?\s*$", re.IGNORECASE)
_STRAY_TAG = re.compile(r"<\s*/?\s*new\b\s*>?", re.IGNORECASE)  # an unfinished "<new" too
_SENTENCE_END = re.compile(r"(?<=[a-z)\]\"'][.!?])\s+(?=[A-Z])")
_ABOUT_SETUP = re.compile(
    r"\b(?:the|this) (?:student|model|assistant)\b|\b(?:model|assistant)'s (?:answer|output|reply)",
    re.IGNORECASE,
)
TEMPLATE_EXAMPLE = "Solve the problem step by step."
_NEW = re.compile(r"<\s*new\s*>(.*?)(?:<\s*/\s*new\s*>|$)", re.IGNORECASE | re.DOTALL)
_CLOSING = re.compile(r"<\s*/\s*new\s*>", re.IGNORECASE)
_SINGLE_DIGIT = re.compile(r"(?<![\d.,])\d(?![\d.,]?\d)")
_CODE = re.compile(r"```(?:python|py)\b|^\s*(?:def |import |print\()", re.IGNORECASE | re.MULTILINE)


def failure_feedback(result: EvalResult) -> str:
    """Why ``result`` lost points, in a few words: the metric's feedback, and what the
    output says when no answer was read from it."""
    raw = result.samples[0].raw_output if result.samples else ""
    notes = []
    if result.error is not None and result.score is None:
        notes.append(f"the request failed ({result.error[:80]})")
    elif result.truncated and result.answer is None:
        notes.append("cut off at the token limit before a final answer")
    elif result.answer is None:
        notes.append("no final answer found")
    if _CODE.search(raw):
        notes.append("answered with Python code instead of working it out")
    feedback = (result.feedback or "").strip()
    if feedback and not (notes and feedback.lower().startswith("no answer found")):
        notes.append(feedback)
    if not notes:
        notes.append(f"expected {result.gold}, got {result.answer}")
    return "; ".join(dict.fromkeys(notes))


def _tail(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "…" + text[-limit:]


def _head(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class Shown:
    """One failed item as the reflection model saw it."""

    example_id: str
    feedback: str


def reflection_prompt(
    task: Task, instruction: str, failed: Sequence[tuple[Example, EvalResult]]
) -> tuple[str, list[Shown]]:
    """The reflection prompt for ``instruction`` and its failed items (the first
    :data:`MAX_SHOWN`), and what it showed."""
    shown: list[Shown] = []
    blocks = []
    for number, (example, result) in enumerate(failed[:MAX_SHOWN], start=1):
        why = failure_feedback(result)
        output = result.samples[0].raw_output if result.samples else ""
        blocks.append(
            f"Question {number}: {_head(task.render_input(example), MAX_INPUT_CHARS)}\n"
            f"Model's answer: {_tail(output, MAX_OUTPUT_CHARS) or '(empty)'}\n"
            f"Correct answer: {result.gold}\nProblem: {why}"
        )
        shown.append(Shown(example.id, why))
    current = instruction.strip() or "(no instruction)"
    prompt = (
        f"{OPENING}\n\nCurrent instruction:\n{current}\n\n"
        "With it, the model got these questions wrong:\n\n" + "\n\n".join(blocks) + "\n\n"
        'Write an improved instruction that speaks to the model as "you". Keep what is useful and add '
        "one or two short rules that prevent these mistakes (a step that was skipped, or how to write "
        "the final answer). Do not copy the questions, names or numbers.\n"
        "Reply with the instruction only, between <new> and </new>. Example:\n"
        f"<new>{TEMPLATE_EXAMPLE} ...</new>"
    )
    return prompt, shown


def _without_talk_about_the_setup(text: str, meta_allowed: bool) -> tuple[str, str]:
    """``text`` without its sentences about the instruction or the model (small models
    mix "Keep in mind that the model was…" into useful rules), and why the last dropped
    one was dropped ("" when none was). A line is split into sentences only where a
    sentence ends in a word, so that "1. Count" stays whole."""
    kept_lines = []
    why = ""
    for line in text.splitlines():
        kept = []
        for sentence in _SENTENCE_END.split(line):
            if not meta_allowed and _META.search(sentence):
                why = "speaks of the instruction, not the task"
            elif _ABOUT_SETUP.search(sentence):
                why = "speaks of the model, not to it"
            else:
                kept.append(sentence)
        if kept:
            kept_lines.append(" ".join(kept))
    return "\n".join(kept_lines).strip(), why


def merge_prompt(first: str, second: str) -> str:
    """The prompt that asks for one instruction with the rules of two (GEPA's merge)."""
    return (
        f"{MERGE_OPENING}\n\nInstruction A:\n{first.strip() or '(no instruction)'}\n\n"
        f"Instruction B:\n{second.strip() or '(no instruction)'}\n\n"
        "Each works best on different questions. Write one instruction that keeps the useful rules of "
        'both, short, speaking to the model as "you".\n'
        f"Reply with the instruction only, between <new> and </new>. Example:\n<new>{TEMPLATE_EXAMPLE} ...</new>"
    )


def read_reflection(
    reply: str,
    *,
    current: str,
    known: Sequence[str],
    shown_inputs: Sequence[str],
    shown_outputs: Sequence[str] = (),
    shown_answers: Sequence[str] = (),
    setup: Sequence[str] = (),
    meta_allowed: bool = False,
    cut_off: bool = False,
) -> tuple[str | None, str]:
    """The instruction in a reflection ``reply`` and ``"usable"``, or ``None`` and why
    not. ``known``: instructions already proposed (a repeat is not usable);
    ``shown_inputs``: the inputs the reflection saw (a text that names their numbers or
    names is about them); ``shown_outputs``: the model's answers it saw (a text that repeats
    one is an answer, not an instruction); ``shown_answers``: the gold and the model's
    answers it saw (a text that names one of their numbers of two digits or more, which the
    parent's own text does not hold, states an answer, "<answer>-102</answer>", however
    short); ``setup``: the parent's other lines, such as its
    answer-format line, which an answer may echo and a rewrite may keep; ``meta_allowed``:
    the task's own items speak of instructions;
    ``cut_off``: the reply reached the token limit, so an unclosed instruction loses its
    unfinished end (a rule that stops mid-sentence is not kept)."""
    match = _NEW.search(reply)
    raw = match.group(1) if match else reply
    raw = _STRAY_TAG.sub(" ", raw.replace("...", " ").replace("…", " ")).strip()
    if not raw:
        return None, "empty"
    cut = _ITEM_LINE.search(raw)
    if cut is not None and len(raw[: cut.start()].split()) >= MIN_WORDS:
        raw = raw[: cut.start()].strip()
    elif cut_off and not _CLOSING.search(reply):
        raw = finished_part(raw)
        if not raw:
            return None, "cut off before its first sentence ended"
    raw = _TRAILING_EXAMPLE.sub("", raw)
    # keep a rule list together: clean_proposal cuts at the first blank line
    raw = re.sub(r"\n\s*\n", "\n", raw)
    # a marked text may be longer than an unmarked proposal's 400 characters
    text = clean_proposal(raw, MAX_INSTRUCTION_CHARS) if match is not None else clean_proposal(raw)
    if text is None and match is None:
        return None, "no instruction found"
    if text is None:
        return None, "empty"
    # the 0.5B sometimes opens with a stray "<" (a tag begun, not finished)
    text = text.strip().lstrip("<> \t\n")
    if len(text.split()) < MIN_WORDS:
        return None, "too short"
    text, dropped = _without_talk_about_the_setup(text, meta_allowed)
    if len(text.split()) < MIN_WORDS:
        return None, dropped or "too short"
    if text.rstrip(" .") == TEMPLATE_EXAMPLE.rstrip("."):
        return None, "copies the reply format's example"
    if text == current.strip() or text in known:
        return None, "a repeat"
    # single digits ("Step 1:", "2 decimals") are too common to say the text copies an item
    if shown_inputs and mentions_examples(_SINGLE_DIGIT.sub(" ", text), shown_inputs):
        return None, "copies the shown items"
    if _names_an_answer(text, shown_answers, [current, *setup]):
        return None, "names a shown answer"
    shown = [_tail(output, MAX_OUTPUT_CHARS) for output in shown_outputs]  # as the prompt showed them
    if copies_an_output(text, shown, [current, *shown_inputs, *setup]):
        return None, "copies a shown answer"
    return text, "usable"


def _numbers(texts: Sequence[str]) -> set[str]:
    """The numbers of two digits or more in ``texts``."""
    return set(_NUMBER.findall(_SINGLE_DIGIT.sub(" ", " ".join(t for t in texts if t))))


def _names_an_answer(text: str, answers: Sequence[str], allowed: Sequence[str]) -> bool:
    """True if ``text`` names a number of one of the shown ``answers`` that the ``allowed``
    texts (the parent's instruction and lines, which a rewrite may keep) do not hold."""
    return bool((_numbers(answers) - _numbers(allowed)) & _numbers([text]))


def copies_an_output(text: str, outputs: Sequence[str], allowed: Sequence[str] = ()) -> bool:
    """True if ``text``, without its quotes of the ``allowed`` texts, repeats
    ``QUOTE_WORDS`` words in a row of one of the model's ``outputs``. An output may echo
    its instruction, the question's wording or the answer-format line, and a rewrite may
    keep them ("To find which of the following is a humorous edit …, compare letters"), so
    the spans of ``text`` that quote those are set aside first; quotes of one item are
    :func:`mentions_examples`' to catch. The case: the 0.5B's reflection on
    ``sports_understanding`` replied with one of the answers it was shown ("Based on the
    information provided, the sentence is plausible. Therefore, the answer is: yes."),
    which the reader took for an instruction and which then won the search."""
    words = re.findall(r"\w+", text.lower())
    allowed_runs = set().union(*(_word_runs(a) for a in allowed))
    quoted = [False] * len(words)
    for i in range(len(words) - QUOTE_WORDS + 1):
        if tuple(words[i : i + QUOTE_WORDS]) in allowed_runs:
            quoted[i : i + QUOTE_WORDS] = [True] * QUOTE_WORDS
    # the text's own runs: those with no word inside a quote of the allowed texts
    mine = {
        tuple(words[i : i + QUOTE_WORDS])
        for i in range(len(words) - QUOTE_WORDS + 1)
        if not any(quoted[i : i + QUOTE_WORDS])
    }
    return any(mine & _word_runs(output) for output in outputs)
