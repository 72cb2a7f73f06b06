"""The ICL / chain-of-thought executor: render → generate in batches → extract → vote → score.

Few-shot demos, zero-shot and few-shot chain of thought are all rendering (see
:mod:`promptopt.prompt`); self-consistency is ``samples`` requests per example and a
majority vote over the extracted answers; two-stage extraction (Kojima et al.) sends a
short follow-up question after the reasoning (``rescue``: only after reasoning that holds
no answer).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from promptopt.backends.base import Backend
from promptopt.metrics.base import MetricResult, Prediction
from promptopt.prompt import answer_followup, render_messages
from promptopt.tasks import Task
from promptopt.types import (
    Candidate,
    Completion,
    EvalResult,
    Example,
    GenerationRequest,
    Message,
    SampleResult,
)

BatchCallback = Callable[[Sequence[EvalResult]], None]
TWO_STAGE_MAX_TOKENS = 32


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent non-empty answer; ties go to the one seen first (deterministic)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


class Executor:
    """Scores one candidate on a list of examples through a backend.

    ``batch_size`` is the number of requests sent to the backend at once; an example's
    self-consistency samples always travel in the same batch. ``chunk_size`` (default:
    ``batch_size``) sends more than that in one call: a local backend decodes
    ``batch_size`` rows at a time and refills finished rows from the rest of the call, so
    its batch stays full instead of draining to one long answer at the end of each call.
    Results are handed to ``on_batch`` (stored) once per call.
    """

    def __init__(
        self, task: Task, backend: Backend, *, batch_size: int = 16, chunk_size: int | None = None
    ) -> None:
        self.task = task
        self.backend = backend
        self.batch_size = max(1, batch_size)
        self.chunk_size = max(self.batch_size, chunk_size or self.batch_size)
        #: Called with the number of (first-stage) requests answered, as answers arrive
        #: from the backend, for progress displays between ``on_batch`` calls.
        self.on_answers: Callable[[int], None] | None = None
        #: Notices said once per executor (e.g. items left unpermuted), in order.
        self.notes: list[str] = []
        self.noted: set[str] = set()  # their keys
        #: A calibration's per-candidate priors (contextual, position) and the task's
        #: option letters, computed once (promptopt.bias.labels).
        self.bias_priors: dict[tuple[Any, ...], Any] = {}

    @cached_property
    def _json_schema_text(self) -> str | None:
        """The task's JSON Schema as canonical text, sent with json_mode requests."""
        schema = self.task.json_schema if self.task.spec.json_mode else None
        return None if schema is None else json.dumps(schema, sort_keys=True, separators=(",", ":"))

    def requests_for(self, candidate: Candidate, example: Example) -> list[GenerationRequest]:
        messages = render_messages(candidate, self.task, example)
        return [
            GenerationRequest(
                messages=messages,
                temperature=candidate.temperature,
                max_tokens=candidate.max_tokens,
                sample_index=index,
                response_format="json" if self.task.spec.json_mode else None,
                json_schema=self._json_schema_text,
            )
            for index in range(candidate.samples)
        ]

    def evaluate(
        self,
        candidate: Candidate,
        examples: Sequence[Example],
        split: str,
        *,
        on_batch: BatchCallback | None = None,
    ) -> list[EvalResult]:
        """Evaluate ``candidate`` on ``examples``; ``on_batch`` is called with each batch
        of finished results (to store them and move a progress bar) before the next."""
        return self.evaluate_pairs([(candidate, example) for example in examples], split, on_batch=on_batch)

    def evaluate_pairs(
        self,
        pairs: Sequence[tuple[Candidate, Example]],
        split: str,
        *,
        on_batch: BatchCallback | None = None,
    ) -> list[EvalResult]:
        """Evaluate (candidate, example) pairs of any mix of candidates, ``chunk_size``
        requests per backend call (an example's samples stay together, at least one pair
        per call), results in the order of ``pairs``. Several candidates' short racing
        minibatches thus share one batch of a local model instead of each draining it.
        Candidates with an answer-bias strategy (``permute``, ``calibration``) are run by
        :mod:`promptopt.bias.strategy`."""
        if any(c.permute > 1 or c.calibration != "none" for c, _ in pairs):
            from promptopt.bias.strategy import evaluate_with_strategies

            return evaluate_with_strategies(self, pairs, split, on_batch)
        return self.evaluate_plain(pairs, split, on_batch=on_batch)

    def evaluate_plain(
        self,
        pairs: Sequence[tuple[Candidate, Example]],
        split: str,
        *,
        on_batch: BatchCallback | None = None,
        chunked: bool = True,
    ) -> list[EvalResult]:
        """:meth:`evaluate_pairs` without the answer-bias strategies; ``chunked=False``
        sends all the pairs in one backend call."""
        if not chunked:
            return self._evaluate_chunk(list(pairs), split)
        results: list[EvalResult] = []
        index = 0
        while index < len(pairs):
            limit = self._request_limit()
            chunk: list[tuple[Candidate, Example]] = []
            size = 0
            while index < len(pairs) and (not chunk or size + pairs[index][0].samples <= limit):
                chunk.append(pairs[index])
                size += pairs[index][0].samples
                index += 1
            results.extend(self._run_chunk(chunk, split, on_batch))
        return results

    def _request_limit(self) -> int:
        """``chunk_size``, or fewer when a call budget has less left (a budgeted backend
        refuses the next call once it is spent, so a cap is overshot by one example)."""
        left = self.backend.remaining_calls()
        return self.chunk_size if left is None else max(1, min(self.chunk_size, left))

    def _run_chunk(
        self, chunk: list[tuple[Candidate, Example]], split: str, on_batch: BatchCallback | None
    ) -> list[EvalResult]:
        batch = self._evaluate_chunk(chunk, split)
        if on_batch is not None:
            on_batch(batch)
        return batch

    def _evaluate_chunk(self, chunk: Sequence[tuple[Candidate, Example]], split: str) -> list[EvalResult]:
        spans: list[tuple[int, int]] = []
        requests: list[GenerationRequest] = []
        for candidate, example in chunk:
            own = self.requests_for(candidate, example)
            spans.append((len(requests), len(requests) + len(own)))
            requests.extend(own)
        on_answers = self.on_answers
        if on_answers is None:
            completions = self.backend.generate(requests)
        else:
            completions = self.backend.generate_each(requests, lambda done: on_answers(len(done)))
        if len(completions) != len(requests):
            raise RuntimeError(
                f"backend {self.backend.model_id} returned {len(completions)} completions for {len(requests)} requests"
            )
        staged = [
            i for (c, _), (lo, hi) in zip(chunk, spans, strict=True) if c.two_stage for i in range(lo, hi)
        ]
        if staged:
            seconds = self._second_stage([requests[i] for i in staged], [completions[i] for i in staged])
            for i, merged in zip(staged, seconds, strict=True):
                completions[i] = merged
        examples = [
            example for (_, example), (lo, hi) in zip(chunk, spans, strict=True) for _ in range(lo, hi)
        ]
        predictions = [
            self.task.predict(c.text, c.finish_reason, e) if c.ok else None
            for c, e in zip(completions, examples, strict=True)
        ]
        missing = [
            i
            for (c, _), (lo, hi) in zip(chunk, spans, strict=True)
            if c.rescue and not c.two_stage
            for i in range(lo, hi)
            if predictions[i] is not None and predictions[i].answer is None  # type: ignore[union-attr]
        ]
        if missing:
            seconds = self._second_stage(
                [requests[i] for i in missing], [completions[i] for i in missing], keep_cut_off=True
            )
            for i, merged in zip(missing, seconds, strict=True):
                completions[i] = merged
                # the follow-up's answer ends the text: read it whole, as a finished output
                predictions[i] = self.task.predict(merged.text, "stop", examples[i]) if merged.ok else None
        asked = [i for i, p in enumerate(predictions) if p is not None]
        scored = self.task.score_predictions([(examples[i], predictions[i]) for i in asked])  # type: ignore[misc]
        metric_results: list[MetricResult | None] = [None] * len(completions)
        for i, result in zip(asked, scored, strict=True):
            metric_results[i] = result
        return [
            self._score(
                candidate, example, split, completions[lo:hi], predictions[lo:hi], metric_results[lo:hi]
            )
            for (candidate, example), (lo, hi) in zip(chunk, spans, strict=True)
        ]

    def _second_stage(
        self, requests: list[GenerationRequest], firsts: list[Completion], *, keep_cut_off: bool = False
    ) -> list[Completion]:
        """Ask for the bare answer after each successful reasoning; merge both calls.
        ``keep_cut_off``: a reasoning cut off at the token limit stays counted as cut off
        (the merged output keeps ``finish_reason`` "length")."""
        followups: list[GenerationRequest] = []
        positions: list[int] = []
        for position, (request, first) in enumerate(zip(requests, firsts, strict=True)):
            if not first.ok:
                continue
            followups.append(
                GenerationRequest(
                    messages=(
                        *request.messages,
                        Message("assistant", first.text),
                        answer_followup(self.task),
                    ),
                    temperature=0.0,
                    max_tokens=TWO_STAGE_MAX_TOKENS,
                    sample_index=request.sample_index,
                )
            )
            positions.append(position)
        merged = list(firsts)
        for position, second in zip(positions, self.backend.generate(followups), strict=True):
            first = firsts[position]
            merged[position] = Completion(
                text=f"{first.text}\n{self.task.spec.answer_prompt} {second.text}"
                if second.ok
                else first.text,
                tokens_in=first.tokens_in + second.tokens_in,
                tokens_out=first.tokens_out + second.tokens_out,
                finish_reason="length"
                if keep_cut_off and first.finish_reason == "length" and second.ok
                else second.finish_reason,
                latency_s=first.latency_s + second.latency_s,
                cached=first.cached and second.cached,
                error=second.error,
                retryable=second.retryable,
            )
        return merged

    def _score(
        self,
        candidate: Candidate,
        example: Example,
        split: str,
        completions: Sequence[Completion],
        predictions: Sequence[Prediction | None],
        metric_results: Sequence[MetricResult | None],
    ) -> EvalResult:
        samples = []
        for index, (completion, prediction, judged) in enumerate(
            zip(completions, predictions, metric_results, strict=True)
        ):
            failed = judged is not None and judged.failed
            samples.append(
                SampleResult(
                    sample_index=index,
                    raw_output=completion.text,
                    parsed_answer=prediction.answer if prediction is not None else None,
                    score=judged.score if judged is not None and not failed else None,
                    tokens_in=completion.tokens_in,
                    tokens_out=completion.tokens_out,
                    latency_s=completion.latency_s,
                    cached=completion.cached and completion.ok,
                    error=completion.error or (f"metric: {judged.feedback}" if failed and judged else None),
                    finish_reason=completion.finish_reason,
                    feedback=judged.feedback if judged is not None else None,
                )
            )
        good = [s for s in samples if s.error is None]
        answer = majority_vote([s.parsed_answer for s in good]) if good else None
        # The voted answer's score is that of the first sample that gave it (the metric
        # is not asked twice); without any answer, the first good sample's.
        chosen = next((s for s in good if s.parsed_answer == answer), good[0] if good else None)
        return EvalResult(
            candidate_hash=candidate.hash,
            example_id=example.id,
            split=split,
            answer=answer,
            gold=self.task.target(example),
            # every sample failed: a failure, not a wrong answer
            score=chosen.score if chosen is not None else None,
            samples=tuple(samples),
            error=None if good else (samples[0].error if samples else "no samples"),
            feedback=(chosen.feedback or None)
            if chosen is not None
            else (samples[0].feedback if samples else None),
        )
