"""Dataset loaders: turn files (or a hub dataset, or a generator) into ``Example`` lists.

Each loader takes the task's ``source`` mapping and returns ``{split: [Example, ...]}``
for the official splits it knows (``train`` and/or ``test``). Errors name the file and
the line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from promptopt.errors import DataError, MissingDependencyError, TaskError
from promptopt.types import Example

Source = Mapping[str, Any]
Splits = dict[str, list[Example]]
Loader = Callable[[Source, "Path | None", str], Splits]

DATA_DIR_ENV = "PROMPTOPT_DATA_DIR"
_CALC_ANNOTATION = re.compile(r"<<[^<>]*>>")


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """``data_dir`` if given, else ``$PROMPTOPT_DATA_DIR``, else ``None``."""
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if value is None or str(value) == "":
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(f"data directory {path} does not exist or is not a directory")
    return path


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def read_text(path: Path) -> str:
    """The file as text: UTF-8, with or without a byte-order mark (spreadsheet programs
    write one). Bytes that are not UTF-8 are a :class:`DataError` naming file and line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column})",
            hint="save the file as UTF-8",
        ) from None


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            # exc.msg may end in "at" already ("Unterminated string starting at")
            at = "" if exc.msg.endswith(" at") else " at"
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg}{at} column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def _field(row: Mapping[str, Any], name: str, where: str) -> str:
    if name not in row:
        raise DataError(
            f"{where}: missing field {name!r} (fields present: {', '.join(map(str, row)) or 'none'})"
        )
    value = row[name]
    if value is None or isinstance(value, (dict, list)):
        raise DataError(f"{where}: field {name!r} must be text or a number, got {type(value).__name__}")
    text = str(value)
    if (bad := _SURROGATE.search(text)) is not None:  # JSON's "\ud800": not a character, cannot be encoded
        raise DataError(
            f"{where}: field {name!r} holds a lone surrogate (\\u{ord(bad.group()):04x}), which is not text",
            hint="a JSON \\uD800-\\uDFFF escape must be one half of a pair",
        )
    return text


def split_gsm8k_answer(answer: str, where: str) -> tuple[str, str]:
    """GSM8K's ``answer`` is reasoning, then ``#### N``. Returns (reasoning, N); the
    ``<<a*b=c>>`` calculator annotations are removed from the reasoning."""
    if "####" not in answer:
        raise DataError(f"{where}: GSM8K answer has no '#### <number>' final answer")
    reasoning, _, final = answer.rpartition("####")
    final = final.strip()
    if not final:
        raise DataError(f"{where}: GSM8K answer has nothing after '####'")
    reasoning = _CALC_ANNOTATION.sub("", reasoning).strip()
    return reasoning, final


def _gsm8k_rows(rows: Iterable[tuple[str, Mapping[str, Any]]], split: str) -> list[Example]:
    examples = []
    for index, (where, row) in enumerate(rows):
        question = _field(row, "question", where)
        reasoning, final = split_gsm8k_answer(_field(row, "answer", where), where)
        examples.append(
            Example(
                id=f"{split}-{index:05d}", inputs={"question": question}, target=final, solution=reasoning
            )
        )
    return examples


