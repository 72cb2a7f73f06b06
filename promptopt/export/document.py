"""The export document: what :func:`build_document` writes for a run's or a candidate's
prompt (the prompt as scored, extraction, sampling, model and provenance), and its
fingerprint. See :mod:`promptopt.export`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError
from promptopt.executor import TWO_STAGE_MAX_TOKENS
from promptopt.leaderboard import load_run_task
from promptopt.prompt import (
    demo_solution,
)
from promptopt.store import RunRecord, Store, mask_url, scrub_secrets
from promptopt.tasks import Task, get_task
from promptopt.types import Candidate, content_hash

EXPORT_FORMAT = "promptopt-prompt"
#: Version of the export document layout. A file of another version is refused with a
#: message naming ``format_version``; bump it (and keep reading the old one) on change.
EXPORT_VERSION = 1
FORMATS = ("yaml", "json", "openai", "jinja", "dspy")


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
    from promptopt.export.priors import exported_priors
    from promptopt.leaderboard import candidate_scores
    from promptopt.store.queries import candidate_link

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
    link = candidate_link(store, run.id, candidate_hash)
    origin = link.origin if link is not None else None
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
        document["extraction"]["json_schema"] = dict(task_obj.json_schema or {})
    if task_obj.spec.json_mode:  # the backend was asked for JSON output (response_format)
        document["extraction"]["json_mode"] = True
    if task_obj.spec.demo_answer is not None:  # the task's own demo answer line (else the extractor's)
        document["prompt"]["demo_answer"] = task_obj.spec.demo_answer
    if candidate.demo_solutions:  # the demos whose solution is the candidate's own, for its identity
        document["prompt"]["own_solutions"] = [demo_id for demo_id, _ in candidate.demo_solutions]
    document["extraction"].update(_label_fields(task_obj, candidate))
    document["sampling"].update(_bias_fields(candidate))
    prior = exported_priors(store, task_obj, candidate, run.model)
    if prior:  # a contextual or position prior, as the evaluation divided it out
        document["sampling"]["calibration_prior"] = prior
    document["fingerprint"] = _fingerprint(document)
    return document


def _label_fields(task: Task, candidate: Candidate) -> dict[str, Any]:
    """The task's answer set, where the prompt needs it without the data: a yes/no or
    label task's answer-format line names its answers as the data spells them, the
    ``labels`` extractor reads them, a calibration scores them. Written only then, so
    that other exports keep their fingerprint."""
    from promptopt.tasks.answer_format import gold_words

    if task.labels is None or task.extractor_name == "choice":
        return {}
    if task.extractor_name not in ("yesno", "labels") and candidate.calibration == "none":
        return {}
    return {"labels": list(task.labels), "label_words": list(gold_words(task))}


def _bias_fields(candidate: Candidate) -> dict[str, Any]:
    """The answer-bias strategy (docs/answer-bias.md), written only when one is used, so
    that older exports keep their fingerprint."""
    fields: dict[str, Any] = {}
    if candidate.permute != 1:
        fields["permute"] = candidate.permute
    if candidate.calibration != "none":
        fields["calibration"] = candidate.calibration
    if candidate.rescue:  # the second stage, asked only where the reasoning holds no answer
        fields["rescue"] = True
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
