"""DSPy programs and promptopt candidates, both ways.

A single-predictor DSPy program (``dspy.Predict`` or ``dspy.ChainOfThought`` over the
task's ``<input fields> -> answer``) and a :class:`~promptopt.types.Candidate` share two
parts: the instruction (the signature's ``instructions``) and the demos. Demos become
``demo_ids`` of the task's demo pool (matched by the ``promptopt_id`` promptopt puts in
the examples it hands DSPy, else by identical input fields); a bootstrapped demo's
reasoning becomes that demo's worked solution (``demo_solutions``) when it differs from
the data's, and a demo without reasoning in a chain-of-thought program (DSPy's labelled
demos) keeps none (an empty solution: the answer only), so that the program rebuilt from
the candidate sends DSPy's requests again. A ``ChainOfThought`` program is few-shot chain
of thought when it has demos, else zero-shot. The parts DSPy does not have — answer-format
line, trigger, samples, temperature — come from ``base`` (or, for a file promptopt
exported, from the export's own record of them, so export then import gives back the
same candidate).

Reading a saved state needs no DSPy; building a program does (lazily).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptopt.errors import ConfigError, TaskError
from promptopt.types import Candidate, Example

if TYPE_CHECKING:
    from promptopt.tasks import Task

ID_FIELD = "promptopt_id"
ANSWER_FIELD = "answer"
REASONING_FIELD = "reasoning"
# DSPy's default instructions for a signature without any ("Given the fields `question`,
# produce the fields `answer`.") and the one promptopt's export writes for an empty one.
_DEFAULT_INSTRUCTION = re.compile(r"^Given the fields .+, produce the (fields .+|answer)\.$", re.DOTALL)


def signature_text(task: Task) -> str:
    """The DSPy signature of a task: its input fields -> answer."""
    return f"{', '.join(task.spec.input_fields)} -> {ANSWER_FIELD}"


def predictor_state(state: Mapping[str, Any], where: str) -> tuple[Mapping[str, Any], bool]:
    """The one predictor's state in a saved program, and whether it is a ChainOfThought."""
    if "signature" in state and "demos" in state:
        fields = state["signature"].get("fields", []) if isinstance(state["signature"], Mapping) else []
        cot = any(
            str(f.get("prefix", "")).strip().lower() == "reasoning:" for f in fields if isinstance(f, Mapping)
        )
        return state, cot
    found = [
        (key, value)
        for key, value in state.items()
        if isinstance(value, Mapping) and "signature" in value and "demos" in value
    ]
    if len(found) != 1:
        raise ConfigError(
            f"{where}: expected the state of one DSPy predictor (dspy.Predict or dspy.ChainOfThought), "
            f"found {len(found)} predictors" + (f" ({', '.join(k for k, _ in found)})" if found else "")
        )
    key, value = found[0]
    inner, cot = predictor_state(value, where)
    return inner, cot or key in ("predict", "predict.predict")


def _match_demo(demo: Mapping[str, Any], task: Task, index: dict[tuple[str, ...], str]) -> str | None:
    known = demo.get(ID_FIELD)
    if isinstance(known, str):
        try:
            task.demo(known)
            return known
        except TaskError:  # an id from another task: fall back to the text
            pass
    key = tuple(str(demo.get(f, "")).strip() for f in task.spec.input_fields)
    return index.get(key)


