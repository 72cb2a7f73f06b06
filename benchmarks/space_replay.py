"""Search policies compared on a recorded evaluation table (issue #5): best dev score
against LLM calls spent, for ``random``, ``tpe``, ``reinforce`` and ``ape`` (instruction
only), mean ± sd over seeds, replayed without calling a model.

Two steps:

``record``
    Enumerates every point of a *finite* search space (categorical choices, integer and
    stepped-float ranges, pool slots = the base instruction + the seeds; a conditional
    dimension is enumerated only where its ``when:`` holds), turns each point into its
    candidate with the search's own code (``SpacePolicy.materialize`` →
    ``promptopt.spaces.build_candidate``), adds the instruction-only candidates (the base
    with each pool instruction, which the ``ape`` row races), de-duplicates by candidate
    hash, and scores them all on the dev examples the controller races on for that dev
    size (``task.examples("dev")[:dev_size]``), through promptopt's evaluation stack
    (``Executor`` over a :class:`~promptopt.session.ModelStack` of the model, as ``evaluate()`` and
    the controller wire it) with the response cache in ``--db``. An interrupted record
    resumes from that cache. It writes the table as JSON: model id, dev example ids, and
    per candidate its grid points, hash, per-example 0/1 scores, mean and tokens.

``replay``
    Runs the real controller (``promptopt.controller.search``) for every policy and seed,
    with ``test_size=0`` (the held-out test is not in the table; with no test examples the
    controller's test step scores nothing and makes no call). The backend answers only from
    the recorded database's response cache under the recorded model id: a
    ``CachingBackend`` over that store around a backend that raises "not in the recorded
    table" (so a miss is an error, never a model call). The runs, their Optuna studies and
    their copies of the answers go to a separate database (``--replay-db``, default a
    temporary file); the recorded one is only read.

    ``ape`` here means *instruction only*: the ``random`` policy over a derived space whose
    only dimension is the instruction pool (base + seeds, no proposer), every other part
    of the prompt at the base's value, raced the same way. It is not APE's proposer: a
    recorded table cannot hold instructions a model would write during the search.

    The curve of a run: after each stored evaluation (in the order the search made them;
    one request per sample, as ``promptopt.leaderboard.best_by_calls`` counts), the
    candidate the search ranks first (``promptopt.racing.rank``: racing mean, then
    examples seen, then first seen) among those scored on at least half of dev, and its
    *table* score (its mean over all recorded dev examples). The last point is the
    controller's winner after its final full-dev step, at the calls spent in all (the
    search budget plus that final step). ``best_by_calls``' own curve (racing means) is
    kept in the JSON beside it. "Calls to random's final" is the first point of a run's
    curve at or above random's mean final score (a later dip does not undo it).

    python benchmarks/space_replay.py record --model fake --task gsm8k --data-dir ../shared/data
    python benchmarks/space_replay.py replay --model fake --task gsm8k --data-dir ../shared/data
    # the real table (about 1,100 model requests; see --dry-run):
    python benchmarks/space_replay.py record --model qwen2.5-coder-0.5b --task gsm8k \\
        --data-dir ../shared/data --dev-size 20 --batch-size 16
    python benchmarks/space_replay.py replay --model qwen2.5-coder-0.5b --task gsm8k \\
        --data-dir ../shared/data --dev-size 20 --seeds 5 --max-calls 600

``--model fake`` uses the multi-dimensional fake of the test suite (promptopt/testing/space_fakes.py),
as benchmarks/policies.py does; its numbers say nothing about real models.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_SPACE = str(REPO / "search_spaces" / "gsm8k-replay.yaml")
DEFAULT_DB = str(RESULTS / "space_replay.db")
POLICIES = ("random", "tpe", "reinforce", "ape")
TABLE_KIND = "promptopt-space-replay-table"
APE_LABEL = "ape (instruction only)"

if str(REPO) not in sys.path:  # `benchmarks.plotting`
    sys.path.insert(0, str(REPO))

from benchmarks.plotting import figure, save  # noqa: E402
from promptopt.backends import Backend, CachingBackend  # noqa: E402
from promptopt.errors import BackendError, ConfigError  # noqa: E402
from promptopt.types import Candidate, Completion, GenerationRequest  # noqa: E402

# ------------------------------------------------------------------------------ the grid


def grid_problems(space: Any) -> list[str]:
    """Why ``space`` cannot be recorded as a finite table (empty when it can)."""
    problems = []
    for dim in space.dimensions:
        if dim.kind == "float" and not dim.step:
            problems.append(
                f"dimension {dim.name!r} is a continuous float ({dim.low}..{dim.high}, no step): the grid "
                "is infinite; give it a step or make it categorical"
            )
        if dim.kind == "pool" and dim.grow:
            problems.append(
                f"dimension {dim.name!r} grows by {dim.grow} instructions written by the {dim.proposer} "
                "proposer during the search (calls outside any table); set grow.max: 0"
            )
        if dim.name == "demo_selection" and "bootstrapped" in dim.choices:
            problems.append(
                "dimension 'demo_selection' offers bootstrapped demos, which need the model's own "
                "solutions found during the search (calls outside the table); drop that choice"
            )
    return problems


def _feeds_later(dims: Sequence[Any], index: int) -> bool:
    return any(dims[index].name in later.parents for later in dims[index + 1 :])


def grid_size(space: Any, options: Callable[[Any], list[Any]]) -> int:
    """Points of the grid, counting a conditional dimension only where it is active.
    A dimension no later ``when:`` depends on multiplies instead of branching."""
    dims = list(space.dimensions)

    def count(i: int, point: dict[str, Any]) -> int:
        if i == len(dims):
            return 1
        dim = dims[i]
        if not space.is_active(dim, point):
            return count(i + 1, point)
        values = options(dim)
        if not _feeds_later(dims, i):
            return len(values) * count(i + 1, point)
        return sum(count(i + 1, {**point, dim.name: v}) for v in values)

    return count(0, {})


def grid_points(space: Any, options: Callable[[Any], list[Any]]) -> Iterator[dict[str, Any]]:
    """Every point of the grid, as ``SearchSpace.sample`` would build it (parents first,
    inactive dimensions absent)."""
    dims = list(space.dimensions)

    def walk(i: int, point: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if i == len(dims):
            yield dict(point)
            return
        dim = dims[i]
        if not space.is_active(dim, point):
            yield from walk(i + 1, point)
            return
        for value in options(dim):
            yield from walk(i + 1, {**point, dim.name: value})

    yield from walk(0, {})


def check_grid(space: Any, options: Callable[[Any], list[Any]], max_grid: int) -> int:
    """The grid's size; raises ``ConfigError`` naming the dimension(s) when the grid is
    infinite, needs calls outside a table, or is larger than ``max_grid``."""
    problems = grid_problems(space)
    if problems:
        raise ConfigError(
            f"search space {space.name!r} cannot be recorded as a finite table:\n"
            + "\n".join(f"  {p}" for p in problems),
            hint="a replay space has a fixed instruction pool, categorical or stepped dimensions only",
        )
    size = grid_size(space, options)
    if size > max_grid:
        counts = [(d.name, len(options(d))) for d in space.dimensions]
        largest = max(counts, key=lambda c: c[1])
        raise ConfigError(
            f"the grid of search space {space.name!r} has {size} points, more than --max-grid {max_grid} "
            f"(values per dimension: {', '.join(f'{n} {k}' for n, k in counts)}; the largest is "
            f"{largest[0]!r} with {largest[1]})",
            hint=f"cut choices or widen steps (start with {largest[0]!r}), or raise --max-grid",
        )
    return size


def instruction_only(space: Any) -> dict[str, Any] | None:
    """The derived space of the ``ape`` row: the instruction pool alone (None without one)."""
    if "instruction" not in space:
        return None
    return {
        "name": f"{space.name}-instruction-only",
        "description": f"the instruction pool of {space.name}; every other part at the base's value",
        "dimensions": {"instruction": space["instruction"].to_dict()},
    }


class _NoModel(Backend):
    """A backend that must not be called: the proposer of a grid policy (grow.max is 0)
    and the inside of the replay cache. Counts and refuses every request."""

    def __init__(self, model: str) -> None:
        self._model = model
        self.calls = 0

    @property
    def model_id(self) -> str:
        return self._model

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.calls += len(requests)
        first = requests[0] if requests else None
        what = ""
        if first is not None:
            last = first.messages[-1].content if first.messages else ""
            system = next((m.content for m in first.messages if m.role == "system"), "")
            demos = sum(1 for m in first.messages if m.role == "assistant")
            what = (
                f": {len(requests)} request(s), e.g. instruction {system[:60]!r}, {demos} demos, "
                f"question turn {last[:120]!r}, temperature {first.temperature}, max_tokens "
                f"{first.max_tokens}, sample {first.sample_index}"
            )
        raise BackendError(
            f"not in the recorded table (model {self._model}){what}",
            hint="the replay only answers requests recorded by `space_replay.py record` for the same "
            "space, base prompt, dev examples and model; record that table first",
        )


def replay_backend(store: Any, model_id: str) -> CachingBackend:
    """A backend answering only from ``store``'s response cache under ``model_id``; a miss
    raises ``BackendError("not in the recorded table ...")``. ``.hits`` counts the requests
    answered; ``.inner.calls`` the ones that reached the refusing backend (the misses)."""
    return CachingBackend(_NoModel(model_id), store)


def grid_policy(space: Any, task: Any, base: Candidate) -> Any:
    """A ``random`` space policy over ``space``: the search's own pool, options and
    ``materialize`` (point -> candidate), never asked to propose anything."""
    from promptopt.policies import PolicySettings, get_policy
    from promptopt.proposers import Proposer

    settings = PolicySettings(space=space, task=task, seed=0, n_proposals=1, rounds=0)
    return get_policy("random")(base, Proposer(_NoModel("none"), task), settings)


def table_candidates(
    space: Any, task: Any, base: Candidate, max_grid: int
) -> tuple[int, list[dict[str, Any]]]:
    """(grid size, unique candidates): each with its candidate, the grid points that give
    it, and where it comes from (``grid``, ``instruction-only``, ``base``)."""
    from promptopt.spaces import load_space

    policy = grid_policy(space, task, base)
    size = check_grid(space, policy.dimension_options, max_grid)
    rows: dict[str, dict[str, Any]] = {}

    def add(candidate: Candidate, point: dict[str, Any] | None, source: str, pool: list[str]) -> None:
        row = rows.setdefault(candidate.hash, {"candidate": candidate, "points": [], "sources": []})
        if point is not None:
            described = dict(point)
            if "instruction" in described:
                described["instruction_text"] = pool[int(described["instruction"])]
            row["points"].append(described)
        if source not in row["sources"]:
            row["sources"].append(source)

    add(base, None, "base", policy.pool)
    for point in grid_points(space, policy.dimension_options):
        add(policy.materialize(point), point, "grid", policy.pool)
    derived = instruction_only(space)
    if derived is not None:
        only = grid_policy(load_space(derived), task, base)
        for point in grid_points(only.space, only.dimension_options):
            add(only.materialize(point), None, "instruction-only", only.pool)
    return size, list(rows.values())


# ------------------------------------------------------------------------------ record


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("_")


def _db_url(db: str) -> str:
    return db if "://" in db else f"sqlite:///{Path(db).expanduser().resolve()}"


def _space_name(ref: str) -> str:
    from promptopt.spaces import load_space

    return load_space(ref).name


def default_table_path(out_dir: Path, space: str, model: str, dev_size: int) -> Path:
    return out_dir / f"space_replay-table-{_slug(space)}-{_slug(model)}-dev{dev_size}.json"


def make_base(task: Any, space: Any, max_new_tokens: int | None) -> Candidate:
    """The starting prompt: the task's instruction and answer format, greedy; max_tokens
    from ``--max-new-tokens``, else the space's single fixed ``max_tokens``, else 256."""
    if max_new_tokens is None:
        fixed = space["max_tokens"].options() if "max_tokens" in space else []
        max_new_tokens = int(fixed[0]) if len(fixed) == 1 else 256
    return Candidate(
        instruction=task.spec.instruction, answer_format=task.spec.answer_format, max_tokens=max_new_tokens
    )


