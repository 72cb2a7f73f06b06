"""Crash-and-resume and faulty-server figures for the README.

``kills``: a real search runs in a subprocess on the fake "skilled" model (promptopt/testing/search_fakes.py)
with a small delay per call, so that kills land mid-work. The harness sends SIGKILL at seeded
random moments, resumes the run in a new process each time, and checks against an uninterrupted
run of the same seed:

- no evaluation row lost (every row stored before a kill is still there, unchanged, at the end,
  and the final set of rows equals the uninterrupted run's) and none duplicated;
- the final leaderboard is identical: winner, dev score (mean, interval, n, tokens) of every
  candidate, the held-out test result, and ``promptopt.leaderboard.leaderboard()`` over the store;
- model calls repeated after a kill are no more than what was in flight: every process logs each
  request the fake answers (one line, written unbuffered before the answer, so it survives
  SIGKILL). A request "in flight" at a kill is one the killed process sent whose answer is not in
  the response cache after the kill. The requests a later process sends again must all be among
  those, and the total calls over all processes minus the uninterrupted run's total must equal
  their number.

Kills are of two kinds, drawn with the seed: *progress* kills land once the search has sent a
random number of distinct requests (plus a random fraction of a call, so mid-batch), spread over
the whole search including the final dev and test phases; *time* kills land at a random moment
after a resumed process starts (during start-up or while it replays from the cache).

``faults``: a search against the loopback OpenAI-compatible server (promptopt.testing) with 20%
of requests failing, spread over every retryable fault kind plus plain 400s: 429 with Retry-After,
500/502/503/504, delays past a short client timeout, connection resets and disconnects, malformed
JSON, empty choices and truncated bodies. It must complete; the figures are faults injected by the
server, faults met by the client, requests retried and evaluations stored as failures.

    python benchmarks/crash_resume.py kills --kills 12 --seed 1
    python benchmarks/crash_resume.py faults --rate 0.2
    python benchmarks/crash_resume.py all

Prints a table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

# The search run in each subprocess. argv: db, mode ("new" or a run id), request log path,
# latency, config JSON. Each request the fake answers is logged as "<cache key>\n" with one
# os.write on an O_APPEND descriptor before it is answered: no Python buffering to lose.
CHILD = r"""
import json, os, sys, time
from promptopt.backends import Backend
from promptopt.controller import SearchConfig, search
from promptopt.tasks import get_task
from promptopt.types import Candidate
from promptopt.testing.search_fakes import skilled_backend

db, mode, log_path, latency, config_json = sys.argv[1:6]
latency = float(latency)
settings = json.loads(config_json)
task = get_task(settings.pop("task"))
fake = skilled_backend(task)
log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


class LoggedFake(Backend):
    # The fake model, one request at a time, each logged before it is answered.
    sent = 0

    @property
    def model_id(self):
        return fake.model_id

    def generate(self, requests):
        return self.generate_each(requests, None)

    def generate_each(self, requests, on_results):
        # each answer reported as it is made, as the local model and the Ray pool do
        out = []
        for request in requests:
            os.write(log, (request.cache_key(fake.model_id) + "\n").encode())
            LoggedFake.sent += 1
            if latency:
                time.sleep(latency)
            out.extend(fake.generate([request]))
            if on_results is not None:
                on_results([(len(out) - 1, out[-1])])
        return out


backend = LoggedFake()
if mode == "new":
    base = Candidate(instruction=settings.pop("instruction"))
    config = SearchConfig.from_preset("light", task=task.name, model="fake", base=base, **settings)
    result = search(config, backend=backend, db=db)
else:
    result = search(db=db, resume=mode, backend=backend)
