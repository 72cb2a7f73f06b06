"""Export a found prompt to production, and load it back: ``promptopt.load(path)``.

An export is the complete prompt *as it was scored*: the system instruction, the task's
user template, every demo written out in full (with the worked solution it is shown
with: a bootstrapped demo's own, and ``prompt.own_solutions`` lists which those are), the
chain-of-thought trigger, the
answer-format line, the answer-extraction rule, the sampling parameters and the model,
plus provenance (dev/test scores with 95% intervals, task and dataset hash, run id,
promptopt version, date). It never holds a secret: no backend configuration is copied,
only the model name (with any URL password masked).

Formats (``export(store, ref, fmt, path)``):

- ``yaml`` / ``json`` — the export document; ``promptopt.load`` reads either;
- ``openai`` — the Chat Completions request body a production service sends, with
  ``{field}`` placeholders in the last user message (substitute them by plain string
  replacement in that message only; demos are never substituted);
- ``jinja`` — a Jinja2 template with the input fields as variables that renders to the
  JSON list of chat messages;
- ``dspy`` — a DSPy program state (``dspy.ChainOfThought`` with chain of thought, else
  ``dspy.Predict``) that ``program.load(path)`` reads. DSPy formats prompts its own way,
  so this carries the instruction and demos over; it is not byte-identical to promptopt's
  messages.

Parity by construction: a loaded prompt renders, generates and extracts through the very
same code as the search (:func:`promptopt.prompt.render_messages` and the
:class:`~promptopt.executor.Executor` over a :class:`PromptTask` built from the file), so
``loaded.evaluate(split="dev")`` with the cache on reproduces the stored dev score.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError, PromptOptError, TaskError, TemplateError
from promptopt.executor import TWO_STAGE_MAX_TOKENS, Executor
from promptopt.leaderboard import load_run_task
from promptopt.prompt import (
    SENTINEL_RE,
    demo_solution,
    placeholder_messages,
    render_messages,
    sentinel_messages,
)
from promptopt.store import RunRecord, Store, mask_url, scrub_secrets
from promptopt.tasks import Task, TaskSpec, get_task
from promptopt.types import COT_MODES, Candidate, EvalResult, Example, content_hash

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "FORMATS",
    "ExportResult",
    "LoadedPrompt",
    "PromptAnswer",
    "PromptEditedWarning",
    "PromptTask",
    "build_document",
    "export",
    "load",
    "load_document",
    "placeholder_messages",
    "render_format",
]

EXPORT_FORMAT = "promptopt-prompt"
#: Version of the export document layout. A file of another version is refused with a
#: message naming ``format_version``; bump it (and keep reading the old one) on change.
EXPORT_VERSION = 1
FORMATS = ("yaml", "json", "openai", "jinja", "dspy")


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
    ) -> None:
        super().__init__(spec)
        self._demos = {d.id: d for d in demos}
        self._extractor = extractor
        self._stored_dataset_hash = dataset_hash
        self._data = data

    def with_data(self, data: Task) -> PromptTask:
        """The same prompt task, with ``data``'s examples for evaluation."""
        return PromptTask(
            self.spec, list(self._demos.values()), self._extractor, self._stored_dataset_hash, data
        )

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


# --------------------------------------------------------------------------- building a document


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    run_id: str
    candidate: str


def _pick(store: Store, ref: str) -> tuple[RunRecord, str]:
    from promptopt.leaderboard import best_run_for_candidate, resolve, run_candidate

    kind, value = resolve(store, ref)
    if kind == "candidate":
        run_id, _ = best_run_for_candidate(store, value)
        return store.get_run(run_id), value
    run = store.get_run(value)
    candidate_hash = run_candidate(run)
    if candidate_hash is None:
        hint = (
            f"resume it with `promptopt search --resume {run.id}`, or export one of its candidates "
            "by hash (`promptopt leaderboard --run " + run.id + "`)"
            if run.kind == "search"
            else "export a finished run, or a candidate by hash (`promptopt leaderboard`)"
        )
        raise ConfigError(
            f"run {run.id} ({run.kind}, {run.status}) has no finished candidate to export", hint=hint
        )
    return run, candidate_hash


