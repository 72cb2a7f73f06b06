"""Calibrated answers: score every label after the prompt, divide the prior out.

Each item gets one label-scoring request (the log-probability of
``"So the answer is <label>"`` as the start of the model's answer, for each label the
item allows). The prior comes from (see :mod:`promptopt.bias.calibration`):

- ``contextual``: the same prompt on :data:`CONTENT_FREE` inputs, 3 more requests per
  candidate (once per executor: kept in ``Executor.bias_priors``);
- ``batch``: the items scored together (the examples of this candidate in one executor
  call) that allow the same labels, no more requests;
- ``position`` (multiple choice): :data:`POSITION_ITEMS` dev items under every cyclic
  shift of their options, ``POSITION_ITEMS × options`` more requests per candidate and
  option count (once per executor, like ``contextual``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from promptopt.backends.scoring import LabelScoringError, read_scores
from promptopt.bias import calibration as cal
from promptopt.errors import ConfigError, PromptOptError
from promptopt.prompt import render_messages
from promptopt.types import Candidate, Completion, EvalResult, Example, GenerationRequest, SampleResult

if TYPE_CHECKING:
    from promptopt.executor import BatchCallback, Executor
    from promptopt.tasks import Task

ANSWER_LEAD = "So the answer is"
CONTENT_FREE = ("N/A", "", "[MASK]")
POSITION_ITEMS = 4
Labels = list[tuple[str, str]]  # (text scored after the prompt, the answer it means)


def letter_labels(task: Task, example: Example) -> Labels:
    """``("So the answer is (A)", "(A)")`` for each option the item lists, the answer as
    the task's extractor reads it (``(a)`` on a task whose answers are read as labels)."""
    labels: Labels = []
    for letter in task.options(example):
        text = f"{ANSWER_LEAD} ({letter})"
        labels.append((text, task.extract(f"{text}.") or f"({letter})"))
    return labels


def task_labels(task: Task) -> Labels:
    """The task's answer set, spelled as its data spells it, each with the answer the
    task's extractor reads from it. Raises when the task has no small answer set."""
    from promptopt.tasks.answer_format import gold_words

    if task.labels is None:
        raise ConfigError(
            f"calibration needs a task with a small answer set; {task.name} has free-form answers"
        )
    labels: Labels = []
    seen: set[str] = set()
    for word in gold_words(task) or task.labels:
        answer = task.extract(f"{ANSWER_LEAD} {word}.")
        if answer is not None and answer not in seen:
            seen.add(answer)
            labels.append((f"{ANSWER_LEAD} {word}", answer))
    if len(labels) < 2:
        raise ConfigError(f"calibration: the answers of {task.name} could not be told apart as labels")
    return labels


def item_labels(task: Task, example: Example) -> Labels:
    """The labels an item allows: its options' letters for multiple choice, else the task's."""
    if task.extractor_name == "choice":
        own = letter_labels(task, example)
        if own:
            return own
    return task_labels(task)


def score_requests(
    executor: Executor, jobs: Sequence[tuple[Candidate, Example, Labels]]
) -> list[tuple[dict[str, float] | None, Completion]]:
    """Label log-probabilities (answer -> log-probability) for each (candidate, item,
    labels), through the executor's backend (so cached and charged), ``None`` where the
    request failed."""
    backend = executor.backend
    if jobs and not backend.can_score_labels():
        raise LabelScoringError(
            f"backend {backend.model_id} cannot give label log-probabilities",
            hint="calibration needs the transformers engine, an "
            "OpenAI-compatible server that returns logprobs, or the fake backend",
        )
    requests = [
        GenerationRequest(
            messages=render_messages(candidate, executor.task, example),
            temperature=0.0,
            max_tokens=1,
            score_labels=tuple(text for text, _ in labels),
        )
        for candidate, example, labels in jobs
    ]
    completions: list[Completion] = []
    while len(completions) < len(requests):
        size = executor._request_limit()
        part = requests[len(completions) : len(completions) + size]
        answered = executor.backend.generate(part)
        if executor.on_answers is not None:
            executor.on_answers(len(answered))
        completions.extend(answered)
    out: list[tuple[dict[str, float] | None, Completion]] = []
    for (_, _, labels), completion in zip(jobs, completions, strict=True):
        if not completion.ok:
            out.append((None, completion))
            continue
        try:
            raw = read_scores(completion)
            out.append(({answer: raw[text] for text, answer in labels}, completion))
        except (ValueError, KeyError) as exc:
            out.append((None, dataclasses.replace(completion, error=f"unreadable label scores: {exc}")))
    return out


