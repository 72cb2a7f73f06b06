"""Examples from Python data, for ``Task.from_records(train=..., dev=..., test=..., ...)``.

Lists of dicts or pandas DataFrames become :class:`~promptopt.types.Example` lists; values
that are dicts or lists (a JSON target) are written as JSON text. The task itself (splits,
rendering, extraction, metric) is an ordinary :class:`~promptopt.tasks.Task`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.errors import DataError
from promptopt.types import Example


def rows_of(records: Any, split: str) -> list[Mapping[str, Any]]:
    if records is None:
        return []
    if hasattr(records, "to_dict") and hasattr(records, "columns"):  # a pandas DataFrame
        records = records.to_dict(orient="records")
    if isinstance(records, Mapping) or not isinstance(records, Sequence) or isinstance(records, str):
        raise DataError(
            f"{split}: expected a list of dicts or a pandas DataFrame, got {type(records).__name__}"
        )
    for index, row in enumerate(records):
        if not isinstance(row, Mapping):
            raise DataError(f"{split}[{index}]: expected a dict, got {type(row).__name__}")
    return list(records)


def _missing(value: Any) -> bool:
    """None, NaN (float or numpy), and pandas' NA and NaT: a value that is not there."""
    if value is None:
        return True
    if isinstance(value, (str, bytes, Mapping, list, tuple)):
        return False
    pandas = sys.modules.get("pandas")  # rows from pandas hold its missing values
    if pandas is not None:
        try:
            return bool(pandas.isna(value))
        except (TypeError, ValueError):  # not a scalar
            return False
    try:
        return bool(value != value)  # NaN is the one value unequal to itself
    except Exception:  # a value without a usable comparison is there
        return False


def _given(row: Mapping[str, Any], field: str, split: str, index: int) -> str:
    """A field's text; a missing value (None, NaN, pandas' NA) is a DataError, not the
    text "None" or "nan" (which a label task would offer as an answer)."""
    value = row[field]
    if _missing(value):
        raise DataError(f"{split}[{index}]: field {field!r} has no value ({value!r})",
                        hint="drop the row or fill the value before building the task")  # fmt: skip
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def examples_from_rows(
    rows: list[Mapping[str, Any]], split: str, input_fields: Sequence[str], target_field: str,
    id_field: str | None, solution_field: str | None,
) -> list[Example]:  # fmt: skip
    examples: list[Example] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        missing = [f for f in (*input_fields, target_field) if f not in row]
        if missing:
            raise DataError(
                f"{split}[{index}]: missing field(s) {', '.join(missing)}; it has {', '.join(map(str, row))}"
            )
        example_id = _given(row, id_field, split, index) if id_field else f"{split}-{index:05d}"
        if example_id in seen:
            raise DataError(f"{split}[{index}]: duplicate id {example_id!r} in field {id_field!r}")
        seen.add(example_id)
        solution = row.get(solution_field) if solution_field else None
        examples.append(
            Example(
                id=example_id,
                inputs={f: _given(row, f, split, index) for f in input_fields},
                target=_given(row, target_field, split, index),
                solution=_text(solution) if solution and not _missing(solution) else None,
            )
        )
    return examples
