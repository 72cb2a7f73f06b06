"""The store's suite, run on SQLite and on a real PostgreSQL server.

PostgreSQL: set ``PROMPTOPT_TEST_PG_URL`` (``export PROMPTOPT_TEST_PG_URL=$(bash
.ci/postgres.sh | tail -1)``); each test gets its own throw-away database. Without it
the PostgreSQL cases are skipped, unless ``PROMPTOPT_REQUIRE_PG=1``, which makes them
fail instead (CI sets it so that a broken server cannot pass silently).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptopt.errors import SchemaVersionError, StoreError
from promptopt.store import Store, scrub_secrets
from promptopt.store import store as store_module
from promptopt.store.schema import VERSION_TABLE, Base
from promptopt.types import Candidate, Completion, EvalResult, SampleResult

HEAD = store_module.head_revision()

PG_URL_ENV = "PROMPTOPT_TEST_PG_URL"
REQUIRE_PG_ENV = "PROMPTOPT_REQUIRE_PG"
HEAD = store_module.head_revision()  # the shipped migrations' head (0005 adds feedback)
PO_TABLES = {"po_runs", "po_candidates", "po_run_candidates", "po_evaluations", "po_samples", "po_cache"}


# --------------------------------------------------------------------------- fixtures


def _pg_base_url() -> str:
    url = os.environ.get(PG_URL_ENV)
    if url:
        return url
    message = (
        f"PostgreSQL store tests need {PG_URL_ENV}; "
        f"run `export {PG_URL_ENV}=$(bash .ci/postgres.sh | tail -1)`"
    )
    if os.environ.get(REQUIRE_PG_ENV) == "1":
        pytest.fail(f"{REQUIRE_PG_ENV}=1 but {message}")
    pytest.skip(message)


def _fresh_pg_database() -> Iterator[str]:
    """Create a database of its own for one test; drop it afterwards."""
    base = sa.engine.make_url(_pg_base_url())
    name = f"po_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a new, empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield from _fresh_pg_database()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url)


def _execute(url: str, *statements: str) -> None:
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _scalar(url: str, statement: str) -> object:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(statement).scalar()
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = _engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _result(
    candidate: Candidate,
    example_id: str,
    split: str = "dev",
    score: float | None = 1.0,
    n_samples: int = 1,
    answer: str | None = "42",
    error: str | None = None,
) -> EvalResult:
    samples = tuple(
        SampleResult(
            sample_index=i,
            raw_output=f"step {i}... The answer is {answer}.",
            parsed_answer=answer,
            score=score,
            tokens_in=10 + i,
            tokens_out=20 + i,
            latency_s=0.25 * (i + 1),
            cached=i % 2 == 1,
            error=error,
        )
        for i in range(n_samples)
    )
    return EvalResult(
        candidate_hash=candidate.hash,
        example_id=example_id,
        split=split,
        answer=answer,
        gold="42",
        score=score,
        samples=samples,
        error=error,
    )


def _new_run(store: Store, *candidates: Candidate) -> str:
    run_id = store.create_run(kind="eval", task="gsm8k", model="fake/echo", config={"limit": 10}, seed=7)
    for candidate in candidates:
        store.add_candidate(run_id, candidate)
    return run_id


CAND_A = Candidate(instruction="Solve the math word problem.", cot_mode="zero_shot", cot_trigger="Think.")
CAND_B = Candidate(instruction="Answer with a number.", demo_ids=("d1", "d2"), samples=3, temperature=0.7)


# --------------------------------------------------------------------------- schema creation


def test_new_database_is_created_at_head(db_url: str) -> None:
    with Store(db_url) as store:
        assert store.head_revision() == HEAD
        assert store.current_revision() == store.head_revision()
    tables = _tables(db_url)
    assert PO_TABLES | {VERSION_TABLE} <= tables
    # Optuna's version table name stays free for Optuna.
    assert "alembic_version" not in tables
    # Re-opening an up-to-date database changes nothing.
    with Store(db_url) as store:
        assert store.current_revision() == HEAD


def test_models_match_migrations(db_url: str) -> None:
    """The declarative models and the migrations describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    Store(db_url).close()
    engine = _engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "version_table": VERSION_TABLE,
                    "include_name": lambda name, type_, parents: (
                        type_ != "table" or (name or "").startswith("po_") and name != VERSION_TABLE
                    ),
                },
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_creates_a_new_database_and_is_idempotent(db_url: str) -> None:
    assert Store.upgrade(db_url) == (None, HEAD)
    assert Store.upgrade(db_url) == (HEAD, HEAD)
    with Store(db_url) as store:
        assert store.current_revision() == HEAD