def build_document(
    store: Store, ref: str, *, data_dir: str | Path | None = None, task: Task | str | None = None
) -> dict[str, Any]:
    """The export document of a run (a search's winner, an eval's prompt) or of a
    candidate hash (in the run where it was scored most on dev)."""
    from promptopt import __version__
    from promptopt.leaderboard import candidate_scores

    run, candidate_hash = _pick(store, ref)
    candidate = store.get_candidate(candidate_hash)
    if isinstance(task, Task):
        task_obj = task
    elif isinstance(task, str):
        task_obj = get_task(task, data_dir)
    else:
        task_obj = load_run_task(run, data_dir)
    if task_obj.name != run.task:
        raise ConfigError(f"task {task_obj.name!r} is not the task of run {run.id} ({run.task!r})")
    if candidate.demo_ids and run.dataset_hash and task_obj.dataset_hash != run.dataset_hash:
        raise ConfigError(
            f"the data of task {task_obj.name} (dataset hash {task_obj.dataset_hash}) is not the data run "
            f"{run.id} used ({run.dataset_hash}), so its demos cannot be written out as they were scored",
            hint="point --data-dir at the data the run used",
        )
    if candidate.similar_demos:
        raise ConfigError(
            f"candidate {candidate_hash} of run {run.id} picks its {candidate.similar_demos} demos per "
            "question (the demo-pool items most similar to it): an export is one fixed prompt and "
            "cannot carry that choice",
            hint="export a candidate with fixed demos (promptopt leaderboard --run RUN lists them), or use this "
            "one through the Python API with the task's demo pool",
        )
    demos = [task_obj.demo(demo_id) for demo_id in candidate.demo_ids]
    scores = candidate_scores(store, run.id, candidate_hash)
    with store.engine.connect() as conn:
        import sqlalchemy as sa

        from promptopt.store.schema import RUN_CANDIDATES

        origin = conn.execute(
            sa.select(RUN_CANDIDATES.c.origin).where(
                RUN_CANDIDATES.c.run_id == run.id, RUN_CANDIDATES.c.candidate_hash == candidate_hash
            )
        ).scalar_one_or_none()
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "model": _safe_model(run.model),
        "prompt": {
            "system": candidate.instruction,
            "user_template": task_obj.spec.template,
            "input_fields": list(task_obj.spec.input_fields),
            "answer_format": candidate.answer_format,
            "cot_mode": candidate.cot_mode,
            "cot_trigger": candidate.cot_trigger,
            # each demo's worked solution as shown: the candidate's own where it has one
            "demos": [
                {
                    "id": d.id,
                    "inputs": dict(d.inputs),
                    "target": d.target,
                    "solution": demo_solution(candidate, d),
                }
                for d in demos
            ],
        },
        "extraction": {
            "extractor": task_obj.extractor_name,
            # the run's metric as stored: a reference is written out, never imported here
            "metric": run.config.get("metric") or task_obj.spec.metric,
            "vote": "majority",
            "two_stage_prompt": task_obj.spec.answer_prompt,
        },
        "sampling": {
            "samples": candidate.samples,
            "temperature": candidate.temperature,
            "max_tokens": candidate.max_tokens,
            "two_stage": candidate.two_stage,
            "two_stage_max_tokens": TWO_STAGE_MAX_TOKENS,
        },
        "task": {
            "name": task_obj.name,
            "version": task_obj.spec.version,
            "dataset_hash": run.dataset_hash or task_obj.dataset_hash,
        },
        "candidate": candidate_hash,
        "provenance": scrub_secrets(
            {
                "run_id": run.id,
                "run_kind": run.kind,
                "run_status": run.status,
                "run_created_at": run.created_at.isoformat(),
                "origin": origin,
                "policy": run.config.get("policy") if run.kind == "search" else None,
                "seed": run.seed,
                "dev": _score_dict(scores["dev"]),
                "test": _score_dict(scores["test"]),
                "run_promptopt_version": run.promptopt_version,
                "promptopt_version": __version__,
                "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        ),
    }
    if task_obj.spec.json_schema is not None:  # extractor json: the schema its answers were checked with
        document["extraction"]["json_schema"] = dict(task_obj._json_schema or {})
    if task_obj.spec.json_mode:  # the backend was asked for JSON output (response_format)
        document["extraction"]["json_mode"] = True
    if candidate.demo_solutions:  # the demos whose solution is the candidate's own, for its identity
        document["prompt"]["own_solutions"] = [demo_id for demo_id, _ in candidate.demo_solutions]
    document["sampling"].update(_bias_fields(candidate))
    document["fingerprint"] = _fingerprint(document)
    return document


def _bias_fields(candidate: Candidate) -> dict[str, Any]:
    """The answer-bias strategy (docs/answer-bias.md), written only when one is used, so
    that older exports keep their fingerprint."""
    fields: dict[str, Any] = {}
    if candidate.permute != 1:
        fields["permute"] = candidate.permute
    if candidate.calibration != "none":
        fields["calibration"] = candidate.calibration
    return fields


def _safe_model(model: str) -> str:
    """The model name without its endpoint: ``openai/<model>@<host:port>`` is written as
    ``openai/<model>`` — an export holds no base URL, host or credentials (the reader
    points it at their own endpoint with ``--base-url``)."""
    return mask_url(model.partition("@")[0])


def _score_dict(score: Any) -> dict[str, Any] | None:
    if score is None:
        return None
    return {**score.to_dict(), "n_examples": score.n_examples}


def _fingerprint(document: Mapping[str, Any]) -> str:
    """Content hash of everything that decides what the model sees and how its answer is
    read (not the provenance): a changed demo or template changes it."""
    return content_hash(
        {
            "model": document["model"],
            "prompt": document["prompt"],
            "extraction": document["extraction"],
            "sampling": document["sampling"],
        }
    )


# --------------------------------------------------------------------------- loading


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

    @property
    def input_fields(self) -> tuple[str, ...]:
        return self.task.spec.input_fields

    def _example(self, fields: Mapping[str, Any]) -> Example:
        missing = [name for name in self.input_fields if name not in fields]
        unknown = [name for name in fields if name not in self.input_fields]
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"missing input field(s) {', '.join(missing)}")
            if unknown:
                problems.append(f"unknown input field(s) {', '.join(unknown)}")
            raise ConfigError(f"{'; '.join(problems)}; this prompt takes: {', '.join(self.input_fields)}")
        return Example(id="input", inputs={k: str(v) for k, v in fields.items()}, target="")

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
        from promptopt.backends import Backend, RetryingBackend, make_backend

        example = self._example(fields)
        if backend is None and isinstance(self.backend, Backend):
            backend = self.backend
        owned = not isinstance(backend, Backend)
        inner = backend if isinstance(backend, Backend) else make_backend(backend or self.model)
        # An answer to a new question has no gold to score against: no metric (least of all
        # user code or a judge) is loaded to run the prompt.
        unscored = self.task.with_metric(_unscored)
        try:
            result: EvalResult = Executor(unscored, RetryingBackend(inner)).evaluate(
                self.candidate, [example], "run"
            )[0]
        finally:
            if owned:
                inner.close()
        return PromptAnswer(
            answer=result.answer,
            outputs=tuple(s.raw_output for s in result.samples),
            parsed=tuple(s.parsed_answer for s in result.samples),
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            error=result.error,
        )

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
                f"{where}: this is an openai/dspy-format export; promptopt.load reads the yaml or json export"
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

        if extractor not in METRIC_EXTRACTORS:
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
        )  # fmt: skip
    except PromptOptError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    spec = TaskSpec(
        name=task_name, version=task_version, source={"type": "exported"}, input_fields=tuple(input_fields),
        template=template, extractor=extractor, metric=metric, answer_format=answer_format,
        instruction=system, answer_prompt=answer_prompt, origin=str(path or where),
        json_schema=data["extraction"].get("json_schema"),
        json_mode=bool(data["extraction"].get("json_mode", False)),
    )  # fmt: skip
    task = PromptTask(spec, demos, extractor, dataset_hash)
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


