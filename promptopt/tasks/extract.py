"""Answer extraction and normalisation that survive real model output.

Each extractor takes the model's raw text and returns the answer as a normalised string,
or ``None`` when the text holds no answer of the expected kind. Extractors are looked up
by name (``number``, ``choice``, ``yesno``, ``text``, ``labels``, ``regex:<pattern>``, ``auto``)
so that task files can name them.

Before reading, :func:`unwrap` removes the wrappers models put around an answer:
``\\boxed{\\text{invalid}}``, ``\\(B\\)``, ``**B**``, and a Unicode minus becomes ``-``.
A ``labels`` extractor (a task whose gold answers form a small closed set) only ever
returns one of the labels; a multiple-choice item's options let ``choice`` take the
option's text for its letter. :func:`extract_answer` is the one entry point.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
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


# Unicode minus signs: "−3" is minus three, not three.
_MINUS = str.maketrans({"\u2212": "-", "\uff0d": "-", "\ufe63": "-"})
_LATEX_TEXT_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|operatorname)\s*\{([^{}]*)\}")
_MATH_DELIMITERS_RE = re.compile(r"\\[()\[\]]")


def unwrap(text: str) -> str:
    """Remove what models wrap an answer in: ``\\text{…}`` (and ``\\textbf``, ``\\mathrm``,
    …), ``\\(…\\)`` and ``\\[…\\]`` delimiters, Markdown bold ``**…**``; Unicode minus
    signs become ``-``. ``\\boxed{\\text{invalid}}`` → ``\\boxed{invalid}``."""
    text = text.translate(_MINUS)
    previous = None
    while previous != text:
        previous, text = text, _LATEX_TEXT_RE.sub(r"\1", text)
    text = _MATH_DELIMITERS_RE.sub(" ", text)
    return text.replace("**", "")


def has_answer_marker(text: str) -> bool:
    """Whether ``text`` states an answer explicitly ("the answer is", ``\\boxed{}``, ``####``).
    A truncated output without one holds no answer: its last line is cut-off reasoning."""
    text = unwrap(text)
    return bool(_ANSWER_IS_RE.search(text) or _BOXED_RE.search(text) or _HASHES_RE.search(text))


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
    text = unwrap(text)
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
_OPTION_WORD_RE = re.compile(r"\boption\s*\(?([A-R])\b", re.IGNORECASE)
_LEADING_CHOICE_RE = re.compile(r"^[\s:*_\"'`]*\(?([A-R])(?:[).:]|\s*$)")


def _option_text_choice(fragment: str, options: Mapping[str, str]) -> str | None:
    """The letter of the one option whose text ``fragment`` names ("the answer is
    heptagon" → B); None when it names none or several."""
    lowered = " ".join(fragment.lower().split())
    named = {
        letter: text.lower()
        for letter, text in options.items()
        if text.strip()
        and re.search(r"(?<!\w)" + re.escape(" ".join(text.lower().split())) + r"(?!\w)", lowered)
    }
    # "a rectangle" names rectangle, not also "angle": keep the longest texts only
    longest = {k: v for k, v in named.items() if not any(v != w and v in w for w in named.values())}
    return next(iter(longest)) if len(longest) == 1 else None


def _choice_in(fragment: str, options: Mapping[str, str] | None, *, bare: bool = True) -> str | None:
    """A choice letter stated in an answer fragment: ``(B)``, "option B", a leading ``B)``
    or ``B.``, a lone capital letter near the start (``bare``), else (when the item lists
    its options) the option's text."""
    allowed = set(options) if options else None
    patterns = [(_CHOICE_RE, fragment), (_OPTION_WORD_RE, fragment), (_LEADING_CHOICE_RE, fragment)]
    if bare:
        patterns.append((_BARE_CHOICE_RE, fragment[:8]))
    for pattern, text in patterns:
        for letter in pattern.findall(text):
            letter = letter.upper()
            if allowed is None or letter in allowed:
                return letter
    if options:
        return _option_text_choice(fragment, options)
    return None


def extract_choice(text: str, options: Mapping[str, str] | None = None) -> str | None:
    """A multiple-choice letter, returned as ``(X)``: the one in a ``\\boxed{}``, else after
    "the answer is", else the last ``(X)`` in the text, else a lone capital letter.
    ``options`` (letter → text, the options the item lists) restricts the letters to
    those offered and maps an answer given as an option's text back to its letter."""
    text = unwrap(text)
    allowed = set(options) if options else None
    for content in reversed(_BOXED_RE.findall(text)):
        letter = _choice_in(content, options)
        if letter:
            return f"({letter})"
    for tail in reversed(_answer_tails(text)):
        letter = _choice_in(tail, options)
        if letter:
            return f"({letter})"
    found = [letter for letter in _CHOICE_RE.findall(text) if allowed is None or letter in allowed]
    if found:
        return f"({found[-1]})"
    stripped = text.strip()
    if len(stripped) <= 40:
        letter = _choice_in(stripped, options, bare=False) if len(stripped) > 3 else None
        bare = [b for b in _BARE_CHOICE_RE.findall(stripped) if allowed is None or b in allowed]
        if letter or (bare and len(stripped) <= 3):
            return f"({letter or bare[0]})"
    return None


def make_label_extractor(labels: Sequence[str]) -> Extractor:
    """An extractor for a small closed answer set: it returns one of ``labels``
    (normalised) or ``None``, never a stray line. Where it looks, in order: inside
    ``\\boxed{}``, after "the answer is", then the last line if it names exactly one label."""
    normalized = sorted(
        {normalize_text(label) for label in labels if normalize_text(label)}, key=len, reverse=True
    )
    if not normalized:
        raise TaskError("a labels extractor needs at least one label")
    pattern = re.compile(
        r"(?<!\w)(" + "|".join(re.escape(label) for label in normalized) + r")(?!\w)", re.IGNORECASE
    )

    def first_label(fragment: str) -> str | None:
        found = pattern.findall(" ".join(fragment.split()))
        return normalize_text(found[0]) if found else None

    def extract(text: str) -> str | None:
        text = unwrap(text)
        for fragment in [*reversed(_BOXED_RE.findall(text)), *reversed(_answer_tails(text))]:
            label = first_label(fragment)
            if label is not None:
                return label
        lines = [line for line in text.strip().splitlines() if line.strip()]
        if lines:
            named = {normalize_text(found) for found in pattern.findall(lines[-1])}
            if len(named) == 1:
                return named.pop()
        return None

    return extract


_YESNO_RE = re.compile(r"\b(yes|no|true|false|plausible|implausible)\b", re.IGNORECASE)
_YESNO_MAP = {"yes": "yes", "no": "no", "true": "yes", "false": "no", "plausible": "yes", "implausible": "no"}


def extract_yesno(text: str) -> str | None:
    """``yes`` or ``no`` (also from true/false, plausible/implausible): the word after
    "the answer is", else the last such word in the text."""
    text = unwrap(text)
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
    """Free text: inside the last ``\\boxed{}``, else what follows the last "the answer is",
    else the last non-empty line."""
    text = unwrap(text)
    boxed = _BOXED_RE.findall(text)
    if boxed and normalize_text(boxed[-1]):
        return normalize_text(boxed[-1])
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
# Extractors that need the task's data: built by the task (see Task.extract).
DATA_EXTRACTORS = ("labels",)
#: Extractors that read more than one string (promptopt.metrics): named here, built there.
METRIC_EXTRACTORS = ("json", "answer_tag")


def get_extractor(name: str) -> Extractor:
    """Look up an extractor by the name a task file uses."""
    if name.startswith("regex:"):
        return make_regex_extractor(name[len("regex:") :])
    if name in DATA_EXTRACTORS:
        raise TaskError(f"the {name!r} extractor is built from a task's data (Task.extract), not by name")
    try:
        return EXTRACTORS[name]
    except KeyError:
        raise TaskError(
            f"unknown answer extractor {name!r}; expected one of "
            f"{', '.join([*EXTRACTORS, *DATA_EXTRACTORS, *METRIC_EXTRACTORS, 'regex:<pattern>', 'auto'])}"
        ) from None


#: A task is multiple choice when at least this share of its gold answers are option
#: letters: BBH's ruin_names and movie_recommendation each have an item or two whose options
#: were split at commas and whose gold is the option's text ("dearth, wind, & fire"); those
#: items cannot be answered right, but they do not make the task a label task.
CHOICE_SHARE = 0.95


def is_option_letter(target: str) -> bool:
    """Whether a gold answer is an option letter, ``(A)`` … ``(R)``."""
    return _CHOICE_RE.fullmatch(target.strip()) is not None


def detect_extractor(targets: Sequence[str]) -> str:
    """Pick an extractor name from what the gold answers look like (for ``auto``)."""
    values = [t.strip() for t in targets if t.strip()]
    if not values:
        return "text"
    if sum(not is_option_letter(v) for v in values) <= (1 - CHOICE_SHARE) * len(values):
        return "choice"
    if all(v.lower() in _YESNO_MAP for v in values):
        return "yesno"
    if all(normalize_number(v) is not None and re.fullmatch(_NUMBER, v.replace(" ", "")) for v in values):
        return "number"
    from promptopt.tasks.options import label_set

    return "labels" if label_set(values) else "text"


def extract_answer(
    extractor: str,
    text: str,
    *,
    labels: Sequence[str] = (),
    options: Mapping[str, str] | None = None,
    truncated: bool = False,
) -> str | None:
    """The answer in a model's ``text`` with the extractor named ``extractor``. ``labels``:
    the task's answer set (for ``labels``); ``options``: the options the item lists (for
    ``choice``). A ``truncated`` output (cut off at the token limit) holds an answer only
    where it states one explicitly: its last line is cut-off reasoning, never the answer."""
    if truncated and not has_answer_marker(text):
        return None
    if extractor == "choice":
        return extract_choice(text, options)
    if extractor == "labels":
        # without its labels (a prompt loaded from an export, without data): free text
        return make_label_extractor(labels)(text) if labels else extract_text(text)
    return get_extractor(extractor)(text)


def normalize_target(target: str, extractor: str) -> str:
    """Bring a gold answer into the same form the extractor produces."""
    if extractor == "number":
        return normalize_number(target) or target.strip()
    if extractor == "choice":
        return extract_choice(target) or target.strip()
    if extractor == "yesno":
        return extract_yesno(target) or normalize_text(target)
    return normalize_text(target)
