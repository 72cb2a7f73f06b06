"""Calibrated answers: score every label after the prompt, divide the prior out.

Each item gets one label-scoring request (the log-probability of
``"So the answer is <label>"`` as the start of the model's answer, for each label the
item allows); with ``permute`` k, one for each of its k option orderings, averaged.
The prior comes from (see :mod:`promptopt.bias.calibration`):

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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from promptopt.backends.scoring import LabelScoringError, read_scores
from promptopt.bias import calibration as cal
from promptopt.errors import ConfigError, PromptOptError
from promptopt.prompt import render_messages
from promptopt.types import Candidate, Completion, EvalResult, Example, GenerationRequest, SampleResult

if TYPE_CHECKING:
    from promptopt.backends.base import Backend
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


def check_label_scoring(backend: Backend) -> None:
    """Raise :class:`LabelScoringError` when ``backend`` gives no label log-probabilities."""
    if not backend.can_score_labels():
        raise LabelScoringError(
            f"backend {backend.model_id} cannot give label log-probabilities",
            hint="calibration needs the transformers engine, an "
            "OpenAI-compatible server that returns logprobs, or the fake backend",
        )


def score_requests(
    executor: Executor, jobs: Sequence[tuple[Candidate, Example, Labels]], *, answers: bool = True
) -> list[tuple[dict[str, float] | None, Completion]]:
    """Label log-probabilities (answer -> log-probability) for each (candidate, item,
    labels), through the executor's backend (so cached and charged), ``None`` where the
    request failed. ``answers=False``: requests that answer no item (a prior's, a
    tie-break's), which the executor's ``on_answers`` display does not count."""
    if jobs:
        check_label_scoring(executor.backend)
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
        if answers and executor.on_answers is not None:
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
    owners: Sequence[int] | None = None,
) -> tuple[Priors, dict[int, list[float]]]:
    """The label priors (contextual: one for every item; batch: one per label set) or the
    position priors by option count."""
    task = executor.task
    kind = candidate.calibration
    if kind == "raw":  # the label scores as they are
        return {}, {}
    if kind == "batch":
        return _batch_priors(executor, scored, owners), {}
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
            got = score_requests(executor, [(candidate, e, labels) for e in free], answers=False)
            prior = cal.contextual_prior([s for s, _ in got if s])
            if not all(s for s, _ in got):  # a failed request: this call's prior, not kept
                return {None: prior}, {}
            executor.bias_priors[key] = prior
        return {None: executor.bias_priors[key]}, {}
    return {}, _position_priors(executor, candidate, examples)


def fixed_priors(executor: Executor, candidate: Candidate) -> dict[str, object]:
    """The priors a ``contextual`` or ``position`` calibration of ``candidate`` (with
    ``permute``: of its orderings' plain candidate) holds in ``executor`` as plain data:
    ``{"contextual": [[label text, answer, prior], ...]}`` or ``{"position": {"4": [...]}}``
    for each option count whose prior came from dev items (one from the evaluated items
    depends on the call and is not kept). What an export carries."""
    plain = dataclasses.replace(candidate, permute=1)
    out: dict[str, object] = {}
    positions: dict[str, list[float]] = {}
    for key, value in executor.bias_priors.items():
        if key[0] != plain.hash or not value:
            continue
        if key[1] == "contextual":
            out["contextual"] = [[text, answer, value[answer]] for text, answer in key[2] if answer in value]
        elif key[1] == "position":
            positions[str(key[2])] = list(value)
    if positions:
        out["position"] = positions
    return out


def keep_fixed_priors(executor: Executor, candidate: Candidate, priors: Mapping[str, object]) -> None:
    """Put :func:`fixed_priors`' data back into ``executor``, where the calibration looks
    for a prior before it asks the model for one."""
    plain = dataclasses.replace(candidate, permute=1)
    contextual = priors.get("contextual")
    if isinstance(contextual, list) and contextual:
        labels = tuple((str(text), str(answer)) for text, answer, _ in contextual)
        executor.bias_priors[(plain.hash, "contextual", labels)] = {
            str(answer): float(value) for _, answer, value in contextual
        }
        if executor.task.extractor_name == "choice":  # the letters of the task's items, which it has not
            executor.bias_priors.setdefault(("task letters",), set(labels))
    position = priors.get("position")
    if isinstance(position, Mapping):
        for count, values in position.items():
            executor.bias_priors[(plain.hash, "position", int(count))] = [float(v) for v in values]


def estimate_fixed_priors(executor: Executor, candidate: Candidate) -> None:
    """Estimate ``candidate``'s ``contextual`` prior, or its ``position`` prior for each
    option count of the task's dev items, into ``executor`` as an evaluation of the
    task's items would (the same requests), without scoring any item."""
    plain = dataclasses.replace(candidate, permute=1)
    if plain.calibration == "contextual":
        _prior_for(executor, plain, split_items(executor.task), [])
    elif plain.calibration == "position":
        try:
            dev = executor.task.examples("dev")
        except PromptOptError:
            return
        from promptopt.bias.permute import find_options

        by_count: dict[int, list[Example]] = {}
        for e in dev:
            block = find_options(e)[0]
            if block is not None:
                by_count.setdefault(len(block.lines), []).append(e)
        for items in by_count.values():  # a count with too few dev items takes evaluated ones: none here
            if len(items) >= POSITION_ITEMS:
                _position_priors(executor, plain, items[:1])


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


def _batch_priors(
    executor: Executor, scored: Sequence[dict[str, float] | None], owners: Sequence[int] | None = None
) -> Priors:
    """Batch calibration's prior for each label set among the scored items, from the items
    with that set: a mean over items with more options would give their letters less mass
    and push every item toward them. An item whose label set no other item shares is
    answered uncalibrated (its own distribution as its prior would flatten it). ``owners``:
    the item each score belongs to, when an item's option orderings are scored as several
    (with ``permute``): its orderings alone are no batch."""
    groups: dict[tuple[str, ...], list[dict[str, float]]] = {}
    items: dict[tuple[str, ...], set[int]] = {}
    for i, scores in enumerate(scored):
        if scores:
            groups.setdefault(tuple(scores), []).append(scores)
            items.setdefault(tuple(scores), set()).add(owners[i] if owners is not None else i)
    if any(len(group) < 2 for group in items.values()):
        from promptopt.bias.notes import note_once

        note_once(
            executor,
            "batch-of-one",
            "calibration batch: an item whose set of labels no other item in its batch has (a batch of one "
            "item, or its only item with that many options) is answered uncalibrated",
        )
    return {labels: cal.batch_prior(group) for labels, group in groups.items() if len(items[labels]) >= 2}


def _position_priors(
    executor: Executor, candidate: Candidate, examples: Sequence[Example]
) -> dict[int, list[float]]:
    """PriDe's position prior for each option count among ``examples``, estimated on
    :data:`POSITION_ITEMS` dev items with that many options (the evaluated items when dev
    has too few), each under every cyclic shift."""
    from promptopt.bias.permute import PERMUTED_ID, OptionsBlock, find_options, orderings, permuted_example

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
        seen: set[str] = set()  # an item once, not each of its orderings (permute): their shifts are one set
        for source in (pool, examples):
            for e in source:
                found = find_options(e)[0]
                base = e.id.split(PERMUTED_ID)[0]
                if (
                    found is not None
                    and len(found.lines) == n
                    and len(chosen) < POSITION_ITEMS
                    and base not in seen
                ):
                    chosen.append((e, found))
                    seen.add(base)
            if len(chosen) >= POSITION_ITEMS:
                break
        jobs = []
        for e, options in chosen:
            for j, order in enumerate(orderings(n, n, seed="")):
                variant = permuted_example(e, options, order, j)
                jobs.append((candidate, variant, letter_labels(task, variant)))
        got = score_requests(executor, jobs, answers=False)
        rows = [list(s.values()) if s else None for s, _ in got]
        items = [rows[k * n : (k + 1) * n] for k in range(len(chosen))]
        priors[n] = cal.position_prior([[r for r in item if r] for item in items if all(item)])
        # kept when it came from dev items alone (from the evaluated items it depends on the
        # call) and no request failed (a prior from fewer items is this call's only)
        if all(e.id in dev_ids for e, _ in chosen) and all(s for s, _ in got):
            executor.bias_priors[key] = priors[n]
    return priors


def _calibrated_scores(
    executor: Executor, candidate: Candidate, examples: Sequence[Example], owners: Sequence[int] | None = None
) -> tuple[list[dict[str, float] | None], list[dict[str, float] | None], list[Completion]]:
    """Each item's label log-probabilities as scored and with the prior divided out
    (``None`` where its scoring request failed), and the scoring calls; ``owners``: the
    original item of each of ``examples`` when they are orderings of fewer items."""
    task = executor.task
    labelled = [item_labels(task, e) for e in examples]
    got = score_requests(executor, list(zip([candidate] * len(examples), examples, labelled, strict=True)))
    scored = [s for s, _ in got]
    priors, positions = _prior_for(executor, candidate, examples, scored, owners)
    calibrated: list[dict[str, float] | None] = []
    for example, scores in zip(examples, scored, strict=True):
        if scores is None:
            calibrated.append(None)
        elif candidate.calibration == "position":
            # an item whose options block cannot be read has no positions: left uncalibrated
            prior_n = positions.get(len(scores)) if task.options(example) else None
            values = (
                cal.calibrate_positions(list(scores.values()), prior_n)
                if prior_n
                else list(cal.log_normalize(scores).values())
            )
            calibrated.append(dict(zip(scores, values, strict=True)))
        else:
            prior = priors.get(tuple(scores), priors.get(None, {}))
            calibrated.append(cal.calibrate(scores, {k: v for k, v in prior.items() if k in scores}))
    return scored, calibrated, [c for _, c in got]


def scores_text(scores: Mapping[str, float]) -> str:
    """``(A) -0.51 · (B) -0.92``: label scores as an output shows them."""
    return " · ".join(f"{k} {v:.2f}" for k, v in scores.items())


def _shown(candidate: Candidate, scores: dict[str, float], calibrated: dict[str, float]) -> str:
    return f"label log-probs: {scores_text(cal.log_normalize(scores))};" + (
        ""
        if candidate.calibration == "raw"
        else f" {candidate.calibration}-calibrated: {scores_text(calibrated)};"
    )


def _answers(
    executor: Executor, candidate: Candidate, examples: Sequence[Example]
) -> tuple[list[str | None], list[str], list[Completion]]:
    """Each item's answer, the text that shows how it was read, and its scoring call."""
    scored, calibrated, completions = _calibrated_scores(executor, candidate, examples)
    answers: list[str | None] = []
    shown: list[str] = []
    for scores, after in zip(scored, calibrated, strict=True):
        if scores is None or after is None:
            answers.append(None)
            shown.append("")
            continue
        answers.append(cal.best_label(after))
        shown.append(f"{_shown(candidate, scores, after)} {ANSWER_LEAD} {answers[-1]}.")
    return answers, shown, completions


def _permuted_answers(
    executor: Executor, candidate: Candidate, examples: Sequence[Example]
) -> tuple[list[str | None], list[str], list[Completion]]:
    """With ``permute`` k: each item's label scores under its k orderings, each calibrated,
    mapped back to the original letters and averaged (:func:`calibration.average_orderings`);
    with ``batch``, the batch's mean averaged distribution over the original letters is
    then divided out too (averaging cancels the lean on a position, not a lean on an
    option's content, which the original letters follow: BBH lists an option kind at one
    letter). An item's calls are merged into one (their tokens and time added), and it
    fails when one of its orderings failed."""
    from promptopt.bias.permute import expand, map_letters

    plain = dataclasses.replace(candidate, permute=1)  # each ordering is the plain candidate's request
    items = [expand(executor, candidate, e) for e in examples]
    variants = [v for item in items for v in item.variants]
    owners = [n for n, item in enumerate(items) for _ in item.variants]
    scored, calibrated, completions = _calibrated_scores(executor, plain, variants, owners)
    merged: list[Completion] = []
    averages: list[dict[str, float] | None] = []
    lines: list[list[str]] = []
    at = 0
    for item in items:
        span = range(at, at + len(item.variants))
        at += len(item.variants)
        calls = [completions[j] for j in span]
        failed = next((c for c in calls if not c.ok), None)
        merged.append(
            Completion(
                text="", tokens_in=sum(c.tokens_in for c in calls), tokens_out=sum(c.tokens_out for c in calls),
                latency_s=sum(c.latency_s for c in calls), cached=all(c.cached for c in calls),
                error=failed.error if failed else None, finish_reason=calls[-1].finish_reason,
            )
        )  # fmt: skip
        got = [(scored[j], calibrated[j]) for j in span]
        if failed is not None or any(raw is None or after is None for raw, after in got):
            averages.append(None)
            lines.append([])
            continue
        lines.append(
            [f"ordering {n}: {_shown(plain, raw or {}, after or {})}" for n, (raw, after) in enumerate(got)]
        )
        average = cal.average_orderings(
            [
                {map_letters(k, back) or k: v for k, v in (after or {}).items()}
                for back, (_, after) in zip(item.back, got, strict=True)
            ]
        )
        averages.append(average)
        if len(span) > 1:  # an item without options has its one ordering's line
            lines[-1].append(f"mean over {len(span)} orderings (original letters): {scores_text(average)};")
    if candidate.calibration == "batch":  # the batch's lean on the original letters, divided out
        permuted = [n for n, item in enumerate(items) if len(item.variants) > 1]  # one ordering: done above
        priors = _batch_priors(executor, [averages[n] for n in permuted])
        for n in permuted:
            mean = averages[n]
            if mean is not None and tuple(mean) in priors:
                mean = averages[n] = cal.calibrate(mean, priors[tuple(mean)])
                lines[n].append(f"mean batch-calibrated: {scores_text(mean)};")
    answers: list[str | None] = []
    shown: list[str] = []
    for mean, text in zip(averages, lines, strict=True):
        answers.append(cal.best_label(mean) if mean is not None else None)
        shown.append("\n".join(text) + f" {ANSWER_LEAD} {answers[-1]}." if mean is not None else "")
    return answers, shown, merged


def _calibrate_candidate(
    executor: Executor, candidate: Candidate, examples: Sequence[Example], split: str
) -> list[EvalResult]:
    task = executor.task
    if candidate.permute > 1:
        answers, shown, completions = _permuted_answers(executor, candidate, examples)
    else:
        answers, shown, completions = _answers(executor, candidate, examples)
    from promptopt.metrics.base import Prediction

    asked = [i for i, a in enumerate(answers) if a is not None]
    metric = task.score_predictions([(examples[i], Prediction(shown[i], answers[i])) for i in asked])
    judged = dict(zip(asked, metric, strict=True))
    results: list[EvalResult] = []
    for i, (example, completion) in enumerate(zip(examples, completions, strict=True)):
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