print("RESULT " + json.dumps({**result.summary(), "sent": LoggedFake.sent}), flush=True)
"""

DEFAULT_CONFIG: dict[str, Any] = {
    "task": "gsm-symbolic",
    "instruction": "Answer.",
    "dev_size": 24,
    "test_size": 40,
    "n_proposals": 4,
    "rounds": 1,
    "seed": 5,
    "batch_size": 4,
}


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def start_child(
    db: str, mode: str, log: Path, latency: float, config: dict[str, Any]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, db, mode, str(log), str(latency), json.dumps(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def finish_child(process: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0 or "RESULT " not in out:
        raise RuntimeError(f"search process failed (exit {process.returncode}):\n{err[-3000:]}")
    return dict(json.loads(out.split("RESULT ", 1)[1].splitlines()[0]))


def read_log(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if len(line) == 64]


def db_path(db: str) -> Path:
    return Path(db.removeprefix("sqlite:///"))


def _row_count(db: str) -> int:
    """Evaluation rows stored so far, read without the store's engine (cheap to poll)."""
    path = db.removeprefix("sqlite:///")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            return int(conn.execute("SELECT count(*) FROM po_evaluations").fetchone()[0])
    except sqlite3.Error:  # not created yet, or busy: try again
        return 0


def stored_rows(db: str) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    """Every evaluation row of the database, keyed by (candidate, split, example)."""
    from promptopt.store import Store

    store = Store(db)
    try:
        rows: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        for run in store.list_runs():
            for r in store.get_evaluations(run.id):
                key = (r.candidate_hash, r.split, r.example_id)
                if key in rows:
                    raise AssertionError(f"duplicated evaluation row {key}")
                rows[key] = (r.answer, r.score, r.tokens_in, r.tokens_out, len(r.samples))
        return rows
    finally:
        store.close()


def raw_row_count(db: str) -> tuple[int, int]:
    """Rows in po_evaluations and distinct (run, candidate, split, example) among them."""
    with sqlite3.connect(db_path(db)) as conn:
        total = conn.execute("SELECT count(*) FROM po_evaluations").fetchone()[0]
        distinct = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT run_id, candidate_hash, split, example_id FROM po_evaluations)"
        ).fetchone()[0]
    return int(total), int(distinct)


def cached_keys(db: str, keys: set[str]) -> set[str]:
    if not keys or not db_path(db).exists():
        return set()
    with sqlite3.connect(db_path(db)) as conn:
        try:
            found = {row[0] for row in conn.execute("SELECT key FROM po_cache")}
        except sqlite3.OperationalError:
            return set()
    return keys & found


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """What must not change when a search is killed and resumed."""
    return {
        "winner": summary["winner"],
        "leaderboard": [
            {k: row[k] for k in ("candidate", "origin", "dev", "ci95", "n", "tokens_per_example", "pareto")}
            for row in summary["leaderboard"]
        ],
        "test": summary["test"],
        "significant": summary["significant"],
        "spent": {k: v for k, v in summary["spent"].items() if k != "minutes"},
        "final_calls": summary["final_calls"],
        "stopped_reason": summary["stopped_reason"],
    }


def store_leaderboard(db: str) -> list[dict[str, Any]]:
    from promptopt.leaderboard import leaderboard
    from promptopt.store import Store

    store = Store(db)
    try:
        return [
            {"candidate": e.candidate, "dev": e.dev.to_dict() if e.dev else None,
             "test": e.test.to_dict() if e.test else None, "evaluations": e.evaluations,
             "tokens": e.tokens_per_example}
            for e in leaderboard(store, top=None)
        ]  # fmt: skip
    finally:
        store.close()


@dataclass
class KillRecord:
    index: int
    kind: str  # "progress" or "time"
    process_calls: int  # requests this process sent before it died
    rows_before: int  # evaluation rows stored when it died
    in_flight: int  # requests it sent whose answers were not cached when it died
    repeated: int  # of those, how many a later process sent again


