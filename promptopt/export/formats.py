"""The export formats (yaml, json, openai, jinja, dspy) and :func:`export`, which writes
one to a file. See :mod:`promptopt.export`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError
from promptopt.executor import TWO_STAGE_MAX_TOKENS
from promptopt.export.document import EXPORT_FORMAT, EXPORT_VERSION, FORMATS, ExportResult, build_document
from promptopt.export.loaded import LoadedPrompt, load_document
from promptopt.prompt import (
    SENTINEL_RE,
    demo_solution,
    placeholder_messages,
    sentinel_messages,
)
from promptopt.store import Store
from promptopt.tasks import Task
from promptopt.types import Candidate

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
    if prompt.candidate.two_stage or prompt.candidate.rescue:
        out["two_stage"] = {
            "append": [
                {"role": "assistant", "content": "<the first reply>"},
                {"role": "user", "content": prompt.task.spec.answer_prompt},
            ],
            "temperature": 0.0,
            "max_tokens": TWO_STAGE_MAX_TOKENS,
            "parse": f"<first reply>\\n{prompt.task.spec.answer_prompt} <second reply>",
        }
        if prompt.candidate.rescue:
            out["two_stage"]["when"] = "only when the first reply holds no extractable answer"
    from promptopt.bias import export_note

    out.update(export_note(prompt.candidate))  # permutation or calibration: more than one request
    prior = prompt.document.get("sampling", {}).get("calibration_prior")
    if prior and "answer_bias" in out:  # the fixed prior to divide out, as the evaluation did
        out["answer_bias"]["prior"] = prior
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


def _dspy_description(prompt: LoadedPrompt, name: str) -> str:
    """DSPy's placeholder ("${name}"), but the answer field says what an answer is (yes or
    no, an option's letter, a number): the part of the answer-format line DSPy can carry."""
    from promptopt.tasks.answer_format import answer_description

    described = answer_description(prompt.task) if name == "answer" else None
    return described or "${" + name + "}"


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
            "fields": [
                {"prefix": _dspy_prefix(n), "description": _dspy_description(prompt, n)}
                for n in inputs + outputs
            ],
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
