"""Proposers: an LLM writes candidate texts (instructions or chain-of-thought triggers).

- :meth:`Proposer.from_demos` — APE forward generation: the model sees input/output
  demos and writes the instruction that would produce them.
- :meth:`Proposer.paraphrase` — APE resampling: a variation that keeps the meaning.
- :meth:`Proposer.from_history` — OPRO: the model sees earlier texts with their scores,
  worst to best, and a few task examples, and writes one that should score higher.

A task without an instruction (BBH has none) gave the proposer an empty string to
rewrite, and the pool filled with text about instructions ("Write the instruction in
different words."). An instruction shorter than :data:`SHORT_INSTRUCTION_WORDS` words is
therefore never paraphrased nor shown as the only history: the proposer asks what the
instruction was from five input-output pairs instead (APE's induction), and a proposal
that speaks of "the instruction" or "the prompt" rather than of the task is dropped
(unless the task's own items speak of instructions).

Every call goes through the (cached) proposer backend with a distinct ``sample_index``,
so a resumed search gets the same proposals back from the cache.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from promptopt.backends.base import Backend
from promptopt.tasks import Task
from promptopt.types import Example, GenerationRequest, Message

SLOTS = ("instruction", "cot_trigger")
MAX_PROPOSAL_CHARS = 400
DEMO_ATTEMPTS = 2  # forward-generation calls per wanted proposal, at most
SHORT_INSTRUCTION_WORDS = 4
_META = re.compile(r"\b(?:instructions?|prompts?)\b", re.IGNORECASE)


def is_short(text: str) -> bool:
    """An instruction too short to rewrite (empty, or a few words)."""
    return len(text.split()) < SHORT_INSTRUCTION_WORDS


_WHAT = {
    "instruction": "instruction",
    "cot_trigger": "opening sentence for a step-by-step answer",
}


def _example_block(task: Task, example: Example, *, with_reasoning: bool) -> str:
    answer = example.target
    if with_reasoning and example.solution:
        answer = f"{example.solution.strip()}\n{task.demo_answer(example)}"
    return f"Input: {task.render_input(example)}\nOutput: {answer}"


_PREAMBLE = re.compile(
    r"^(?:sure|okay|ok|certainly|of course|absolutely|great|here(?: is|'s| are)[^:\n]*)[:,.!]?\s*",
    flags=re.IGNORECASE,
)
# A label where a text follows it: "Instruction:", "New prompt:", "**Instruction:**", and up
# to two words before "instruction", "prompt", "variation" or "paraphrase" ("Teacher's
# instruction:", "Revised prompt:")
_LABEL = re.compile(
    r"^[*_#>\s]*(?:(?:new |improved |the )?(?:sentence|text|answer)|(?:[\w'’]+\s+){0,2}"
    r"(?:instruction|prompt|variation|paraphrase)s?)[*_]*\s*[:：][*_]*\s*(?=\S)",
    flags=re.IGNORECASE,
)
# The meta-prompts mark where the instruction goes with <INS>; models often copy the mark
# (or an <instruction> tag) around their answer ("<INS>Solve it.</INS>", "<INS: Solve it.").
_TAG = r"(INS|instructions?|prompt)"
_TAGGED = re.compile(rf"<{_TAG}>\s*(.*?)\s*</\1>", flags=re.IGNORECASE | re.DOTALL)
_OPEN_TAG = re.compile(rf"^\s*<{_TAG}(?:>|(?=\s*[:：]))\s*[:：]?\s*", flags=re.IGNORECASE)
# A closing remark on the proposal's expected score ("The score for this new instruction is 90.")
_SCORE_LINE = re.compile(
    r"^\W*(?:the\s+)?(?:(?:expected|new|estimated|predicted)\s+)?(?:score|accuracy)\b[^\n]*?"
    r"(?:\b(?:is|of|would be|will be)\s*|[:=]\s*)\d+(?:\.\d+)?\s*%?\W*$",
    re.IGNORECASE,
)
_LETTER = re.compile(r"[^\W\d_]")
# A lead-in line that talks about the proposal rather than the task ("Certainly! Below is a
# new instruction that should score higher:", "Opening sentence:", "Try this:"); other
# lines ending in a colon are kept when a list or a format line follows them
_CHATTER = re.compile(
    r"\b(?:here|sure|certainly|of course|okay|ok|absolutely|great|instructions?|prompts?|"
    r"versions?|variations?|paraphras\w*|rephras\w*|rewrit\w*|improved|revised|updated|modified|"
    r"new|better|score|sentence|opening|proposal|proposed|suggest\w*|alternatives?|options?|try)\b",
    re.IGNORECASE,
)
# A list item ("1.", "2)", "-", "*", "•") or a format line ("Answer: the number only")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S")
_LIST_OR_FORMAT_LINE = re.compile(rf"{_LIST_ITEM.pattern}|^\s*[A-Z][\w ]{{0,30}}:\s*\S")
# A copy of the meta-prompt's example format (a made-up question and its output)
_QUESTION_LINE = re.compile(r"^\W*(?:input|question)\s*:", re.IGNORECASE | re.MULTILINE)
_OUTPUT_LINE = re.compile(r"^\W*(?:output|answer)\s*:\s*\S*\d", re.IGNORECASE | re.MULTILINE)
# What is left when a label's text was cut away ("New instruction:")
_BARE_LABEL = re.compile(
    r"(?:the\s+)?(?:new|improved|revised|updated|better)\s+(?:instruction|prompt|text|variation)s?\s*[:：]",
    re.IGNORECASE,
)
_COMPLETE_END = re.compile(r"[.!?][\"')\]*]*$")
_LAST_SENTENCE_END = re.compile(r"[.!?][\"')\]*]*(?=\s)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITALIZED = re.compile(r"\b[A-Z][a-z]+\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n]\s*|\"\s*)$")


def _list_without_gaps(lines: list[str]) -> list[str]:
    """``lines`` from their first non-blank one, without the blank lines between list
    items (so that cutting the text at its first blank line keeps the whole list)."""
    kept: list[str] = []
    for k, line in enumerate(lines):
        if not line.strip():
            following = next((x for x in lines[k + 1 :] if x.strip()), "")
            if not kept or (_LIST_ITEM.match(kept[-1]) and _LIST_ITEM.match(following)):
                continue
        kept.append(line)
    return kept


def finished_part(text: str) -> str:
    """``text`` without an unfinished end (cut off at a token or character limit): its
    last line when that does not end a sentence, or, in one line, what follows the last
    sentence's end; ``""`` when nothing in it is finished."""
    text = text.rstrip()
    if _COMPLETE_END.search(text):
        return text
    lines = text.splitlines()
    if len(lines) > 1:
        return "\n".join(lines[:-1]).rstrip()
    ends = list(_LAST_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else ""


def capped(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, ending where a sentence or a line ends
    (a rule cut mid-word is not an instruction); at a word's end when the first sentence
    alone is longer."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    return finished_part(head) or head.rsplit(None, 1)[0]


def clean_proposal(text: str, limit: int = MAX_PROPOSAL_CHARS) -> str | None:
    """The proposed text alone: no quotes, labels, markdown or chatter; ``None`` if empty.

    Small chat models often open with a line of chatter that ends in a colon ("Certainly!
    Below is a new instruction that should score higher:") and put the text after it;
    such lead-in lines are dropped when something follows them. A line ending in a colon
    that speaks of the task, not of the proposal, and heads a list or a format line
    ("Solve it in a way that:\n1. ..."), is part of the text and stays with its list. A proposal wrapped in
    the meta-prompt's ``<INS>`` mark is taken from inside it; a closing line about its
    expected score is dropped. A text without a letter (``---``) or a copy of the example
    format (a question line and an output line) is no proposal. At most ``limit``
    characters, ending where a sentence or a line ends."""
    text = text.strip()
    tagged = _TAGGED.search(text)
    if tagged:
        text = tagged.group(2)
    elif _OPEN_TAG.match(text) and _OPEN_TAG.sub("", text, count=1).strip():
        text = _OPEN_TAG.sub("", text, count=1)
    if _QUESTION_LINE.search(text) and _OUTPUT_LINE.search(text):
        return None
    lines = text.strip().splitlines()
    while len(lines) > 1 and _SCORE_LINE.match(lines[-1].strip()):
        lines.pop()
    while len(lines) > 1 and lines[0].strip().endswith(":") and any(x.strip() for x in lines[1:]):
        body = [line for line in lines[1:] if line.strip()]
        if not _CHATTER.search(lines[0]) and _LIST_OR_FORMAT_LINE.match(body[0]):
            # "Format your reply as:" or "Solve it in a way that:" heads the list after it
            lines = [lines[0], *_list_without_gaps(lines[1:])]
            break
        lines.pop(0)
        while not lines[0].strip():  # a non-blank line follows, checked above
            lines.pop(0)
    text = "\n".join(lines).strip()
    text = _PREAMBLE.sub("", text)
    text = _LABEL.sub("", text)
    text = text.split("\n\n", 1)[0].strip()
    if "<INS>" in text:  # a copy of the meta-prompt's placeholder, not a proposal
        return None
    text = text.strip("*`#> \t\n").strip().strip("\"'“”").strip()
    if not _LETTER.search(text) or _BARE_LABEL.fullmatch(text):
        return None
    return capped(text, limit).strip() or None


def _names(source: str) -> set[str]:
    """Capitalized words inside a sentence of ``source``: the names of its people and places."""
    return {
        m.group() for m in _CAPITALIZED.finditer(source) if not _SENTENCE_START.search(source[: m.start()])
    }


QUOTE_WORDS = 8  # a run of this many words of one shown input is a quote of that input


def _word_runs(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + QUOTE_WORDS]) for i in range(len(words) - QUOTE_WORDS + 1)}