def load_gsm8k(source: Source, data_dir: Path | None, task_name: str) -> Splits:
    """GSM8K from ``<data_dir>/gsm8k/{train,test}.jsonl``, else the Hugging Face hub."""
    files: Mapping[str, str] = source.get("files", {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"})
    if data_dir is not None:
        splits: Splits = {}
        for split, relative in files.items():
            path = data_dir / relative
            if not path.is_file():
                raise DataError(
                    f"task {task_name}: {path} not found in data directory {data_dir}",
                    hint="the data directory must hold gsm8k/train.jsonl and gsm8k/test.jsonl "
                    "(the files of the openai/grade-school-math repository)",
                )
            rows = ((f"{path}:{n}", row) for n, row in _read_jsonl(path))
            splits[split] = _gsm8k_rows(rows, split)
        return splits
    hub = source.get("hub")
    if not hub:
        raise _no_data_error(task_name, hub=None)
    hub_splits = _load_hub(hub, task_name)
    return {
        split: _gsm8k_rows(((f"{hub['path']}[{split}][{i}]", row) for i, row in enumerate(rows)), split)
        for split, rows in hub_splits.items()
    }


def _no_data_error(task_name: str, hub: Mapping[str, Any] | None) -> DataError:
    ways = f"pass --data-dir DIR (or set {DATA_DIR_ENV})"
    if hub:
        ways += f", or install the 'datasets' package and go online to load {hub['path']} from the Hugging Face hub"
    return DataError(
        f"task {task_name}: no data directory given and the dataset is not available offline", hint=ways
    )


def _load_hub(hub: Mapping[str, Any], task_name: str) -> dict[str, list[Mapping[str, Any]]]:
    """Load a dataset from the Hugging Face hub through ``datasets`` (online users)."""
    try:
        import datasets  # noqa: PLC0415 - heavy and optional
    except ImportError:
        raise _no_data_error(task_name, hub) from None
    splits: dict[str, list[Mapping[str, Any]]] = {}
    try:
        for split in hub.get("splits", ["train", "test"]):
            dataset = datasets.load_dataset(hub["path"], hub.get("name"), split=split)
            splits[split] = [dict(row) for row in dataset]
    except Exception as exc:  # the hub raises many kinds; all mean "not available here"
        raise DataError(
            f"task {task_name}: could not load {hub['path']} from the Hugging Face hub ({type(exc).__name__}: {exc})",
            hint=f"offline? pass --data-dir DIR (or set {DATA_DIR_ENV}) pointing at a local copy",
        ) from None
    return splits


def load_bbh(source: Source, data_dir: Path | None, task_name: str) -> Splits:
    """A BIG-Bench Hard task from ``<data_dir>/bbh/<subtask>.json``.

    BBH has no official train/test split: a seeded ``test_size`` of the items is held
    out as test, the rest is train (the dev set and demos are drawn from it)."""
    subtask = source["subtask"]
    if data_dir is None:
        hub = source.get("hub")
        if hub:
            rows = _load_hub({**hub, "name": subtask, "splits": ["test"]}, task_name)["test"]
            items = [(f"{hub['path']}/{subtask}[{i}]", row) for i, row in enumerate(rows)]
        else:
            raise _no_data_error(task_name, None)
    else:
        path = data_dir / "bbh" / f"{subtask}.json"
        if not path.is_file():
            raise DataError(f"task {task_name}: {path} not found in data directory {data_dir}")
        try:
            document = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(document, dict) or not isinstance(document.get("examples"), list):
            raise DataError(f'{path}: expected a JSON object {{"examples": [{{"input", "target"}}, ...]}}')
        items = [(f"{path} example {i}", row) for i, row in enumerate(document["examples"])]
    examples = []
    for index, (where, row) in enumerate(items):
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with 'input' and 'target'")
        examples.append(
            Example(
                id=f"item-{index:04d}",
                inputs={"input": _field(row, "input", where)},
                target=_field(row, "target", where),
            )
        )
    return {"all": examples}


def load_reasoning_gym(source: Source, data_dir: Path | None, task_name: str) -> Splits:
    """Problems generated offline by the ``reasoning-gym`` package, seeded."""
    try:
        import reasoning_gym  # noqa: PLC0415 - optional
    except ImportError:
        raise MissingDependencyError(
            f"task {task_name} needs the 'reasoning-gym' package", hint="pip install 'promptopt[data]'"
        ) from None
    name = source["dataset"]
    known = sorted(getattr(reasoning_gym.factory, "DATASETS", {}))
    if known and name not in known:
        import difflib

        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        family = task_name.partition(":")[0] + ":" if ":" in task_name else ""
        raise TaskError(
            f"unknown task {task_name!r}: reasoning-gym has no dataset {name!r}",
            hint=f"did you mean {' or '.join(f'{family}{c}' for c in close)}?"
            if close
            else "`promptopt tasks` lists the tasks",
        )
    seed = int(source.get("seed", 0))
    stride = int(source.get("split_seed_stride", 1))
    splits: Splits = {}
    seen: set[str] = set()
    for offset, (split, size) in enumerate(source.get("sizes", {"train": 1000, "test": 300}).items()):
        # Many datasets seed item i with seed + i, so splits one seed apart share items:
        # ``split_seed_stride`` puts them far apart (the rg: family; gsm-symbolic keeps 1).
        generated = reasoning_gym.create_dataset(name, size=int(size), seed=seed + offset * stride)
        examples = []
        for index, item in enumerate(generated):
            question = str(item["question"])
            if question in seen:  # keep test free of train questions
                continue
            seen.add(question)
            metadata = item.get("metadata", {})
            cot = metadata.get("answer_cot")
            solution = None
            if isinstance(cot, str):
                solution = cot.rpartition("####")[0].strip() if "####" in cot else cot.strip()
            examples.append(
                Example(
                    id=f"{split}-{index:05d}",
                    inputs={"question": question},
                    target=str(item["answer"]),
                    solution=solution,
                )
            )
        splits[split] = examples
    return splits


def _resolve_file(relative: str, base_dir: Path | None, data_dir: Path | None, task_name: str) -> Path:
    path = Path(relative).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [d / path for d in (base_dir, data_dir) if d is not None] or [path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(
        f"task {task_name}: data file {relative!r} not found (looked in: {', '.join(str(c) for c in candidates)})"
    )


def load_records(source: Source, data_dir: Path | None, task_name: str) -> Splits:
    """A user's JSONL or CSV files: ``files: {train: a.jsonl, test: b.csv}``.

    ``input_fields``, ``target_field``, optional ``solution_field`` and ``id_field`` name
    the columns. Relative paths are resolved against the task file's folder, then the
    data directory."""
    base_dir = Path(source["base_dir"]) if source.get("base_dir") else None
    files: Mapping[str, str] = source.get("files") or {}
    if not files:
        raise DataError(
            f"task {task_name}: source.files must name at least one split file (e.g. test: data.jsonl)"
        )
    input_fields: list[str] = list(source["input_fields"])
    target_field: str = source["target_field"]
    solution_field: str | None = source.get("solution_field")
    id_field: str | None = source.get("id_field")
    splits: Splits = {}
    for split, relative in files.items():
        path = _resolve_file(str(relative), base_dir, data_dir, task_name)
        rows: Iterable[tuple[int, Mapping[str, Any]]]
        if path.suffix.lower() == ".csv":
            rows = _read_csv(path)
        elif path.suffix.lower() in (".jsonl", ".ndjson"):
            rows = _read_jsonl(path)
        else:
            raise DataError(f"{path}: unsupported data file type {path.suffix!r}; use .jsonl or .csv")
        examples = []
        ids: set[str] = set()
        for index, (number, row) in enumerate(rows):
            where = f"{path}:{number}"
            example_id = _field(row, id_field, where) if id_field else f"{split}-{index:05d}"
            if example_id in ids:
                raise DataError(f"{where}: duplicate id {example_id!r} in field {id_field!r}")
            ids.add(example_id)
            examples.append(
                Example(
                    id=example_id,
                    inputs={name: _field(row, name, where) for name in input_fields},
                    target=_field(row, target_field, where),
                    solution=_field(row, solution_field, where)
                    if solution_field and row.get(solution_field)
                    else None,
                )
            )
        if not examples:
            raise DataError(f"{path}: no examples in file")
        splits[split] = examples
    return splits


def _read_csv(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    try:
        if reader.fieldnames is None:
            raise DataError(f"{path}: empty CSV file (expected a header row)")
        seen: set[str] = set()
        for column in reader.fieldnames:
            if column in seen:
                raise DataError(f"{path}:1: duplicate column {column!r} in the header row")
            seen.add(column)
        for row in reader:
            if None in row:
                raise DataError(f"{path}:{reader.line_num}: more values than header columns")
            if any(value is None for value in row.values()):
                raise DataError(f"{path}:{reader.line_num}: fewer values than header columns")
            yield reader.line_num, row
    except csv.Error as exc:  # a NUL byte, an unterminated quote at the end, ...
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None


LOADERS: dict[str, Loader] = {
    "gsm8k": load_gsm8k,
    "bbh": load_bbh,
    "reasoning_gym": load_reasoning_gym,
    "records": load_records,
}