@dataclass
class KillReport:
    seed: int
    kills: int
    processes: int
    latency_s: float
    rows: int
    reference_rows: int
    duplicated_rows: int
    lost_rows: int
    changed_rows: int
    reference_calls: int
    total_calls: int
    repeated_calls: int
    in_flight_at_kills: int
    repeats_outside_in_flight: int
    identical_leaderboard: bool
    identical_store_leaderboard: bool
    wall_s: float
    reference_wall_s: float
    records: list[KillRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.duplicated_rows == 0
            and self.lost_rows == 0
            and self.changed_rows == 0
            and self.rows == self.reference_rows
            and self.repeats_outside_in_flight == 0
            and self.repeated_calls <= self.in_flight_at_kills
            and self.total_calls - self.reference_calls == self.repeated_calls
            and self.identical_leaderboard
            and self.identical_store_leaderboard
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def reference_run(
    workdir: Path, *, latency: float, config: dict[str, Any]
) -> tuple[dict[str, Any], str, list[str], float]:
    db = f"sqlite:///{workdir / 'reference.db'}"
    log = workdir / "reference.log"
    started = time.perf_counter()
    summary = finish_child(start_child(db, "new", log, latency, config))
    return summary, db, read_log(log), time.perf_counter() - started


def kill_and_resume(
    kills: int,
    *,
    seed: int = 1,
    latency: float = 0.004,
    config: dict[str, Any] | None = None,
    workdir: Path | None = None,
    time_kill_share: float = 0.25,
) -> KillReport:
    """Run the search uninterrupted, then again with ``kills`` SIGKILLs and resumes; compare."""
    config = {**DEFAULT_CONFIG, **(config or {})}
    owned = workdir is None
    tmp = tempfile.TemporaryDirectory(prefix="promptopt-crash-") if owned else None
    work = Path(tmp.name) if tmp is not None else Path(workdir)  # type: ignore[arg-type]
    try:
        return _kill_and_resume(kills, seed, latency, config, work, time_kill_share)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _kill_and_resume(
    kills: int, seed: int, latency: float, config: dict[str, Any], work: Path, time_kill_share: float
) -> KillReport:
    from promptopt.store import Store

    rng = random.Random(seed)
    reference, reference_db, reference_keys, reference_wall = reference_run(
        work, latency=latency, config=config
    )
    if len(set(reference_keys)) != len(reference_keys):
        raise AssertionError("the uninterrupted run sent a request twice; the cache should prevent that")
    total = len(reference_keys)
    if total < 2 * kills:
        raise ValueError(f"the search makes only {total} calls: too few for {kills} kills")

    db = f"sqlite:///{work / 'killed.db'}"
    # Progress targets spread over the whole search (distinct requests sent so far).
    n_time = int(round(kills * time_kill_share))
    kinds = ["progress"] * (kills - n_time) + ["time"] * n_time
    rng.shuffle(kinds)
    kinds[0] = "progress"  # the first process must get as far as creating the run
    # Every kill lands at least two batches (and an eighth of the requests) before the
    # search's last request, so the process after it still has work left to be killed in
    # (test-phase kills stay possible).
    margin = max(2 * int(config.get("batch_size", 4)), total // 8)
    ceiling = max(kills + 1, total - margin)
    targets = sorted(rng.sample(range(1, ceiling), kills - kinds.count("time")))
    started = time.perf_counter()
    records: list[KillRecord] = []
    logs: list[Path] = []
    seen: set[str] = set()
    snapshots: list[dict[tuple[str, str, str], tuple[Any, ...]]] = []
    in_flight_sets: list[set[str]] = []
    run_id = "new"
    for index, kind in enumerate(kinds):
        log = work / f"process-{index}.log"
        logs.append(log)
        process = start_child(db, run_id, log, latency, config)
        if kind == "progress":
            target = targets.pop(0)
            while len(seen | set(read_log(log))) < target:
                if process.poll() is not None:
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 2 * latency))
            # ... and mid-search: after this process stored a row of its own (on a loaded
            # machine the target can be reached well before the first batch is stored).
            stored_before = len(snapshots[-1]) if snapshots else 0
            while _row_count(db) <= stored_before and process.poll() is None:
                time.sleep(0.02)
        else:
            # A random moment, but no later than the next progress target (or the ceiling): a
            # process left running this long on a fast machine could otherwise get through most
            # of the search and leave the next kill nothing to land in.
            deadline = time.perf_counter() + rng.uniform(0.05, 2.5)
            stop_at = targets[0] if targets else ceiling
            while time.perf_counter() < deadline and process.poll() is None:
                if len(seen | set(read_log(log))) >= stop_at:
                    break
                time.sleep(0.005)
        if process.poll() is not None:
            out, err = process.communicate()
            raise RuntimeError(
                f"process {index} ended before its kill (exit {process.returncode}):\n{err[-2000:]}"
            )
        process.send_signal(signal.SIGKILL)
        process.communicate()
        sent = read_log(log)
        rows_now = stored_rows(db)
        snapshots.append(rows_now)
        unanswered = set(sent) - cached_keys(db, set(sent))
        in_flight_sets.append(unanswered)
        records.append(KillRecord(index, kind, len(sent), len(rows_now), len(unanswered), 0))
        seen |= set(sent)
        if run_id == "new":
            runs = Store(db).list_runs()
            if not runs:
                raise AssertionError("the first process was killed before it created the run")
            run_id = runs[0].id
    last_log = work / f"process-{len(kinds)}.log"
    logs.append(last_log)
    final = finish_child(start_child(db, run_id, last_log, latency, config))
    wall = time.perf_counter() - started

    # Calls: a key a later process sent again must have been in flight at this kill.
    sent_by = [read_log(path) for path in logs]
    repeated_total = 0
    outside = 0
    for i, record in enumerate(records):
        later = set().union(*map(set, sent_by[i + 1 :]))
        again = set(sent_by[i]) & later
        record.repeated = len(again)
        repeated_total += len(again)
        outside += len(again - in_flight_sets[i])
    in_flight_total = sum(r.in_flight for r in records)
    if set().union(*map(set, sent_by)) != set(reference_keys):
        raise AssertionError("the killed-and-resumed search sent requests the uninterrupted one did not")
    total_calls = sum(len(s) for s in sent_by)

    final_rows = stored_rows(db)
    reference_rows = stored_rows(reference_db)
    raw_total, raw_distinct = raw_row_count(db)
    lost = sum(1 for snap in snapshots for key in snap if key not in final_rows)
    changed = sum(
        1 for snap in snapshots for key, value in snap.items() if final_rows.get(key, value) != value
    )
    changed += sum(1 for key, value in final_rows.items() if reference_rows.get(key) != value)
    lost += sum(1 for key in reference_rows if key not in final_rows)
    return KillReport(
        seed=seed,
        kills=len(records),
        processes=len(logs),
        latency_s=latency,
        rows=len(final_rows),
        reference_rows=len(reference_rows),
        duplicated_rows=raw_total - raw_distinct,
        lost_rows=lost,
        changed_rows=changed,
        reference_calls=total,
        total_calls=total_calls,
        repeated_calls=repeated_total,
        in_flight_at_kills=in_flight_total,
        repeats_outside_in_flight=outside,
        identical_leaderboard=comparable(final) == comparable(reference),
        identical_store_leaderboard=store_leaderboard(db) == store_leaderboard(reference_db),
        wall_s=round(wall, 2),
        reference_wall_s=round(reference_wall, 2),
        records=records,
    )


