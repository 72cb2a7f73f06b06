"""The answer-format line, built from the task and the item.

A placeholder such as ``End your answer with "So the answer is X."`` is copied by small
models ("So the answer is (X).", scored wrong without a word). The default line names
what an answer may be instead, in the ``{answers}`` slot, filled per item:

- multiple choice: the option letters the item itself lists, ``(A), (B) or (C)``;
- a two-way task: the task's own two words, ``valid or invalid``, ``yes or no``;
- a numeric task: ``a number``;
- another small closed answer set: ``one of: …`` the labels;
- free text: ``your answer``.

A user's own answer-format line (without ``{answers}``) is shown as written.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from promptopt.errors import PromptOptError
from promptopt.tasks.options import join_words

if TYPE_CHECKING:
    from promptopt.tasks.task import Task
    from promptopt.types import Example

SLOT = "{answers}"
DEFAULT_ANSWER_FORMAT = 'End your answer with "So the answer is" followed by ' + SLOT + "."


def gold_words(task: Task) -> tuple[str, ...]:
    """The task's gold answers as the data spells them ("Yes", "valid"), most frequent first
    (a loaded prompt's from its export, which carries no data)."""
    written = getattr(task, "exported_label_words", None)
    if written:
        return tuple(written)
    return _gold_words(task)


@lru_cache(maxsize=64)
def _gold_words(task: Task) -> tuple[str, ...]:
    from collections import Counter

    counts: Counter[str] = Counter()
    for split in ("train", "dev", "test"):
        try:
            counts.update(e.target.strip() for e in task.examples(split))
        except PromptOptError:  # no such split, or a loaded prompt without its data
            continue
    return tuple(word for word, _ in counts.most_common())


def _in_reading_order(words: list[str], text: str) -> list[str]:
    """Words in the order the item mentions them ("valid or invalid"), else alphabetical."""
    lowered = text.lower()

    def position(word: str) -> tuple[int, str]:
        found = [i for i in range(len(lowered)) if lowered.startswith(word.lower(), i)
                 and not (i and lowered[i - 1].isalpha())]  # fmt: skip
        return (found[0] if found else len(lowered) + 1, word.lower())

    return sorted(words, key=position)


def answer_space(task: Task, example: Example) -> str:
    """What an answer to ``example`` may be, in words (see the module docstring)."""
    name = task.extractor_name
    if name == "choice":
        letters = list(task.options(example)) or sorted(label.strip("()") for label in task.labels or ())
        return join_words([f"({letter})" for letter in letters]) if letters else "the letter of your choice"
    if name == "number":
        return "a number"
    if name in ("yesno", "labels"):
        words = [w for w in gold_words(task) if w]
        if name == "yesno":
            # one spelling per meaning, the data's own (Yes/No, True/False, plausible/implausible)
            from promptopt.tasks.extract import extract_yesno

            seen: dict[str | None, str] = {}
            for word in words:
                seen.setdefault(extract_yesno(word), word)
            words = [seen[k] for k in ("yes", "no") if k in seen]
        else:
            if task.labels is not None and len(words) > len(task.labels):
                words = list(task.labels)
            words = _in_reading_order(words, task.render_input(example))
        if len(words) == 2:
            return join_words(words)
        if words:
            return "one of: " + join_words(words)
    return "your answer"


def answer_description(task: Task) -> str | None:
    """What the answer field holds, as a DSPy user describes an output field
    (``dspy.OutputField(desc=...)``): the answer set of promptopt's answer-format line
    (:func:`answer_space`) without its "End your answer
    with" wording, which DSPy's field layout replaces. None for free text. Without it the
    0.5B answered BBH's multiple-choice items with a date instead of an option's letter.
    The DSPy export writes it as the answer field's description."""
    name = task.extractor_name
    if name == "choice":
        return "the letter of the chosen option, in parentheses, e.g. (A)"
    if name == "number":
        return "a number"
    if name not in ("yesno", "labels"):
        return None
    example = None
    for split in ("train", "dev", "test"):  # the labels' order follows an item's wording
        try:
            examples = task.examples(split, 1)
        except PromptOptError:
            continue
        if examples:
            example = examples[0]
            break
    if example is None:  # a loaded prompt has no data: its exported words, in their own order
        from promptopt.types import Example

        example = Example(id="", inputs={field: "" for field in task.spec.input_fields}, target="")
    space = answer_space(task, example)
    return None if space == "your answer" else space


def render_answer_format(line: str, task: Task, example: Example) -> str:
    """``line`` with its ``{answers}`` slot filled for ``example``; other lines as written."""
    line = line.strip()
    if SLOT not in line:
        return line
    return line.replace(SLOT, answer_space(task, example))
