"""Option permutation: the same multiple-choice item with its options reordered.

Only the option *texts* move; the letters stay in order, so an item ``(A) x (B) y`` shown
shifted reads ``(A) y (B) x`` and an answer ``(A)`` there means the original ``(B)``.
An item qualifies when exactly one of its input fields lists the options as ``(A) …``
lines with consecutive letters from A, each once; otherwise :func:`find_options` says
why and the item is left as it is (reordering text we cannot read could change the
item's meaning).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.bias.notes import note_once
from promptopt.types import Candidate, Example

_OPTION_LINE_RE = re.compile(r"^(\s*\()([A-R])(\)\s*)(.+?)\s*$", re.MULTILINE)
_LETTERS = "ABCDEFGHIJKLMNOPQR"
PERMUTED_ID = "~perm"  # a reordered item's id: "<item id>~perm<ordering>"


@dataclass(frozen=True)
class OptionsBlock:
    """Where an item lists its options: the input ``field`` and each option line's span
    in it, with the letter and text, in order."""

    field: str
    lines: tuple[tuple[int, int, str, str], ...]  # (start, end, letter, text) of the text part

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(line[2] for line in self.lines)


def find_options(example: Example) -> tuple[OptionsBlock | None, str | None]:
    """The item's options block, or None and the reason it has none we can permute."""
    found: list[OptionsBlock] = []
    for name, value in example.inputs.items():
        lines = tuple((m.start(4), m.end(4), m.group(2), m.group(4)) for m in _OPTION_LINE_RE.finditer(value))
        if lines:
            found.append(OptionsBlock(name, lines))
    if not found:
        return None, "no (A) … option lines"
    if len(found) > 1:
        return None, f"option lines in more than one field ({', '.join(b.field for b in found)})"
    block = found[0]
    if len(block.lines) < 2:
        return None, "fewer than two options"
    expected = tuple(_LETTERS[: len(block.lines)])
    if block.letters != expected:
        return None, f"option letters {''.join(block.letters)} are not {''.join(expected)} in order"
    return block, None


def orderings(n: int, k: int, seed: str) -> list[tuple[int, ...]]:
    """``k`` orderings of ``n`` options, the original first: every cyclic shift when
    ``k >= n`` (each option at each position once; more would repeat them), else the
    original and ``k - 1`` permutations drawn with ``seed``, each with a different option
    in the first position (a model that leans on ``(A)`` would otherwise vote twice for
    whichever option a second ordering happened to leave first)."""
    if k >= n:
        return [tuple((start + i) % n for i in range(n)) for start in range(n)]
    chosen = [tuple(range(n))]
    rng = random.Random(seed)
    while len(chosen) < k:
        order = list(range(n))
        rng.shuffle(order)
        if all(order[0] != earlier[0] for earlier in chosen):
            chosen.append(tuple(order))
    return chosen


def permuted_example(example: Example, block: OptionsBlock, order: Sequence[int], index: int) -> Example:
    """``example`` with position ``i`` showing the original option ``order[i]``; its
    target is the letter where the gold option now stands (when the gold is a letter)."""
    value = example.inputs[block.field]
    pieces: list[str] = []
    cursor = 0
    for position, (start, end, _letter, _text) in enumerate(block.lines):
        pieces.append(value[cursor:start])
        pieces.append(block.lines[order[position]][3])
        cursor = end
    pieces.append(value[cursor:])
    inputs = {**example.inputs, block.field: "".join(pieces)}
    back = original_letters(block, order)
    forward = {original: shown for shown, original in back.items()}
    return Example(
        id=f"{example.id}{PERMUTED_ID}{index}",
        inputs=inputs,
        target=map_letters(example.target, forward) or example.target,
        solution=None,
    )


def original_letters(block: OptionsBlock, order: Sequence[int]) -> dict[str, str]:
    """Shown letter -> original letter under ``order``."""
    return {block.letters[position]: block.letters[source] for position, source in enumerate(order)}


def map_letters(answer: str | None, mapping: Mapping[str, str]) -> str | None:
    """An answer such as ``(B)`` or ``B`` with its letter mapped; other answers unchanged.
    A lower-case letter (``(b)``: a task whose answers are read as labels, lower-cased)
    is mapped too and stays lower-case."""
    if answer is None:
        return None
    match = re.fullmatch(r"\s*\(?([A-Ra-r])\)?\s*", answer)
    if match is None or match.group(1).upper() not in mapping:
        return answer
    shown = match.group(1)
    letter = mapping[shown.upper()]
    return answer.replace(shown, letter if shown.isupper() else letter.lower(), 1)


@dataclass(frozen=True)
class PermutedItem:
    """An item and the orderings it is shown in."""

    candidate: Candidate
    example: Example
    variants: tuple[Example, ...]
    back: tuple[dict[str, str], ...]  # per variant: shown letter -> original letter


def expand(executor: Any, candidate: Candidate, example: Example) -> PermutedItem:
    """The orderings of one item (just the item itself when its options cannot be found)."""
    block, why = find_options(example)
    if block is None:
        note_once(
            executor,
            f"unpermuted:{executor.task.name}:{why}",
            f"permute {candidate.permute}: task {executor.task.name}: items without a recognisable options "
            f"block ({why}; first: {example.id}) are left unpermuted",
        )
        return PermutedItem(candidate, example, (example,), ({},))
    orders = orderings(len(block.lines), candidate.permute, seed=f"permute:{example.id}")
    variants = tuple(permuted_example(example, block, order, j) for j, order in enumerate(orders))
    return PermutedItem(
        candidate, example, variants, tuple(original_letters(block, order) for order in orders)
    )
