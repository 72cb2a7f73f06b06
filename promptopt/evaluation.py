"""``promptopt.evaluation``: score one prompt on a task split, keep every result in the store."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.backends import Backend, make_backend
from promptopt.constant import constant_baseline
from promptopt.errors import ConfigError, PromptOptError
from promptopt.executor import Executor
from promptopt.stats import mean_interval
from promptopt.tasks import Task, get_task, task_reference
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
    # scored examples whose output held no answer / was cut off at the token limit
    n_no_answer: int = 0
    n_truncated: int = 0
    # always giving the best single answer, on the same items (tasks with a small answer set)
    constant_baseline: Mapping[str, Any] | None = None
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
            "n_no_answer": self.n_no_answer,
            "n_truncated": self.n_truncated,
            "accuracy": self.accuracy,
            "ci95": [self.ci_low, self.ci_high],
            "tokens_in_per_example": self.tokens_in_per_example,
            "tokens_out_per_example": self.tokens_out_per_example,
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "wall_s": self.wall_s,
            "constant_baseline": dict(self.constant_baseline) if self.constant_baseline else None,
            "metric": self.metric,
            "judge": dict(self.judge),
        }


def choose_demos(task: Task, shots: int, *, cot: bool, seed: int = 0) -> tuple[str, ...]:
    """``shots`` demo ids: the task's fixed CoT demos first when chain of thought is on,
    then a seeded sample of the demo pool, items with worked solutions first when ``cot``.
    When the pool has too few worked solutions, the rest show their answer only (the
    trigger then follows the question, see :mod:`promptopt.prompt`): ``--shots N`` always
    gets N demos where the pool has them, and :func:`cot_demo_note` says so."""
    if shots <= 0:
        return ()
    chosen: list[str] = [d.id for d in task.cot_demos][:shots] if cot else []
    rng = random.Random(seed)
    train = task.examples("train")
    worked = [e for e in train if (e.solution or not cot)]
    extra = [e.id for e in rng.sample(worked, min(len(worked), shots - len(chosen)))]
    if cot and len(chosen) + len(extra) < shots:
        plain = [e for e in train if not e.solution]
        extra += [e.id for e in rng.sample(plain, min(len(plain), shots - len(chosen) - len(extra)))]
    return tuple(chosen + extra)


def cot_demo_note(task: Task, candidate: Candidate, shots: int | None = None) -> str | None:
    """What few-shot chain of thought does with demos that carry no worked solution, in
    words for the terminal; None when every demo shows its reasoning (or no CoT)."""
    if candidate.cot_mode != "few_shot" or not candidate.cot_trigger.strip() or candidate.similar_demos:
        return None
    from promptopt.prompt import demo_solution

    demos = [task.demo(demo_id) for demo_id in candidate.demo_ids]
    bare = [d for d in demos if not demo_solution(candidate, d)]
    notes = []
    if shots is not None and len(demos) < shots:
        notes.append(f"the demo pool of {task.name} has only {len(demos)} items for --shots {shots}")
    if bare:
        notes.append(
            f"{len(bare)} of the {len(demos)} demos carry no worked solution and show their answer only"
            + (
                f"; with no worked demo, the trigger {candidate.cot_trigger.strip()!r} follows the question "
                "(zero-shot CoT after answer-only demos)"
                if len(bare) == len(demos)
                else ""
            )
        )
    return "; ".join(notes) or None


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
    rescue: bool = False,
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
        rescue=rescue,
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
    on_answers: Callable[[int], None] | None = None,
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
    ``progress`` is called after each stored call; ``on_answers`` with the number of
    requests answered as answers arrive within a call (a progress bar's finer steps).
    ``metric`` scores with another metric than the task's (a name, a mapping with
    options, a ``module:function`` reference or a callable; see :mod:`promptopt.metrics`).
    """
    task_obj = task if isinstance(task, Task) else get_task(task, data_dir)
    if metric is not None:
        task_obj = task_obj.with_metric(metric)
    candidate = _as_candidate(prompt, task_obj)
    examples = task_obj.examples(split, limit)
    if candidate.calibration != "none":  # refused before a run is stored, not as a failed run
        from promptopt.bias.space import calibration_problem

        if (problem := calibration_problem(task_obj, candidate.calibration)) is not None:
            raise ConfigError(f"calibration {candidate.calibration}: {problem}")
    if isinstance(backend, Backend):
        inner = backend
    else:
        from promptopt.models import DEFAULT_MODEL

        inner = make_backend(backend or DEFAULT_MODEL, batch_size=batch_size)
    if candidate.calibration != "none":
        from promptopt.bias.labels import check_label_scoring

        try:
            check_label_scoring(inner)
        except PromptOptError:
            if inner is not backend:
                inner.close()
            raise
    from promptopt.session import Session

    session, owns_session = Session.of(db)
    store = session.store
    models = session.models(inner, cache=cache, max_attempts=max_attempts)
    executor = Executor(
        task_obj, models.backend, batch_size=batch_size, chunk_size=chunk_size or 4 * batch_size
    )
    lifecycle = session.create_run(
        kind="eval",
        task=task_obj.name,
        model=inner.model_id,
        config={
            "candidate": candidate.to_dict(),
            "task": task_obj.name,
            **task_reference(task_obj),
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
    run_id = lifecycle.run_id
    store.add_candidate(run_id, candidate, origin="user")
    from promptopt.metrics import MetricContext

    task_obj.metric.prepare(
        MetricContext(store=store, max_judge_calls=max_judge_calls, batch_size=batch_size)
    )
    started = time.perf_counter()
    done, scored, correct = 0, 0, 0.0
    executor.on_answers = on_answers  # a display moves with answers, between stored batches

    def on_batch(batch: Sequence[EvalResult]) -> None:
        nonlocal done, scored, correct
        store.record_evaluations(run_id, batch)
        done += len(batch)
        scored += sum(1 for r in batch if r.score is not None)
        correct += sum(r.score or 0.0 for r in batch)
        if progress is not None:
            progress(EvalProgress(done, len(examples), correct, scored, time.perf_counter() - started))

    try:
        with lifecycle.working(lambda: {"examples_done": done, "judge": task_obj.metric.describe()}):
            results = executor.evaluate(candidate, examples, split, on_batch=on_batch)
    except BaseException:
        task_obj.metric.close()
        if owns_session:
            session.close()
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
        calls=models.model_calls,
        cache_hits=models.cache_hits,
        retries=models.retries,
        wall_s=time.perf_counter() - started,
        results=tuple(results),
        n_no_answer=sum(1 for r in results if r.no_answer),
        n_truncated=sum(1 for r in results if r.truncated),
        constant_baseline=constant_baseline(
            task_obj, **{split: [e for e, r in zip(examples, results, strict=True) if r.score is not None]}
        ),
        metric=task_obj.metric.name,
        judge=task_obj.metric.describe(),
    )
    task_obj.metric.close()
    lifecycle.finish(report.summary())
    if owns_session:
        session.close()
    return report
