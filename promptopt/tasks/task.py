"""A task: data, how one item is shown to the model, how its answer is read and scored.

A task is defined by a YAML file (see ``promptopt/tasks/builtin/`` and the README):

```yaml
name: my-task
version: 1
source: {type: records, files: {train: train.jsonl, test: test.jsonl},
         input_fields: [question], target_field: answer}
template: "Question: {question}"
extractor: number           # number | choice | yesno | text | regex:<pattern> | json | answer_tag | auto
metric: exact_match         # a name, {name: {options}}, module:function or file.py:function
dev: {size: 100, seed: 0}   # the dev set is drawn from train with this seed
```
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from promptopt import template as templating
from promptopt.errors import DataError, TaskError
from promptopt.metrics.base import Metric, MetricResult, Prediction
from promptopt.tasks import extract as extraction
from promptopt.tasks.answer_format import DEFAULT_ANSWER_FORMAT
from promptopt.tasks.loaders import LOADERS, resolve_data_dir
from promptopt.tasks.splits import dev_count, size_value, test_count
from promptopt.types import Example, content_hash

logger = logging.getLogger(__name__)


@lru_cache(maxsize=64)
def _warn_stray_golds(task: str, stray: int, total: int, first_id: str, first: str) -> None:
    """Once per task and process: the gold answers of a multiple-choice task that are no
    option letter (:data:`~promptopt.tasks.extract.CHOICE_SHARE`)."""
    logger.warning(
        "task %s: %d of %d gold answers are no option letter (first: %s, %r); it is read as multiple "
        "choice, and those items cannot be answered right", task, stray, total, first_id, first,
    )  # fmt: skip


SPLITS = ("train", "dev", "test")
_SPEC_KEYS = {
    "name", "version", "description", "source", "input_fields", "template", "extractor", "metric",
    "answer_format", "instruction", "dev", "test_size", "cot_prompt", "answer_prompt", "include", "family",
    "json_schema", "json_mode", "demo_answer",
}  # fmt: skip
METRIC_EXTRACTORS = extraction.METRIC_EXTRACTORS  # (json, answer_tag: read by promptopt.metrics)
JSON_ANSWER_FORMAT = "Reply with one JSON object and nothing else."


@dataclass(frozen=True)
class TaskSpec:
    """The validated content of a task YAML file."""

    name: str
    version: int
    source: Mapping[str, Any]
    input_fields: tuple[str, ...]
    template: str
    extractor: str = "auto"
    metric: Any = "exact_match"  # a name, {name: options}, a reference (see promptopt.metrics)
    description: str = ""
    # its {answers} slot is filled per item (promptopt.tasks.answer_format): no placeholder to copy
    answer_format: str = DEFAULT_ANSWER_FORMAT
    instruction: str = ""
    dev_size: int | float = 200  # a share when below 1 (promptopt.tasks.splits)
    dev_seed: int = 0
    test_size: int | float | None = None
    cot_prompt: str | None = None
    answer_prompt: str = "Therefore, the final answer is"
    # How a demo's assistant turn states its answer ({answer}: the gold); None: the form
    # the extractor reads (DEMO_ANSWERS), else "The answer is {answer}."
    demo_answer: str | None = None
    origin: str = "builtin"
    extra: Mapping[str, Any] = field(default_factory=dict)
    json_schema: Any = None  # a JSON Schema (mapping) or a path to one, for extractor json
    json_mode: bool = False  # ask backends that can (OpenAI response_format) for JSON output

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str, origin: str = "builtin") -> TaskSpec:
        """Validate a parsed YAML mapping; every problem names ``where`` and the field."""
        unknown = set(data) - _SPEC_KEYS
        if unknown:
            raise TaskError(
                f"{where}: unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_SPEC_KEYS - {'include', 'family'}))}"
            )
        for required in ("name", "source", "input_fields"):
            if required not in data:
                raise TaskError(f"{where}: missing required field {required!r}")
        source = data["source"]
        if not isinstance(source, Mapping) or "type" not in source:
            raise TaskError(f"{where}: 'source' must be a mapping with a 'type' ({', '.join(LOADERS)})")
        if source["type"] not in LOADERS:
            raise TaskError(
                f"{where}: source.type {source['type']!r} is unknown; expected one of {', '.join(LOADERS)}"
            )
        fields = data["input_fields"]
        if isinstance(fields, str):
            fields = [fields]
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
            raise TaskError(f"{where}: 'input_fields' must be a non-empty list of field names")
        template = data.get("template", "{" + fields[0] + "}")
        if not isinstance(template, str):
            raise TaskError(f"{where}: 'template' must be text")
        templating.validate(template, fields, where=f"{where}: template")
        metric = data.get("metric", "exact_match")
        _check_metric(metric, where)
        extractor = str(data.get("extractor", "auto"))
        if extractor not in ("auto", *extraction.DATA_EXTRACTORS, *METRIC_EXTRACTORS):
            extraction.get_extractor(extractor)  # raises with the list of known names
        json_schema = data.get("json_schema")
        if json_schema is not None and extractor != "json":
            raise TaskError(f"{where}: json_schema needs extractor: json")
        json_mode = data.get("json_mode", False)
        if not isinstance(json_mode, bool) or (json_mode and extractor != "json"):
            raise TaskError(f"{where}: json_mode is true or false, and needs extractor: json")
        dev = data.get("dev", {}) or {}
        if not isinstance(dev, Mapping):
            raise TaskError(f"{where}: 'dev' must be a mapping like {{size: 200, seed: 0}}")
        try:
            version = int(data.get("version", 1))
            dev_seed = int(dev.get("seed", 0))
        except (TypeError, ValueError) as exc:
            raise TaskError(f"{where}: version and dev.seed must be whole numbers ({exc})") from None
        dev_size = size_value(dev.get("size", 200), where=where, what="dev.size")
        test_size = (
            size_value(data["test_size"], where=where, what="test_size")
            if data.get("test_size") is not None
            else None
        )
        if source["type"] == "records":
            missing = [k for k in ("target_field",) if k not in source]
            if missing:
                raise TaskError(f"{where}: source needs {', '.join(missing)} for type 'records'")
            source = {**source, "input_fields": list(fields)}
        return cls(
            name=str(data["name"]),
            version=version,
            source=dict(source),
            input_fields=tuple(fields),
            template=template,
            extractor=extractor,
            metric=metric,
            description=str(data.get("description", "")).strip(),
            # a JSON task's default asks for the object, as from_records' does (and as its demos show)
            answer_format=str(
                data.get("answer_format", JSON_ANSWER_FORMAT if extractor == "json" else cls.answer_format)
            ),
            instruction=str(data.get("instruction", "")),
            dev_size=dev_size,
            dev_seed=dev_seed,
            test_size=test_size,
            cot_prompt=data.get("cot_prompt"),
            answer_prompt=str(data.get("answer_prompt", cls.answer_prompt)),
            demo_answer=checked_demo_answer(data.get("demo_answer"), where),
            origin=origin,
            json_schema=json_schema,
            json_mode=json_mode,
        )


#: The demo answer line of the extractors that read a form of their own (the rest: the
#: answer sentence of promptopt.prompt, which every other extractor reads).
DEMO_ANSWERS = {"answer_tag": "<answer>{answer}</answer>", "json": "{answer}"}


def checked_demo_answer(value: Any, where: str) -> str | None:
    """A task's (or an export's) ``demo_answer``: None, or a text with an ``{answer}`` slot."""
    if value is None:
        return None
    if not isinstance(value, str) or "{answer}" not in value:
        raise TaskError(
            f"{where}: demo_answer must be a text with an {{answer}} slot, e.g. 'The answer is {{answer}}.'"
        )
    return value


def _check_metric(metric: Any, where: str) -> None:
    """Names and options are checked when the file is read; references are imported only
    when the task scores (importing runs the user's code)."""
    from promptopt.errors import MetricError
    from promptopt.metrics import resolve_metric
    from promptopt.metrics.reference import looks_like_reference

    if isinstance(metric, str) and looks_like_reference(metric):
        return
    if not isinstance(metric, (str, Mapping)):
        raise TaskError(f"{where}: metric must be a name, a mapping {{name: options}} or module:function")
    try:
        resolve_metric(metric)
    except MetricError as exc:
        raise TaskError(f"{where}: {exc.message}", hint=exc.hint) from None


class Task:
    """A loaded task. Data is read on first use; splits are deterministic:

    - ``test`` is the official test split (or, for data without one, a seeded
      ``test_size`` hold-out) and is never used for selection;
    - ``dev`` is a seeded sample of ``dev_size`` items of train;
    - the demo pool is train minus dev, plus any fixed chain-of-thought demos.
    """

    def __init__(
        self,
        spec: TaskSpec,
        data_dir: str | Path | None = None,
        *,
        records: Mapping[str, list[Example]] | None = None,
    ) -> None:
        self.spec = spec
        self._data_dir_arg = data_dir
        self._records = dict(records) if records is not None else None  # from_records: the data itself

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def from_records(
        cls,
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
        json_mode: bool = False,
        id_field: str | None = None,
        solution_field: str | None = None,
        dev_size: int = 200,
        seed: int = 0,
        test_size: int | None = None,
    ) -> Task:
        """A task from Python data: lists of dicts or pandas DataFrames. Without ``dev``,
        dev is drawn from train (``dev_size``, ``seed``); without ``test``, a seeded
        hold-out of train is the test split. ``metric`` is anything
        :func:`promptopt.metrics.resolve_metric` takes, a Python callable included; the
        template defaults to one ``field: {field}`` line per input field."""
        from promptopt.tasks.records import examples_from_rows, rows_of

        fields = [input_fields] if isinstance(input_fields, str) else list(input_fields)
        if not fields or not all(isinstance(f, str) and f for f in fields):
            raise TaskError("from_records: input_fields must be a non-empty list of field names")
        template = template or "\n".join(f"{f}: {{{f}}}" for f in fields)
        templating.validate(template, fields, where="from_records: template")
        if extractor != "auto" and extractor not in METRIC_EXTRACTORS:
            extraction.get_extractor(extractor)
        if (json_schema is not None or json_mode) and extractor != "json":
            raise TaskError("from_records: json_schema and json_mode need extractor='json'")
        given = {
            split: examples_from_rows(
                rows_of(records, split), split, fields, target_field, id_field, solution_field
            )
            for split, records in (("train", train), ("dev", dev), ("test", test))
            if records is not None
        }
        if not given.get("train") and not given.get("test"):
            raise DataError("from_records: give train records (and test records, or a hold-out is made)")
        if answer_format is None:
            answer_format = JSON_ANSWER_FORMAT if extractor == "json" else TaskSpec.answer_format
        spec = TaskSpec(
            name=name, version=1, source={"type": "python"}, input_fields=tuple(fields), template=template,
            extractor=extractor, answer_format=answer_format, instruction=instruction, dev_size=dev_size,
            dev_seed=seed, test_size=test_size, origin="python", json_schema=json_schema, json_mode=json_mode,
        )  # fmt: skip
        return cls(spec, records=given).with_metric(metric)

    def __repr__(self) -> str:
        return f"Task({self.spec.name!r}, version={self.spec.version})"

    @cached_property
    def _splits(self) -> dict[str, list[Example]]:
        if self._records is not None:
            loaded = dict(self._records)
            if "test" not in loaded:
                loaded = self._hold_out(loaded.pop("train", []), loaded)
        else:
            data_dir = resolve_data_dir(self._data_dir_arg)
            source = dict(self.spec.source)
            loaded = LOADERS[source["type"]](source, data_dir, self.spec.name)
        if "all" in loaded:
            loaded = self._hold_out(loaded.pop("all"), loaded)
        train = loaded.get("train", [])
        test = loaded.get("test", [])
        if "dev" in loaded:  # given (from_records): used as it is
            return {"train": train, "dev": loaded["dev"], "test": test, "_train_full": train + loaded["dev"]}
        rng = random.Random(self.spec.dev_seed)
        dev_size = dev_count(len(train), self.spec.dev_size)
        dev_ids = set(rng.sample([e.id for e in train], dev_size)) if dev_size else set()
        dev = [e for e in train if e.id in dev_ids]
        pool = [e for e in train if e.id not in dev_ids]
        splits = {"train": pool, "dev": dev, "test": test, "_train_full": train}
        return splits

    def _hold_out(self, items: list[Example], loaded: dict[str, list[Example]]) -> dict[str, list[Example]]:
        size = test_count(len(items), self.spec.test_size)
        rng = random.Random(self.spec.dev_seed + 1)
        test_ids = set(rng.sample([e.id for e in items], min(size, len(items))))
        return {
            **loaded,
            "train": [e for e in items if e.id not in test_ids],
            "test": [e for e in items if e.id in test_ids],
        }

    @cached_property
    def extractor_name(self) -> str:
        if self.spec.extractor != "auto":
            return self.spec.extractor
        sample = [e.target for e in self._splits["_train_full"][:200] + self._splits["test"][:200]]
        detected = extraction.detect_extractor(sample)
        if detected == "choice":
            items = self._splits["_train_full"] + self._splits["test"]
            stray = [e for e in items if e.target.strip() and not extraction.is_option_letter(e.target)]
            if stray:
                _warn_stray_golds(self.name, len(stray), len(items), stray[0].id, stray[0].target)
        if detected == "labels":
            from promptopt.tasks.options import label_set

            every = [e.target for e in self._splits["_train_full"] + self._splits["test"]]
            return "labels" if label_set([extraction.normalize_text(t) for t in every]) else "text"
        return detected

    @cached_property
    def labels(self) -> tuple[str, ...] | None:
        """The task's answer set, most frequent first, normalised as answers are, when
        the gold answers form a small closed set (two to a few dozen labels); else None."""
        from promptopt.tasks.options import label_set

        targets = [self.target(e) for split in SPLITS for e in self._examples_or_none(split)]
        if self.extractor_name == "choice":  # a stray gold that is no letter is no label
            targets = [t for t in targets if extraction.is_option_letter(t)]
        if self.spec.extractor == "labels":
            return label_set(targets, max_labels=len(targets)) or tuple(dict.fromkeys(targets))
        return label_set(targets)

    def options(self, example: Example) -> dict[str, str]:
        """The options ``example`` lists (letter → text), empty when it lists none."""
        from promptopt.tasks.options import parse_options

        return parse_options(self.render_input(example))

    def examples(self, split: str, limit: int | None = None) -> list[Example]:
        """Examples of ``train`` (the demo pool: train minus dev), ``dev`` or ``test``."""
        if split not in SPLITS:
            raise TaskError(
                f"unknown split {split!r} for task {self.name}; expected one of {', '.join(SPLITS)}"
            )
        examples = self._splits[split]
        if not examples:
            raise DataError(f"task {self.name} has no {split!r} examples")
        return examples[:limit] if limit is not None else list(examples)

    def split_sizes(self) -> dict[str, int]:
        """Items in each split: ``{"train": …, "dev": …, "test": …}`` (train: the demo pool)."""
        return {split: len(self._examples_or_none(split)) for split in SPLITS}

    def _examples_or_none(self, split: str) -> list[Example]:
        """The examples of ``split``, or none where the task has none (or no data at all)."""
        from promptopt.errors import PromptOptError

        try:
            return self.examples(split)
        except PromptOptError:
            return []

    @cached_property
    def cot_demos(self) -> list[Example]:
        """Fixed worked demos shipped with the task (e.g. BBH's 3-shot CoT prompt)."""
        if not self.spec.cot_prompt:
            return []
        data_dir = resolve_data_dir(self._data_dir_arg)
        if data_dir is None:
            return []
        path = data_dir / self.spec.cot_prompt
        if not path.is_file():
            return []
        return parse_cot_prompt(
            path.read_text(encoding="utf-8"), self.spec.input_fields[0], self.extractor_name
        )

    @cached_property
    def _demo_index(self) -> dict[str, Example]:
        index = {e.id: e for e in self._splits["train"]}
        index.update({e.id: e for e in self.cot_demos})
        return index

    def demo(self, example_id: str) -> Example:
        """A demo by id: an item of the demo pool or a fixed CoT demo (``cot-N``).
        Dev and test items are never demos."""
        try:
            return self._demo_index[example_id]
        except KeyError:
            raise TaskError(
                f"demo {example_id!r} is not in the demo pool of task {self.name} "
                "(demos come from train minus dev, or the task's fixed CoT demos cot-N)"
            ) from None

    def demo_pool(self) -> list[Example]:
        return list(self._demo_index.values())

    @property
    def demo_answer_form(self) -> str:
        """How a demo's assistant turn states its answer (``{answer}``: the gold): the
        task's ``demo_answer``, else the form its extractor reads, else "The answer is X."."""
        return self.spec.demo_answer or DEMO_ANSWERS.get(self.extractor_name, "The answer is {answer}.")

    def demo_answer(self, example: Example) -> str:
        """``example``'s answer line as a demo states it (:attr:`demo_answer_form`)."""
        return self.demo_answer_form.replace("{answer}", example.target)

    def render_input(self, example: Example) -> str:
        return templating.render(self.spec.template, example.inputs, where=f"task {self.name} template")

    def target(self, example: Example) -> str:
        name = self.extractor_name
        if name == "json":
            from promptopt.metrics.jsonout import find_json
            from promptopt.types import canonical_json

            value, error = find_json(example.target)
            return canonical_json(value) if error is None else example.target.strip()
        if name == "answer_tag":
            return example.target.strip()
        return extraction.normalize_target(example.target, name)

    def extract(self, text: str, example: Example | None = None, *, truncated: bool = False) -> str | None:
        """The answer in a model output (``example``: the item it answers, whose listed
        options a multiple-choice answer may name; ``truncated``: cut off at the token
        limit, so only an explicitly stated answer counts)."""
        name = self.extractor_name
        if name in METRIC_EXTRACTORS:
            return self.predict(text, "length" if truncated else "stop", example).answer
        return extraction.extract_answer(
            name,
            text,
            labels=(self.labels or ()) if name == "labels" else (),
            options=self.options(example) if name == "choice" and example is not None else None,
            truncated=truncated,
        )

    def predict(self, text: str, finish_reason: str = "stop", example: Example | None = None) -> Prediction:
        """What the metric sees of one model output: the raw text, the extracted answer
        and, for ``extractor: json``, the parsed (and schema-checked) value."""
        name = self.extractor_name
        if name == "json":
            from promptopt.metrics.jsonout import predict_json

            return predict_json(text, self.json_schema, finish_reason)
        if name == "answer_tag":
            from promptopt.metrics.rg import extract_answer_tag

            return Prediction(text, extract_answer_tag(text), finish_reason=finish_reason)
        answer = self.extract(text, example, truncated=finish_reason == "length")
        return Prediction(text, answer, finish_reason=finish_reason)

    @cached_property
    def json_schema(self) -> Mapping[str, Any] | None:
        if self.spec.json_schema is None:
            return None
        from promptopt.metrics.jsonout import load_schema

        base = self.spec.source.get("base_dir") if isinstance(self.spec.source, Mapping) else None
        return load_schema(self.spec.json_schema, Path(base) if base else None)

    @cached_property
    def metric(self) -> Metric:
        """The task's metric (see :mod:`promptopt.metrics`), built on first use: a
        reference is imported only then."""
        from promptopt.metrics import resolve_metric

        return resolve_metric(self.spec.metric, self)

    def with_metric(self, metric: Any) -> Task:
        """This task (same data, already loaded or not) scored by another metric: any
        form :func:`promptopt.metrics.resolve_metric` accepts."""
        from promptopt.metrics import resolve_metric

        clone = copy.copy(self)
        clone.__dict__.pop("metric", None)
        resolved = resolve_metric(metric, clone)
        clone.spec = dataclasses.replace(self.spec, metric=resolved.spec)
        clone.__dict__["metric"] = resolved
        return clone

    def score_predictions(self, items: Sequence[tuple[Example, Prediction]]) -> list[MetricResult]:
        """Score (example, prediction) pairs with the task's metric."""
        return self.metric.score_many(items)

    def score(self, answer: str | None, example: Example, raw: str | None = None) -> float:
        """The metric's score of an extracted answer (exact match: 1.0 if it equals the
        gold answer, else 0.0)."""
        prediction = Prediction(raw if raw is not None else (answer or ""), answer)
        result = self.metric.score(example, prediction)
        return result.score or 0.0

    @cached_property
    def dataset_hash(self) -> str:
        """Content hash of every split, recorded with runs so results can be traced to data."""
        return content_hash(
            {split: [e.to_dict() for e in self._splits[split]] for split in SPLITS}, length=16
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.spec.version,
            "extractor": self.extractor_name,
            "metric": self.metric.name,
            "dataset_hash": self.dataset_hash,
            "sizes": {split: len(self._splits[split]) for split in SPLITS},
        }


def parse_cot_prompt(text: str, input_field: str, extractor_name: str) -> list[Example]:
    """Split a BBH-style CoT prompt file (a preamble, then ``Q: … A: …`` blocks) into demos."""
    blocks = re.split(r"\n\s*\n(?=Q: )", text.strip())
    demos: list[Example] = []
    for block in blocks:
        if not block.startswith("Q: ") or "\nA: " not in block:
            continue
        question, _, answer = block[len("Q: ") :].partition("\nA: ")
        answer = answer.strip()
        target_match = re.search(r"So the answer is (.+?)\.?\s*$", answer)
        if not target_match:
            continue
        reasoning = answer[: target_match.start()].strip()
        reasoning = re.sub(r"^Let's think step by step\.\s*", "", reasoning)
        demos.append(
            Example(
                id=f"cot-{len(demos)}",
                inputs={input_field: question.strip()},
                target=extraction.normalize_target(target_match.group(1), extractor_name),
                solution=reasoning,
            )
        )
    return demos


def ensure_examples(examples: Sequence[Example], where: str) -> None:
    if not examples:
        raise DataError(f"{where}: no examples to evaluate")
