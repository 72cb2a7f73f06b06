"""Tasks from Python data: ``Task.from_records(train=..., dev=..., test=..., ...)``.

Lists of dicts or pandas DataFrames become a task without any file: the same splits
(dev drawn from train when not given, a seeded hold-out as test when not given), the same
rendering, extraction and metrics as a task file.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from promptopt import template as templating
from promptopt.errors import DataError, TaskError
from promptopt.tasks.task import METRIC_EXTRACTORS, Task, TaskSpec
from promptopt.types import Example

JSON_ANSWER_FORMAT = "Reply with one JSON object and nothing else."


class RecordsTask(Task):
    """A task whose examples were handed over in Python."""

    def __init__(self, spec: TaskSpec, given: Mapping[str, list[Example]]) -> None:
        super().__init__(spec)
        self._given = dict(given)

    @cached_property
    def _splits(self) -> dict[str, list[Example]]:
        loaded = {k: v for k, v in self._given.items() if v is not None}
        if "test" not in loaded:
            loaded = self._hold_out(loaded.pop("train", []), loaded)
        train = loaded.get("train", [])
        dev = loaded.get("dev")
        if dev is None:
            rng = random.Random(self.spec.dev_seed)
            dev_size = min(self.spec.dev_size, len(train) // 2)
            dev_ids = set(rng.sample([e.id for e in train], dev_size)) if dev_size else set()
            dev = [e for e in train if e.id in dev_ids]
            train = [e for e in train if e.id not in dev_ids]
        full = train + dev
        return {"train": train, "dev": dev, "test": loaded.get("test", []), "_train_full": full}


def _rows(records: Any, split: str) -> list[Mapping[str, Any]]:
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


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _examples(
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
        example_id = _text(row[id_field]) if id_field else f"{split}-{index:05d}"
        if example_id in seen:
            raise DataError(f"{split}[{index}]: duplicate id {example_id!r} in field {id_field!r}")
        seen.add(example_id)
        solution = row.get(solution_field) if solution_field else None
        examples.append(
            Example(
                id=example_id,
                inputs={f: _text(row[f]) for f in input_fields},
                target=_text(row[target_field]),
                solution=_text(solution) if solution else None,
            )
        )
    return examples


def from_records(
    train: Any = None,
    dev: Any = None,
    test: Any = None,
    *,
    input_fields: Sequence[str],
    target_field: str,
    metric: Any = "exact_match",
    instruction: str = "",
    name: str = "records",
    template: str | None = None,
    extractor: str = "auto",
    answer_format: str | None = None,
    json_schema: Any = None,
    id_field: str | None = None,
    solution_field: str | None = None,
    dev_size: int = 200,
    seed: int = 0,
    test_size: int | None = None,
) -> Task:
    """A task from lists of dicts (or DataFrames). Values that are dicts or lists (a JSON
    target) are written as JSON text. ``metric`` is anything
    :func:`promptopt.metrics.resolve_metric` takes, a Python callable included."""
    if isinstance(input_fields, str):
        input_fields = [input_fields]
    if not input_fields or not all(isinstance(f, str) and f for f in input_fields):
        raise TaskError("from_records: input_fields must be a non-empty list of field names")
    template = template or "\n".join(f"{f}: {{{f}}}" for f in input_fields)
    templating.validate(template, list(input_fields), where="from_records: template")
    if extractor != "auto" and extractor not in METRIC_EXTRACTORS:
        from promptopt.tasks import extract as extraction

        extraction.get_extractor(extractor)
    if json_schema is not None and extractor != "json":
        raise TaskError("from_records: json_schema needs extractor='json'")
    given: dict[str, list[Example]] = {}
    for split, records in (("train", train), ("dev", dev), ("test", test)):
        if records is not None:
            given[split] = _examples(
                _rows(records, split), split, input_fields, target_field, id_field, solution_field
            )
    if not given.get("train") and not given.get("test"):
        raise DataError("from_records: give at least train (or train and test) records")
    if answer_format is None:
        answer_format = JSON_ANSWER_FORMAT if extractor == "json" else TaskSpec.answer_format
    spec = TaskSpec(
        name=name, version=1, source={"type": "python"}, input_fields=tuple(input_fields), template=template,
        extractor=extractor, metric="exact_match", answer_format=answer_format, instruction=instruction,
        dev_size=dev_size, dev_seed=seed, test_size=test_size, origin="python", json_schema=json_schema,
    )  # fmt: skip
    return RecordsTask(spec, given).with_metric(metric)
