"""A loaded export: :func:`load` / :func:`load_document` read a document back into a
:class:`LoadedPrompt` that renders, runs and evaluates through the same code as the
search, over a :class:`PromptTask` built from the file. See :mod:`promptopt.export`."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError, PromptOptError, TaskError, TemplateError
from promptopt.executor import Executor
from promptopt.export.document import EXPORT_FORMAT, EXPORT_VERSION, _fingerprint, _safe_model
from promptopt.prompt import (
    render_messages,
)
from promptopt.tasks import Task, TaskSpec, get_task
from promptopt.tasks.task import checked_demo_answer
from promptopt.types import COT_MODES, Candidate, EvalResult, Example


class PromptEditedWarning(UserWarning):
    """A loaded prompt differs from the prompt its provenance scores were measured on."""


# --------------------------------------------------------------------------- the task of a file


class PromptTask(Task):
    """A task defined entirely by an export: template, extractor, answer prompt and the
    demos written out in the file. It renders and scores exactly like the task it was
    exported from; with ``data`` (a real :class:`Task`) it also has that task's examples,
    which is how a loaded prompt is evaluated."""

    def __init__(
        self,
        spec: TaskSpec,
        demos: Sequence[Example],
        extractor: str,
        dataset_hash: str | None,
        data: Task | None = None,
        labels: Sequence[str] | None = None,
        label_words: Sequence[str] = (),
    ) -> None:
        super().__init__(spec)
        self._demos = {d.id: d for d in demos}
        self._extractor = extractor
        self._stored_dataset_hash = dataset_hash
        self._data = data
        self._labels = tuple(labels) if labels is not None else None
        #: The answers as the data spells them, from the export (read by ``gold_words``).
        self.exported_label_words = tuple(label_words)

    def with_data(self, data: Task) -> PromptTask:
        """The same prompt task, with ``data``'s examples for evaluation."""
        return PromptTask(
            self.spec, list(self._demos.values()), self._extractor, self._stored_dataset_hash, data,
            self._labels, self.exported_label_words,
        )  # fmt: skip

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The answer set the export wrote (a label task's), else the data's, if any."""
        if self._labels is not None:
            return self._labels
        return self._data.labels if self._data is not None else None

    @property
    def extractor_name(self) -> str:
        return self._extractor

    @property
    def _demo_index(self) -> dict[str, Example]:
        return self._demos

    @property
    def cot_demos(self) -> list[Example]:
        return []

    @cached_property
    def metric(self) -> Any:
        """The metric written in the file. A metric that is user code is not imported from
        the file: ``evaluate(metric=...)`` must name it again."""
        from promptopt.errors import MetricError
        from promptopt.metrics import is_user_code, resolve_metric

        if is_user_code(self.spec.metric):
            shown = (
                self.spec.metric.get("callable")
                if isinstance(self.spec.metric, Mapping)
                else self.spec.metric
            )
            raise MetricError(
                f"this prompt was scored with the user metric {shown}; promptopt does not import user code "
                "named in a prompt file on its own",
                hint=f"name it to evaluate: loaded.evaluate(metric=...) or `promptopt eval --metric {shown}`",
            )
        return resolve_metric(self.spec.metric, self)

    def examples(self, split: str, limit: int | None = None) -> list[Example]:
        if self._data is None:
            raise ConfigError(
                f"the exported prompt for task {self.name} carries no dataset",
                hint="evaluate it with loaded.evaluate(task=...) or `promptopt eval --prompt-file FILE --task NAME`",
            )
        return self._data.examples(split, limit)

    @cached_property
    def dataset_hash(self) -> str:
        if self._data is not None:
            return self._data.dataset_hash
        return self._stored_dataset_hash or ""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.spec.version,
            "extractor": self._extractor,
            "metric": self.spec.metric,
            "dataset_hash": self.dataset_hash,
        }


# --------------------------------------------------------------------------- loading


def other_model_note(built: str, tuned_on: str) -> str | None:
    """What to say when the backend built from a prompt file's ``model`` is not the one it
    was tuned on (another engine or numerics: its answers and scores may differ, and the
    response cache has none of its requests); None when it is."""
    if built == tuned_on:
        return None
    return (
        f"the prompt was tuned on {tuned_on}; its model id built {built}: answers and scores may differ "
        "from the file's (another engine or numerics; pass the model to use explicitly)"
    )


def warn_if_other_model(built: str, tuned_on: str) -> None:
    """:func:`other_model_note` as a :class:`PromptEditedWarning`."""
    if (note := other_model_note(built, tuned_on)) is not None:
        warnings.warn(note, PromptEditedWarning, stacklevel=3)


@dataclass(frozen=True)
class PromptAnswer:
    """What :meth:`LoadedPrompt.run` returns: the voted, extracted answer and every sample."""

    answer: str | None
    outputs: tuple[str, ...]
    parsed: tuple[str | None, ...]
    tokens_in: int
    tokens_out: int
    error: str | None = None


@dataclass(frozen=True)
class LoadedPrompt:
    """A prompt loaded from an export. ``candidate`` is the prompt as promptopt scores it;
    ``task`` renders and extracts exactly as the search did; ``edited`` is true when the
    file no longer matches its own fingerprint (its provenance scores were measured on a
    different prompt)."""

    candidate: Candidate
    task: PromptTask
    model: str
    provenance: Mapping[str, Any]
    document: Mapping[str, Any] = field(repr=False)
    path: Path | None = None
    edited: bool = False
    # The backend ``run`` uses when given none (``promptopt.optimize`` sets the one it searched with).
    backend: Any = field(default=None, repr=False, compare=False)
    # A calibration's priors (contextual, position) by backend model id: the file's, else the
    # first call's, kept for the next calls (a prior is asked of the model once, not per call).
    _priors: dict[str, dict[tuple[Any, ...], Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def input_fields(self) -> tuple[str, ...]:
        return self.task.spec.input_fields

    def _example(self, fields: Mapping[str, Any]) -> Example:
        """The question as an item; its id comes from its inputs, so that a question gets
        the same option orderings (seeded by the id) alone or among others."""
        missing = [name for name in self.input_fields if name not in fields]
        unknown = [name for name in fields if name not in self.input_fields]
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"missing input field(s) {', '.join(missing)}")
            if unknown:
                problems.append(f"unknown input field(s) {', '.join(unknown)}")
            raise ConfigError(f"{'; '.join(problems)}; this prompt takes: {', '.join(self.input_fields)}")
        inputs = {k: str(v) for k, v in fields.items()}
        digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
        return Example(id=f"input-{digest}", inputs=inputs, target="")

    def messages(self, **fields: Any) -> list[dict[str, str]]:
        """The chat messages for these input fields, exactly as the search sent them."""
        return [m.to_dict() for m in render_messages(self.candidate, self.task, self._example(fields))]

    def parse(self, model_output: str) -> str | None:
        """The answer extracted from a model output, with the search's extractor."""
        return self.task.extract(model_output)

    def run(self, backend: Any = None, **fields: Any) -> PromptAnswer:
        """Ask a model: render, generate (``samples`` samples, two-stage if configured),
        extract and majority-vote through the same Executor as the search. ``backend``
        is a :class:`~promptopt.backends.Backend` or a model spec (default: the model
        the prompt was tuned on); requests are retried on retryable errors."""
        return self._answer([self._example(fields)], backend)[0]

    def run_many(self, inputs: Sequence[Mapping[str, Any]], backend: Any = None) -> list[PromptAnswer]:
        """:meth:`run` on many questions (each a mapping of the input fields) in one call:
        the requests go to the backend in batches, and a ``batch`` calibration estimates
        its prior from these questions together (one question alone has none). A question
        asked twice is answered once (a batch of its own copies would be its own prior)."""
        if isinstance(inputs, Mapping | str | bytes):
            raise ConfigError("run_many takes a list of input mappings; for one question use run(**fields)")
        examples = []
        for n, fields in enumerate(inputs):
            if not isinstance(fields, Mapping):
                raise ConfigError(
                    f"run_many: question {n} is a {type(fields).__name__}, not a mapping of input fields "
                    f"(this prompt takes: {', '.join(self.input_fields)})"
                )
            try:
                examples.append(self._example(fields))
            except ConfigError as exc:
                raise ConfigError(f"run_many: question {n}: {exc.message}") from None
        distinct = list({e.id: e for e in examples}.values())
        answers = dict(zip((e.id for e in distinct), self._answer(distinct, backend), strict=True))
        return [answers[e.id] for e in examples]

    def _answer(self, examples: Sequence[Example], backend: Any) -> list[PromptAnswer]:
        from promptopt.backends import Backend, make_backend
        from promptopt.session import ModelStack

        if backend is None and isinstance(self.backend, Backend):
            backend = self.backend
        owned = not isinstance(backend, Backend)
        inner = backend if isinstance(backend, Backend) else make_backend(backend or self.model)
        if backend is None:
            warn_if_other_model(inner.model_id, self.model)
        # An answer to a new question has no gold to score against: no metric (least of all
        # user code or a judge) is loaded to run the prompt.
        unscored = self.task.with_metric(_unscored)
        executor = Executor(unscored, ModelStack(inner).backend)
        kept = self._priors.get(inner.model_id)
        if kept is not None:
            executor.bias_priors.update(kept)
        elif not self.edited and _safe_model(inner.model_id) == self.model:  # its prompt's and model's prior
            from promptopt.bias.labels import keep_fixed_priors

            keep_fixed_priors(
                executor, self.candidate, self.document["sampling"].get("calibration_prior") or {}
            )
        try:
            results: list[EvalResult] = executor.evaluate(self.candidate, examples, "run")
        finally:
            if owned:
                inner.close()
        self._priors[inner.model_id] = dict(executor.bias_priors)
        return [
            PromptAnswer(
                answer=result.answer,
                outputs=tuple(s.raw_output for s in result.samples),
                parsed=tuple(s.parsed_answer for s in result.samples),
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
                error=result.error,
            )
            for result in results
        ]

    def evaluate(
        self,
        task: Task | str | None = None,
        *,
        split: str = "dev",
        limit: int | None = None,
        backend: Any = None,
        data_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> Any:
        """Score this prompt with :func:`promptopt.evaluate` on ``task``'s data (default:
        the task named in the file), rendering and extracting from the file. On ``dev``
        without ``limit`` it uses as many dev examples as the stored dev score did, so
        with the cache on it reproduces that score exactly. ``backend`` defaults to the
        model the prompt was tuned on; other keyword arguments go to ``evaluate``."""
        from promptopt.evaluation import evaluate

        data = task if isinstance(task, Task) else get_task(task or self.task.name, data_dir)
        if isinstance(data, PromptTask):
            data = data._data or data
        if data.name != self.task.name:
            raise ConfigError(f"this prompt was exported for task {self.task.name!r}, not {data.name!r}")
        stored = self.task._stored_dataset_hash
        if stored and data.dataset_hash != stored:
            warnings.warn(
                f"task {data.name} data (dataset hash {data.dataset_hash}) differs from the data the prompt "
                f"was scored on ({stored}); scores will not match the export's",
                PromptEditedWarning,
                stacklevel=2,
            )
        if split == "dev" and limit is None:
            dev = self.provenance.get("dev") or {}
            if dev.get("n_examples"):
                limit = int(dev["n_examples"])
        return evaluate(
            self.task.with_data(data),
            self.candidate,
            backend or self.model,
            split=split,
            limit=limit,
            **kwargs,
        )


def _unscored(example: Example, prediction: Any) -> float:
    """The metric of :meth:`LoadedPrompt.run`: a new question has no gold answer."""
    return 0.0


def _need(data: Mapping[str, Any], path: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``data[a][b]...`` for ``path`` "a.b"; a missing or mistyped field raises ConfigError
    naming the file and the field."""
    value: Any = data
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if not isinstance(value, Mapping) or part not in value:
            raise ConfigError(
                f"{where}: missing field {'.'.join(walked)!r}",
                hint="re-export the prompt with `promptopt export`, or restore the field",
            )
        value = value[part]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}: field {path!r} must be {names}, got {type(value).__name__}")
    return value


def load_document(data: Any, where: str = "prompt file", path: Path | None = None) -> LoadedPrompt:
    """Validate an export document (already parsed) and build the :class:`LoadedPrompt`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: an export must be a mapping of fields, got {type(data).__name__}")
    if data.get("format") != EXPORT_FORMAT:
        if isinstance(data, Mapping) and ("request" in data or "predict" in data or "signature" in data):
            raise ConfigError(
                f"{where}: this is an openai/dspy-format export; promptopt.load reads the yaml or json export",
                hint="export the prompt again with --format yaml (or json) to load and run it",
            )
        raise ConfigError(f"{where}: field 'format' must be {EXPORT_FORMAT!r} (a promptopt export), "
                          f"got {data.get('format')!r}")  # fmt: skip
    version = _need(data, "format_version", int, where)
    if version != EXPORT_VERSION:
        raise ConfigError(
            f"{where}: field 'format_version' is {version}, but this promptopt ({_version()}) reads export "
            f"format version {EXPORT_VERSION}",
            hint="export the prompt again with this promptopt, or use the promptopt version that wrote it",
        )
    model = _need(data, "model", str, where)
    system = _need(data, "prompt.system", str, where)
    template = _need(data, "prompt.user_template", str, where)
    input_fields = _need(data, "prompt.input_fields", list, where)
    if not input_fields or not all(isinstance(f, str) and f for f in input_fields):
        raise ConfigError(f"{where}: field 'prompt.input_fields' must be a non-empty list of names")
    answer_format = _need(data, "prompt.answer_format", str, where)
    cot_mode = _need(data, "prompt.cot_mode", str, where)
    if cot_mode not in COT_MODES:
        raise ConfigError(
            f"{where}: field 'prompt.cot_mode' must be one of {', '.join(COT_MODES)}, got {cot_mode!r}"
        )
    cot_trigger = _need(data, "prompt.cot_trigger", str, where)
    raw_demos = _need(data, "prompt.demos", list, where)
    extractor = _need(data, "extraction.extractor", str, where)
    metric = _need(data, "extraction.metric", (str, Mapping), where)
    answer_prompt = _need(data, "extraction.two_stage_prompt", str, where)
    samples = _need(data, "sampling.samples", int, where)
    temperature = _need(data, "sampling.temperature", (int, float), where)
    max_tokens = _need(data, "sampling.max_tokens", int, where)
    two_stage = _need(data, "sampling.two_stage", bool, where)
    task_name = _need(data, "task.name", str, where)
    task_version = _need(data, "task.version", int, where)
    dataset_hash = _need(data, "task.dataset_hash", (str, type(None)), where)
    candidate_hash = _need(data, "candidate", str, where)
    provenance = _need(data, "provenance", Mapping, where)
    demos = []
    for index, raw in enumerate(raw_demos):
        at = f"prompt.demos[{index}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: {at} must be a mapping with id, inputs, target and solution")
        for key, kind in (("id", str), ("inputs", Mapping), ("target", str)):
            if key not in raw:
                raise ConfigError(f"{where}: missing field '{at}.{key}'")
            if not isinstance(raw[key], kind):
                raise ConfigError(f"{where}: field '{at}.{key}' must be {kind.__name__}")
        solution = raw.get("solution")
        if solution is not None and not isinstance(solution, str):
            raise ConfigError(f"{where}: field '{at}.solution' must be text or null")
        demos.append(
            Example(
                id=raw["id"],
                inputs={str(k): str(v) for k, v in raw["inputs"].items()},
                target=raw["target"],
                solution=solution,
            )
        )
    own = data["prompt"].get("own_solutions", [])
    if not isinstance(own, list) or not all(isinstance(demo_id, str) for demo_id in own):
        raise ConfigError(f"{where}: field 'prompt.own_solutions' must be a list of demo ids")
    shown = {d.id: d.solution or "" for d in demos}
    unknown = [demo_id for demo_id in own if demo_id not in shown]
    if unknown:
        raise ConfigError(f"{where}: field 'prompt.own_solutions' names demos not in prompt.demos: {unknown}")
    try:
        from promptopt import template as templating
        from promptopt.tasks import extract as extraction

        templating.validate(template, input_fields, where=f"{where}: prompt.user_template")
        from promptopt.tasks.task import METRIC_EXTRACTORS

        labels = data["extraction"].get("labels")
        if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise ConfigError(f"{where}: field 'extraction.labels' must be a list of strings")
        label_words = data["extraction"].get("label_words", [])
        if not (isinstance(label_words, list) and all(isinstance(x, str) for x in label_words)):
            raise ConfigError(f"{where}: field 'extraction.label_words' must be a list of strings")
        if extractor == "labels" and not labels:
            raise ConfigError(
                f"{where}: the 'labels' extractor reads the task's answer set, which this file does not carry "
                "(field 'extraction.labels')",
                hint="export the prompt again with this promptopt",
            )
        if extractor not in METRIC_EXTRACTORS and extractor != "labels":
            extraction.get_extractor(extractor)
    except (TemplateError, TaskError) as exc:
        raise ConfigError(exc.message if exc.message.startswith(where) else f"{where}: extraction.extractor: "
                          f"{exc.message}") from None  # fmt: skip
    try:
        candidate = Candidate(
            instruction=system, demo_ids=tuple(d.id for d in demos), cot_mode=cot_mode,
            cot_trigger=cot_trigger, answer_format=answer_format, samples=samples,
            temperature=float(temperature), max_tokens=max_tokens, two_stage=two_stage,
            demo_solutions=tuple((demo_id, shown[demo_id]) for demo_id in own),
            permute=data["sampling"].get("permute", 1), calibration=data["sampling"].get("calibration", "none"),
            rescue=_need(data, "sampling.rescue", bool, where) if "rescue" in data["sampling"] else False,
        )  # fmt: skip
    except PromptOptError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    if "calibration_prior" in data["sampling"]:
        _check_prior(data["sampling"]["calibration_prior"], f"{where}: field 'sampling.calibration_prior'")
    spec = TaskSpec(
        name=task_name, version=task_version, source={"type": "exported"}, input_fields=tuple(input_fields),
        template=template, extractor=extractor, metric=metric, answer_format=answer_format,
        instruction=system, answer_prompt=answer_prompt, origin=str(path or where),
        json_schema=data["extraction"].get("json_schema"),
        json_mode=bool(data["extraction"].get("json_mode", False)),
        demo_answer=checked_demo_answer(data["prompt"].get("demo_answer"), f"{where}: prompt"),
    )  # fmt: skip
    task = PromptTask(spec, demos, extractor, dataset_hash, labels=labels, label_words=label_words)
    edited = candidate.hash != candidate_hash or data.get("fingerprint") != _fingerprint(data)
    if edited:
        warnings.warn(
            f"{where}: the prompt was changed after export (its fingerprint no longer matches); the "
            "provenance scores in the file were measured on the original prompt",
            PromptEditedWarning,
            stacklevel=3,
        )
    return LoadedPrompt(
        candidate=candidate, task=task, model=model, provenance=dict(provenance), document=dict(data),
        path=path, edited=edited,
    )  # fmt: skip


def _check_prior(prior: Any, where: str) -> None:
    """A ``calibration_prior`` as the export writes it: ``contextual`` rows of [label text,
    answer, number], ``position`` a number list per option count; else ConfigError."""

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    contextual = prior.get("contextual", []) if isinstance(prior, Mapping) else None
    position = prior.get("position", {}) if isinstance(prior, Mapping) else None
    good = (
        isinstance(contextual, list)
        and all(isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and isinstance(r[1], str)
                and number(r[2]) for r in contextual)
        and isinstance(position, Mapping)
        and all(str(k).isdigit() and isinstance(v, list) and all(number(x) for x in v) for k, v in position.items())
    )  # fmt: skip
    if not good:
        raise ConfigError(
            f"{where} must hold 'contextual' rows of [label text, answer, number] or 'position' lists of "
            "numbers by option count",
            hint="re-export the prompt with `promptopt export`",
        )


def _version() -> str:
    from promptopt import __version__

    return __version__


def load(path: str | Path) -> LoadedPrompt:
    """Load a prompt exported as yaml or json (``promptopt export --format yaml|json``)."""
    import yaml

    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the prompt file ({exc.strerror})") from None
    if text.startswith("{#- promptopt export"):  # a template renders a prompt; it is no prompt file
        raise ConfigError(
            f"{file}: this is a jinja export (a template of the messages); promptopt.load reads the yaml or "
            "json export",
            hint="export the prompt again with --format yaml (or json) to load and run it",
        )
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        position = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{file}{position}: invalid YAML ({exc.problem})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML ({exc})") from None
    return load_document(data, where=str(file), path=file)