def test_concurrent_first_open_creates_the_schema_once(db_url: str) -> None:
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            Store(db_url).close()
        except BaseException as e:  # collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _scalar(db_url, f"SELECT COUNT(*) FROM {VERSION_TABLE}") == 1


def test_many_concurrent_first_opens_of_new_sqlite_files_never_fail(tmp_path: Path) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite refuses a
    # competing opener at once instead of waiting out the busy timeout; this used to
    # fail about one round in a hundred ("database is locked"), so run many rounds.
    errors: list[BaseException] = []

    def open_store(url: str) -> None:
        try:
            Store(url).close()
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    for round_ in range(40):
        url = f"sqlite:///{tmp_path / f'round{round_}.db'}"
        threads = [threading.Thread(target=open_store, args=(url,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], f"round {round_}"
        assert _scalar(url, f"SELECT COUNT(*) FROM {VERSION_TABLE}") == 1
        assert _scalar(url, "PRAGMA journal_mode") == "wal"


# --------------------------------------------------------------------------- runs


def test_run_round_trip(store: Store) -> None:
    config = {"task": "gsm8k", "limit": 100, "nested": {"shots": [1, 2]}, "path": Path("/data")}
    run_id = store.create_run(
        kind="search", task="gsm8k", model="openai/gpt", config=config, seed=1234, dataset_hash="abc123"
    )
    assert len(run_id) == 12 and all(c in "0123456789abcdef" for c in run_id)

    run = store.get_run(run_id)
    assert (run.id, run.kind, run.task, run.model, run.status) == (
        run_id,
        "search",
        "gsm8k",
        "openai/gpt",
        "running",
    )
    assert run.config == {"task": "gsm8k", "limit": 100, "nested": {"shots": [1, 2]}, "path": "/data"}
    assert (run.seed, run.dataset_hash, run.summary, run.finished_at) == (1234, "abc123", None, None)
    assert run.created_at.tzinfo == timezone.utc
    assert run.promptopt_version

    store.finish_run(run_id, "finished", summary={"accuracy": 0.5, "ci95": [0.4, 0.6]})
    done = store.get_run(run_id)
    assert done.status == "finished"
    assert done.summary == {"accuracy": 0.5, "ci95": [0.4, 0.6]}
    assert done.finished_at is not None and done.finished_at >= done.created_at
    assert done.finished_at.tzinfo == timezone.utc


def test_list_runs_newest_first_with_limit(store: Store) -> None:
    ids = [store.create_run(kind="eval", task=f"t{i}", model="m", config={}) for i in range(5)]
    listed = [r.id for r in store.list_runs()]
    assert listed == list(reversed(ids))
    assert [r.id for r in store.list_runs(limit=2)] == list(reversed(ids))[:2]


def test_given_run_id_is_used_and_must_be_unique(store: Store) -> None:
    assert store.create_run(kind="eval", task="t", model="m", config={}, run_id="my-run_1") == "my-run_1"
    with pytest.raises(StoreError, match="already exists"):
        store.create_run(kind="eval", task="t", model="m", config={}, run_id="my-run_1")
    with pytest.raises(StoreError, match="invalid run id"):
        store.create_run(kind="eval", task="t", model="m", config={}, run_id="bad id; drop table")


def test_secret_looking_config_keys_are_scrubbed(store: Store) -> None:
    config = {
        "api_key": "sk-live-1",
        "OPENAI_API_KEY": "sk-live-2",
        "backend": {
            "base_url": "http://localhost:8000/v1",
            "headers": {"Authorization": "Bearer sk-live-3"},
            "Password": "hunter2",
        },
        "proxies": [{"client_secret": "s3"}, {"name": "ok"}],
        "db": "postgresql://user:pw-live-4@host/db",
        "max_tokens": 256,
        "api_key_env": None,
    }
    original = repr(config)
    run_id = store.create_run(kind="eval", task="t", model="m", config=config)
    assert repr(config) == original  # the caller's dict is not modified
    stored = store.get_run(run_id).config
    assert stored == {
        "api_key": "***",
        "OPENAI_API_KEY": "***",
        "backend": {
            "base_url": "http://localhost:8000/v1",
            "headers": {"Authorization": "***"},
            "Password": "***",
        },
        "proxies": [{"client_secret": "***"}, {"name": "ok"}],
        "db": "postgresql://user:***@host/db",
        "max_tokens": 256,
        "api_key_env": None,
    }
    engine = _engine(store.url)
    try:
        with engine.connect() as conn:
            raw = conn.exec_driver_sql("SELECT config FROM po_runs").scalar_one()
    finally:
        engine.dispose()
    for secret in ("sk-live", "hunter2", 's3"', "pw-live-4"):
        assert secret not in raw


def test_scrub_secrets_is_pure() -> None:
    assert scrub_secrets({"a": [{"SECRET": 1}], "b": "x"}) == {"a": [{"SECRET": "***"}], "b": "x"}


def test_unknown_run_suggests_ids(store: Store) -> None:
    run_id = store.create_run(kind="eval", task="t", model="m", config={}, run_id="abc123def456")
    with pytest.raises(StoreError) as info:
        store.get_run("abc1")
    assert "no run 'abc1'" in str(info.value)
    assert info.value.hint == f"did you mean {run_id!r}?"
    with pytest.raises(StoreError) as info:
        store.get_run("abc123def457")  # a typo, not a prefix
    assert info.value.hint == f"did you mean {run_id!r}?"
    with pytest.raises(StoreError) as info:
        store.get_run("zzz%")
    assert info.value.hint is None
    with pytest.raises(StoreError, match="no run"):
        store.finish_run("nope", "failed")


def test_finish_run_validates_status(store: Store) -> None:
    run_id = _new_run(store)
    with pytest.raises(StoreError, match="unknown run status 'done'"):
        store.finish_run(run_id, "done")
    store.finish_run(run_id, "interrupted")
    assert store.get_run(run_id).status == "interrupted"
    assert store.get_run(run_id).summary is None


# --------------------------------------------------------------------------- candidates


def test_candidate_round_trip_and_idempotent_add(store: Store) -> None:
    run_1 = _new_run(store)
    run_2 = _new_run(store)
    assert store.add_candidate(run_1, CAND_A) == CAND_A.hash
    assert store.add_candidate(run_1, CAND_A, origin="ape") == CAND_A.hash  # again: no-op
    assert store.add_candidate(run_2, CAND_A, origin="opro") == CAND_A.hash  # shared across runs
    assert store.add_candidate(run_1, CAND_B, origin="ape", parent=CAND_A.hash) == CAND_B.hash

    assert store.get_candidate(CAND_A.hash) == CAND_A
    assert store.get_candidate(CAND_B.hash) == CAND_B
    assert store.get_candidate(CAND_B.hash).demo_ids == ("d1", "d2")

    engine = _engine(store.url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM po_candidates").scalar() == 2
            links = conn.exec_driver_sql(
                "SELECT run_id, candidate_hash, origin, parent_hash FROM po_run_candidates"
            ).all()
    finally:
        engine.dispose()
    assert sorted(tuple(r) for r in links) == sorted(
        [
            (run_1, CAND_A.hash, "user", None),  # the first origin is kept
            (run_2, CAND_A.hash, "opro", None),
            (run_1, CAND_B.hash, "ape", CAND_A.hash),
        ]
    )


def test_candidate_errors(store: Store) -> None:
    run_id = _new_run(store, CAND_A)
    with pytest.raises(StoreError) as info:
        store.get_candidate(CAND_A.hash[:6])
    assert info.value.hint == f"did you mean {CAND_A.hash!r}?"
    with pytest.raises(StoreError, match="no parent candidate"):
        store.add_candidate(run_id, CAND_B, parent="0" * 16)
    with pytest.raises(StoreError, match="no run"):
        store.add_candidate("missing", CAND_B)


# --------------------------------------------------------------------------- evaluations


def test_evaluations_round_trip_with_samples(store: Store) -> None:
    run_id = _new_run(store, CAND_A, CAND_B)
    results = [
        _result(CAND_A, "q1"),
        _result(CAND_A, "q2", score=0.0, answer="41"),
        _result(CAND_A, "q1", split="test"),
        _result(CAND_B, "q1", n_samples=3),
        # Every sample failed: no answer, no score (not a wrong answer).
        _result(CAND_B, "q2", score=None, answer=None, n_samples=3, error="BackendError: HTTP 503"),
        EvalResult(CAND_B.hash, "q3", "dev", "ü €", "ü €", 1.0, samples=(), error=None),
    ]
    assert store.record_evaluations(run_id, results) == len(results)

    assert store.get_evaluations(run_id) == results
    assert store.get_evaluations(run_id, candidate_hash=CAND_A.hash) == results[:3]
    assert store.get_evaluations(run_id, split="test") == [results[2]]
    assert store.get_evaluations(run_id, candidate_hash=CAND_B.hash, split="dev") == results[3:]
    assert store.get_evaluations("other-run") == []

    failed = store.get_evaluations(run_id)[4]
    assert failed.score is None and failed.answer is None and failed.error == "BackendError: HTTP 503"
    assert [s.sample_index for s in failed.samples] == [0, 1, 2]
    assert failed.tokens_in == 10 + 11 + 12 and failed.cache_hits == 1

    assert store.evaluated_example_ids(run_id, CAND_B.hash, "dev") == {"q1", "q2", "q3"}
    assert store.evaluated_example_ids(run_id, CAND_A.hash, "test") == {"q1"}
    assert store.evaluated_example_ids(run_id, CAND_A.hash, "train") == set()

    # Per-evaluation totals are denormalised for leaderboard queries.
    engine = _engine(store.url)
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT tokens_in, tokens_out, latency_s FROM po_evaluations WHERE example_id = 'q1' "
                f"AND candidate_hash = '{CAND_B.hash}'"
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == (33, 63, 1.5)


def test_record_evaluations_is_idempotent(store: Store) -> None:
    run_id = _new_run(store, CAND_A, CAND_B)
    batch = [_result(CAND_A, f"q{i}", n_samples=2) for i in range(10)]
    assert store.record_evaluations(run_id, batch) == 10
    assert store.record_evaluations(run_id, batch) == 0  # the same batch again
    # Overlapping batch: only the new rows go in; a changed stored row is not overwritten.
    overlap = [_result(CAND_A, "q0", score=0.0, answer="7"), _result(CAND_A, "q10"), _result(CAND_B, "q0")]
    assert store.record_evaluations(run_id, overlap) == 2
    # Duplicates inside one batch: the first wins.
    dupes = [_result(CAND_B, "q99", answer="1"), _result(CAND_B, "q99", answer="2")]
    assert store.record_evaluations(run_id, dupes) == 1
    assert store.record_evaluations(run_id, []) == 0

    stored = store.get_evaluations(run_id)
    assert len(stored) == 13
    assert stored[:10] == batch
    assert [r.answer for r in stored if r.example_id == "q99"] == ["1"]
    assert _scalar(store.url, "SELECT COUNT(*) FROM po_evaluations") == 13
    assert _scalar(store.url, "SELECT COUNT(*) FROM po_samples") == 10 * 2 + 3


def test_record_evaluations_requires_known_run_and_candidate(store: Store) -> None:
    run_id = _new_run(store, CAND_A)
    with pytest.raises(StoreError) as info:
        store.record_evaluations(run_id, [_result(CAND_A, "q1"), _result(CAND_B, "q1")])
    assert CAND_B.hash in str(info.value) and "add_candidate" in (info.value.hint or "")
    with pytest.raises(StoreError, match="no run 'ghost'"):
        store.record_evaluations("ghost", [_result(CAND_A, "q1")])
    assert store.get_evaluations(run_id) == []  # nothing from the failed batch


def test_record_evaluations_is_one_transaction(store: Store) -> None:
    run_id = _new_run(store, CAND_A)
    good = [_result(CAND_A, f"q{i}") for i in range(5)]
    # The database driver cannot bind an object() as the sample index.
    broken_sample = SampleResult(object(), "raw", "1", 1.0)  # type: ignore[arg-type]
    bad = EvalResult(CAND_A.hash, "q-bad", "dev", "1", "1", 1.0, samples=(broken_sample,))
    with pytest.raises(StoreError):
        store.record_evaluations(run_id, [*good, bad])
    # The evaluation rows were inserted before the samples failed; all were rolled back.
    assert store.get_evaluations(run_id) == []
    assert store.record_evaluations(run_id, good) == 5


def test_nul_characters_and_nan_scores_are_stored_safely(store: Store) -> None:
    run_id = _new_run(store, CAND_A)
    sample = SampleResult(0, "raw\x00output", "4\x00", float("nan"))
    result = EvalResult(CAND_A.hash, "q1", "dev", "4\x00", "4", float("nan"), samples=(sample,))
    assert store.record_evaluations(run_id, [result]) == 1
    [stored] = store.get_evaluations(run_id)
    assert stored.answer == "4\ufffd" and stored.score is None
    assert stored.samples[0].raw_output == "raw\ufffdoutput" and stored.samples[0].score is None


def test_large_batch_spans_several_insert_chunks(store: Store) -> None:
    run_id = _new_run(store, CAND_A)
    n = store_module._INSERT_CHUNK * 2 + 17
    batch = [_result(CAND_A, f"ex-{i:06d}") for i in range(n)]
    assert store.record_evaluations(run_id, batch) == n
    assert store.record_evaluations(run_id, batch[-100:]) == 0
    assert len(store.evaluated_example_ids(run_id, CAND_A.hash, "dev")) == n
    stored = store.get_evaluations(run_id)
    assert len(stored) == n and stored[-1] == batch[-1]
    assert all(len(r.samples) == 1 for r in stored)


def test_concurrent_writers_do_not_duplicate(db_url: str) -> None:
    with Store(db_url) as setup:
        run_id = _new_run(setup, CAND_A)
    batches = [[_result(CAND_A, f"q{i}") for i in range(start, start + 200)] for start in (0, 100, 50, 150)]
    inserted: list[int] = []
    errors: list[BaseException] = []

    def write(batch: list[EvalResult]) -> None:
        try:
            with Store(db_url) as store:
                for i in range(0, len(batch), 20):
                    inserted.append(store.record_evaluations(run_id, batch[i : i + 20]))
        except BaseException as e:  # re-raised below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(inserted) == 350
    assert _scalar(db_url, "SELECT COUNT(*) FROM po_evaluations") == 350


@st.composite
def _texts(draw: st.DrawFn) -> str:
    return draw(st.text(max_size=200))


def test_bad_identifiers_are_refused_on_every_dialect(store: Store) -> None:
    run_id = _new_run(store, CAND_A)
    for bad in ("", "a\x00b", "x" * 256):
        with pytest.raises(StoreError, match="example id"):
            store.record_evaluations(run_id, [_result(CAND_A, "fine"), _result(CAND_A, bad)])
    with pytest.raises(StoreError, match="split"):
        store.record_evaluations(run_id, [_result(CAND_A, "q1", split="s" * 65)])
    assert store.get_evaluations(run_id) == []
    longest = "é" * 255  # characters, not bytes
    assert store.record_evaluations(run_id, [_result(CAND_A, longest)]) == 1
    assert store.evaluated_example_ids(run_id, CAND_A.hash, "dev") == {longest}


def test_arbitrary_text_round_trips(store: Store) -> None:
    run_id = _new_run(store, CAND_A)
    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        raw=_texts(),
        answer=st.one_of(st.none(), _texts()),
        gold=_texts(),
        example_id=st.text(st.characters(exclude_characters="\x00"), max_size=200),
    )
    def check(raw: str, answer: str | None, gold: str, example_id: str) -> None:
        example_id = f"{next(counter)}:{example_id}"[:255]
        sample = SampleResult(0, raw, answer, 0.5, tokens_in=1, tokens_out=2, latency_s=0.125)
        result = EvalResult(CAND_A.hash, example_id, "dev", answer, gold, 0.5, samples=(sample,))
        assert store.record_evaluations(run_id, [result]) == 1
        stored = store.get_evaluations(run_id)[-1]

        def clean(text: str | None) -> str | None:
            return None if text is None else text.replace("\x00", "\ufffd")

        expected_sample = SampleResult(0, clean(raw) or "", clean(answer), 0.5, 1, 2, 0.125)
        assert stored == EvalResult(
            CAND_A.hash,
            clean(example_id) or "",
            "dev",
            clean(answer),
            clean(gold) or "",
            0.5,
            (expected_sample,),
        )

    check()


# --------------------------------------------------------------------------- response cache


def test_cache_round_trip(store: Store) -> None:
    ok = Completion("The answer is 4.", tokens_in=12, tokens_out=5, finish_reason="length", latency_s=1.5)
    failed = Completion("", error="HTTP 500", retryable=True)
    key_ok, key_failed, key_missing = "a" * 64, "b" * 64, "c" * 64
    store.cache_put_many([(key_ok, "fake/echo", ok), (key_failed, "fake/echo", failed)])

    got = store.cache_get_many([key_ok, key_failed, key_missing])
    assert got == {
        key_ok: Completion("The answer is 4.", 12, 5, "length", latency_s=0.0, cached=True),
    }
    assert store.cache_get_many([]) == {}

    # Idempotent on the key: the first response stays.
    store.cache_put_many([(key_ok, "fake/echo", Completion("other")), (key_ok, "fake/echo", Completion("x"))])
    assert store.cache_get_many([key_ok])[key_ok].text == "The answer is 4."
    store.cache_put_many([])
    assert _scalar(store.url, "SELECT COUNT(*) FROM po_cache") == 1


def test_cache_many_keys(store: Store) -> None:
    entries = [(f"{i:064x}", "m", Completion(f"text {i}", tokens_out=i)) for i in range(1200)]
    store.cache_put_many(entries)
    keys = [key for key, _, _ in entries] + ["f" * 64]
    got = store.cache_get_many(keys)
    assert len(got) == 1200
    assert got[f"{1199:064x}"] == Completion("text 1199", tokens_out=1199, cached=True)


# --------------------------------------------------------------------------- schema versions


def _migrations_with_extra_revision(tmp_path: Path) -> Path:
    """A copy of the shipped migrations plus a revision 9999 on top, as a newer
    promptopt would ship it."""
    target = tmp_path / "migrations"
    shutil.copytree(store_module.MIGRATIONS_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    (target / "versions" / "9999_extra.py").write_text(
        '"""Test-only revision."""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        "revision = '9999'\n"
        f"down_revision = '{HEAD}'\n"
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade():\n"
        "    op.create_table('po_test_extra', sa.Column('id', sa.Integer, primary_key=True))\n\n\n"
        "def downgrade():\n"
        "    op.drop_table('po_test_extra')\n"
    )
    return target


def test_older_database_needs_upgrade(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(db_url) as store:
        run_id = _new_run(store, CAND_A)
        store.record_evaluations(run_id, [_result(CAND_A, "q1")])
    display = store_module.mask_url(db_url)

    # A newer promptopt (head 9999) meets this database at HEAD.
    monkeypatch.setattr(store_module, "MIGRATIONS_DIR", _migrations_with_extra_revision(tmp_path))
    with pytest.raises(SchemaVersionError) as info:
        Store(db_url)
    message = str(info.value)
    assert f"revision {HEAD}, older than this promptopt's 9999" in message
    assert f"promptopt db upgrade --db {display}" in message
    if "@" in db_url:
        password = sa.engine.make_url(db_url).password
        assert password and f":{password}@" not in message and ":***@" in message

    assert Store.upgrade(db_url) == (HEAD, "9999")
    with Store(db_url) as store:
        assert store.current_revision() == "9999"
        assert store.get_evaluations(run_id) == [_result(CAND_A, "q1")]  # data survived
    assert "po_test_extra" in _tables(db_url)

    # And this promptopt (head HEAD) now meets a database from the future.
    monkeypatch.undo()
    with pytest.raises(SchemaVersionError) as info:
        Store(db_url)
    assert "9999" in str(info.value) and "upgrade promptopt" in (info.value.hint or "")


def test_unknown_revision_in_version_table(db_url: str) -> None:
    Store(db_url).close()
    _execute(db_url, f"UPDATE {VERSION_TABLE} SET version_num = 'f00dfeed'")
    with pytest.raises(SchemaVersionError) as info:
        Store(db_url)
    assert "f00dfeed" in str(info.value) and "newer promptopt" in str(info.value)
    assert "pip install -U promptopt" in (info.value.hint or "")
    with pytest.raises(SchemaVersionError):
        Store.upgrade(db_url)  # cannot migrate from a revision it does not know
    _execute(db_url, f"UPDATE {VERSION_TABLE} SET version_num = '{HEAD}'")
    Store(db_url).close()


def test_tables_without_version_table_are_refused(db_url: str) -> None:
    Store(db_url).close()
    _execute(db_url, f"DROP TABLE {VERSION_TABLE}")
    with pytest.raises(StoreError) as info:
        Store(db_url)
    assert "no po_alembic_version table" in str(info.value)
    assert "po_runs" in str(info.value)


def test_coexists_with_optuna_tables(db_url: str) -> None:
    # Optuna's RDB storage first (its real schema has more columns; names are what matter).
    _execute(
        db_url,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        "INSERT INTO alembic_version (version_num) VALUES ('v3.2.0.a')",
        "CREATE TABLE version_info (version_info_id INTEGER PRIMARY KEY, schema_version INTEGER, "
        "library_version VARCHAR(256))",
        "INSERT INTO version_info VALUES (1, 12, '4.1.0')",
        "CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name VARCHAR(512) NOT NULL)",
        "INSERT INTO studies VALUES (1, 'promptopt-search')",
        "CREATE TABLE trials (trial_id INTEGER PRIMARY KEY, study_id INTEGER)",
    )
    with Store(db_url) as store:
        assert store.current_revision() == HEAD
        run_id = _new_run(store, CAND_A)
    # Optuna's tables and version are untouched...
    assert _scalar(db_url, "SELECT version_num FROM alembic_version") == "v3.2.0.a"
    assert _scalar(db_url, "SELECT study_name FROM studies") == "promptopt-search"
    # ...and Optuna writing more of its tables later does not disturb promptopt.
    _execute(db_url, "CREATE TABLE trial_values (trial_value_id INTEGER PRIMARY KEY)")
    with Store(db_url) as store:
        assert store.get_run(run_id).task == "gsm8k"
    assert Store.upgrade(db_url) == (HEAD, HEAD)
    assert _scalar(db_url, "SELECT version_num FROM alembic_version") == "v3.2.0.a"


# --------------------------------------------------------------------------- opening and URLs


def test_not_a_database_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError) as info:
        Store(str(path))
    assert str(path) in str(info.value)
    assert "not a database" in str(info.value)
    assert path.read_text().startswith("these are my notes")  # left as it was


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        Store(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    assert "cannot open database" in str(info.value) and info.value.hint


def test_unparsable_url() -> None:
    with pytest.raises(StoreError, match="cannot parse database URL"):
        Store("not a url://")


def test_password_is_masked_in_errors_and_display() -> None:
    url = "postgresql+psycopg://someone:Sup3rS3cret@127.0.0.1:1/promptopt"
    with pytest.raises(StoreError) as info:
        Store(url)
    message = str(info.value)
    assert "Sup3rS3cret" not in message
    assert "postgresql+psycopg://someone:***@127.0.0.1:1/promptopt" in message
    assert store_module.mask_url(url) == "postgresql+psycopg://someone:***@127.0.0.1:1/promptopt"
    with pytest.raises(StoreError) as info:
        Store.upgrade(url)
    assert "Sup3rS3cret" not in str(info.value)


@pytest.mark.postgres
def test_wrong_password_on_a_real_server_is_masked() -> None:
    real = sa.engine.make_url(_pg_base_url())
    wrong = real.set(password="Wr0ngPassw0rd").render_as_string(hide_password=False)
    with pytest.raises(StoreError) as info:
        Store(wrong)
    message = str(info.value)
    assert "Wr0ngPassw0rd" not in message and ":***@" in message
    assert "password authentication failed" in message


def test_display_url(tmp_path: Path) -> None:
    with Store(str(tmp_path / "x.db")) as store:
        assert store.display_url == str(tmp_path / "x.db")
        assert store.url == str(tmp_path / "x.db")


def test_url_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROMPTOPT_DB", raising=False)
    with Store() as store:
        assert store.url == "sqlite:///promptopt.db"
    assert (tmp_path / "promptopt.db").exists()

    monkeypatch.setenv("PROMPTOPT_DB", str(tmp_path / "from_env.db"))
    with Store() as store:
        assert store.url == str(tmp_path / "from_env.db")
    assert (tmp_path / "from_env.db").exists()

    with Store(str(tmp_path / "explicit.db")) as store:  # the argument beats the environment
        assert store.url.endswith("explicit.db")
    assert (tmp_path / "explicit.db").exists()


def test_sqlite_settings(tmp_path: Path) -> None:
    with Store(str(tmp_path / "s.db")) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    # The file is a real SQLite database another tool can read.
    with sqlite3.connect(tmp_path / "s.db") as raw:
        assert raw.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone() == (HEAD,)


def test_migrations_ship_inside_the_package() -> None:
    """Alembic is configured from the package directory, not from an alembic.ini."""
    import promptopt.store

    package_dir = Path(promptopt.store.__file__).parent
    assert package_dir / "migrations" == store_module.MIGRATIONS_DIR
    assert (package_dir / "migrations" / "env.py").is_file()
    assert (package_dir / "migrations" / "script.py.mako").is_file()
    assert (package_dir / "migrations" / "versions" / "0001_initial.py").is_file()


def test_the_name_of_a_key_variable_is_kept_for_a_resume(tmp_path: Path) -> None:
    # "api_key_env" names the variable holding the key; masked, a resumed OpenAI run looked
    # for a variable called "***" and sent every request without a key.
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        config = {"backend_options": {"api_key_env": "MY_KEY"}, "api_key": "sk-live"}
        run_id = store.create_run(kind="search", task="t", model="m", config=config)
        stored = store.get_run(run_id).config
    assert stored == {"backend_options": {"api_key_env": "MY_KEY"}, "api_key": "***"}


def test_a_write_that_cannot_take_sqlites_lock_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN IMMEDIATE goes straight to the driver; its failure (another writer holds the
    lock past the busy timeout) is still a StoreError, and the store works afterwards."""
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    with Store(f"sqlite:///{tmp_path}/locked.db") as store:
        store.cache_put_many([("a", "m", Completion(text="x"))])
        other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="database is locked"):
                store.cache_put_many([("b", "m", Completion(text="y"))])
        finally:
            other.execute("ROLLBACK")
            other.close()
        store.cache_put_many([("b", "m", Completion(text="y"))])
        assert sorted(store.cache_get_many(["a", "b"])) == ["a", "b"]
