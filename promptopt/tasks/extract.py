"""Answer extraction and normalisation that survive real model output.

Each extractor takes the model's raw text and returns the answer as a normalised string,
or ``None`` when the text holds no answer of the expected kind. Extractors are looked up
by name (``number``, ``choice``, ``yesno``, ``text``, ``regex:<pattern>``, ``auto``) so that
task files can name them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation

from promptopt.errors import TaskError

Extractor = Callable[[str], "str | None"]

# A number as people and models write it: optional sign, optional currency, digits with
# optional thousands separators, optional decimals. "1,234.50", "-3", "$12", ".5".
_NUMBER = r"-?[$€£]?\s?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?"
_NUMBER_RE = re.compile(r"(?<![\w.])(-?\s?[$€£]?\s?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+))(?![\d])")
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")
_HASHES_RE = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:|=)\s*:?\s*", re.IGNORECASE)


def _answer_tails(text: str) -> list[str]:
    """The rest of the line after each "answer is" / "answer:" marker, in order."""
    return [text[m.end() :].split("\n", 1)[0] for m in _ANSWER_IS_RE.finditer(text)]


def normalize_number(text: str) -> str | None:
    """Canonical form of the first number in ``text``: no sign of currency, thousands
    separators, units or trailing zeros. ``"$1,200.50."`` → ``"1200.5"``, ``"-3.0"`` → ``"-3"``.
    Returns ``None`` if ``text`` holds no number."""
    match = _NUMBER_RE.search(text)
    if not match:
        return None
    raw = match.group(1).replace(" ", "").replace(",", "")
    negative = raw.startswith("-")
    raw = raw.lstrip("-").lstrip("$€£")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None
    if negative:
        value = -value
    return _format_decimal(value)


def _format_decimal(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    text = format(value.normalize(), "f")
    return text


def extract_number(text: str) -> str | None:
    """The model's numeric answer, in order of how explicitly it was marked:
    ``#### N``, ``\\boxed{N}``, "the answer is N", then the last number in the text."""
    for pattern in (_HASHES_RE, _BOXED_RE):
        found = pattern.findall(text)
        for candidate in reversed(found):
            number = normalize_number(candidate)
            if number is not None:
                return number
    for candidate in reversed(_answer_tails(text)):
        number = normalize_number(candidate)
        if number is not None:
            return number
    numbers = _NUMBER_RE.findall(text)
    if numbers:
        return normalize_number(numbers[-1])
    return None


_CHOICE_RE = re.compile(r"\(([A-R])\)")
_BARE_CHOICE_RE = re.compile(r"(?<![A-Za-z])([A-R])(?![A-Za-z])")


def extract_choice(text: str) -> str | None:
    """A multiple-choice letter, returned as ``(X)``: the one after "the answer is", else
    the last ``(X)`` in the text, else a lone capital letter in the answer sentence."""
    for tail in reversed(_answer_tails(text)):
        found = _CHOICE_RE.findall(tail) or _BARE_CHOICE_RE.findall(tail[:8])
        if found:
            return f"({found[0]})"
    found = _CHOICE_RE.findall(text)
    if found:
        return f"({found[-1]})"
    stripped = text.strip()
    if len(stripped) <= 3:
        bare = _BARE_CHOICE_RE.findall(stripped)
        if bare:
            return f"({bare[0]})"
    return None


_YESNO_RE = re.compile(r"\b(yes|no|true|false|plausible|implausible)\b", re.IGNORECASE)
_YESNO_MAP = {"yes": "yes", "no": "no", "true": "yes", "false": "no", "plausible": "yes", "implausible": "no"}


def extract_yesno(text: str) -> str | None:
    """``yes`` or ``no`` (also from true/false, plausible/implausible): the word after
    "the answer is", else the last such word in the text."""
    for tail in reversed(_answer_tails(text)):
        found = _YESNO_RE.findall(tail)
        if found:
            return _YESNO_MAP[found[0].lower()]
    found = _YESNO_RE.findall(text)
    if found:
        return _YESNO_MAP[found[-1].lower()]
    return None


def normalize_text(text: str) -> str:
    """Lower-case, collapse white space, strip surrounding punctuation and quotes."""
    text = " ".join(text.strip().split()).lower()
    return text.strip(" .,:;!?\"'`*")


def extract_text(text: str) -> str | None:
    """Free text: what follows the last "the answer is", else the last non-empty line."""
    tails = _answer_tails(text)
    if tails:
        answer = normalize_text(tails[-1])
        return answer or None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    return normalize_text(lines[-1]) or None


def make_regex_extractor(pattern: str) -> Extractor:
    """An extractor from a user regex with one capture group (or the whole match)."""
    try:
        compiled = re.compile(pattern, re.IGNORECASE | re.DOTALL)
    except re.error as exc:
        raise TaskError(f"invalid extractor regex {pattern!r}: {exc}") from exc

    def extract(text: str) -> str | None:
        matches = list(compiled.finditer(text))
        if not matches:
            return None
        last = matches[-1]
        value = last.group(1) if compiled.groups else last.group(0)
        return normalize_text(value) or None

    return extract


EXTRACTORS: dict[str, Extractor] = {
    "number": extract_number,
    "choice": extract_choice,
    "yesno": extract_yesno,
    "text": extract_text,
}


def get_extractor(name: str) -> Extractor:
    """Look up an extractor by the name a task file uses."""
    if name.startswith("regex:"):
        return make_regex_extractor(name[len("regex:") :])
    try:
        return EXTRACTORS[name]
    except KeyError:
        raise TaskError(
            f"unknown answer extractor {name!r}; expected one of "
            f"{', '.join([*EXTRACTORS, 'regex:<pattern>', 'auto'])}"
        ) from None


def detect_extractor(targets: Sequence[str]) -> str:
    """Pick an extractor name from what the gold answers look like (for ``auto``)."""
    values = [t.strip() for t in targets if t.strip()]
    if not values:
        return "text"
    if all(re.fullmatch(r"\([A-R]\)", v) for v in values):
        return "choice"
    if all(v.lower() in _YESNO_MAP for v in values):
        return "yesno"
    if all(normalize_number(v) is not None and re.fullmatch(_NUMBER, v.replace(" ", "")) for v in values):
        return "number"
    return "text"


def normalize_target(target: str, extractor: str) -> str:
    """Bring a gold answer into the same form the extractor produces."""
    if extractor == "number":
        return normalize_number(target) or target.strip()
    if extractor == "choice":
        return extract_choice(target) or target.strip()
    if extractor == "yesno":
        return extract_yesno(target) or normalize_text(target)
    return normalize_text(target)
