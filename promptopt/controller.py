"""The search controller: ``promptopt.search()``.

An ask/tell loop. The policy proposes a pool of candidates; the controller races the
pool on dev (successive halving, :mod:`promptopt.racing`) through the evaluator and
tells the policy how each stood. When the policy is done or the budget is spent, the
best candidates get a full dev evaluation; the winner is chosen on dev only; then the
winner and the starting prompt are scored on the held-out test split, with 95%
intervals and a paired test of the difference.

Everything is stored as it happens. A run killed at any moment resumes with
``search(resume=RUN_ID)``: the same seeded decisions are replayed, every model call
already made is answered from the response cache, and stored rows are not duplicated.
The budget counts *requests the search makes* (cache hits included), so a resumed run
stops at exactly the point an uninterrupted one would; the report also gives the real
model calls.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from promptopt.answer_counts import count_answers
from promptopt.backends import Backend, make_backend
from promptopt.bias.costs import candidate_calls
from promptopt.budget import Budget, load_prices
from promptopt.constant import constant_baseline
from promptopt.errors import BudgetExceeded, ConfigError, PromptOptError, StoreError
from promptopt.failures import check_results
from promptopt.policies import Policy, PolicySettings, get_policy
from promptopt.policies.estimates import (  # noqa: F401  (final_calls ... space_estimate: re-exported)
    estimate_plan,
    final_calls,
    instruction_estimate,
    prompt_tokens,
    resolve_space,
    space_estimate,
)
from promptopt.progress import PhaseProgress
from promptopt.racing import rank, successive_halving
from promptopt.search_checks import check_resumed_task, check_teacher
from promptopt.search_config import PRESETS, SIGNIFICANCE, SearchConfig  # noqa: F401
from promptopt.search_result import LeaderboardRow, SearchProgress, SearchResult
from promptopt.search_run import SearchRun
from promptopt.session import Session
from promptopt.stats import mean_interval, paired_difference
from promptopt.tasks import Task, get_task, load_recorded_task, task_reference
from promptopt.types import Candidate, Example


def estimate(config: SearchConfig, task: Task) -> dict[str, Any]:
    """An upper bound of the calls and tokens the configured search will make: the
    policy's own estimate (:meth:`~promptopt.policies.Policy.estimate`).

    When the rounds end the search before ``--max-calls`` can, the plan carries a
    ``note`` saying so: a user who set a call budget expects it to be spent, but the
    presets size the search by rounds (light gives the space policies two rounds)."""
    policy = get_policy(config.policy)
    plan = policy.estimate(config, task)
    limit = config.budget.max_calls
    if limit is not None and plan["search_calls"] > limit:  # the budget stops it first
        per_call = plan.get("tokens_in_per_call", 0) + plan.get("tokens_out_per_call", 0)
        plan.update(search_calls=limit, search_tokens=limit * per_call or plan["search_tokens"])
    if limit is not None and plan.get("space_points") and plan["search_calls"] < limit:
        plan["note"] = (
            f"space {plan.get('space')} has {plan['space_points']} distinct points: with the starting prompt, "
            f"each on every one of {plan['dev_size']} dev items makes at most {plan['search_calls']} calls, "
            f"under --max-calls {limit}; more rounds would spend no more (a larger --dev-size would)"
        )
    elif limit is not None and policy.sized_by_rounds and plan["search_calls"] < limit:
        plan["note"] = (
            f"with {config.rounds} rounds and {config.n_proposals} proposals this search makes at most "
            f"{plan['search_calls']} calls, under --max-calls {limit}: its rounds end it first; "
            "raise --rounds (or --proposals) to spend the budget"
        )
    first = plan.get("before_first_score")
    if limit is not None and first and limit < first:
        plan["warning"] = (
            f"--max-calls {limit} may be spent before any proposal is scored: bootstrapping demos, writing "
            f"instructions and the first racing stage can take up to {first} calls; with less, the starting "
            "prompt may be the result"
        )
    return plan


def affordable(ranked: Sequence[str], need: Mapping[str, int], calls: int, top: int) -> list[str]:
    """The finalists when the budget covers the final scoring: in rank order, up to
    ``top`` candidates whose unscored dev items (``need``) the ``calls`` left pay for;
    when none fits, the best-ranked alone, judged on the items it has."""
    chosen: list[str] = []
    for candidate_hash in ranked:
        if len(chosen) == top:
            break
        if need[candidate_hash] <= calls:
            chosen.append(candidate_hash)
            calls -= need[candidate_hash]
    return chosen or list(ranked[:1])


def _needs_space(policy: str) -> bool:
    return bool(getattr(get_policy(policy), "needs_space", False))


def mark_pareto(rows: Sequence[LeaderboardRow]) -> list[LeaderboardRow]:
    """``rows`` with ``pareto`` set on those no other row beats on accuracy and tokens.

    Only rows scored on at least half as many dev examples as the best-measured one take
    part: a candidate dropped by the race after 8 examples has too wide an interval to be
    called a good trade."""
    from promptopt.stats import pareto_front

    if not rows:
        return []
    enough = max(r.n for r in rows) / 2
    eligible = [i for i, r in enumerate(rows) if r.n >= enough]
    front = {
        eligible[j] for j in pareto_front([(rows[i].tokens_per_example, rows[i].mean) for i in eligible])
    }
    return [dataclasses.replace(r, pareto=i in front) for i, r in enumerate(rows)]


def prepare_search(
    config: SearchConfig | None = None,
    *,
    db: Any = None,
    resume: str | None = None,
    task: Task | None = None,
    metric: Any = None,
    backend: Backend | None = None,
    proposer_backend: Backend | None = None,
    take_over: bool = False,
    prices: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> PreparedSearch:
    """Prepare a search without running it: the config resolved (from the store for
    ``resume=RUN_ID``), the task, its metric and the model prices loaded, the plan estimated.
    Nothing is stored and no model is loaded yet: :meth:`PreparedSearch.run` does that.

    ``db`` is a :class:`~promptopt.session.Session`, a Store, a URL or None. ``prices`` is a
    price file (see :func:`~promptopt.budget.load_prices`): with it, or with a cost limit in
    the budget, the budget gets the model's prices, once, and the run stores them. The
    other arguments are those of :func:`search`; ``data_dir`` is where a resumed run's data
    is now, if its recorded directory moved (the same data: checked by its hash)."""
    session, owns_session = Session.of(db)
    try:
        return _prepare(session, owns_session, config, resume, task, metric, backend, proposer_backend,
                        take_over, prices, data_dir)  # fmt: skip
    except BaseException:
        if owns_session:
            session.close()
        raise


def _prepare(
    session: Session, owns_session: bool, config: SearchConfig | None, resume: str | None, task: Task | None,
    metric: Any, backend: Backend | None, proposer_backend: Backend | None, take_over: bool,
    prices: str | Path | None, data_dir: str | Path | None = None,
) -> PreparedSearch:  # fmt: skip
    record = None
    if resume is not None:
        record = session.store.get_run(resume)
        if record.kind != "search":
            raise ConfigError(
                f"run {resume} is {'an' if record.kind[:1] in 'aeiou' else 'a'} {record.kind} run, not a search; "
                "only searches can be resumed"
            )
        config = SearchConfig.from_dict(record.config)
    if config is None:
        raise ConfigError("search() needs a config or resume=RUN_ID")
    if record is not None:
        if task is None:  # the recorded file and data, from any directory
            task = load_recorded_task(record.config, record.task, data_dir, record.dataset_hash)
        else:
            check_resumed_task(task, record)
        from promptopt.metrics.resume import resume_metric

        task = resume_metric(config, record.id, task, metric)
    else:
        if task is None:
            task = get_task(config.task, config.data_dir)
        if metric is None and config.metric is not None:
            metric = config.metric
        if metric is not None:
            task = task.with_metric(metric)
        config = dataclasses.replace(config, metric=task.metric.spec)
        if proposer_backend is not None and not config.proposer_model:
            # Recorded as the task model is: a resume without the object rebuilds the
            # proposer from its id instead of proposing with the task model.
            config = dataclasses.replace(config, proposer_model=proposer_backend.model_id)
    budget = config.budget
    if (prices is not None or budget.max_cost is not None) and not (
        budget.price_in_per_mtok or budget.price_out_per_mtok
    ):
        price_in, price_out = load_prices(backend.model_id if backend is not None else config.model, prices)
        budget = dataclasses.replace(budget, price_in_per_mtok=price_in, price_out_per_mtok=price_out)
        config = dataclasses.replace(config, budget=budget)
    if _needs_space(config.policy):
        # Store the parsed space (with its sampling order) with the run: a resume must not
        # depend on the file, nor on the key order of the stored JSON.
        config = dataclasses.replace(config, space=resolve_space(config, task).to_dict())
    if (
        config.demo_teacher == "proposer"
    ):  # (after the space is parsed: it says whether demos are bootstrapped)
        check_teacher(config, task, backend, proposer_backend)
    plan = estimate(config, task)
    if task.metric.spec != "exact_match" and hasattr(task.metric.fn, "judge_calls"):
        plan["judge_calls"] = task.metric.fn.judge_calls(plan["search_calls"] + plan["final_calls"])
    return PreparedSearch(
        config, task, plan, session, owns_session, record, backend, proposer_backend, take_over
    )


class PreparedSearch:
    """A search prepared by :func:`prepare_search`: ``config`` (resolved), ``task``,
    ``plan`` (the estimate of calls and tokens) and, once :meth:`run` has stored the run
    (or taken over the one resumed), ``run_id``: a caller interrupted by Ctrl-C knows which
    run to resume. Run it once; :meth:`close` closes the store if the search opened it."""

    def __init__(
        self, config: SearchConfig, task: Task, plan: dict[str, Any], session: Session, owns_session: bool,
        record: Any, backend: Backend | None, proposer_backend: Backend | None, take_over: bool,
    ) -> None:  # fmt: skip
        self.config, self.task, self.plan, self.session = config, task, plan, session
        self.run_id: str | None = record.id if record is not None else None
        self._owns_session, self._record, self._take_over = owns_session, record, take_over
        self._backend, self._proposer_backend = backend, proposer_backend

    def run(
        self,
        progress: Callable[[SearchProgress], None] | None = None,
        phase_progress: Callable[[str, float], None] | None = None,
    ) -> SearchResult:
        """Run the search (see :func:`search`) and store it as it goes; return its result."""
        config, task, session = self.config, self.task, self.session
        lifecycle = session.resume_run(self._record.id, take_over=self._take_over) if self._record else None
        model_backend: Backend
        if self._backend is None and (config.workers or config.ray_address):
            from promptopt.pool import pool_backend

            model_backend = pool_backend(
                config.model, workers=max(1, config.workers), ray_address=config.ray_address,
                batch_size=config.batch_size, resources=config.ray_resources, **dict(config.backend_options),
            )  # fmt: skip
        else:
            model_backend = self._backend or make_backend(
                config.model, batch_size=config.batch_size, **dict(config.backend_options)
            )
        proposer = self._proposer_backend
        if proposer is None and config.proposer_model and config.proposer_model != config.model:
            proposer = make_backend(config.proposer_model, batch_size=config.batch_size)
        from promptopt.metrics import MetricContext

        task.metric.prepare(
            MetricContext(
                store=session.store, max_judge_calls=config.max_judge_calls, batch_size=config.batch_size
            )
        )
        run = SearchRun(config, task, session, model_backend, proposer)
        if lifecycle is None:
            lifecycle = session.create_run(
                kind="search", task=task.name, model=model_backend.model_id,
                config={**config.to_dict(), **task_reference(task)}, seed=config.seed, dataset_hash=task.dataset_hash,
            )  # fmt: skip
        self.run_id = run.run_id = lifecycle.run_id
        started = time.perf_counter()
        run.heartbeat = lifecycle.heartbeat
        run.phase_progress = phase_progress
        try:
            # Ctrl-C, or the world around the run gone (a Ray cluster lost): resumable as it is.
            with lifecycle.working(lambda: {"spent": run.spend.to_dict(), "judge": task.metric.describe()}):
                result = _search(run, progress, self.plan, started)
        except PromptOptError as exc:
            if not isinstance(exc, StoreError):  # (a lost lease: the run is another process's now)
                exc.run_id = exc.run_id or self.run_id  # the caller learns which run to resume
            raise
        finally:
            run.evaluator.close()
            task.metric.close()
        lifecycle.finish(result.summary())
        return result

    def close(self) -> None:
        """Close the store if :func:`prepare_search` opened it."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> PreparedSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def search(
    config: SearchConfig | None = None,
    *,
    backend: Backend | None = None,
    proposer_backend: Backend | None = None,
    db: Any = None,
    resume: str | None = None,
    progress: Callable[[SearchProgress], None] | None = None,
    dry_run: bool = False,
    task: Task | None = None,
    take_over: bool = False,
    phase_progress: Callable[[str, float], None] | None = None,
    metric: Any = None,
) -> SearchResult | dict[str, Any]:
    """Search for the prompt that scores best on dev, then prove it on test.

    ``config`` describes the search (see :class:`SearchConfig`; ``SearchConfig.from_preset``
    builds one from ``light``/``medium``/``heavy``); with ``resume=RUN_ID`` it is read
    from the store instead. ``backend`` overrides the model named in the config (for a
    Python backend object); ``dry_run`` returns only the estimate. ``task`` is the task
    of ``config.task`` when the caller has already loaded it (loading a generated task
    such as gsm-symbolic takes seconds, so the CLI loads it once). A resume of a run whose
    process is still alive is refused unless ``take_over`` (see :mod:`promptopt.lease`).
    ``phase_progress(phase, fraction)`` follows the final and test phases answer by answer
    (the share of their requests answered; a display's bar). ``metric`` scores with
    another metric than the task's (any form :func:`promptopt.metrics.resolve_metric`
    takes); resuming a run whose metric is user code needs it named again here.

    The same as :func:`prepare_search` then :meth:`PreparedSearch.run`, for a caller that
    needs the plan (or the run id after Ctrl-C) in between.
    """
    with prepare_search(
        config, db=db, resume=resume, task=task, metric=metric, backend=backend, proposer_backend=proposer_backend,
        take_over=take_over,
    ) as prepared:  # fmt: skip
        if dry_run:
            return prepared.plan
        return prepared.run(progress, phase_progress)