def evaluate_calibrated(
    executor: Executor, pairs: Sequence[tuple[Candidate, Example]], split: str, on_batch: BatchCallback | None
) -> list[EvalResult]:
    """Calibrated answers, one candidate's items at a time (its batch for ``batch``)."""
    results: dict[int, EvalResult] = {}
    by_candidate: dict[str, list[int]] = {}
    for i, (candidate, _) in enumerate(pairs):
        by_candidate.setdefault(candidate.hash, []).append(i)
    for indices in by_candidate.values():
        candidate = pairs[indices[0]][0]
        examples = [pairs[i][1] for i in indices]
        done = _calibrate_candidate(executor, candidate, examples, split)
        if on_batch is not None:
            on_batch(done)
        results.update(zip(indices, done, strict=True))
    return [results[i] for i in range(len(pairs))]


Priors = dict[tuple[str, ...] | None, dict[str, float]]  # by label set (None: any item's)


def _prior_for(
    executor: Executor,
    candidate: Candidate,
    examples: Sequence[Example],
    scored: Sequence[dict[str, float] | None],
) -> tuple[Priors, dict[int, list[float]]]:
    """The label priors (contextual: one for every item; batch: one per label set) or the
    position priors by option count."""
    task = executor.task
    kind = candidate.calibration
    if kind == "raw":  # the label scores as they are
        return {}, {}
    if kind == "batch":
        return _batch_priors(executor, scored), {}
    if kind == "contextual":
        if task.extractor_name == "choice":  # the letters any of the task's or these items lists
            labels = sorted(_task_letters(executor).union(*(item_labels(task, e) for e in examples)))
        else:
            labels = task_labels(task)
        key = (candidate.hash, "contextual", tuple(labels))
        if key not in executor.bias_priors:  # once per candidate and label set, not per call
            free = [
                Example(id=f"content-free-{n}", inputs={f: text for f in task.spec.input_fields}, target="")
                for n, text in enumerate(CONTENT_FREE)
            ]
            got = score_requests(executor, [(candidate, e, labels) for e in free])
            executor.bias_priors[key] = cal.contextual_prior([s for s, _ in got if s])
        return {None: executor.bias_priors[key]}, {}
    return {}, _position_priors(executor, candidate, examples)


def _task_letters(executor: Executor) -> set[tuple[str, str]]:
    """The option labels any of the task's dev and test items lists, read once per executor."""
    key = ("task letters",)
    if key not in executor.bias_priors:
        task = executor.task
        executor.bias_priors[key] = {label for e in split_items(task) for label in item_labels(task, e)}
    letters: set[tuple[str, str]] = executor.bias_priors[key]
    return letters


def split_items(task: Task) -> list[Example]:
    """The task's dev and test items (none for a prompt loaded without its data), so that a
    candidate's content-free labels are the same whichever items an evaluation holds."""
    items: list[Example] = []
    for split in ("dev", "test"):
        try:
            items.extend(task.examples(split))
        except PromptOptError:
            continue
    return items


def _batch_priors(executor: Executor, scored: Sequence[dict[str, float] | None]) -> Priors:
    """Batch calibration's prior for each label set among the scored items, from the items
    with that set: a mean over items with more options would give their letters less mass
    and push every item toward them. An item whose label set no other item shares is
    answered uncalibrated (its own distribution as its prior would flatten it)."""
    groups: dict[tuple[str, ...], list[dict[str, float]]] = {}
    for scores in scored:
        if scores:
            groups.setdefault(tuple(scores), []).append(scores)
    if any(len(group) < 2 for group in groups.values()):
        from promptopt.bias.notes import note_once

        note_once(
            executor,
            "batch-of-one",
            "calibration batch: an item whose set of labels no other item in its batch has (a batch of one "
            "item, or its only item with that many options) is answered uncalibrated",
        )
    return {labels: cal.batch_prior(group) for labels, group in groups.items() if len(group) >= 2}