def candidate_from_state(
    state: Mapping[str, Any],
    task: Task | None = None,
    *,
    base: Candidate | None = None,
    where: str = "DSPy program",
    strict: bool = True,
) -> Candidate:
    """A candidate from a DSPy program state (``program.dump_state()`` or the JSON that
    ``program.save(path)`` writes). Demos need ``task`` (to find them in its demo pool);
    ``strict`` makes a demo that is not in the pool an error, else it is left out."""
    predict, cot = predictor_state(state, where)
    signature = predict.get("signature") or {}
    instruction = str(signature.get("instructions", "") if isinstance(signature, Mapping) else "").strip()
    meta = state.get("metadata", {}) if isinstance(state.get("metadata"), Mapping) else {}
    exported = meta.get("promptopt", {}) if isinstance(meta.get("promptopt"), Mapping) else {}
    if task is not None and base is None:
        base = Candidate(answer_format=task.spec.answer_format)
    base = base or Candidate()
    if _DEFAULT_INSTRUCTION.match(instruction):
        instruction = base.instruction
    changes: dict[str, Any] = {"instruction": instruction}
    kept = exported.get("not_carried_over", {})
    if isinstance(kept, Mapping):
        for name in ("answer_format", "cot_trigger", "samples", "temperature"):
            if name in kept:
                changes[name] = kept[name]
    demos = predict.get("demos") or []
    if not isinstance(demos, Sequence):
        raise ConfigError(f"{where}: 'demos' must be a list")
    demo_ids: list[str] = []
    solutions: list[tuple[str, str]] = []
    if demos:
        if task is None:
            raise ConfigError(f"{where}: the program has demos; name the task to find them in its demo pool")
        index = {
            tuple(e.inputs.get(f, "").strip() for f in task.spec.input_fields): e.id for e in task.demo_pool()
        }
        missing = []
        for position, demo in enumerate(demos):
            if not isinstance(demo, Mapping):
                raise ConfigError(f"{where}: demo {position} is not a mapping")
            demo_id = _match_demo(demo, task, index)
            if demo_id is None:
                missing.append(position)
                continue
            demo_ids.append(demo_id)
            reasoning = demo.get(REASONING_FIELD)
            reasoning = reasoning.strip() if isinstance(reasoning, str) else ""
            own = (task.demo(demo_id).solution or "").strip()
            if cot and reasoning != own:
                # a bootstrapped demo's reasoning; or none ("") for a labelled demo, which
                # DSPy shows with its answer only (and before the others)
                solutions.append((demo_id, reasoning))
        if missing and strict:
            raise ConfigError(
                f"{where}: demo(s) {', '.join(map(str, missing))} are not in task {task.name}'s demo pool",
                hint="pass strict=False to leave them out",
            )
    changes["demo_ids"] = tuple(demo_ids)
    changes["demo_solutions"] = tuple(solutions)
    if cot:
        changes["cot_mode"] = "few_shot" if demo_ids else "zero_shot"
        if (
            changes["cot_mode"] == "zero_shot"
            and not str(changes.get("cot_trigger", base.cot_trigger)).strip()
        ):
            changes["cot_trigger"] = "Let's think step by step."
    else:
        changes["cot_mode"] = "none"
    return dataclasses.replace(base, **changes)


def candidate_from_dspy(
    path: str | Path, task: Task | str | None = None, *, base: Candidate | None = None, strict: bool = True
) -> Candidate:
    """A starting candidate from a saved DSPy predictor (``dspy.Predict(...).save(path)``,
    ``dspy.ChainOfThought``, or promptopt's own ``export --format dspy``). ``task`` (a
    Task or its name) is needed when the program has demos."""
    file = Path(path).expanduser()
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the DSPy program ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{file}:{exc.lineno}: not a DSPy program state (invalid JSON: {exc.msg})"
        ) from None
    if not isinstance(state, Mapping):
        raise ConfigError(f"{file}: not a DSPy program state (expected a JSON object)")
    if isinstance(task, str):
        from promptopt.tasks import get_task

        task = get_task(task)
    return candidate_from_state(state, task, base=base, where=str(file), strict=strict)


def dspy_example(example: Example, task: Task) -> Any:
    """A task example as a ``dspy.Example`` (inputs, the answer, and its promptopt id)."""
    from promptopt.dspy_interop._env import import_dspy

    dspy = import_dspy()
    values = {**{f: example.inputs.get(f, "") for f in task.spec.input_fields}}
    return dspy.Example(**values, **{ANSWER_FIELD: task.target(example), ID_FIELD: example.id}).with_inputs(
        *task.spec.input_fields
    )


def _scored(task: Task, example: Example, answer: Any) -> Any:
    """The task metric's result for a prediction's answer field, read as promptopt reads
    a model's output (``task.predict`` with the item: an answer that quotes an option's
    text is that option), or None when there is no answer. The one scoring rule of the
    DSPy metrics, so that DSPy selects on what it is tested on and both score as
    promptopt's own entries do."""
    if answer is None or not str(answer).strip():
        return None
    return task.metric.score(example, task.predict(str(answer), example=example))


