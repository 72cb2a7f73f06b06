"""The store's methods on candidates and evaluations: a candidate stored once and linked
to runs, evaluation rows with their samples written in one transaction and read back."""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from promptopt.errors import StoreError
from promptopt.store.base import StoreBase
from promptopt.store.common import (
    _IN_CHUNK,
    _INSERT_CHUNK,
    _check_key,
    _chunks,
    _insert_ignore,
    _now,
    _score,
    _text,
)
from promptopt.store.schema import CANDIDATES, EVALUATIONS, RUN_CANDIDATES, RUNS, SAMPLES
from promptopt.types import Candidate, EvalResult, SampleResult, canonical_json

_LINKED = sa.select(RUN_CANDIDATES.c.candidate_hash).where(
    RUN_CANDIDATES.c.run_id == sa.bindparam("run_id"),
    RUN_CANDIDATES.c.candidate_hash.in_(sa.bindparam("hashes", expanding=True)),
)
"""Which of some candidates a run has; built once, as it is asked at every recorded batch."""


class CandidateMethods(StoreBase):
    """Candidates: :meth:`add_candidate`, :meth:`get_candidate`."""

    def add_candidate(
        self, run_id: str, candidate: Candidate, origin: str = "user", parent: str | None = None
    ) -> str:
        """Store ``candidate`` (once, shared by all runs) and link it to ``run_id``.
        Idempotent: adding it again keeps the first origin and parent. ``parent`` is
        the hash of an already stored candidate. Returns the candidate's hash."""
        candidate_hash = candidate.hash
        candidates = CANDIDATES
        links = RUN_CANDIDATES
        runs = RUNS
        now = _now()
        with self._transaction(write=True) as conn:
            if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
                raise self._unknown("run", run_id, conn, runs.c.id, runs.c.created_at)
            if parent is not None and parent != candidate_hash:
                found = conn.execute(sa.select(candidates.c.hash).where(candidates.c.hash == parent)).first()
                if found is None:
                    raise self._unknown("parent candidate", parent, conn, candidates.c.hash)
            _insert_ignore(
                conn,
                candidates,
                [{"hash": candidate_hash, "spec": canonical_json(candidate.to_dict()), "created_at": now}],
                ["hash"],
            )
            _insert_ignore(
                conn,
                links,
                [
                    {
                        "run_id": run_id,
                        "candidate_hash": candidate_hash,
                        "origin": origin,
                        "parent_hash": parent,
                        "created_at": now,
                    }
                ],
                ["run_id", "candidate_hash"],
            )
        return candidate_hash

    def get_candidate(self, candidate_hash: str) -> Candidate:
        """The candidate with this hash; StoreError (with "did you mean") if unknown."""
        candidates = CANDIDATES
        with self._transaction() as conn:
            spec = conn.execute(
                sa.select(candidates.c.spec).where(candidates.c.hash == candidate_hash)
            ).scalar_one_or_none()
            if spec is None:
                raise self._unknown(
                    "candidate", candidate_hash, conn, candidates.c.hash, candidates.c.created_at
                )
        return Candidate.from_dict(json.loads(spec))


