"""Text from a model, a dataset or a user, made safe to print on a terminal.

Everything such text may contain is shown as what it is: escape sequences (ANSI colours,
OSC 8 links and title changes, cursor movement), other control characters and the
invisible bidirectional overrides become visible ``\\x1b``-style escapes; rich markup
(``[/INST]``, ``[bold]``) is never interpreted (see :func:`rich_text`).
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls but tab and newline, DEL, C1 controls, and the bidi embeddings, overrides and
# isolates that reorder what a terminal shows.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` with every control character and bidi override shown as an escape."""
    return _UNSAFE.sub(_escape, str(text))


def rich_text(text: object) -> Any:
    """A ``rich.text.Text`` of ``printable(text)``: rich prints it as it is, never as markup."""
    from rich.text import Text

    return Text(printable(text))
