"""Notices the answer-bias strategies say once per executor."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("promptopt.bias")


def note_once(executor: Any, key: str, message: str) -> None:
    """Log ``message`` the first time ``key`` comes up in this executor (an item left
    unpermuted, say); ``executor.notes`` keeps the messages said."""
    if key not in executor.noted:
        executor.noted.add(key)
        executor.notes.append(message)
        logger.warning(message)