def _search(
    run: SearchRun, progress: Callable[[SearchProgress], None] | None, plan: Mapping[str, Any], started: float
) -> SearchResult:
    config, task = run.config, run.task
    dev = task.examples("dev")[: config.dev_size]
    space = resolve_space(config, task) if _needs_space(config.policy) else None
    if space is not None:  # calibration only where the backend and the task allow it
        from promptopt.bias.space import offer_bias_dimensions

        space = offer_bias_dimensions(space, task, run.budgeted)
    policy_type = get_policy(config.policy)
    settings = PolicySettings(
        n_proposals=config.n_proposals, rounds=config.rounds, paraphrases=config.paraphrases, top_k=config.top_k,
        seed=config.seed, space=space, task=task, backend=run.budgeted, teacher=run.teacher, run_id=run.run_id,
        store_url=run.store.url, race_start=config.race_start, dev_size=config.dev_size,
        options=policy_type.read_options(config.policy_options), evaluate=run.evaluate_for_policy,
        known=run.evaluator.known,
    )  # fmt: skip
    policy = policy_type(config.base, run.proposer, settings)
    try:
        return _run_policy(run, policy, dev, progress, plan, started)
    finally:
        # However the search ends (done, budget, error, interrupt): the policy's
        # resources (tpe: the Optuna storage's connection pool) are released.
        policy.close()