# ----------------------------------------------------------------------------- faults

#: Every kind the loopback server injects that a client can meet on a chat request
#: ("status" is a free-form code and left out; "bad_request" is the one that is not retryable).
FAULT_MIX = ("rate_limit", "server_error", "bad_gateway", "unavailable", "gateway_timeout", "delay", "reset",
             "disconnect", "malformed_json", "empty_choices", "truncated_stream", "bad_request")  # fmt: skip


def _solver() -> Any:
    """Replies of a model that always answers right (and proposes a plain instruction),
    so that any wrong answer in the store would be a fault scored as an answer."""
    from promptopt.tasks import get_task

    task = get_task("gsm-symbolic")
    answers = {e.inputs["question"]: task.target(e) for split in ("train", "dev", "test")
               for e in task.examples(split)}  # fmt: skip

    def respond(request: dict[str, Any]) -> str:
        last = request["messages"][-1]["content"]
        question = next((q for q in answers if q in last), None)
        if question is None:  # a proposer request
            return 'Instruction: "Solve the problem and give the number."'
        return f"Some reasoning. The answer is {answers[question]}."

    return respond


@dataclass
class FaultReport:
    rate: float
    kinds: list[str]
    seed: int
    requests_received: int
    faults_injected: int
    kinds_injected: int
    injected_by_kind: dict[str, int]
    faults_met: int
    retries: int
    failed_evaluations: int
    failed_rows_in_store: int
    wrong_answers_in_store: int
    rows: int
    completed: bool
    test_n: int
    winner_test_accuracy: float
    wall_s: float

    @property
    def ok(self) -> bool:
        return (
            self.completed
            and self.faults_injected > 0
            and self.kinds_injected == len(self.kinds)
            and self.faults_met == self.faults_injected
            and self.failed_rows_in_store == self.failed_evaluations
            and self.wrong_answers_in_store == 0
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def faulty_server_search(
    *,
    rate: float = 0.2,
    kinds: tuple[str, ...] = FAULT_MIX,
    seed: int = 3,
    db: str | None = None,
    dev_size: int = 16,
    test_size: int = 24,
    n_proposals: int = 3,
    rounds: int = 0,
    client_timeout_s: float = 0.5,
    api_key_env: str = "OPENAI_API_KEY",
    api_key: str | None = None,
    every_kind_first: bool = True,
    batch_size: int = 16,
) -> FaultReport:
    """A search over real HTTP against a server failing ``rate`` of the requests, the rate
    spread evenly over ``kinds``; timeouts come from ``delay`` faults longer than the client's
    ``client_timeout_s``. With ``every_kind_first`` the first requests meet each kind once
    (in order), so that a short search still meets every kind; the rates decide after that."""
    from promptopt.backends.openai_backend import OpenAIBackend
    from promptopt.controller import SearchConfig, SearchResult, search
    from promptopt.store import Store
    from promptopt.testing.openai_server import FakeOpenAIServer, FaultPlan
    from promptopt.types import Candidate

    plan = FaultPlan(rates={kind: rate / len(kinds) for kind in kinds}, seed=seed, retry_after="0",
                     delay_s=client_timeout_s * 4, script=list(kinds) if every_kind_first else ())  # fmt: skip
    tmp = tempfile.TemporaryDirectory(prefix="promptopt-faults-") if db is None else None
    url = db or f"sqlite:///{Path(tmp.name) / 'faults.db'}"  # type: ignore[union-attr]
    started = time.perf_counter()
    try:
        with FakeOpenAIServer(_solver(), faults=plan, api_key=api_key) as server:
            backend = OpenAIBackend("fake-model", base_url=server.base_url, concurrency=8,
                                    timeout=client_timeout_s, api_key_env=api_key_env)  # fmt: skip
            config = SearchConfig.from_preset(
                "light", task="gsm-symbolic", model="openai/fake-model", base=Candidate(instruction="Answer."),
                dev_size=dev_size, test_size=test_size, n_proposals=n_proposals, rounds=rounds,
                race_start=min(8, dev_size), seed=seed, batch_size=batch_size,
            )  # fmt: skip
            result = search(config, backend=backend, db=url)
            backend.close()
            injected = server.fault_counts
            received = server.chat_request_count
        assert isinstance(result, SearchResult)
        store = Store(url)
        rows = store.get_evaluations(result.run_id)
        store.close()
        return FaultReport(
            rate=rate,
            kinds=list(kinds),
            seed=seed,
            requests_received=received,
            faults_injected=sum(injected.values()),
            kinds_injected=len(injected),
            injected_by_kind=dict(sorted(injected.items())),
            faults_met=int(result.faults.get("faults_met", 0)),
            retries=int(result.faults.get("retries", 0)),
            failed_evaluations=int(result.faults.get("failed_evaluations", 0)),
            failed_rows_in_store=sum(1 for r in rows if r.score is None),
            wrong_answers_in_store=sum(1 for r in rows if r.score is not None and r.score < 1.0),
            rows=len(rows),
            completed=True,
            test_n=int(result.test["n"]),
            winner_test_accuracy=float(result.test["winner"]["accuracy"]),
            wall_s=round(time.perf_counter() - started, 2),
        )
    finally:
        if tmp is not None:
            tmp.cleanup()


# ----------------------------------------------------------------------------- CLI


def print_kills(report: KillReport) -> None:
    print(f"\ncrash and resume: {report.kills} SIGKILLs, {report.processes} processes, seed {report.seed}, "
          f"{report.latency_s * 1000:g} ms per call")  # fmt: skip
    print(f"{'#':>3} {'kind':<9} {'calls sent':>10} {'rows stored':>11} {'in flight':>9} {'repeated':>8}")
    for r in report.records:
        print(
            f"{r.index:>3} {r.kind:<9} {r.process_calls:>10} {r.rows_before:>11} {r.in_flight:>9} {r.repeated:>8}"
        )
    print(f"{'kills':<6} {'rows':>11} {'lost':>5} {'dup':>4} {'calls':>12} {'repeated':>8} {'in flight':>9} "
          f"{'identical?':>10}")  # fmt: skip
    rows = f"{report.rows}/{report.reference_rows}"
    calls = f"{report.total_calls}/{report.reference_calls}"
    same = "yes" if report.identical_leaderboard and report.identical_store_leaderboard else "NO"
    print(f"{report.kills:<6} {rows:>11} {report.lost_rows:>5} {report.duplicated_rows:>4} {calls:>12} "
          f"{report.repeated_calls:>8} {report.in_flight_at_kills:>9} {same:>10}")  # fmt: skip
    print(f"wall: {report.wall_s} s with kills, {report.reference_wall_s} s uninterrupted; "
          f"{'OK' if report.ok else 'FAILED'}")  # fmt: skip


def print_faults(report: FaultReport) -> None:
    print(
        f"\nfaulty server: {report.rate:.0%} of requests fail, over {len(report.kinds)} kinds, seed {report.seed}"
    )
    print(f"{'requests':>8} {'injected':>8} {'met':>5} {'retried':>7} {'failed rows':>11} {'wrong':>5} "
          f"{'rows':>5} {'completed':>9}")  # fmt: skip
    print(f"{report.requests_received:>8} {report.faults_injected:>8} {report.faults_met:>5} {report.retries:>7} "
          f"{report.failed_rows_in_store:>11} {report.wrong_answers_in_store:>5} {report.rows:>5} "
          f"{'yes' if report.completed else 'no':>9}")  # fmt: skip
    print("by kind: " + ", ".join(f"{k} {v}" for k, v in report.injected_by_kind.items()))
    print(f"test accuracy of the winner {report.winner_test_accuracy:.3f} on {report.test_n}; "
          f"{report.wall_s} s; {'OK' if report.ok else 'FAILED'}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("what", choices=["kills", "faults", "all"], nargs="?", default="all")
    parser.add_argument("--kills", type=int, default=12, help="SIGKILLs to send (default 12)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill moments (default 1)")
    parser.add_argument("--latency", type=float, default=0.004, help="seconds per fake call (default 0.004)")
    parser.add_argument("--rate", type=float, default=0.2, help="fault rate of the server (default 0.2)")
    parser.add_argument("--fault-seed", type=int, default=3, help="seed of the fault draws (default 3)")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"command": "python benchmarks/crash_resume.py " + " ".join(argv or sys.argv[1:])}
    ok = True
    if args.what in ("kills", "all"):
        kills = kill_and_resume(args.kills, seed=args.seed, latency=args.latency)
        print_kills(kills)
        out["kills"] = kills.to_dict()
        ok &= kills.ok
    if args.what in ("faults", "all"):
        faults = faulty_server_search(
            rate=args.rate, seed=args.fault_seed, dev_size=24, test_size=40, n_proposals=4, rounds=1
        )
        print_faults(faults)
        out["faults"] = faults.to_dict()
        ok &= faults.ok
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"crash_resume-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"\nwrote {path.relative_to(REPO)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