def quotes_an_input(text: str, inputs: Sequence[str]) -> bool:
    """True if ``text`` repeats ``QUOTE_WORDS`` words in a row of one of ``inputs`` that
    not every one of them has: an item's own question ("I have a mouse, four snails, a
    chicken, …"), where the task's shared wording ("Which of the following is a humorous
    edit of this artist or movie name") may be quoted freely."""
    runs = [_word_runs(i) for i in inputs]
    shared = set.intersection(*runs) if len(runs) > 1 else set()
    mine = _word_runs(text)
    return any((mine & r) - shared for r in runs)


def mentions_examples(text: str, inputs: Sequence[str]) -> bool:
    """True if ``text`` names a number or a proper name from the example ``inputs``, or
    quotes one of them (:func:`quotes_an_input`): it is about those examples (a solution
    of one, "calculate what Daria still owes") rather than an instruction for the task,
    and could not help on other items."""
    if quotes_an_input(text, inputs):
        return True
    source = "\n".join(inputs)
    numbers = set(_NUMBER.findall(source))
    if any(n in numbers for n in _NUMBER.findall(text)):
        return True
    capitalized_there = set(_CAPITALIZED.findall(source))
    # a name used inside one of the examples' sentences, or one the proposal itself uses
    # inside a sentence ("find the hours Iggy runs") where the examples also have it
    return bool(set(_CAPITALIZED.findall(text)) & _names(source) or _names(text) & capitalized_there)


