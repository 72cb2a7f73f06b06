"""``promptopt.evaluation``: score one prompt on a task split, keep every result in the store."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.backends import Backend, CachingBackend, RetryingBackend, make_backend
from promptopt.errors import ConfigError
from promptopt.executor import Executor
from promptopt.stats import mean_interval
from promptopt.tasks import Task, get_task
from promptopt.types import Candidate, EvalResult

ProgressCallback = Callable[["EvalProgress"], None]


@dataclass(frozen=True)
class EvalProgress:
    """Passed to the progress callback after each batch."""

    done: int
    total: int
    correct: float
    scored: int
    elapsed_s: float


@dataclass(frozen=True)
class EvalReport:
    """What an evaluation measured. ``accuracy`` is over scored examples (failures are
    excluded and counted in ``n_failed``); ``ci_low``/``ci_high`` is its 95% interval."""

    run_id: str
    task: str
    split: str
    model: str
    candidate: Candidate
    n: int
    n_failed: int
    accuracy: float
    ci_low: float
    ci_high: float
    tokens_in: int
    tokens_out: int
    calls: int
    cache_hits: int
    retries: int
    wall_s: float
    results: tuple[EvalResult, ...] = field(repr=False, default=())
    metric: str = "exact_match"
    judge: Mapping[str, Any] = field(default_factory=dict)  # llm_judge: the judge's own calls

    @property
    def n_scored(self) -> int:
        return self.n - self.n_failed

    @property
    def tokens_in_per_example(self) -> float:
        return self.tokens_in / self.n if self.n else 0.0

    @property
    def tokens_out_per_example(self) -> float:
        return self.tokens_out / self.n if self.n else 0.0

    def summary(self) -> dict[str, Any]:
        """The report as plain data (stored with the run, printed by ``--json``)."""
        return {
            "run_id": self.run_id,
            "task": self.task,
            "split": self.split,
            "model": self.model,
            "candidate": self.candidate.hash,
            "n": self.n,
            "n_failed": self.n_failed,
            "accuracy": self.accuracy,
            "ci95": [self.ci_low, self.ci_high],
            "tokens_in_per_example": self.tokens_in_per_example,
            "tokens_out_per_example": self.tokens_out_per_example,
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "wall_s": self.wall_s,
            "metric": self.metric,
            "judge": dict(self.judge),
        }


def choose_demos(task: Task, shots: int, *, cot: bool, seed: int = 0) -> tuple[str, ...]:
    """``shots`` demo ids: the task's fixed CoT demos first when chain of thought is on,
    then a seeded sample of the demo pool (items with worked solutions when ``cot``)."""
    if shots <= 0:
        return ()
    chosen: list[str] = [d.id for d in task.cot_demos][:shots] if cot else []
    pool = [e for e in task.examples("train") if (e.solution or not cot)]
    rng = random.Random(seed)
    extra = [e.id for e in rng.sample(pool, min(len(pool), shots - len(chosen)))]
    return tuple(chosen + extra)


def make_candidate(
    task: Task,
    *,
    instruction: str | None = None,
    cot: str | None = None,
    shots: int = 0,
    cot_mode: str | None = None,
    answer_format: str | None = None,
    samples: int = 1,
    temperature: float | None = None,
    max_tokens: int = 512,
    two_stage: bool = False,
    demo_ids: Sequence[str] | None = None,
    seed: int = 0,
) -> Candidate:
    """Build a candidate from the options a person would give on the command line.

    ``cot_mode`` defaults to ``few_shot`` when there are demos and a trigger,
    ``zero_shot`` with a trigger alone, ``none`` otherwise. Self-consistency
    (``samples`` > 1) samples at temperature 0.7 unless told otherwise."""
    if cot_mode is None:
        if cot and (shots > 0 or demo_ids):
            cot_mode = "few_shot"
        elif cot:
            cot_mode = "zero_shot"
        else:
            cot_mode = "none"
    if demo_ids is None:
        demo_ids = choose_demos(task, shots, cot=cot_mode == "few_shot", seed=seed)
    for demo_id in demo_ids:
        task.demo(demo_id)  # fail early, with the task's message, on an unknown id
    if temperature is None:
        temperature = 0.7 if samples > 1 else 0.0
    if samples > 1 and temperature == 0.0:
        raise ConfigError(
            "self-consistency with temperature 0 gives identical samples; set --temperature > 0"
        )
    return Candidate(
        instruction=task.spec.instruction if instruction is None else instruction,
        demo_ids=tuple(demo_ids),
        cot_mode=cot_mode,  # type: ignore[arg-type]
        cot_trigger=cot or "",
        answer_format=task.spec.answer_format if answer_format is None else answer_format,
        samples=samples,
        temperature=temperature,
        max_tokens=max_tokens,
        two_stage=two_stage,
    )


def _as_candidate(prompt: Candidate | str | Mapping[str, Any], task: Task) -> Candidate:
    if isinstance(prompt, Candidate):
        return prompt
    if isinstance(prompt, str):
        return make_candidate(task, instruction=prompt)
    if isinstance(prompt, Mapping):
        return Candidate.from_dict(prompt)
    raise ConfigError(
        f"prompt must be a Candidate, an instruction string or a mapping, not {type(prompt).__name__}"
    )


def _open_store(db: Any) -> tuple[Any, bool]:
    from promptopt.store import Store

    if isinstance(db, Store):
        return db, False
    return Store(db), True


def evaluate(
    task: Task | str,
    prompt: Candidate | str | Mapping[str, Any],
    backend: Backend | str | None = None,
    *,
    split: str = "test",
    limit: int | None = None,
    data_dir: str | Path | None = None,
    db: Any = None,
    cache: bool = True,
    max_attempts: int = 4,
    batch_size: int = 16,
    chunk_size: int | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    metric: Any = None,
    max_judge_calls: int | None = None,
) -> EvalReport:
    """Score ``prompt`` on ``split`` of ``task`` and store every result.

    ``task`` is a name (``gsm8k``), a YAML path or a :class:`Task`; ``prompt`` a
    :class:`Candidate`, an instruction, or a candidate mapping; ``backend`` a
    :class:`Backend` or a model spec (default: the default local model); ``db`` a
    ``Store``, a SQLAlchemy URL or ``None`` (``$PROMPTOPT_DB``, else ``./promptopt.db``).
    Identical requests are answered from the response cache unless ``cache=False``.
    ``chunk_size`` requests (default ``4 * batch_size``) go to the backend per call, which
    keeps a local model's running batch of ``batch_size`` rows full (see
    :class:`~promptopt.executor.Executor`); results are stored after each call.
    ``metric`` scores with another metric than the task's (a name, a mapping with
    options, a ``module:function`` reference or a callable; see :mod:`promptopt.metrics`).
    """
    task_obj = task if isinstance(task, Task) else get_task(task, data_dir)
    if metric is not None:
        task_obj = task_obj.with_metric(metric)
    candidate = _as_candidate(prompt, task_obj)
    examples = task_obj.examples(split, limit)
    if isinstance(backend, Backend):
        inner = backend
    else:
        from promptopt.models import DEFAULT_MODEL

        inner = make_backend(backend or DEFAULT_MODEL, batch_size=batch_size)
    store, owns_store = _open_store(db)
    retrying = RetryingBackend(inner, max_attempts=max_attempts)
    caching = CachingBackend(retrying, store) if cache else None
    wrapped: Backend = caching or retrying
    executor = Executor(task_obj, wrapped, batch_size=batch_size, chunk_size=chunk_size or 4 * batch_size)
    run_id = store.create_run(
        kind="eval",
        task=task_obj.name,
        model=inner.model_id,
        config={
            "candidate": candidate.to_dict(),
            "split": split,
            "limit": limit,
            "task_version": task_obj.spec.version,
            "backend": inner.describe(),
            "batch_size": batch_size,
            "chunk_size": executor.chunk_size,
            "cache": cache,
            "metric": task_obj.metric.spec,
        },
        seed=seed,
        dataset_hash=task_obj.dataset_hash,
    )
    store.add_candidate(run_id, candidate, origin="user")
    from promptopt.metrics import MetricContext

    task_obj.metric.prepare(
        MetricContext(store=store, max_judge_calls=max_judge_calls, batch_size=batch_size)
    )
    started = time.perf_counter()
    done, scored, correct = 0, 0, 0.0

    def on_batch(batch: Sequence[EvalResult]) -> None:
        nonlocal done, scored, correct
        store.record_evaluations(run_id, batch)
        done += len(batch)
        scored += sum(1 for r in batch if r.score is not None)
        correct += sum(r.score or 0.0 for r in batch)
        if progress is not None:
            progress(EvalProgress(done, len(examples), correct, scored, time.perf_counter() - started))

    try:
        results = executor.evaluate(candidate, examples, split, on_batch=on_batch)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        store.finish_run(
            run_id,
            status,
            {
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "examples_done": done,
                "judge": task_obj.metric.describe(),
            },
        )
        task_obj.metric.close()
        if owns_store:
            store.close()
        raise
    scores = [r.score for r in results if r.score is not None]
    accuracy, low, high = mean_interval(scores)
    report = EvalReport(
        run_id=run_id,
        task=task_obj.name,
        split=split,
        model=inner.model_id,
        candidate=candidate,
        n=len(results),
        n_failed=sum(1 for r in results if r.score is None),
        accuracy=accuracy,
        ci_low=low,
        ci_high=high,
        tokens_in=sum(r.tokens_in for r in results),
        tokens_out=sum(r.tokens_out for r in results),
        calls=retrying.sent,
        cache_hits=caching.hits if caching else 0,
        retries=retrying.retries,
        wall_s=time.perf_counter() - started,
        results=tuple(results),
        metric=task_obj.metric.name,
        judge=task_obj.metric.describe(),
    )
    task_obj.metric.close()
    store.finish_run(run_id, "finished", report.summary())
    if owns_store:
        store.close()
    return report