# --------------------------------------------------------------------------- formats


def render_format(document: Mapping[str, Any], fmt: str) -> str:
    """The text of ``document`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return _yaml(document)
    prompt = load_document(document, where="export")
    if fmt == "openai":
        return json.dumps(_openai(prompt), indent=2, ensure_ascii=False) + "\n"
    if fmt == "jinja":
        return _jinja(prompt)
    return json.dumps(_dspy(prompt), indent=2, ensure_ascii=False) + "\n"


def _yaml(document: Mapping[str, Any]) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # Multi-line text (solutions, instructions) as readable blocks; PyYAML falls back
        # to a quoted style by itself when a block cannot hold the value exactly.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    header = (
        f"# promptopt export (format version {EXPORT_VERSION}): load with promptopt.load(path).\n"
        "# Edit a field and the provenance scores no longer apply (the fingerprint will not match).\n"
    )
    return header + yaml.dump(dict(document), Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


def _summary(prompt: LoadedPrompt) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "model": prompt.model,
        "task": dict(prompt.document["task"]),
        "candidate": prompt.candidate.hash,
        "fingerprint": prompt.document.get("fingerprint"),
        "provenance": dict(prompt.provenance),
    }


def _openai(prompt: LoadedPrompt) -> dict[str, Any]:
    model = prompt.model.split("/", 1)[1] if prompt.model.startswith("openai/") else prompt.model
    request: dict[str, Any] = {
        "model": model.split("@", 1)[0],
        "messages": placeholder_messages(prompt.candidate, prompt.task),
        "temperature": prompt.candidate.temperature,
        "max_tokens": prompt.candidate.max_tokens,
    }
    if prompt.candidate.samples > 1:
        request["n"] = prompt.candidate.samples
    out: dict[str, Any] = {
        "request": request,
        "input_fields": list(prompt.input_fields),
        "placeholders": {
            "message": len(request["messages"]) - 1,
            "syntax": "{field}",
            "note": "replace each {field} in the last message only, by plain string replacement",
        },
        "answer": {
            "extractor": prompt.task.extractor_name,
            "vote": "majority over the extracted answers of the n samples"
            if prompt.candidate.samples > 1
            else None,
        },
    }
    if prompt.candidate.two_stage:
        out["two_stage"] = {
            "append": [
                {"role": "assistant", "content": "<the first reply>"},
                {"role": "user", "content": prompt.task.spec.answer_prompt},
            ],
            "temperature": 0.0,
            "max_tokens": TWO_STAGE_MAX_TOKENS,
            "parse": f"<first reply>\\n{prompt.task.spec.answer_prompt} <second reply>",
        }
    from promptopt.bias import export_note

    out.update(export_note(prompt.candidate))  # permutation or calibration: more than one request
    out["promptopt"] = _summary(prompt)
    return out


def _strategy(candidate: Candidate) -> str:
    from promptopt.bias import strategy_text

    text = strategy_text(candidate)
    return f"{text} (applied around the rendered messages by promptopt.load(FILE).run())" if text else ""


def _jinja_literal(text: str) -> str:
    # A JSON string literal is a valid Jinja string literal with the same value.
    return json.dumps(text, ensure_ascii=True)


def _jinja(prompt: LoadedPrompt) -> str:
    messages = sentinel_messages(prompt.candidate, prompt.task)
    lines = []
    summary = _summary(prompt)
    provenance = summary["provenance"]
    dev = provenance.get("dev") or {}
    comment = (
        f"promptopt export (format version {EXPORT_VERSION}) of candidate {summary['candidate']}, "
        f"task {summary['task']['name']} (dataset {summary['task']['dataset_hash']}), model {summary['model']}, "
        f"run {provenance.get('run_id')}; dev accuracy {dev.get('accuracy')} (95% CI {dev.get('ci95')}, "
        f"n={dev.get('n')}). Renders to the JSON list of chat messages. "
        f"Variables: {', '.join(prompt.input_fields)}. Extractor: {prompt.task.extractor_name}; "
        f"samples {prompt.candidate.samples} at temperature {prompt.candidate.temperature}, "
        f"max_tokens {prompt.candidate.max_tokens}{_strategy(prompt.candidate)}."
    ).replace("#}", "# }")
    lines.append("{#- " + comment + " -#}")
    lines.append("[")
    for index, message in enumerate(messages):
        parts: list[str] = []
        position = 0
        for match in SENTINEL_RE.finditer(message["content"]):
            if match.start() > position:
                parts.append(_jinja_literal(message["content"][position : match.start()]))
            parts.append(f"({match.group(1)} | string)")
            position = match.end()
        if position < len(message["content"]) or not parts:
            parts.append(_jinja_literal(message["content"][position:]))
        expression = " ~ ".join(parts)
        comma = "," if index < len(messages) - 1 else ""
        lines.append(
            f'  {{"role": {json.dumps(message["role"])}, "content": {{{{ ({expression}) | tojson }}}}}}{comma}'
        )
    lines.append("]")
    return "\n".join(lines) + "\n"


def _dspy_prefix(name: str) -> str:
    return " ".join(part.capitalize() for part in name.split("_") if part) + ":"


def _dspy(prompt: LoadedPrompt) -> dict[str, Any]:
    candidate = prompt.candidate
    cot = candidate.cot_mode != "none"
    inputs = list(prompt.input_fields)
    outputs = (["reasoning"] if cot else []) + ["answer"]
    demos = []
    for demo_id in candidate.demo_ids:
        demo = prompt.task.demo(demo_id)
        solution = demo_solution(candidate, demo)  # "" for none
        # a chain-of-thought demo without a solution is DSPy's labelled demo (not augmented)
        entry: dict[str, Any] = {"augmented": True} if solution or not cot else {}
        entry.update({k: demo.inputs[k] for k in inputs if k in demo.inputs})
        if cot and solution:
            entry["reasoning"] = solution
        entry["answer"] = demo.target
        demos.append(entry)
    predict = {
        "traces": [],
        "train": [],
        "demos": demos,
        "signature": {
            "instructions": candidate.instruction.strip()
            or f"Given the fields {', '.join(inputs)}, produce the answer.",
            "fields": [{"prefix": _dspy_prefix(n), "description": "${" + n + "}"} for n in inputs + outputs],
        },
        "lm": None,
    }
    signature = f"{', '.join(inputs)} -> answer"
    metadata = {
        # DSPy compares these with its own versions; empty, since promptopt wrote the file.
        "dependency_versions": {},
        "promptopt": {
            **_summary(prompt),
            "program": "dspy.ChainOfThought" if cot else "dspy.Predict",
            "signature": signature,
            "load": f"program = {'dspy.ChainOfThought' if cot else 'dspy.Predict'}({signature!r}); program.load(path)",
            "not_carried_over": {
                "answer_format": candidate.answer_format,
                "cot_trigger": candidate.cot_trigger,
                "samples": candidate.samples,
                "temperature": candidate.temperature,
                "extractor": prompt.task.extractor_name,
            },
        },
    }
    if cot:
        return {"predict": predict, "metadata": metadata}
    return {**predict, "metadata": metadata}


def export(
    store: Store | str | None,
    run_or_candidate: str,
    fmt: str,
    path: str | Path,
    *,
    data_dir: str | Path | None = None,
    task: Task | str | None = None,
) -> ExportResult:
    """Write the prompt of a finished run (a search's winner, an eval's prompt) or of a
    candidate hash to ``path`` in format ``fmt`` (yaml, json, openai, jinja or dspy).
    ``data_dir`` locates the task data when the prompt has demos."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    owned = not isinstance(store, Store)
    opened = store if isinstance(store, Store) else Store(store)
    try:
        document = build_document(opened, run_or_candidate, data_dir=data_dir, task=task)
    finally:
        if owned:
            opened.close()
    text = render_format(document, fmt)
    target = Path(path).expanduser()
    if fmt == "dspy" and target.suffix != ".json":
        raise ConfigError(f"{target}: DSPy loads program state from a .json file; name the output *.json")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the export ({exc.strerror})") from None
    return ExportResult(
        path=target, format=fmt, run_id=document["provenance"]["run_id"], candidate=document["candidate"]
    )