class Proposer:
    """Writes candidate texts for one ``slot`` of a prompt with ``backend``."""

    def __init__(
        self,
        backend: Backend,
        task: Task,
        *,
        slot: str = "instruction",
        temperature: float = 0.9,
        seed: int = 0,
    ) -> None:
        if slot not in SLOTS:
            from promptopt.errors import ConfigError

            raise ConfigError(f"unknown search slot {slot!r}; expected one of {', '.join(SLOTS)}")
        self.backend = backend
        self.task = task
        self.slot = slot
        self.temperature = temperature
        self.seed = seed
        self.calls = 0
        self.rejected = 0  # proposals dropped because they were about the shown examples
        self.meta_rejected = 0  # proposals dropped because they spoke of the instruction, not the task

    def _speaks_of_instructions(self, text: str) -> bool:
        """True for "Write the instruction in different words.": about the prompt, not the
        task. Allowed where the task's own items speak of instructions (BBH navigate)."""
        if self.slot != "instruction" or not _META.search(text):
            return False
        try:
            sample = self.task.examples("train")[:20]
        except Exception:  # noqa: BLE001 - no train split: nothing says instructions are the topic
            sample = []
        return not any(_META.search(self.task.render_input(e)) for e in sample)

    def _ask(self, prompt: str, n: int, *, salt: int, shown: Sequence[str] = ()) -> list[str]:
        requests = [
            GenerationRequest(
                messages=(Message("user", prompt),),
                temperature=self.temperature,
                max_tokens=160,
                sample_index=salt * 1000 + i,
            )
            for i in range(n)
        ]
        self.calls += len(requests)
        out: list[str] = []
        for completion in self.backend.generate(requests):
            if completion.ok:
                cleaned = clean_proposal(completion.text)
                if cleaned and shown and mentions_examples(cleaned, shown):
                    self.rejected += 1
                    continue
                if cleaned and self._speaks_of_instructions(cleaned):
                    self.meta_rejected += 1
                    continue
                if cleaned and cleaned not in out:
                    out.append(cleaned)
        return out

    def from_demos(self, n: int, *, demos_per_prompt: int = 5, round_index: int = 0) -> list[str]:
        """APE forward generation: ``n`` proposals, each from its own random demo subset.
        A proposal that is dropped (about its demos, empty, a repeat) is replaced by a
        fresh draw, up to ``DEMO_ATTEMPTS`` × ``n`` calls in all."""
        pool = self.task.examples("train")
        rng = random.Random(f"{self.seed}:demos:{round_index}")
        proposals: list[str] = []
        for i in range(DEMO_ATTEMPTS * n):
            if len(proposals) >= n:
                break
            demos = rng.sample(pool, min(demos_per_prompt, len(pool)))
            blocks = "\n\n".join(
                _example_block(self.task, d, with_reasoning=self.slot == "cot_trigger") for d in demos
            )
            if self.slot == "instruction":
                prompt = (
                    "A teacher gave a student a single instruction, then several inputs. Following the "
                    "instruction, the student produced these outputs:\n\n"
                    f"{blocks}\n\n"
                    "Write the instruction the teacher most likely gave. Reply with the instruction only."
                )
            else:
                prompt = (
                    "Here are problems and careful step-by-step solutions:\n\n"
                    f"{blocks}\n\n"
                    "Write one short sentence that a solver could say at the start of an answer to make "
                    "itself reason step by step and get the right answer. Reply with that sentence only."
                )
            shown = [self.task.render_input(d) for d in demos]
            for text in self._ask(prompt, 1, salt=round_index * 100 + i, shown=shown):
                if text not in proposals:
                    proposals.append(text)
        return proposals

    def paraphrase(self, text: str, n: int, *, round_index: int = 0) -> list[str]:
        """APE resampling: ``n`` variations of ``text`` that keep its meaning. An empty or
        short instruction has no meaning to keep: APE's induction from demos instead."""
        if self.slot == "instruction" and is_short(text):
            return [p for p in self.from_demos(n, round_index=30_000 + round_index) if p != text]
        prompt = (
            f"Rewrite the following {_WHAT[self.slot]} in different words, keeping its meaning. "
            f"Reply with the rewritten {_WHAT[self.slot]} only.\n\n{text}"
        )
        return [p for p in self._ask(prompt, n, salt=10_000 + round_index) if p != text]

    def from_history(
        self, history: Sequence[tuple[str, float]], n: int, *, step: int = 0, examples: int = 3
    ) -> list[str]:
        """OPRO: ``n`` new texts from the scored history (shown worst to best). A history of
        only empty or short instructions shows nothing to improve on: induction instead."""
        if self.slot == "instruction" and all(is_short(text) for text, _ in history):
            seen_short = {text for text, _ in history}
            return [p for p in self.from_demos(n, round_index=40_000 + step) if p not in seen_short]
        ranked = sorted(history, key=lambda item: item[1])[-20:]
        shown = "\n\n".join(f"text: {text}\nscore: {round(100 * score)}" for text, score in ranked)
        rng = random.Random(f"{self.seed}:opro:{step}")
        pool = self.task.examples("train")
        samples = rng.sample(pool, min(examples, len(pool)))
        where = "<INS>" if self.slot == "instruction" else "the start of the answer"
        inputs = [self.task.render_input(e) for e in samples]
        blocks = "\n\n".join(
            f"Input: <INS>\n{text}\nOutput: {e.target}" for text, e in zip(inputs, samples, strict=True)
        )
        prompt = (
            f"You are improving the {_WHAT[self.slot]} used to solve a task. Earlier versions are below with "
            "their accuracy (0-100), from worst to best:\n\n"
            f"{shown}\n\n"
            f"Examples of the task (the {_WHAT[self.slot]} goes at {where}):\n\n{blocks}\n\n"
            f"Write a new {_WHAT[self.slot]} that differs from all of the above and should score higher. "
            f"Reply with the new {_WHAT[self.slot]} only."
        )
        seen = {text for text, _ in history}
        return [p for p in self._ask(prompt, n, salt=20_000 + step, shown=inputs) if p not in seen]