class EvaluationMethods(StoreBase):
    """Evaluations: :meth:`record_evaluations`, :meth:`get_evaluations`,
    :meth:`evaluated_example_ids`."""

    def record_evaluations(self, run_id: str, results: Sequence[EvalResult]) -> int:
        """Insert ``results`` (with their samples) in one transaction and return how many
        were new. A result whose (run, candidate, split, example) is already stored is
        skipped, so re-recording a batch after a crash or retry is harmless. Every
        candidate must have been added to the run with :meth:`add_candidate`."""
        if not results:
            return 0
        for result in results:
            _check_key(result)
        # First occurrence wins within the batch, as it does against stored rows.
        unique: dict[tuple[str, str, str], EvalResult] = {}
        for result in results:
            unique.setdefault((result.candidate_hash, result.split, result.example_id), result)
        now = _now()
        rows = [
            {
                "run_id": run_id,
                "candidate_hash": r.candidate_hash,
                "split": r.split,
                "example_id": r.example_id,
                "answer": _text(r.answer),
                "gold": _text(r.gold) or "",
                "score": _score(r.score),
                "error": _text(r.error),
                "tokens_in": r.tokens_in,
                "tokens_out": r.tokens_out,
                "latency_s": float(r.latency_s),
                "created_at": now,
                "truncated": r.truncated,
                "feedback": _text(r.feedback) or None,
            }
            for r in unique.values()
        ]
        evaluations = EVALUATIONS
        with self._transaction(write=True) as conn:
            self._check_run_candidates(conn, run_id, {key[0] for key in unique})
            ids: dict[tuple[str, str, str], int] = {}
            for chunk in _chunks(rows, _INSERT_CHUNK):
                for row in _insert_ignore(
                    conn,
                    evaluations,
                    chunk,
                    ["run_id", "candidate_hash", "split", "example_id"],
                    returning=[
                        evaluations.c.id,
                        evaluations.c.candidate_hash,
                        evaluations.c.split,
                        evaluations.c.example_id,
                    ],
                ):
                    ids[(row.candidate_hash, row.split, row.example_id)] = row.id
            sample_rows = [
                {
                    "evaluation_id": evaluation_id,
                    "sample_index": s.sample_index,
                    "raw_output": _text(s.raw_output) or "",
                    "parsed_answer": _text(s.parsed_answer),
                    "score": _score(s.score),
                    "tokens_in": s.tokens_in,
                    "tokens_out": s.tokens_out,
                    "latency_s": float(s.latency_s),
                    "cached": bool(s.cached),
                    "error": _text(s.error),
                    "finish_reason": _text(s.finish_reason),
                }
                for key, evaluation_id in ids.items()
                for s in {s.sample_index: s for s in reversed(unique[key].samples)}.values()
            ]
            samples = SAMPLES
            for chunk in _chunks(sample_rows, _INSERT_CHUNK):
                _insert_ignore(conn, samples, chunk, ["evaluation_id", "sample_index"])
        return len(ids)

    def _check_run_candidates(self, conn: Connection, run_id: str, hashes: set[str]) -> None:
        """The run exists and has every one of ``hashes``: one query when it does (a link
        is a row of an existing run: its foreign key), the run looked up only otherwise."""
        runs = RUNS
        known: set[str] = set()
        ordered = sorted(hashes)
        for chunk in _chunks(ordered, _IN_CHUNK):
            known.update(conn.execute(_LINKED, {"run_id": run_id, "hashes": list(chunk)}).scalars())
        missing = [h for h in ordered if h not in known]
        if missing and conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise self._unknown("run", run_id, conn, runs.c.id, runs.c.created_at)
        if missing:
            raise StoreError(
                f"candidate(s) {', '.join(missing)} are not part of run {run_id!r}",
                hint="call Store.add_candidate(run_id, candidate) before recording its evaluations",
            )

    def get_evaluations(
        self, run_id: str, candidate_hash: str | None = None, split: str | None = None
    ) -> list[EvalResult]:
        """The run's evaluations (optionally of one candidate and/or split) with their
        samples, in the order they were recorded."""
        evaluations = EVALUATIONS
        samples = SAMPLES
        conditions = [evaluations.c.run_id == run_id]
        if candidate_hash is not None:
            conditions.append(evaluations.c.candidate_hash == candidate_hash)
        if split is not None:
            conditions.append(evaluations.c.split == split)
        with self._transaction() as conn:
            eval_rows = conn.execute(
                sa.select(evaluations).where(*conditions).order_by(evaluations.c.id)
            ).all()
            sample_query = (
                sa.select(samples)
                .join(evaluations, samples.c.evaluation_id == evaluations.c.id)
                .where(*conditions)
                .order_by(samples.c.evaluation_id, samples.c.sample_index)
            )
            by_evaluation: dict[int, list[SampleResult]] = {}
            for s in conn.execute(sample_query):
                by_evaluation.setdefault(s.evaluation_id, []).append(
                    SampleResult(
                        sample_index=s.sample_index,
                        raw_output=s.raw_output,
                        parsed_answer=s.parsed_answer,
                        score=s.score,
                        tokens_in=s.tokens_in,
                        tokens_out=s.tokens_out,
                        latency_s=s.latency_s,
                        cached=bool(s.cached),
                        error=s.error,
                        finish_reason=s.finish_reason or "stop",
                    )
                )
        return [
            EvalResult(
                candidate_hash=e.candidate_hash,
                example_id=e.example_id,
                split=e.split,
                answer=e.answer,
                gold=e.gold,
                score=e.score,
                samples=tuple(by_evaluation.get(e.id, ())),
                error=e.error,
                feedback=e.feedback,
            )
            for e in eval_rows
        ]

    def evaluated_example_ids(self, run_id: str, candidate_hash: str, split: str) -> set[str]:
        """Ids of the examples already recorded for this run, candidate and split
        (failed ones included): what a resumed run can skip."""
        evaluations = EVALUATIONS
        query = sa.select(evaluations.c.example_id).where(
            evaluations.c.run_id == run_id,
            evaluations.c.candidate_hash == candidate_hash,
            evaluations.c.split == split,
        )
        with self._transaction() as conn:
            return set(conn.execute(query).scalars())
