from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptopt.errors import TaskError
from promptopt.tasks.extract import (
    detect_extractor,
    extract_choice,
    extract_number,
    extract_text,
    extract_yesno,
    get_extractor,
    normalize_number,
    normalize_target,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so she earns 18 + 9 = 27 dollars.\nThe answer is 27.", "27"),
        ("The answer is $1,234.50.", "1234.5"),
        ("Thus \\boxed{42} is correct, not 41", "42"),
        ("blah 3 + 4 = 7\n#### 7", "7"),
        ("The temperature fell to -5 degrees. The answer is -5.", "-5"),
        ("The final answer: 3.0 kg", "3"),
        ("He has 12 apples and 30 pears, so 42", "42"),
        ("The answer is 0.25", "0.25"),
        ("answer is .5", "0.5"),
        ("The answer is 50%.", "50"),
        ("I cannot say", None),
        ("The answer is 5. Then he buys 7 more... wait, The answer is 12.", "12"),
        ("```python\nprint(3*4)\n```\nOutput: 12", "12"),
    ],
)
def test_extract_number_real_outputs(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the answer is (B).", "(B)"),
        ("(A) is wrong; (C)", "(C)"),
        ("The answer is: D", "(D)"),
        ("E", "(E)"),
        ("none", None),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("So the answer is yes.", "yes"), ("This is implausible", "no"), ("No.", "no"), ("maybe", None)],
)
def test_extract_yesno(text: str, expected: str | None) -> None:
    assert extract_yesno(text) == expected


def test_extract_text_and_regex() -> None:
    assert extract_text("Some reasoning.\nThe answer is Paris.") == "paris"
    assert extract_text("line one\n  Berlin  ") == "berlin"
    assert get_extractor(r"regex:label:\s*(\w+)")("Label: Positive") == "positive"
    with pytest.raises(TaskError, match="unknown answer extractor"):
        get_extractor("nope")
    with pytest.raises(TaskError, match="invalid extractor regex"):
        get_extractor("regex:(")


def test_detect_extractor() -> None:
    assert detect_extractor(["12", "-3", "4.5"]) == "number"
    assert detect_extractor(["(A)", "(C)"]) == "choice"
    assert detect_extractor(["yes", "no"]) == "yesno"
    assert detect_extractor(["paris", "12"]) == "text"


def test_normalize_target() -> None:
    assert normalize_target("1,000", "number") == "1000"
    assert normalize_target("(b)", "choice") == "(b)"
    assert normalize_target(" Yes ", "yesno") == "yes"


numbers = st.decimals(
    min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=2, allow_nan=False, allow_infinity=False
)


@given(
    value=numbers,
    prefix=st.sampled_from(["", "$", "€"]),
    suffix=st.sampled_from(["", ".", " dollars.", " kg", "!"]),
    commas=st.booleans(),
    lead=st.sampled_from(["", "So in total ", "Reasoning 3 + 4.\nThe answer is "]),
)
def test_number_round_trip(value: Decimal, prefix: str, suffix: str, commas: bool, lead: str) -> None:
    """However the model dresses a number up, the extracted value equals it."""
    negative = value < 0
    magnitude = abs(value)
    body = f"{magnitude:,}" if commas else f"{magnitude}"
    text = f"{lead}{'-' if negative else ''}{prefix}{body}{suffix}"
    extracted = extract_number(text)
    assert extracted is not None
    assert Decimal(extracted) == value


@given(st.text(max_size=200))
def test_extractors_never_crash(text: str) -> None:
    for extractor in (extract_number, extract_choice, extract_yesno, extract_text):
        result = extractor(text)
        assert result is None or isinstance(result, str)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_normalize_integer(value: int) -> None:
    assert normalize_number(f"{value:,}") == str(value)