def model_backend(model: str, task: Any, batch_size: int, dtype: str) -> Backend:
    if model == "fake":
        from promptopt.testing.space_fakes import space_backend

        return space_backend(task)
    from promptopt.backends import make_backend

    return make_backend(model, batch_size=batch_size, dtype=dtype)


def record(args: argparse.Namespace) -> dict[str, Any] | None:
    """Score every candidate of the grid on dev; write and return the table (None for
    ``--dry-run``)."""
    from promptopt.spaces import load_space
    from promptopt.tasks import get_task

    task = get_task(args.task, args.data_dir)
    space = load_space(args.space)
    base = make_base(task, space, args.max_new_tokens)
    size, rows = table_candidates(space, task, base, args.max_grid)
    dev = task.examples("dev")[: args.dev_size]  # exactly what the controller races on
    if len(dev) < args.dev_size:
        print(f"note: task {task.name} has only {len(dev)} dev examples", file=sys.stderr)
    backend = model_backend(args.model, task, args.batch_size, args.dtype)
    try:
        return _record(args, task, space, base, size, rows, dev, backend)
    finally:
        backend.close()  # a local model's weights are released here


def _record(
    args: argparse.Namespace,
    task: Any,
    space: Any,
    base: Candidate,
    size: int,
    rows: list[dict[str, Any]],
    dev: Sequence[Any],
    backend: Backend,
) -> dict[str, Any] | None:
    from promptopt.executor import Executor
    from promptopt.session import ModelStack
    from promptopt.store import Store

    url = _db_url(args.db)
    with Store(url) as store:
        models = ModelStack(backend, store)  # retries, then the response cache, as evaluate() has them
        executor = Executor(task, models.backend, batch_size=args.batch_size, chunk_size=4 * args.batch_size)
        model_id = backend.model_id
        keys: dict[str, int] = {}
        for row in rows:
            for example in dev:
                for request in executor.requests_for(row["candidate"], example):
                    if request.cache_key(model_id) not in keys:
                        words = sum(len(m.content.split()) for m in request.messages)
                        keys[request.cache_key(model_id)] = int(1.4 * words)
        cached = set(store.cache_get_many(list(keys)))
        todo = [k for k in keys if k not in cached]
        tokens_in = sum(keys[k] for k in todo)
        counted = {row["candidate"].max_tokens for row in rows}
        out_cap = max(counted) if counted else base.max_tokens
        tokens_out = len(todo) * out_cap
        print(f"space {space.name}: grid of {size} points -> {len(rows)} unique candidates (base and "
              f"instruction-only ones included); dev {len(dev)} examples; {len(rows) * len(dev)} evaluations")  # fmt: skip
        print(f"requests: {len(keys)} unique, {len(cached)} already in the cache of {store.display_url}, "
              f"{len(todo)} to make with {model_id}")  # fmt: skip
        hours = tokens_out / max(1e-9, args.assume_tok_s) / 3600
        print(f"estimate: ~{tokens_in:,} prompt tokens, <= {tokens_out:,} output tokens (<= {out_cap} each); "
              f"at an assumed {args.assume_tok_s:g} output tok/s (--assume-tok-s) that is <= {hours:.1f} h")  # fmt: skip
        if args.dry_run:
            return None
        pairs = [(row["candidate"], example) for row in rows for example in dev]
        results: dict[tuple[str, str], Any] = {}
        started = time.perf_counter()
        shown = [started, 0]

        def on_batch(batch: Sequence[Any]) -> None:
            for result in batch:
                results[(result.candidate_hash, result.example_id)] = result
            now = time.perf_counter()
            done = len(results)
            if done == len(pairs) or now - shown[0] >= 30 or done - shown[1] >= max(1, len(pairs) // 20):
                calls = models.model_calls
                rate = calls / (now - started) if now > started else 0.0
                left = len(todo) - calls
                eta = f", ~{left / rate / 60:.0f} min left" if rate > 0 and left > 0 else ""
                print(f"  {done}/{len(pairs)} evaluations · {calls} model calls, {models.cache_hits} cache hits · "
                      f"{now - started:.0f} s{eta}", file=sys.stderr, flush=True)  # fmt: skip
                shown[0], shown[1] = now, done

        executor.evaluate_pairs(pairs, "dev", on_batch=on_batch)
        wall = time.perf_counter() - started
        table_rows = []
        failed = 0
        for row in rows:
            candidate = row["candidate"]
            mine = [results[(candidate.hash, e.id)] for e in dev]
            scores = [r.score for r in mine]
            scored = [s for s in scores if s is not None]
            failed += len(scores) - len(scored)
            table_rows.append({
                "hash": candidate.hash, "sources": row["sources"], "points": row["points"],
                "candidate": candidate.to_dict(), "scores": scores,
                "mean": sum(scored) / len(scored) if scored else 0.0, "n": len(scored),
                "tokens_in_per_example": sum(r.tokens_in for r in mine) / len(mine),
                "tokens_out_per_example": sum(r.tokens_out for r in mine) / len(mine),
                "tokens_per_example": sum(r.tokens_in + r.tokens_out for r in mine) / len(mine),
            })  # fmt: skip
        best = max(table_rows, key=lambda r: r["mean"])
        base_row = next(r for r in table_rows if r["hash"] == base.hash)
        table = {
            "kind": TABLE_KIND, "version": 1, "task": task.name, "data_dir": args.data_dir,
            "dataset_hash": task.dataset_hash, "model": model_id, "model_spec": args.model, "db": url,
            "space": space.to_dict(), "space_source": str(args.space), "grid_size": size,
            "base": base.to_dict(), "base_hash": base.hash, "dev_size": len(dev), "dev_ids": [e.id for e in dev],
            "candidates": table_rows, "failed_evaluations": failed, "model_calls": models.model_calls,
            "cache_hits": models.cache_hits, "wall_s": wall, "recorded_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }  # fmt: skip
    out = (
        Path(args.out)
        if args.out
        else default_table_path(Path(args.out_dir), space.name, args.model, len(dev))
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1))
    print(f"recorded {len(table_rows)} candidates × {len(dev)} dev examples in {wall:.0f} s "
          f"({models.model_calls} model calls, {models.cache_hits} cache hits, {failed} failed evaluations)")  # fmt: skip
    print(f"table best {best['mean']:.3f} ({best['hash']}), base {base_row['mean']:.3f}")
    if failed:
        print(f"warning: {failed} evaluations failed; failures are not cached, so a replay that asks for "
              "them stops with 'not in the recorded table'. Run record again to retry them.", file=sys.stderr)  # fmt: skip
    print(f"wrote {out}")
    return table


# ------------------------------------------------------------------------------ replay


def load_table(path: Path) -> dict[str, Any]:
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"no recorded table at {path}", hint="run `space_replay.py record` with the same options first"
        ) from None
    if table.get("kind") != TABLE_KIND:
        raise ConfigError(f"{path} is not a table written by `space_replay.py record`")
    return dict(table)


