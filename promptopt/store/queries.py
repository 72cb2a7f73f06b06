"""Read-only reporting queries: the leaderboard's aggregate, one candidate's scores, the
requests a run spent, id look-ups. They return rows (read-only mappings or tuples);
what the rows mean is worked out by :mod:`promptopt.leaderboard` and
:mod:`promptopt.export`, which never speak SQL themselves.

One aggregate query over ``po_evaluations`` (grouped by run and candidate, with the dev
and test splits pivoted by conditional aggregation) does the leaderboard's work in the
database. The query filters evaluation rows by run id first, so the ``(run_id,
candidate_hash, split, example_id)`` index of the table serves both the filter and the
grouping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from promptopt.store.schema import CANDIDATES, EVALUATIONS, RUN_CANDIDATES, RUNS, SAMPLES

if TYPE_CHECKING:
    from promptopt.store.store import Store

__all__ = [
    "SPLITS_SHOWN",
    "bulk_insert",
    "candidate_link",
    "candidate_score_row",
    "ids_starting_with",
    "leaderboard_rows",
    "request_rows",
    "runs_of_candidate",
]

SPLITS_SHOWN = ("dev", "test")


def _aggregate(run_filter: sa.ColumnElement[bool] | None) -> sa.Subquery:
    """Per (run, candidate): scored count, evaluated count and score sum on dev and on
    test, plus token sums over every split: one GROUP BY over the evaluations."""
    e = EVALUATIONS
    columns: list[Any] = [e.c.run_id, e.c.candidate_hash]
    for split in SPLITS_SHOWN:
        in_split = e.c.split == split
        columns += [
            sa.func.count(sa.case((sa.and_(in_split, e.c.score.is_not(None)), 1))).label(f"{split}_scored"),
            sa.func.count(sa.case((in_split, 1))).label(f"{split}_total"),
            sa.func.sum(sa.case((in_split, e.c.score))).label(f"{split}_correct"),
            sa.func.count(
                sa.case((sa.and_(in_split, e.c.score.is_not(None), e.c.answer.is_(None)), 1))
            ).label(f"{split}_no_answer"),
            sa.func.count(sa.case((sa.and_(in_split, e.c.truncated == sa.true()), 1))).label(
                f"{split}_truncated"
            ),
            # continuous scores (partial credit) get a normal interval, not Wilson's
            sa.func.sum(sa.case((in_split, e.c.score * e.c.score))).label(f"{split}_sumsq"),
            sa.func.count(sa.case((sa.and_(in_split, e.c.score > 0, e.c.score < 1), 1))).label(
                f"{split}_partial"
            ),
        ]
    columns += [
        sa.func.count().label("evaluations"),
        sa.func.sum(e.c.tokens_in).label("tokens_in"),
        sa.func.sum(e.c.tokens_out).label("tokens_out"),
    ]
    query = sa.select(*columns).group_by(e.c.run_id, e.c.candidate_hash)
    if run_filter is not None:
        query = query.where(run_filter)
    return query.subquery("per_candidate")


def leaderboard_rows(
    store: Store,
    *,
    task: str | None = None,
    model: str | None = None,
    run: str | None = None,
    top: int | None = 20,
    min_dev_n: int = 0,
) -> Sequence[sa.RowMapping]:
    """One row per (run, candidate), best dev mean first (ties: more dev examples, then the
    newer run); rows never scored on dev come last. Each row has the aggregate's columns
    (``dev_scored``, ``dev_total``, ``dev_correct``, ... ``evaluations``, ``tokens_in``,
    ``tokens_out``) and the run's ``task``, ``model``, ``kind``, ``config`` (JSON text),
    ``created_at``, the link's ``origin`` and the candidate's ``spec`` (JSON text)."""
    runs = RUNS
    run_conditions: list[sa.ColumnElement[bool]] = []
    if task is not None:
        run_conditions.append(runs.c.task == task)
    if model is not None:
        run_conditions.append(runs.c.model == model)
    if run is not None:
        run_conditions.append(runs.c.id == run)
    run_filter: sa.ColumnElement[bool] | None = (
        EVALUATIONS.c.run_id.in_(sa.select(runs.c.id).where(*run_conditions)) if run_conditions else None
    )
    if run is not None and not (task or model):
        run_filter = EVALUATIONS.c.run_id == run
    per = _aggregate(run_filter)
    dev_mean = sa.cast(per.c.dev_correct, sa.Float) / sa.func.nullif(per.c.dev_scored, 0)
    links = RUN_CANDIDATES
    query = (
        sa.select(
            per,
            runs.c.task,
            runs.c.model,
            runs.c.kind,
            runs.c.config,
            runs.c.created_at,
            links.c.origin,
            CANDIDATES.c.spec,
        )
        .join(runs, runs.c.id == per.c.run_id)
        .join(
            links,
            sa.and_(links.c.run_id == per.c.run_id, links.c.candidate_hash == per.c.candidate_hash),
        )
        .join(CANDIDATES, CANDIDATES.c.hash == per.c.candidate_hash)
        .order_by(
            sa.case((per.c.dev_scored == 0, 1), else_=0),
            dev_mean.desc(),
            per.c.dev_scored.desc(),
            runs.c.created_at.desc(),
            per.c.candidate_hash,
        )
    )
    if min_dev_n > 0:
        query = query.where(per.c.dev_scored >= min_dev_n)
    if top is not None:
        query = query.limit(top)
    with store.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return rows


def candidate_score_row(store: Store, run_id: str, candidate_hash: str) -> sa.RowMapping | None:
    """The aggregate row (as in :func:`leaderboard_rows`, without the run's columns) of one
    candidate in one run; None when it has no evaluations there."""
    e = EVALUATIONS
    per = _aggregate(sa.and_(e.c.run_id == run_id, e.c.candidate_hash == candidate_hash))
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(per)).mappings().first()
    return row


def request_rows(store: Store, run_id: str) -> Sequence[Any]:
    """``(candidate_hash, split, score, requests)`` for each evaluation of the run in the
    order recorded; ``requests`` is its number of stored samples (at least 1)."""
    e = EVALUATIONS
    samples = sa.select(SAMPLES.c.evaluation_id, sa.func.count().label("requests")).group_by(
        SAMPLES.c.evaluation_id
    )
    samples_sq = samples.where(
        SAMPLES.c.evaluation_id.in_(sa.select(e.c.id).where(e.c.run_id == run_id))
    ).subquery()
    query = (
        sa.select(e.c.candidate_hash, e.c.split, e.c.score, sa.func.coalesce(samples_sq.c.requests, 1))
        .select_from(e.outerjoin(samples_sq, samples_sq.c.evaluation_id == e.c.id))
        .where(e.c.run_id == run_id)
        .order_by(e.c.id)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return rows


def ids_starting_with(store: Store, ref: str, limit: int = 6) -> tuple[list[str], list[str]]:
    """Run ids and candidate hashes that start with ``ref`` (``limit`` of each, sorted)."""
    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with store.engine.connect() as conn:
        runs = list(
            conn.execute(
                sa.select(RUNS.c.id)
                .where(RUNS.c.id.like(escaped, escape="\\"))
                .order_by(RUNS.c.id)
                .limit(limit)
            ).scalars()
        )
        hashes = list(
            conn.execute(
                sa.select(CANDIDATES.c.hash)
                .where(CANDIDATES.c.hash.like(escaped, escape="\\"))
                .order_by(CANDIDATES.c.hash)
                .limit(limit)
            ).scalars()
        )
    return runs, hashes


def runs_of_candidate(store: Store, candidate_hash: str) -> list[str]:
    """The runs ``candidate_hash`` is part of: most dev evaluations first, then newest."""
    e = EVALUATIONS
    links = RUN_CANDIDATES
    dev_n = (
        sa.select(sa.func.count())
        .where(e.c.run_id == links.c.run_id, e.c.candidate_hash == links.c.candidate_hash, e.c.split == "dev")
        .scalar_subquery()
    )
    query = (
        sa.select(links.c.run_id)
        .join(RUNS, RUNS.c.id == links.c.run_id)
        .where(links.c.candidate_hash == candidate_hash)
        .order_by(dev_n.desc(), RUNS.c.created_at.desc())
    )
    with store.engine.connect() as conn:
        run_ids = list(conn.execute(query).scalars())
    return run_ids


def candidate_link(store: Store, run_id: str, candidate_hash: str) -> Any | None:
    """How the candidate came into the run: a row with ``origin`` and ``parent_hash``,
    or None when it is not part of the run."""
    with store.engine.connect() as conn:
        link = conn.execute(
            sa.select(RUN_CANDIDATES.c.origin, RUN_CANDIDATES.c.parent_hash).where(
                RUN_CANDIDATES.c.run_id == run_id, RUN_CANDIDATES.c.candidate_hash == candidate_hash
            )
        ).first()
    return link


def bulk_insert(
    store: Store,
    *,
    candidates: Sequence[Mapping[str, Any]] = (),
    run_candidates: Sequence[Mapping[str, Any]] = (),
    evaluations: Sequence[Mapping[str, Any]] = (),
    chunk: int = 20_000,
) -> None:
    """Insert raw rows of the candidates, run-candidate links and evaluations tables in
    one transaction with plain executemany: no checks, no samples, no de-duplication.
    For generating large databases (``benchmarks/leaderboard_scale.py``); everything
    else writes through :class:`~promptopt.store.Store`'s methods."""
    with store.engine.begin() as conn:
        if candidates:
            conn.execute(CANDIDATES.insert(), list(candidates))
        if run_candidates:
            conn.execute(RUN_CANDIDATES.insert(), list(run_candidates))
        for start in range(0, len(evaluations), chunk):
            conn.execute(EVALUATIONS.insert(), list(evaluations[start : start + chunk]))