def _position_priors(
    executor: Executor, candidate: Candidate, examples: Sequence[Example]
) -> dict[int, list[float]]:
    """PriDe's position prior for each option count among ``examples``, estimated on
    :data:`POSITION_ITEMS` dev items with that many options (the evaluated items when dev
    has too few), each under every cyclic shift."""
    from promptopt.bias.permute import OptionsBlock, find_options, orderings, permuted_example

    task = executor.task
    if task.extractor_name != "choice":
        raise ConfigError(f"calibration position is for multiple-choice tasks; {task.name} is not one")
    try:
        pool = task.examples("dev")
    except PromptOptError:
        pool = []
    dev_ids = {e.id for e in pool}
    priors: dict[int, list[float]] = {}
    needed = sorted({len(block.lines) for e in examples if (block := find_options(e)[0]) is not None})
    for n in needed:
        key = (candidate.hash, "position", n)
        if key in executor.bias_priors:  # once per candidate and option count, not per call
            priors[n] = list(executor.bias_priors[key])
            continue
        chosen: list[tuple[Example, OptionsBlock]] = []
        for source in (pool, examples):
            for e in source:
                found = find_options(e)[0]
                if found is not None and len(found.lines) == n and len(chosen) < POSITION_ITEMS:
                    chosen.append((e, found))
            if len(chosen) >= POSITION_ITEMS:
                break
        jobs = []
        for e, options in chosen:
            for j, order in enumerate(orderings(n, n, seed="")):
                variant = permuted_example(e, options, order, j)
                jobs.append((candidate, variant, letter_labels(task, variant)))
        got = score_requests(executor, jobs)
        rows = [list(s.values()) if s else None for s, _ in got]
        items = [rows[k * n : (k + 1) * n] for k in range(len(chosen))]
        priors[n] = cal.position_prior([[r for r in item if r] for item in items if all(item)])
        if all(e.id in dev_ids for e, _ in chosen):  # from the evaluated items, it depends on the call
            executor.bias_priors[key] = priors[n]
    return priors


def _calibrate_candidate(
    executor: Executor, candidate: Candidate, examples: Sequence[Example], split: str
) -> list[EvalResult]:
    task = executor.task
    labelled = [item_labels(task, e) for e in examples]
    got = score_requests(executor, list(zip([candidate] * len(examples), examples, labelled, strict=True)))
    scored = [s for s, _ in got]
    priors, positions = _prior_for(executor, candidate, examples, scored)
    answers: list[str | None] = []
    shown: list[str] = []
    for example, scores in zip(examples, scored, strict=True):
        if scores is None:
            answers.append(None)
            shown.append("")
            continue
        if candidate.calibration == "position":
            # an item whose options block cannot be read has no positions: left uncalibrated
            prior_n = positions.get(len(scores)) if task.options(example) else None
            values = (
                cal.calibrate_positions(list(scores.values()), prior_n)
                if prior_n
                else list(cal.log_normalize(scores).values())
            )
            calibrated = dict(zip(scores, values, strict=True))
        else:
            prior = priors.get(tuple(scores), priors.get(None, {}))
            calibrated = cal.calibrate(scores, {k: v for k, v in prior.items() if k in scores})
        answer = cal.best_label(calibrated)
        answers.append(answer)
        raw = " · ".join(f"{k} {v:.2f}" for k, v in cal.log_normalize(scores).items())
        after = " · ".join(f"{k} {v:.2f}" for k, v in calibrated.items())
        calibrated_part = (
            "" if candidate.calibration == "raw" else f" {candidate.calibration}-calibrated: {after};"
        )
        shown.append(f"label log-probs: {raw};{calibrated_part} {ANSWER_LEAD} {answer}.")
    from promptopt.metrics.base import Prediction

    asked = [i for i, a in enumerate(answers) if a is not None]
    metric = task.score_predictions([(examples[i], Prediction(shown[i], answers[i])) for i in asked])
    judged = dict(zip(asked, metric, strict=True))
    results: list[EvalResult] = []
    for i, (example, (_, completion)) in enumerate(zip(examples, got, strict=True)):
        result = judged.get(i)
        score = result.score if result is not None and not result.failed else None
        error = completion.error or (
            f"metric: {result.feedback}" if result is not None and result.failed else None
        )
        sample = SampleResult(
            sample_index=0,
            raw_output=shown[i],
            parsed_answer=answers[i],
            score=score,
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
            latency_s=completion.latency_s,
            cached=completion.cached and completion.ok,
            error=error,
            finish_reason=completion.finish_reason,
            feedback=result.feedback if result is not None else None,
        )
        results.append(
            EvalResult(
                candidate_hash=candidate.hash,
                example_id=example.id,
                split=split,
                answer=answers[i],
                gold=task.target(example),
                score=score,
                samples=(sample,),
                error=error,
                feedback=(result.feedback or None) if result is not None else None,
            )
        )
    return results