def incumbent_curve(
    store: Any, run_id: str, min_n: int, table_mean: dict[str, float]
) -> list[tuple[int, str | None, float | None]]:
    """``[(requests, incumbent hash, its table score), ...]``, one point per stored
    evaluation, in the order the search made them (see the module docstring)."""
    from promptopt.racing import rank, standing

    tallies: dict[str, list[float]] = {}
    order: dict[str, int] = {}
    spent = 0
    points: list[tuple[int, str | None, float | None]] = []
    for result in store.get_evaluations(run_id):
        spent += max(1, len(result.samples))
        if result.split == "dev" and result.score is not None:
            order.setdefault(result.candidate_hash, len(order))
            tallies.setdefault(result.candidate_hash, []).append(float(result.score))
        eligible = [standing(h, s, order[h]) for h, s in tallies.items() if len(s) >= min_n]
        top = rank(eligible)[0].candidate if eligible else None
        points.append((spent, top, table_mean[top] if top is not None else None))
    return points


def step_curve(points: Sequence[tuple[int, float | None]], xs: Sequence[int]) -> list[float]:
    """The step function through ``points`` at ``xs`` (NaN before its first value; the
    last value held after the run ended)."""
    out = []
    i, value = 0, math.nan
    for x in xs:
        while i < len(points) and points[i][0] <= x:
            value = math.nan if points[i][1] is None else float(points[i][1])  # type: ignore[arg-type]
            i += 1
        out.append(value)
    return out


