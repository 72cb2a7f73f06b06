"""The options an item lists, and the answer set of a task.

A multiple-choice item lists its options in its own text, BBH-style::

    Options:
    (A) circle
    (B) heptagon

:func:`parse_options` reads them (letter → text), so that the answer-format line can name
exactly the letters the item offers and an answer given as the option's *text* ("the
answer is heptagon") can be mapped back to its letter. :func:`label_set` decides whether
a task's gold answers form a small closed set (two to a few dozen labels), which gets a
label extractor and a constant baseline.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

# "(A) circle" at the start of a line; the option's text runs to the end of the line.
_OPTION_LINE_RE = re.compile(r"^\s*\(([A-R])\)\s*(.+?)\s*$", re.MULTILINE)

MAX_LABELS = 40


def parse_options(text: str) -> dict[str, str]:
    """The ``(X) text`` options listed in an item, letter → text, in order.
    Empty when the item lists fewer than two (it is not multiple choice)."""
    options: dict[str, str] = {}
    for letter, option in _OPTION_LINE_RE.findall(text):
        options.setdefault(letter, option)
    return options if len(options) >= 2 else {}


def label_set(targets: Sequence[str], *, max_labels: int = MAX_LABELS) -> tuple[str, ...] | None:
    """The distinct gold answers, most frequent first, when they form a small closed set:
    two to ``max_labels`` labels, each seen at least twice on average (so a free-text
    task whose answers happen to be few is not mistaken for a label task). None otherwise."""
    values = [t.strip() for t in targets if t.strip()]
    counts = Counter(values)
    if not 2 <= len(counts) <= max_labels or len(values) < 2 * len(counts):
        return None
    return tuple(label for label, _ in counts.most_common())


def join_words(words: Sequence[str], last: str = "or") -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}"