def answer_metric(task: Task, by_id: Mapping[str, Example]) -> Any:
    """A DSPy metric (``metric(example, prediction, trace=None)``) that scores a
    prediction's answer the task's way (:func:`_scored`) against the promptopt example
    that ``example.promptopt_id`` names in ``by_id``; no answer scores 0."""

    def score(example: Any, prediction: Any, trace: Any = None, *args: Any, **kwargs: Any) -> float:
        result = _scored(task, by_id[example.promptopt_id], getattr(prediction, ANSWER_FIELD, None))
        return float(result.score or 0.0) if result is not None else 0.0

    return score


def feedback_metric(task: Task, by_id: Mapping[str, Example]) -> Any:
    """A DSPy metric that returns the task metric's feedback with its score, in the form
    ``dspy.GEPA`` reads: ``metric(gold, pred, trace=None, pred_name=None, pred_trace=None)``
    gives ``dspy.Prediction(score=..., feedback=...)``. The score is :func:`answer_metric`'s
    (the prediction's answer field, read and scored by the task's metric); the
    feedback is the metric's :class:`~promptopt.metrics.MetricResult` feedback, and where
    a metric gives none, the expected answer against the one read. A prediction without
    an answer field (DSPy could not parse the reply) is feedback too."""
    from promptopt.dspy_interop._env import import_dspy

    dspy = import_dspy()

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        example = by_id[gold.promptopt_id]
        answer = getattr(pred, ANSWER_FIELD, None)
        result = _scored(task, example, answer)
        if result is None:
            return dspy.Prediction(score=0.0, feedback="No final answer: the reply had no answer field.")
        score = float(result.score or 0.0)
        feedback = result.feedback.strip()
        if not feedback:
            target = task.target(example)
            feedback = "Correct." if score >= 1.0 else f"Expected {target!r}, answered {str(answer)[:200]!r}."
        return dspy.Prediction(score=score, feedback=feedback)

    return metric


def program_from_candidate(
    candidate: Candidate, task: Task, *, chain_of_thought: bool | None = None, describe_answer: bool = False
) -> Any:
    """The DSPy program of a candidate: ``dspy.ChainOfThought`` when it uses chain of
    thought (else ``dspy.Predict``) over the task's signature, with its instruction and
    demos (worked solutions as the demos' reasoning). ``describe_answer``: the answer
    field says what an answer is (:func:`answer_description`), as the student a DSPy
    optimizer starts from (promptopt's answer-format line has no place in DSPy's layout);
    off, a program read from DSPy is rebuilt exactly."""
    from promptopt.dspy_interop._env import import_dspy
    from promptopt.prompt import demo_solution
    from promptopt.tasks.answer_format import answer_description

    if candidate.similar_demos:
        raise ConfigError(
            f"candidate {candidate.hash} picks its {candidate.similar_demos} demos per question (the "
            "demo-pool items most similar to it): a DSPy program holds fixed demos and cannot carry that choice",
            hint="start from a candidate with fixed demos (demo_ids)",
        )

    dspy = import_dspy()
    cot = candidate.cot_mode != "none" if chain_of_thought is None else chain_of_thought
    signature = dspy.Signature(signature_text(task))
    described = answer_description(task) if describe_answer else None
    if described is not None:
        signature = signature.with_updated_fields(ANSWER_FIELD, desc=described)
    if candidate.instruction.strip():
        signature = signature.with_instructions(candidate.instruction.strip())
    program = dspy.ChainOfThought(signature) if cot else dspy.Predict(signature)
    demos = []
    for demo_id in candidate.demo_ids:
        demo = task.demo(demo_id)
        entry = dspy_example(demo, task)
        solution = demo_solution(candidate, demo)
        if cot and solution:
            entry = entry.copy(**{REASONING_FIELD: solution})
        demos.append(entry)
    predictor = program.predict if hasattr(program, "predict") else program
    predictor.demos = demos
    return program