def calls_to_reach(points: Sequence[tuple[int, float | None]], target: float) -> int | None:
    for calls, score in points:
        if score is not None and score >= target - 1e-9:
            return calls
    return None


def _spread(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def run_replay(
    table: dict[str, Any],
    task: Any,
    store: Any,
    replay_store: Any,
    policy: str,
    seed: int,
    *,
    max_calls: int,
    n_proposals: int,
    rounds: int,
    race_start: int,
    batch_size: int,
) -> dict[str, Any]:
    """One search over the table; its curve and what the cache-only backend saw."""
    from promptopt.budget import Budget
    from promptopt.controller import SearchConfig, SearchResult, search
    from promptopt.leaderboard import best_by_calls
    from promptopt.spaces import load_space

    table_mean = {row["hash"]: float(row["mean"]) for row in table["candidates"]}
    base = Candidate.from_dict(table["base"])
    space: dict[str, Any] | None = table["space"]
    real_policy = policy
    if policy == "ape":
        space = instruction_only(load_space(table["space"]))
        real_policy = "random"
        if space is None:
            raise ConfigError("the recorded space has no instruction pool: no 'ape' (instruction only) row")
    backend = replay_backend(store, table["model"])
    dev_size = int(table["dev_size"])
    config = SearchConfig.from_preset(
        "light", task=table["task"], model=table["model"], base=base, policy=real_policy, seed=seed,
        data_dir=table.get("data_dir"), dev_size=dev_size, test_size=0, n_proposals=n_proposals, rounds=rounds,
        race_start=race_start, budget=Budget(max_calls=max_calls), batch_size=batch_size, space=space,
    )  # fmt: skip
    started = time.perf_counter()
    result = search(config, backend=backend, db=replay_store, task=task)
    assert isinstance(result, SearchResult)
    min_n = max(1, dev_size // 2)
    points = incumbent_curve(replay_store, result.run_id, min_n, table_mean)
    total = points[-1][0] if points else 0
    winner = result.winner.hash
    if winner not in table_mean:  # cannot happen when every request was answered from the table
        raise ConfigError(f"the winner {winner} is not a row of the table")
    curve: list[tuple[int, float | None]] = []
    for calls, _, score in points:
        if curve and curve[-1][0] == calls:
            curve[-1] = (calls, score)
        elif not curve or curve[-1][1] != score:
            curve.append((calls, score))
    curve.append((total, table_mean[winner]))
    return {
        "policy": policy,
        "seed": seed,
        "run_id": result.run_id,
        "search_calls": int(result.spent["calls"]),
        "final_calls": result.final_calls,
        "total_calls": total,
        "winner": winner,
        "winner_table_score": table_mean[winner],
        "winner_racing_dev": next(r.mean for r in result.leaderboard if r.candidate.hash == winner),
        "candidates_raced": len(result.leaderboard),
        "curve": curve,
        "racing_best_by_calls": best_by_calls(replay_store, result.run_id, min_n=min_n),
        "stopped_reason": result.stopped_reason,
        # requests that reached the refusing backend (each raised: the replay has no model)
        "replay_misses": backend.inner.calls,  # type: ignore[attr-defined]
        "table_hits": backend.hits,  # requests answered from the recorded cache
        # requests the controller answered from its own cache in the replay database (copies
        # of table answers an earlier run of this replay fetched)
        "replay_db_hits": result.cache_hits,
        "test_n": result.test["n"],
        "wall_s": time.perf_counter() - started,
    }


def summarize(runs: Sequence[dict[str, Any]], policies: Sequence[str]) -> dict[str, Any]:
    """Per policy: final table score mean ± sd, calls to reach random's mean final score
    (median over the seeds that did, and how many), the ratio to random's; the curves'
    mean ± sd on a common grid of calls."""
    finals = {p: [r["winner_table_score"] for r in runs if r["policy"] == p] for p in policies}
    target = statistics.mean(finals["random"]) if finals.get("random") else None
    rows = []
    for policy in policies:
        mine = [r for r in runs if r["policy"] == policy]
        if not mine:
            continue
        mean, sd = _spread(finals[policy])
        reach = [calls_to_reach(r["curve"], target) for r in mine] if target is not None else []
        reached = [c for c in reach if c is not None]
        rows.append({
            "policy": policy, "final_mean": mean, "final_sd": sd,
            "calls_mean": statistics.mean(r["total_calls"] for r in mine),
            "reach": statistics.median(reached) if reached else None, "reached": len(reached), "seeds": len(mine),
            "reach_per_seed": reach,
        })  # fmt: skip
    random_reach = next((r["reach"] for r in rows if r["policy"] == "random"), None)
    for row in rows:
        row["ratio"] = row["reach"] / random_reach if row["reach"] is not None and random_reach else None
    top = max((r["total_calls"] for r in runs), default=0)
    step = max(1, top // 200)
    xs = list(range(0, top + step, step))
    curves = {}
    for policy in policies:
        stepped = [step_curve(r["curve"], xs) for r in runs if r["policy"] == policy]
        if not stepped:
            continue
        end = max(r["total_calls"] for r in runs if r["policy"] == policy)
        mean_c, sd_c = [], []
        for x, column in zip(xs, zip(*stepped, strict=True), strict=True):
            if x > end or any(math.isnan(v) for v in column):  # none defined yet, or every run over
                mean_c.append(math.nan)
                sd_c.append(math.nan)
            else:
                m, s = _spread(column)
                mean_c.append(m)
                sd_c.append(s)
        curves[policy] = {"mean": mean_c, "sd": sd_c}
    return {"target": target, "rows": rows, "xs": xs, "curves": curves}


def label(policy: str) -> str:
    return APE_LABEL if policy == "ape" else policy


def format_table(summary: dict[str, Any], table: dict[str, Any]) -> str:
    header = ["policy", "final table score", "calls spent", "calls to random's final", "× random's calls"]
    lines = []
    for row in summary["rows"]:
        reach = f"{row['reach']:.0f} ({row['reached']}/{row['seeds']})" if row["reach"] is not None else (
            f"– (0/{row['seeds']})")  # fmt: skip
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "–"
        lines.append([label(row["policy"]), f"{row['final_mean']:.3f} ± {row['final_sd']:.3f}",
                      f"{row['calls_mean']:.0f}", reach, ratio])  # fmt: skip
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def plot(summary: dict[str, Any], table: dict[str, Any], info: dict[str, Any], path: Path) -> bool:
    """Mean ± sd curves per policy against calls; False (with a message) without matplotlib."""
    opened = figure("; the JSON is written anyway")
    if opened is None:
        return False
    fig, ax = opened
    xs = summary["xs"]
    for policy, curve in summary["curves"].items():
        mean = curve["mean"]
        sd = curve["sd"]
        (line,) = ax.plot(xs, mean, label=label(policy), linewidth=1.8)
        low = [m - s for m, s in zip(mean, sd, strict=True)]
        high = [m + s for m, s in zip(mean, sd, strict=True)]
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    if summary["target"] is not None:
        ax.axhline(summary["target"], color="grey", linestyle="--", linewidth=1,
                   label=f"random's final mean ({summary['target']:.3f})")  # fmt: skip
    ax.axhline(info["table_best"], color="black", linestyle=":", linewidth=1,
               label=f"table best ({info['table_best']:.3f})")  # fmt: skip
    ax.axhline(info["base_score"], color="brown", linestyle="-.", linewidth=0.8,
               label=f"base prompt ({info['base_score']:.3f})")  # fmt: skip
    ax.set_xlabel("LLM calls spent (search budget, then the final full-dev step)")
    ax.set_ylabel(f"table dev score of the search's best (n={table['dev_size']})")
    ax.set_title(f"{table['task']} · {table['model']} · {info['seeds']} seeds · max {info['max_calls']} calls "
                 f"· {len(table['candidates'])} candidates (mean ± sd)", fontsize=9)  # fmt: skip
    save(fig, ax, path)
    return True


def replay(args: argparse.Namespace) -> dict[str, Any]:
    """Every policy × seed over the table; print the table, write JSON and the plot."""
    from promptopt.store import Store
    from promptopt.tasks import get_task

    path = Path(args.table) if args.table else default_table_path(
        Path(args.out_dir), _space_name(args.space), args.model, args.dev_size)  # fmt: skip
    table = load_table(path)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or "random" not in policies:
        raise ConfigError(
            f"--policies: expected some of {', '.join(POLICIES)} including random, got {args.policies}"
        )
    task = get_task(table["task"], args.data_dir or table.get("data_dir"))
    dev_ids = [e.id for e in task.examples("dev")[: table["dev_size"]]]
    if dev_ids != table["dev_ids"]:
        raise ConfigError(
            f"the dev examples of {task.name} here differ from the recorded ones ({path})",
            hint="replay with the data the table was recorded on",
        )
    table_mean = {row["hash"]: float(row["mean"]) for row in table["candidates"]}
    best_row = max(table["candidates"], key=lambda r: r["mean"])
    info = {
        "table_best": float(best_row["mean"]), "table_best_hash": best_row["hash"],
        "base_score": table_mean[table["base_hash"]], "seeds": args.seeds, "max_calls": args.max_calls,
    }  # fmt: skip
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Store(args.db or table["db"]) as store:
        replay_url = _db_url(args.replay_db) if args.replay_db else f"sqlite:///{Path(tmp) / 'replay.db'}"
        with Store(replay_url) as replay_store:
            for seed in range(args.seeds):
                for policy in policies:
                    run = run_replay(table, task, store, replay_store, policy, seed, max_calls=args.max_calls,
                                     n_proposals=args.n_proposals, rounds=args.rounds, race_start=args.race_start,
                                     batch_size=args.batch_size)  # fmt: skip
                    runs.append(run)
                    print(f"  {label(policy):<22} seed {seed}: winner table score {run['winner_table_score']:.3f}, "
                          f"{run['total_calls']} calls ({run['search_calls']} search + {run['final_calls']} final), "
                          f"ended by {'the budget' if run['stopped_reason'] else 'its rounds'}, "
                          f"{run['replay_misses']} misses, {run['wall_s']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
    summary = summarize(runs, policies)
    misses = sum(r["replay_misses"] for r in runs)
    hits = sum(r["table_hits"] + r["replay_db_hits"] for r in runs)
    print(f"{table['task']} · {table['model']} · table of {len(table['candidates'])} candidates (grid "
          f"{table['grid_size']}) × {table['dev_size']} dev · {args.seeds} seeds · max {args.max_calls} search calls "
          f"· mean ± sd over seeds · no model: {hits} requests answered from the table (or the replay db's copies), {misses} misses")  # fmt: skip
    print(format_table(summary, table))
    if summary["target"] is not None:
        print(f"random's mean final table score: {summary['target']:.3f}; 'calls to random's final' is the median "
              "over the seeds that reached it (how many did); '× random's calls' divides it by random's")  # fmt: skip
    print(
        f"table best: {info['table_best']:.3f} ({info['table_best_hash']}); base prompt: {info['base_score']:.3f}"
    )
    print(f"{APE_LABEL}: random search over the instruction pool alone, the rest of the prompt at the base's "
          "value (no proposer: the table holds no model-written instructions)")  # fmt: skip
    print("score = the table's full-dev mean of the candidate the search ranks first among those raced on "
          "≥ half of dev; the last point is the controller's winner after its final full-dev step")  # fmt: skip
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out_dir / f"space_replay-{_slug(table['model'])}-{stamp}.json"
    result = {
        "args": vars(args), "table": str(path), "table_model": table["model"], "info": info,
        "summary": summary, "runs": runs, "replay_misses": misses, "table_hits": hits,
    }  # fmt: skip
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {out}")
    plot_path = Path(args.plot) if args.plot else (out_dir / "space_replay.png")
    if plot(summary, table, info, plot_path):
        print(f"wrote {plot_path}")
    result["json"] = str(out)
    result["plot"] = str(plot_path)
    return result


# ------------------------------------------------------------------------------ CLI


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    for name in ("record", "replay"):
        p = sub.add_parser(name, help=f"{name} (see the module docstring)")
        p.add_argument("--space", default=DEFAULT_SPACE, help="a finite space: name or YAML file")
        p.add_argument("--task", default="gsm8k")
        p.add_argument("--data-dir", default=None)
        p.add_argument("--model", default="qwen2.5-coder-0.5b", help="fake, or a model spec")
        p.add_argument("--dev-size", type=int, default=20)
        p.add_argument("--db", default=None if name == "replay" else DEFAULT_DB,
                       help="the recorded database (record: where the response cache goes; replay: default "
                       "the one the table names)")  # fmt: skip
        p.add_argument("--batch-size", type=int, default=16)
        p.add_argument("--out-dir", default=str(RESULTS), help="where JSON (and the default plot) go")
    record_p, replay_p = sub.choices["record"], sub.choices["replay"]
    record_p.add_argument("--max-new-tokens", type=int, default=None,
                          help="the base's max_tokens (default: the space's fixed max_tokens, else 256)")  # fmt: skip
    record_p.add_argument("--max-grid", type=int, default=200)
    record_p.add_argument("--dtype", default="auto", help="local models only")
    record_p.add_argument("--dry-run", action="store_true", help="print the grid size and the estimate only")
    record_p.add_argument("--assume-tok-s", type=float, default=30.0,
                          help="output tokens per second assumed for the time estimate")  # fmt: skip
    record_p.add_argument("--out", default=None, help="the table's path (default: derived from the options)")
    replay_p.add_argument(
        "--table", default=None, help="the recorded table (default: derived from the options)"
    )
    replay_p.add_argument("--policies", default=",".join(POLICIES))
    replay_p.add_argument("--seeds", type=int, default=5)
    replay_p.add_argument("--max-calls", type=int, default=600)
    replay_p.add_argument("--n-proposals", type=int, default=6)
    replay_p.add_argument("--rounds", type=int, default=40,
                          help="an upper bound: the budget, not the rounds, should end the search")  # fmt: skip
    replay_p.add_argument("--race-start", type=int, default=8)
    replay_p.add_argument(
        "--replay-db", default=None, help="where the replayed runs go (default: a temp file)"
    )
    replay_p.add_argument("--plot", default=None, help="PNG path (default: OUT_DIR/space_replay.png)")
    return top


def main(argv: list[str] | None = None) -> int:
    from promptopt.errors import PromptOptError

    args = parser().parse_args(argv)
    try:
        if args.command == "record":
            record(args)
        else:
            replay(args)
    except PromptOptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
