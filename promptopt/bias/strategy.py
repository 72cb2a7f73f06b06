"""The answer-bias strategies as the executor runs them (see :mod:`promptopt.bias`).

:func:`evaluate_with_strategies` takes the (candidate, example) pairs the executor was
given: plain ones go the usual way, permuted ones are expanded into one pair per
ordering (an ordinary candidate on a reordered item, so caching, budgets and resume work
as for any request), calibrated ones are answered from label scores
(:mod:`promptopt.bias.labels`). Results come back in the order of the pairs, and are
handed to ``on_batch`` whole: an item is stored once all its orderings are answered.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from promptopt.bias.permute import PermutedItem, expand, map_letters
from promptopt.types import Candidate, EvalResult, Example, SampleResult

if TYPE_CHECKING:
    from promptopt.executor import BatchCallback, Executor


Pair = tuple[Candidate, Example]


def uses_strategy(candidate: Candidate) -> bool:
    return candidate.permute > 1 or candidate.calibration != "none"


def evaluate_with_strategies(
    executor: Executor, pairs: Sequence[Pair], split: str, on_batch: BatchCallback | None
) -> list[EvalResult]:
    """Evaluate ``pairs`` of any mix of plain, permuted and calibrated candidates."""
    from promptopt.bias.labels import evaluate_calibrated

    results: list[EvalResult | None] = [None] * len(pairs)
    plain = [i for i, (c, _) in enumerate(pairs) if not uses_strategy(c)]
    permuted = [i for i, (c, _) in enumerate(pairs) if c.permute > 1 and c.calibration == "none"]
    calibrated = [i for i, (c, _) in enumerate(pairs) if c.calibration != "none"]
    if plain:
        for i, r in zip(
            plain, executor.evaluate_plain([pairs[i] for i in plain], split, on_batch=on_batch), strict=True
        ):
            results[i] = r
    if permuted:
        done = evaluate_permuted(executor, [pairs[i] for i in permuted], split, on_batch)
        for i, r in zip(permuted, done, strict=True):
            results[i] = r
    if calibrated:
        done = evaluate_calibrated(executor, [pairs[i] for i in calibrated], split, on_batch)
        for i, r in zip(calibrated, done, strict=True):
            results[i] = r
    return [r for r in results if r is not None]


def evaluate_permuted(
    executor: Executor, pairs: Sequence[Pair], split: str, on_batch: BatchCallback | None
) -> list[EvalResult]:
    """Every ordering of every item through the plain executor, items whole per call."""
    items = [expand(executor, c, e) for c, e in pairs]
    results: list[EvalResult] = []
    index = 0
    while index < len(items):
        limit = executor._request_limit()
        chunk: list[PermutedItem] = []
        size = 0
        while index < len(items):
            cost = len(items[index].variants) * items[index].candidate.samples
            if chunk and size + cost > limit:
                break
            chunk.append(items[index])
            size += cost
            index += 1
        variant_pairs = [
            (dataclasses.replace(item.candidate, permute=1), variant)
            for item in chunk
            for variant in item.variants
        ]
        inner = executor.evaluate_plain(variant_pairs, split, chunked=False)
        merged: list[EvalResult] = []
        at = 0
        for item in chunk:
            merged.append(merge_orderings(executor, item, inner[at : at + len(item.variants)], split))
            at += len(item.variants)
        if on_batch is not None:
            on_batch(merged)
        results.extend(merged)
    return results


def merge_orderings(
    executor: Executor, item: PermutedItem, inner: Sequence[EvalResult], split: str
) -> EvalResult:
    """One result from an item's orderings: answers mapped back to the original letters,
    the majority voted (ties: the permutation-averaged label score where the backend
    gives log-probabilities, else the first ordering's answer)."""
    samples: list[SampleResult] = []
    for back, result in zip(item.back, inner, strict=True):
        for sample in result.samples:
            samples.append(
                dataclasses.replace(
                    sample, sample_index=len(samples), parsed_answer=map_letters(sample.parsed_answer, back)
                )
            )
    good = [s for s in samples if s.error is None]
    answers = [s.parsed_answer for s in good if s.parsed_answer is not None]
    counts = Counter(answers)
    answer: str | None = None
    if counts:
        top = max(counts.values())
        tied = [a for a in dict.fromkeys(answers) if counts[a] == top]
        answer = tied[0]
        if len(tied) > 1 and len(item.variants) > 1 and executor.backend.can_score_labels():
            broken, scoring = break_tie(executor, item, tied)
            answer = broken or answer
            # kept with the item's samples (no answer of their own): their calls and tokens count
            first = len(samples)  # numbered on from the item's samples, without gaps
            samples.extend(dataclasses.replace(s, sample_index=first + i) for i, s in enumerate(scoring))
    chosen = next((s for s in good if s.parsed_answer == answer), good[0] if good else None)
    return EvalResult(
        candidate_hash=item.candidate.hash,
        example_id=item.example.id,
        split=split,
        answer=answer,
        gold=executor.task.target(item.example),
        score=chosen.score if chosen is not None else None,
        samples=tuple(samples),
        error=None if good else (samples[0].error if samples else "no samples"),
        feedback=(chosen.feedback or None) if chosen is not None else None,
    )


def break_tie(
    executor: Executor, item: PermutedItem, tied: Sequence[str]
) -> tuple[str | None, list[SampleResult]]:
    """The tied answer with the highest label log-probability averaged over the orderings
    (each ordering's scores normalised over its letters, then mapped back; None when a
    scoring request failed), and the scoring calls as samples without an answer."""
    from promptopt.bias.calibration import log_normalize
    from promptopt.bias.labels import letter_labels, score_requests, scores_text

    plain = dataclasses.replace(item.candidate, permute=1)
    requests = []
    for variant in item.variants:
        labels = letter_labels(executor.task, variant)
        requests.append((plain, variant, labels))
    scored = score_requests(executor, requests, answers=False)
    totals: dict[str, float] = {}
    failed = False
    samples: list[SampleResult] = []
    for j, (back, (scores, completion)) in enumerate(zip(item.back, scored, strict=True)):
        mapped = {map_letters(k, back) or k: v for k, v in log_normalize(scores).items()} if scores else {}
        text = scores_text(dict(sorted(mapped.items())))
        samples.append(
            SampleResult(
                sample_index=j, raw_output=f"tie-break, ordering {j}: label log-probs {text}",
                parsed_answer=None, score=None, tokens_in=completion.tokens_in, tokens_out=completion.tokens_out,
                latency_s=completion.latency_s, cached=completion.cached and completion.ok,
                error=completion.error, finish_reason=completion.finish_reason,
            )
        )  # fmt: skip
        failed = failed or scores is None
        for original, value in mapped.items():
            totals[original] = totals.get(original, 0.0) + value
    if failed:
        return None, samples
    best = max(tied, key=lambda a: (totals.get(a, float("-inf")), -tied.index(a)))
    return (best if best in totals else None), samples