def _run_policy(
    run: SearchRun,
    policy: Policy,
    dev: Sequence[Example],
    progress: Callable[[SearchProgress], None] | None,
    plan: Mapping[str, Any],
    started: float,
) -> SearchResult:
    config, task = run.config, run.task
    run.register(config.base, "seed", None)

    shown: dict[str, Any] = {"phase": "search", "round": 0, "pool": 0, "best": None, "at": 0.0}

    def emit() -> None:
        assert progress is not None
        limit = config.budget.max_calls
        fraction = run.spend.calls / limit if limit else run.spend.calls / max(1, plan["search_calls"])
        stats = getattr(run.evaluator, "stats", None)
        progress(SearchProgress(shown["phase"], shown["round"], shown["pool"], shown["best"], run.spend.to_dict(),
                                min(1.0, fraction), time.perf_counter() - started,
                                stats() if callable(stats) else None, config.balanced_race))  # fmt: skip
        shown["at"] = time.monotonic()

    def report(phase: str, round_index: int, pool: int) -> None:
        if run.heartbeat is not None:
            run.heartbeat.check()
        if progress is None:
            return
        known = run.known_standings()
        best = rank(list(known.values()))[0].mean if known else None
        shown.update(phase=phase, round=round_index, pool=pool, best=best)
        emit()

    def on_spend() -> None:
        """Between the search's reports (the proposer's and the demos' calls, a racing
        stage's batches): the spend as it grows, at most twice a second."""
        if (progress is not None and shown["phase"] == "search" and time.monotonic() - shown["at"] >= 0.5
                and threading.current_thread() is threading.main_thread()):  # fmt: skip
            # (the final and test phases move by phase_progress, answer by answer; a pool's
            # worker threads never call the user's callback)
            emit()

    run.spend.listener = on_spend

    limit = config.budget.max_calls if config.budget.covers_final else None
    kept = 0

    def ranked() -> list[str]:
        return [s.candidate for s in rank(list(run.known_standings().values()))]

    def keep_back() -> None:
        """With a budget that covers the final: before each round and racing stage, the
        search may spend only what the final scoring of today's finalists leaves."""
        nonlocal kept
        if limit is not None:
            kept = sum(run.dev_calls_left(ranked()[: config.final_top], dev).values())
            run.limit_calls(dataclasses.replace(config.budget, max_calls=max(0, limit - kept)))

    def dev_scores(candidates: Sequence[str], n: int) -> dict[str, list[float | None]]:
        keep_back()
        jobs = [(run.candidates[c], dev[:n]) for c in candidates]
        results = run.evaluator.evaluate_many(jobs, "dev")
        return {c: [r.score for r in rs] for c, rs in zip(candidates, results, strict=True)}

    # The final and test phases: the share of their requests answered, as answers arrive
    # (to ``phase_progress``; ``progress`` is called once a phase, as before).
    moving = PhaseProgress()
    # --selection balanced: the race ranks by balanced accuracy too, not only the final pick.
    golds = [task.target(e) for e in dev] if config.balanced_race else None
    key_env = dict(config.backend_options).get("api_key_env", "OPENAI_API_KEY")  # for failure hints

    def on_answers(count: int) -> None:
        if not moving.total or run.phase_progress is None:
            return
        moving.answered += count
        percent = min(100, 100 * moving.answered // moving.total)
        if percent != moving.shown:  # at most 101 updates a phase
            moving.shown = percent
            run.phase_progress(moving.phase, percent / 100)

    def start_phase(
        phase: str, pool: int, jobs: Sequence[tuple[Candidate, Sequence[Example]]], split: str
    ) -> None:
        total = 0
        for candidate, examples in jobs:
            known = {r.example_id for r in run.evaluator.known(candidate, split)}
            total += candidate_calls(candidate) * sum(1 for e in examples if e.id not in known)
        moving.phase, moving.total, moving.answered, moving.shown, moving.pool = phase, total, 0, -1, pool
        report(phase, round_index, pool)
        if run.phase_progress is not None:
            run.phase_progress(phase, 0.0 if total else 1.0)

    run.search_executor.on_answers = on_answers
    stopped: str | None = None
    round_index = 0
    try:
        while True:
            keep_back()
            proposals = policy.ask()
            if not proposals:
                break
            for proposal in proposals:
                run.register(proposal.candidate, proposal.origin, proposal.parent)
            report("search", round_index, len(proposals))
            standings = successive_halving(
                [p.candidate.hash for p in proposals], None, len(dev), score_many=dev_scores,
                start=config.race_start, eta=config.race_eta, keep=config.top_k, prune=policy.should_prune,
                golds=golds,
            )  # fmt: skip
            policy.tell(standings)
            check_results((r for c in run.candidates.values() for r in run.evaluator.known(c, "dev")), "the search",
                          key_env)  # fmt: skip
            round_index += 1
            report("search", round_index, len(proposals))
    except BudgetExceeded as exc:
        stopped = exc.message
        if limit is not None and kept and exc.message.startswith("budget spent: calls"):
            stopped = (f"budget spent: {run.spend.calls} calls of --max-calls {limit}, with {kept} kept for "
                       f"the final scoring of the best {config.final_top}")  # fmt: skip

    # Final: the best by dev standing get the whole dev set (outside the search budget,
    # so that the reported scores are always complete; its size is in the estimate), or,
    # when the budget covers the final, those of them the calls left pay for.
    search_calls = run.spend.calls
    run.limit_calls(Budget())
    order = ranked()
    finalists = order[: config.final_top]
    unpaid = False  # covers_final, and the calls left pay for no finalist's scoring
    if limit is not None and finalists:
        left = max(0, limit - search_calls)
        need = run.dev_calls_left(order, dev)
        paid = affordable(order, need, left, config.final_top)
        unpaid = sum(need[c] for c in paid) > left
        note = None  # say so when the pick is not among the best-ranked by the race
        if unpaid:
            note = f"the {left} calls left pay for no final scoring: {paid[0][:8]} stands on the dev items it has"
        elif paid != finalists:
            note = (
                f"the {left} calls left paid for the final scoring of {', '.join(p[:8] for p in paid)} "
                f"in place of the best-ranked {', '.join(f[:8] for f in finalists)}"
            )
        if note:
            stopped = f"{stopped}; {note}" if stopped else note
        finalists = paid
    if not finalists:  # a budget too small to score anything: the starting prompt is the result
        finalists = [config.base.hash]
        stopped = (
            f"{stopped or 'budget spent'} before any prompt was scored: the starting prompt is the result"
        )
    rows: list[LeaderboardRow] = []
    final_jobs = [] if unpaid else [(run.candidates[c], dev) for c in finalists]
    start_phase("final", len(finalists), final_jobs, "dev")
    final = run.evaluator.evaluate_many(final_jobs, "dev")
    check_results((r for rs in final for r in rs), "the final dev evaluation", key_env)
    for candidate_hash, candidate in run.candidates.items():
        known = run.evaluator.known(candidate, "dev")
        if not known:
            continue
        scored = [r.score for r in known if r.score is not None]
        mean, low, high = mean_interval(scored)
        tokens = sum(r.tokens_in + r.tokens_out for r in known) / len(known)
        rows.append(
            LeaderboardRow(candidate, run.origins[candidate_hash], mean, low, high, len(scored), tokens,
                           counts=count_answers(known))
        )  # fmt: skip
    full = [r for r in rows if r.candidate.hash in finalists]
    rows.sort(key=lambda r: (-r.mean, -r.n))
    rows = mark_pareto(rows)
    if full:
        winner = max(full, key=lambda r: (r.mean, r.n, -finalists.index(r.candidate.hash))).candidate
    else:  # no finalist has a dev result (every request failed): keep the starting prompt
        winner = config.base
    from promptopt.selection import final_pick

    winner, selection = final_pick(config.selection, full, winner, run.evaluator.known, seed=config.seed)

    # Held-out test: winner and the starting prompt on the same examples.
    test_examples = task.examples("test", config.test_size)
    start_phase("test", 2, [(c, test_examples) for c in {config.base.hash: config.base, winner.hash: winner}.values()],
                "test")  # fmt: skip
    base_results = run.evaluator.evaluate(config.base, test_examples, "test")
    win_results = (
        base_results
        if winner.hash == config.base.hash
        else run.evaluator.evaluate(winner, test_examples, "test")
    )
    check_results(base_results, "the test evaluation", key_env)
    pairs = [
        (b.score, w.score)
        for b, w in zip(base_results, win_results, strict=True)
        if b.score is not None and w.score is not None
    ]
    base_scores = [p[0] for p in pairs]
    win_scores = [p[1] for p in pairs]
    paired = paired_difference(base_scores, win_scores, seed=config.seed)
    b_mean, b_low, b_high = mean_interval(base_scores)
    w_mean, w_low, w_high = mean_interval(win_scores)
    significant = paired["diff"] > 0 and paired["p_value"] < SIGNIFICANCE
    test = {
        "n": len(pairs),
        "baseline": {"accuracy": b_mean, "ci95": [b_low, b_high], **count_answers(base_results).to_dict()},
        "winner": {"accuracy": w_mean, "ci95": [w_low, w_high], **count_answers(win_results).to_dict()},
        "difference": paired,
    }
    return SearchResult(
        run_id=run.run_id,
        winner=winner,
        baseline=config.base,
        leaderboard=tuple(rows),
        test=test,
        significant=significant,
        spent={**run.spend.to_dict(), "calls": search_calls},
        final_calls=run.spend.calls - search_calls,
        model_calls=run.model_calls,
        cache_hits=run.cache_hits,
        estimate=dict(plan),
        stopped_reason=stopped,
        wall_s=time.perf_counter() - started,
        policy_state=policy.describe(),
        faults=run.faults(),
        constant_baseline=constant_baseline(task, dev=dev, test=test_examples),
        metric=task.metric.name,
        judge=task.metric.describe(),
        selection=selection,
    )
