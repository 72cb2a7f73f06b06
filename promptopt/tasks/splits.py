"""Split sizes that fit the data: a share of the items, with floors.

A fixed 125-item test split left ``bbh:snarks`` (178 items) 26 dev items, and a 146-item
task 11 train and 10 dev. A size below 1 is a share instead: ``test_size: 0.4`` holds out
40% of the items, ``dev: {size: 0.5}`` draws half of the rest as dev. Floors keep every
split usable on small tasks (a test split of at least :data:`MIN_TEST` items where the
data allows, at least :data:`MIN_POOL` items left to draw demos from). Whole numbers keep
their old meaning: that many items (dev: at most half of train).
"""

from __future__ import annotations

import math

MIN_TEST = 30
MIN_DEV = 20
MIN_POOL = 8
SMALL_DEV = 30


def size_value(value: object, *, where: str, what: str) -> int | float:
    """A size from a task file: a whole number of items, or a share in (0, 1)."""
    from promptopt.errors import TaskError

    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TaskError(
            f"{where}: {what} must be a whole number of items or a share below 1, got {value!r}"
        ) from None
    if 0 < number < 1:
        return number
    if number < 0 or number != int(number):
        raise TaskError(f"{where}: {what} must be a whole number of items or a share below 1, got {value!r}")
    return int(number)


def test_count(n_items: int, size: int | float | None) -> int:
    """How many of ``n_items`` to hold out as test (data without an official test split).
    ``None``: half. A share gets at least ``MIN_TEST`` items (a third of small data) and
    leaves ``MIN_DEV + MIN_POOL`` items for train where the data allows."""
    if size is None:
        return n_items // 2
    if isinstance(size, int):
        return min(size, n_items)
    wanted = round(size * n_items)
    wanted = max(wanted, min(MIN_TEST, n_items // 3))
    return max(0, min(wanted, max(n_items - MIN_DEV - MIN_POOL, n_items // 3)))


def dev_count(n_train: int, size: int | float) -> int:
    """How many train items to draw as dev: a whole number as given (at most half of
    train); a share with a floor of ``MIN_DEV`` items, leaving ``MIN_POOL`` for demos."""
    if isinstance(size, int):
        return min(size, n_train // 2)
    wanted = max(round(size * n_train), min(MIN_DEV, n_train // 2))
    return max(0, min(wanted, n_train - min(MIN_POOL, n_train // 2)))


def ci_half_width(n: int, p: float = 0.5) -> float:
    """Half the width of a 95% interval of an accuracy near ``p`` on ``n`` items."""
    return 1.96 * math.sqrt(p * (1 - p) / n) if n else 1.0


def sizes_line(sizes: dict[str, int]) -> str:
    """``splits: train 75 · dev 75 · test 100`` plus, when dev is small, what that means."""
    line = "splits      " + " · ".join(
        f"{split} {sizes[split]}" for split in ("train", "dev", "test") if split in sizes
    )
    dev = sizes.get("dev", 0)
    if 0 < dev < SMALL_DEV:
        line += (
            f"\nnote        dev has only {dev} items: a dev accuracy near 50% is known to about "
            f"±{ci_half_width(dev):.0%} (95% CI), so dev differences smaller than that are noise"
        )
    return line
