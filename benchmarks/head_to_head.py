"""Head-to-head against DSPy (issue #8), ``benchmarks/head_to_head.py``: promptopt's
policies against DSPy's MIPROv2 and the fixed baselines, on one task, one model and one
cap on LLM calls.

    python benchmarks/head_to_head.py --model fake                        # seconds, checks the program
    nice python benchmarks/head_to_head.py --data-dir ../shared/data --model qwen2.5-coder-1.5b \\
        --max-calls 600 --dev-size 30 --test-limit 200 --resume \\
        --test-cache sqlite:///benchmarks/results/baselines-int8.db \\
        --space search_spaces/gsm8k-cpu.yaml                                # many hours on 2 cores

What runs, and how it is counted:

- **Task.** GSM8K: dev is drawn from train (the task's own seeded dev split; the search
  uses its first ``--dev-size``), the held-out test is the first ``--test-limit`` test
  items, the same for every entry. With ``--model fake`` the task is a tiny addition task
  written under the results folder and the model is the scripted fake of
  ``promptopt/testing/dspy_fakes.py`` (it speaks promptopt's format and DSPy's), so every entry,
  DSPy's included, runs end to end in seconds; its numbers say nothing about real models.
- **Entries.** ``--policies``: ``random``, ``ape``, ``opro``, ``tpe``, ``reinforce`` and
  ``dspy-mipro`` (MIPROv2 ``auto="light"``) and/or ``dspy-mipro-matched`` (MIPROv2 sized by
  the call cap), and ``dspy-mipro-native``: dspy-mipro's compiled program, exactly as DSPy
  dumped it, scored on test by ``dspy.Evaluate`` in DSPy's own format (what a DSPy user
  deploys; its calls to find are DSPy's requests in that search, see ``run_native``).
  Each search runs ``promptopt.search()`` from zero-shot CoT with
  ``Budget(max_calls=--max-calls)`` and ``--rounds`` high enough that the cap, not the
  rounds, ends it (the dspy-* policies spend at most half the cap inside DSPy, the rest
  races what DSPy found). ``--baselines``: the fixed prompts of ``benchmarks/baselines.py``
  (plain instruction, zero-shot CoT, 8-shot CoT), imported from there.
- **Matching the calls.** MIPROv2 ``auto="light"`` sizes itself and may stop well under
  the cap, and the verdict asks for no more calls than DSPy's. ``--match-calls dspy-mipro``
  (run it after that entry has finished) caps every promptopt search at dspy-mipro's
  calls to find minus the most a full-dev selection can add (``final_top`` × dev, 90 for
  light at dev 30), so no promptopt entry can spend more than DSPy did (short of a
  self-consistency overshoot of one example, which the verdict would show). With
  ``--resume``, a search whose cap or ``--dspy-threads`` changed starts anew in its
  policy's store, so the requests an earlier search of the same policy and seed made are
  answered from its cache — counted as calls all the same, so the cap binds as in a cold
  run; the row says ``warm_cache`` and its wall time is not a cold run's (``first_wall_s``
  is the time the same search took when it first ran in that store, if it did). Its row is
  appended; the table takes the last row of each entry.
- **Calls.** "search" is what the cap limits (requests, cache hits included: every policy
  has a store of its own, so the only hits are its own repeats or, after a ``--resume``
  with a new cap, its earlier search's requests); "select" is the full-dev
  evaluation of the best three after the search (outside the cap, the same rule for
  every policy); "calls to find" is their sum, the number the verdict compares; "test" is
  the held-out evaluation of the winner (requests; the real model calls are in the JSON).
  Tokens are reported the same way (search, select, test).
- **Stores.** Each policy's search has its own SQLite file
  (``<out-dir>/<model>[-<dtype>]-<task>/<entry>.db``, deleted before a start without ``--resume``), so no policy is
  answered from another's response cache. The baselines and every winner's test
  evaluation share one cache (``test-cache.db`` in the same folder): a prompt that two
  entries share is evaluated on test once; the JSON says how many test requests were
  cache hits. ``--test-cache URL`` names another database for it: the one
  ``benchmarks/baselines.py`` wrote (same model, prompts and ``--max-new-tokens``) answers
  the baselines' test items from what that run stored.
- **Statistics.** Accuracy with a 95% Wilson interval (``promptopt.stats.mean_interval``);
  differences on the same test items with ``promptopt.stats.paired_difference`` (paired
  bootstrap interval, McNemar's exact p), significant below ``promptopt.controller.SIGNIFICANCE``.
  The verdict: does a promptopt policy beat dspy-mipro's held-out accuracy with no more
  calls to find its prompt, significantly?

**Crash safety and resume.** Each entry runs in its own subprocess (``--worker NAME``), so a
crash loses only that entry. Each finished entry is appended at once to
``<out-dir>/<model>[-<dtype>]-<task>.jsonl``; ``--resume`` skips entries already there with status
ok (and refuses a file written with other settings, and an entry answered by another
model id than the file's: ``--dtype auto`` may pick other weights on another machine) and continues an unfinished policy
search from its store (``promptopt.search(resume=RUN_ID)``: it replays its calls from its
own cache, so the cap stops it where an uninterrupted run would stop; its wall time then
covers the resumed part only, marked ``resumed``). Without ``--resume`` an existing file is
refused; ``--fresh`` deletes it and the entries' stores first. At the end a summary with
every row, the comparisons and the verdict is written to
``<out-dir>/head_to_head-<model>-<time>.json``.

**DSPy lives in its own venv.** The dspy-* workers run with ``--dspy-python`` (default
``$PROMPTOPT_DSPY_PYTHON``, else ``.venv-dspy/bin/python``), the others with this Python.
For a real model that venv needs torch and the model as well; install (once, CPU torch
from this machine's disk, pinned)::

    .venv-dspy/bin/pip install torch==2.13.0
    .venv-dspy/bin/pip install -e '.[local,dspy,search,model-qwen1-5b]'
    .venv-dspy/bin/python -c 'import promptopt.backends.local'

Without a usable dspy Python the dspy-* entries are skipped with the reason printed (and
recorded), and the verdict says there is nothing to compare with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import suite_cells as cells  # noqa: E402  (what the suite's cells share)
from benchmarks.baselines import BASELINES  # noqa: E402  (the fixed prompts, defined once)
from benchmarks.plotting import figure, save  # noqa: E402
from promptopt.backends import DTYPES, is_local_spec  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "head_to_head"
PROMPTOPT_POLICIES = ("random", "ape", "opro", "tpe", "reinforce")
NATIVE = "dspy-mipro-native"  # MIPROv2's own pick, tested in DSPy's own format
NATIVE_SOURCE = "dspy-mipro"  # the finished entry whose pick it tests
DSPY_POLICIES = ("dspy-mipro", "dspy-mipro-matched", NATIVE)
SPACE_POLICIES = ("random", "tpe", "reinforce")
START = "zero-shot CoT"  # every search starts from this baseline's prompt
# Settings that change results: a resumed file must have been written with the same.
RESULT_SETTINGS = (
    "task", "model", "max_calls", "dev_size", "test_limit", "seed", "max_new_tokens",
    "preset", "proposals", "rounds", "race_start", "space", "dtype",
)  # fmt: skip

# The fake's space: the test suite's kind of space, without "similar" demos (those need
# the embedding model) so that the fake run needs nothing beyond the dev install.
FAKE_SPACE: dict[str, Any] = {
    "name": "head-to-head-fake",
    "dimensions": {
        "instruction": {"type": "pool", "include_base": True,
                        "seeds": ["Add the numbers.", "Add the two numbers carefully."],
                        "grow": {"proposer": "ape", "max": 2}},
        "cot_mode": {"type": "categorical", "choices": ["none", "zero_shot", "few_shot"]},
        "cot_trigger": {"type": "categorical", "choices": ["Let's think step by step.", "Go."],
                        "when": {"cot_mode": ["zero_shot", "few_shot"]}},
        "n_demos": {"type": "integer", "low": 0, "high": 4},
        "demo_selection": {"type": "categorical", "choices": ["random", "fixed"], "when": {"n_demos": {"min": 1}}},
        "samples": {"type": "categorical", "choices": [1, 3]},
        "temperature": {"type": "float", "low": 0.5, "high": 1.0, "step": 0.25, "when": {"samples": [3]}},
    },
}  # fmt: skip


# --------------------------------------------------------------------------- arguments


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-").replace("/", "_")


BASELINE_BY_SLUG = {_slug(name): name for name in BASELINES}


SETTING_DEFAULTS = {"dtype": "auto"}  # settings that rows written before them lack


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", help="a model spec, or fake")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="a local model's weights (auto: bfloat16 on CPUs with AMX, else int8 on x86); "
                        "entries compared with each other need the same")  # fmt: skip
    parser.add_argument("--task", default=None, help="default: gsm8k (fake: a tiny addition task)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--policies", default=f"random,ape,opro,tpe,reinforce,dspy-mipro,{NATIVE}",
                        help=f"comma-separated: {', '.join(PROMPTOPT_POLICIES + DSPY_POLICIES)}")  # fmt: skip
    parser.add_argument("--baselines", default=",".join(BASELINE_BY_SLUG),
                        help=f"comma-separated: {', '.join(BASELINE_BY_SLUG)} (empty: none)")  # fmt: skip
    parser.add_argument("--max-calls", type=int, default=600, help="the cap on each search's LLM requests")
    parser.add_argument("--dev-size", type=int, default=30)
    parser.add_argument("--test-limit", type=int, default=200, help="the first N test items")
    parser.add_argument("--preset", default="light", choices=["light", "medium", "heavy"])
    parser.add_argument(
        "--proposals", type=int, default=6, help="proposals per round (and MIPRO-matched's pool)"
    )
    parser.add_argument(
        "--match-calls", default=None, metavar="ENTRY",
        help="cap each promptopt search at ENTRY's calls to find (e.g. dspy-mipro) minus the most its "
        "full-dev selection can add, so that none can spend more; ENTRY must finish first",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=12, help="high, so that the cap ends each search")
    parser.add_argument("--race-start", type=int, default=8)
    parser.add_argument("--space", default=None, help="space of random/tpe/reinforce (default: the task's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dspy-threads", type=int, default=1,
                        help="threads of DSPy's evaluations, joined into batches (see promptopt search --dspy-threads)")  # fmt: skip
    parser.add_argument("--dspy-share", type=float, default=None,
                        help="share of the cap DSPy's optimizer may spend (default: the policy's, half)")  # fmt: skip
    parser.add_argument("--dspy-max-calls", type=int, default=None,
                        help="the cap of the dspy-* searches (default: --max-calls); each row records its cap")  # fmt: skip
    parser.add_argument("--dspy-python", default=None,
                        help="Python with dspy (default: $PROMPTOPT_DSPY_PYTHON, else .venv-dspy/bin/python)")  # fmt: skip
    parser.add_argument("--out-dir", default=str(RESULTS))
    parser.add_argument(
        "--test-cache",
        default=None,
        help="database URL of the shared test cache (default: test-cache.db in the results folder); "
        "point it at benchmarks/baselines.py's --db to reuse the baselines' stored test answers",
    )
    parser.add_argument(
        "--resume", action="store_true", help="skip entries already done; continue unfinished"
    )
    parser.add_argument("--fresh", action="store_true", help="delete earlier results of these settings first")
    parser.add_argument("--dry-run", action="store_true", help="print each search's estimate; run nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--search-cap", type=int, help=argparse.SUPPRESS)  # the worker's cap (--match-calls)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.fake = args.model == "fake"
    if args.task is None:
        args.task = "tiny-add" if args.fake else "gsm8k"
    policies = _split(args.policies)
    unknown = [p for p in policies if p not in PROMPTOPT_POLICIES + DSPY_POLICIES]
    if unknown:
        parser.error(
            f"unknown policies {unknown}; expected some of {', '.join(PROMPTOPT_POLICIES + DSPY_POLICIES)}"
        )
    if NATIVE in policies and NATIVE_SOURCE in policies[policies.index(NATIVE) :]:
        policies.remove(NATIVE)  # it tests the pick of its source: after it
        policies.insert(policies.index(NATIVE_SOURCE) + 1, NATIVE)
    baselines = []
    for name in _split(args.baselines):
        key = BASELINE_BY_SLUG.get(_slug(name))
        if key is None:
            parser.error(f"unknown baseline {name!r}; expected some of {', '.join(BASELINE_BY_SLUG)}")
        baselines.append(key)
    args.entries = baselines + policies
    if args.dspy_threads < 1:
        parser.error(f"--dspy-threads {args.dspy_threads}: must be at least 1")
    if args.dspy_max_calls is not None and args.dspy_max_calls < 1:
        parser.error(f"--dspy-max-calls {args.dspy_max_calls}: must be at least 1")
    if args.dspy_share is not None and not 0.0 < args.dspy_share <= 1.0:
        parser.error(f"--dspy-share {args.dspy_share}: must be above 0 and at most 1")
    if args.match_calls is not None and args.match_calls not in DSPY_POLICIES + PROMPTOPT_POLICIES:
        parser.error(f"--match-calls {args.match_calls!r}: not an entry; expected one of "
                     f"{', '.join(DSPY_POLICIES + PROMPTOPT_POLICIES)}")  # fmt: skip
    if args.dtype != "auto" and not is_local_spec(args.model):
        parser.error(
            f"--dtype {args.dtype}: only a local model has weights to choose; {args.model!r} is not one"
        )
    if args.dspy_python is None:
        args.dspy_python = os.environ.get("PROMPTOPT_DSPY_PYTHON") or str(
            REPO / ".venv-dspy" / "bin" / "python"
        )
    args.out_dir = Path(args.out_dir)
    return args


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in RESULT_SETTINGS}


def same_settings(row: Mapping[str, Any], args: argparse.Namespace) -> bool:
    """The row was written with these flags; a setting added since (``dtype``) counts as
    its default in an older row."""
    stored = {**SETTING_DEFAULTS, **(row.get("settings") or {})}
    return stored == settings(args)


def other_model(rows: Sequence[Mapping[str, Any]], row: Mapping[str, Any]) -> str | None:
    """Why ``row`` cannot join ``rows``: they were answered by another model or dtype (the
    model id says which, e.g. ``local/qwen2.5-coder-1.5b:int8``; ``--dtype auto`` may pick
    another dtype on another machine)."""
    earlier = {r["model_id"] for r in rows if r.get("status") == "ok" and r.get("model_id")}
    if row.get("status") == "ok" and earlier and row.get("model_id") not in earlier:
        return (
            f"{row['name']} ran on {row.get('model_id')}, the file's entries on {', '.join(sorted(earlier))}: "
            "pass --dtype to choose the weights they used, or use another --out-dir"
        )
    return None


def run_name(args: argparse.Namespace) -> str:
    """``<model>-<task>``, with the dtype when one is asked for: the folder of the stores
    and the name of the results file."""
    model = _slug(args.model) if args.dtype == "auto" else f"{_slug(args.model)}-{args.dtype}"
    return f"{model}-{_slug(args.task)}"


def work_dir(args: argparse.Namespace) -> Path:
    return args.out_dir / run_name(args)


def jsonl_path(args: argparse.Namespace) -> Path:
    return args.out_dir / f"{run_name(args)}.jsonl"


def kind_of(name: str) -> str:
    if name in BASELINES:
        return "baseline"
    return "dspy" if name.startswith("dspy-") else "promptopt"


# --------------------------------------------------------------------------- the fake


def write_fake_task(folder: Path) -> Path:
    """A tiny addition task the scripted DSPy fake answers (sums that are multiples of 3
    come out wrong unless the prompt shows demos or says "carefully")."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"question": f"What is {a} plus {b}?", "answer": str(a + b), "solution": f"{a} plus {b} is {a + b}."}
        for a in range(1, 13)
        for b in range(1, 10)
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:68]))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[68:]))
    path = folder / "tiny-add.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: tiny-add
        version: 1
        source: {type: records, files: {train: train.jsonl, test: test.jsonl},
                 target_field: answer, solution_field: solution}
        input_fields: [question]
        template: "Question: {question}"
        instruction: Add the numbers.
        answer_format: 'End your answer with "The answer is N."'
        extractor: number
        dev: {size: 16, seed: 0}
        """)
    )
    return path


def task_ref(args: argparse.Namespace) -> str:
    """What ``get_task`` and the search config are given: a name, or the fake task's file."""
    if args.fake and args.task == "tiny-add":
        return str(write_fake_task(work_dir(args) / "fake-task"))
    return str(args.task)


def fake_backend() -> Any:
    """The scripted DSPy fake if the checkout's tests are importable, else promptopt's own."""
    try:
        from promptopt.testing.dspy_fakes import fake_model

        return fake_model()
    except ImportError:
        from promptopt.backends import FakeBackend

        return FakeBackend()


# --------------------------------------------------------------------------- worker


def start_prompt(task: Any, args: argparse.Namespace, name: str = START) -> Any:
    return cells.start_prompt(task, name, args.max_new_tokens)


describe_prompt = cells.describe_prompt


def test_evaluation(task: Any, candidate: Any, backend: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The held-out evaluation every entry gets, through the shared test cache."""
    import promptopt

    db = args.test_cache or f"sqlite:///{work_dir(args) / 'test-cache.db'}"

    def progress(p: Any) -> None:  # a test of a few-shot prompt runs for an hour or more
        print(f"    test: {p.done}/{p.total} items, {p.correct:g} right so far, {p.elapsed_s / 60:.1f} min",
              file=sys.stderr, flush=True)  # fmt: skip

    report = promptopt.evaluate(task, candidate, backend, split="test", limit=args.test_limit, db=db,
                                batch_size=args.batch_size, seed=args.seed, progress=progress)  # fmt: skip
    return cells.test_facts(report)


def stored_searches(db: str, config: Any) -> list[Any]:
    """The searches in ``db`` started with the call cap and DSPy threads of ``config``
    (a resume continues with its stored configuration), oldest first."""
    from promptopt.store import Store

    def option(stored: Mapping[str, Any], name: str, default: Any) -> Any:
        # a run stored before the policies owned their options has them at the top level
        return (stored.get("policy_options") or {}).get(name, stored.get(name, default))

    def same(stored: Mapping[str, Any]) -> bool:
        return (
            (stored.get("budget") or {}).get("max_calls") == config.budget.max_calls
            and option(stored, "dspy_threads", 1) == config.policy_options.get("dspy_threads", 1)
            and option(stored, "dspy_share", None) == config.policy_options.get("dspy_share")
        )

    with Store(db) as store:
        runs = [r for r in store.list_runs() if r.kind == "search" and same(r.config)]
    return sorted(runs, key=lambda r: r.created_at)


def unfinished_search(db: str, config: Any) -> str | None:
    """The newest unfinished search of ``config``'s settings in ``db``, if any."""
    runs = [r for r in stored_searches(db, config) if r.status != "finished"]
    return runs[-1].id if runs else None


def first_wall_s(db: str, config: Any) -> float | None:
    """The wall time of the first finished search of ``config``'s settings in ``db``: when a
    finished search is run again from its cache (its test was stopped, say), the time it
    took when the model answered."""
    for run in stored_searches(db, config):
        if run.status == "finished" and isinstance((run.summary or {}).get("wall_s"), int | float):
            return float(run.summary["wall_s"])
    return None


def dspy_cap_note(args: argparse.Namespace) -> str:
    return "" if args.dspy_max_calls is None else f" (dspy-*: {args.dspy_max_calls})"


def search_cap(args: argparse.Namespace, name: str | None = None) -> int:
    """The call cap of the search of ``name`` (default: this worker's): the matched cap,
    ``--dspy-max-calls`` for a dspy-* search, else ``--max-calls``."""
    name = name or args.worker
    if args.search_cap is not None:
        return int(args.search_cap)
    if args.dspy_max_calls is not None and name and kind_of(name) == "dspy":
        return int(args.dspy_max_calls)
    return int(args.max_calls)


def selection_reserve(args: argparse.Namespace) -> int:
    """The most a search's full-dev selection can add to its calls (the best
    ``final_top`` on all of dev, one request each per example)."""
    from promptopt.controller import PRESETS

    return int(PRESETS[args.preset]["final_top"]) * args.dev_size


def matched_cap(args: argparse.Namespace, rows: Sequence[Mapping[str, Any]]) -> tuple[int | None, str]:
    """The cap of the promptopt searches under ``--match-calls``, or None and why not."""
    ref = next((r for r in reversed(rows) if r["name"] == args.match_calls), None)
    if ref is None or ref.get("status") != "ok" or not ref.get("search"):
        return None, f"--match-calls {args.match_calls}: it has no finished result yet (run it first)"
    cap = min(args.max_calls, calls_to_find(ref) - selection_reserve(args))
    if cap <= 0:
        return (
            None,
            f"--match-calls {args.match_calls}: its {calls_to_find(ref)} calls leave no room for a search",
        )
    return cap, (f"capped at {cap} calls: {args.match_calls}'s {calls_to_find(ref)} calls to find "
                 f"minus {selection_reserve(args)} for the full-dev selection")  # fmt: skip


def row_cap(row: Mapping[str, Any]) -> int:
    """The call cap a finished promptopt row was searched with."""
    return int((row.get("search") or {}).get("cap") or row["settings"]["max_calls"])


def search_config(name: str, task: Any, args: argparse.Namespace) -> Any:
    """The search of policy ``name``. ``test_size=0``: the held-out evaluation is done
    afterwards, the same way for every entry, through the shared test cache."""
    from promptopt.budget import Budget
    from promptopt.controller import SearchConfig

    space: Any = None
    if name in SPACE_POLICIES:
        space = FAKE_SPACE if args.fake and args.space is None else args.space
    return SearchConfig.from_preset(
        args.preset, task=task_ref(args), data_dir=args.data_dir, model=args.model, base=start_prompt(task, args),
        policy=name, dev_size=args.dev_size, test_size=0, seed=args.seed, batch_size=args.batch_size,
        n_proposals=args.proposals, rounds=args.rounds, race_start=args.race_start,
        budget=Budget(max_calls=search_cap(args, name)), space=space, dspy_threads=args.dspy_threads,
        dspy_share=args.dspy_share,
    )  # fmt: skip


def run_search(name: str, task: Any, backend: Any, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from promptopt.controller import SearchProgress, SearchResult, search

    db_path = work_dir(args) / f"{_slug(name)}.db"
    db = f"sqlite:///{db_path}"
    cap = search_cap(args)
    config = search_config(name, task, args)
    resume = unfinished_search(db, config) if args.resume and db_path.exists() else None
    # --resume keeps the store even when its search had another cap or DSPy threads: the
    # new search's repeated requests are answered by its cache (and counted all the same).
    warm = resume is None and args.resume and db_path.exists()
    if resume is None and not warm:
        for leftover in db_path.parent.glob(db_path.name + "*"):  # the db and its -wal/-shm
            leftover.unlink()
    cold_wall = first_wall_s(db, config) if warm else None
    if warm:
        print(f"  [{name}] new search (cap {cap}) in {db_path}: its response cache answers the "
              "requests an earlier search there made (counted as calls all the same)", file=sys.stderr, flush=True)  # fmt: skip
    at_selection: dict[str, Any] = {}
    trace: list[list[Any]] = []  # [calls, best dev so far, phase] at each progress report

    def progress(p: SearchProgress) -> None:
        if p.phase == "final" and not at_selection:
            at_selection.update(p.spent)  # what the search spent before the full-dev selection
        if p.best_dev is not None and p.phase in ("search", "final"):
            trace.append([p.spent["calls"], round(p.best_dev, 4), p.phase])
        best = "–" if p.best_dev is None else f"{p.best_dev:.3f}"
        print(f"  [{name}] {p.phase} round {p.round}: pool {p.pool}, best dev {best}, "
              f"{p.spent['calls']} calls, {p.elapsed_s:.0f} s", file=sys.stderr, flush=True)  # fmt: skip

    if resume:
        print(f"  [{name}] resuming search {resume} from {db_path}", file=sys.stderr, flush=True)
    result = search(
        None if resume else config, backend=backend, db=db, resume=resume, progress=progress, task=task
    )
    assert isinstance(result, SearchResult)
    spent = result.spent
    search_in = at_selection.get("tokens_in", spent["tokens_in"])
    search_out = at_selection.get("tokens_out", spent["tokens_out"])
    winner_row = next((r for r in result.leaderboard if r.candidate.hash == result.winner.hash), None)
    state = result.policy_state
    info = {
        "run_id": result.run_id,
        "db": str(db_path),
        "resumed": resume is not None,
        "cap": cap,
        "matched_to": args.match_calls if args.search_cap is not None else None,
        "warm_cache": warm,
        "first_wall_s": cold_wall,  # warm: the same search's wall time when it first ran here
        "dspy_threads": args.dspy_threads if kind_of(name) == "dspy" else None,
        "dspy_share": args.dspy_share if kind_of(name) == "dspy" else None,
        "calls": spent["calls"],
        "selection_calls": result.final_calls,
        "calls_to_find": spent["calls"] + result.final_calls,
        "trace": trace,
        "model_calls": result.model_calls,
        "cache_hits": result.cache_hits,
        "tokens_in": search_in,
        "tokens_out": search_out,
        "selection_tokens_in": spent["tokens_in"] - search_in,
        "selection_tokens_out": spent["tokens_out"] - search_out,
        "winner_dev": winner_row.mean if winner_row else None,
        "winner_dev_ci95": [winner_row.ci_low, winner_row.ci_high] if winner_row else None,
        "winner_dev_n": winner_row.n if winner_row else None,
        "winner_origin": winner_row.origin if winner_row else None,
        "candidates": len(result.leaderboard),
        "stopped": result.stopped_reason,
        "estimate": {k: v for k, v in result.estimate.items() if isinstance(v, int | float | str)},
        "wall_s": result.wall_s,
        "faults": dict(result.faults),
        "policy_state": {k: state[k] for k in ("mipro", "preferred", "best_trial") if k in state},
    }
    return result.winner, info


def source_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The last finished row of the entry whose pick ``dspy-mipro-native`` tests."""
    finished = [r for r in rows if r["name"] == NATIVE_SOURCE and r.get("status") == "ok" and r.get("search")]
    return finished[-1] if finished else None


def replay_dspy(
    run: Any, db_path: Path, task: Any, model_id: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The DSPy part of a finished search stored before its summary kept DSPy's program:
    the search again, from its stored configuration, in a copy of its store, with a
    model that answers every request it is asked with an empty text (not an error: a search
    whose every request fails stops, as for an endpoint that is down; an empty answer is
    only scored wrong), so that DSPy's optimizer, answered from the cache,
    makes the same choices and yields its compiled program (``policy_state``). The replay
    must repeat DSPy's requests and scores as stored, else it ends with what differed: a
    search whose DSPy part a call limit cut mid-trial under several threads may not (the
    threads decided which requests got through)."""
    import contextlib
    import dataclasses
    import sqlite3
    import tempfile

    from promptopt.backends.base import Backend
    from promptopt.controller import SearchConfig, SearchResult, search
    from promptopt.types import Completion

    class CacheOnly(Backend):
        refused = 0

        @property
        def model_id(self) -> str:
            return model_id

        def generate(self, requests: Sequence[Any]) -> list[Any]:
            CacheOnly.refused += len(requests)
            return [Completion(text="") for _ in requests]  # not in the cache of db_path

    config = dataclasses.replace(SearchConfig.from_dict(run.config), data_dir=args.data_dir)
    print(f"  [{NATIVE}] search {run.id} kept no DSPy program: replaying it from its cache", file=sys.stderr,
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / db_path.name
        # SQLite's backup, not a file copy: what is still in the store's -wal comes along
        with (
            contextlib.closing(sqlite3.connect(db_path)) as source,
            contextlib.closing(sqlite3.connect(copy)) as into,
        ):
            source.backup(into)
        result = search(config, backend=CacheOnly(), db=f"sqlite:///{copy}", task=task)
    assert isinstance(result, SearchResult)
    state = dict(result.policy_state)
    stored = (run.summary or {}).get("policy_state") or {}

    def trials(s: Mapping[str, Any]) -> list[Any]:
        return [(p["dspy_score"], p["n"]) for p in s.get("dspy_programs", [])]

    # DSPy's part must replay as it ran (the race after it may not: a candidate rendered by
    # a newer promptopt asks for requests the old race never sent, refused here).
    if state.get("dspy_requests") != stored.get("dspy_requests") or trials(state) != trials(stored):
        raise SystemExit(
            f"{NATIVE}: replaying search {run.id} of {db_path} did not repeat DSPy's part "
            f"({state.get('dspy_requests')} requests, scores {trials(state)}; stored: "
            f"{stored.get('dspy_requests')}, {trials(stored)}; {CacheOnly.refused} requests were not "
            "in its cache): its DSPy program cannot be rebuilt"
        )
    if CacheOnly.refused:
        print(f"  [{NATIVE}] replayed DSPy's part as stored; {CacheOnly.refused} later requests (the race) "
              "were not in the cache and are not needed", file=sys.stderr, flush=True)  # fmt: skip
    state["dspy_wall_s"] = None  # the replay's time is not the search's
    return state


def run_native(
    task: Any, backend: Any, args: argparse.Namespace
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """MIPROv2's pick (its compiled program, exactly as DSPy dumped it) evaluated on the
    held-out test items by ``dspy.Evaluate``, in DSPy's own format, through promptopt's
    backend and the shared test cache: what a DSPy user who deploys MIPROv2's program
    gets. Its calls to find are DSPy's requests in the source search (no race, no
    selection). Returns the prompt as a candidate (promptopt's rendering, for the
    table), the search facts and the test facts."""

    from promptopt.dspy_interop import (
        candidate_from_state,
    )
    from promptopt.store import Store
    from promptopt.types import Candidate

    source = source_row(read_rows(jsonl_path(args)))
    if source is None:
        raise SystemExit(f"{NATIVE}: {NATIVE_SOURCE} has no finished result yet (run it first)")
    db_path, run_id = Path(source["search"]["db"]), source["search"]["run_id"]
    with Store(f"sqlite:///{db_path}") as store:
        run = store.get_run(run_id)
    state = dict((run.summary or {}).get("policy_state") or {})
    replayed = "dspy_best_state" not in state or "dspy_tokens_in" not in state  # stored before these were
    if replayed:
        state = replay_dspy(run, db_path, task, backend.model_id, args)
    program_state = state["dspy_best_state"]
    if program_state is None:
        raise SystemExit(f"{NATIVE}: {NATIVE_SOURCE}'s DSPy part stopped before it compiled a program "
                         f"({state.get('stopped')}): there is no pick to test")  # fmt: skip
    base = Candidate.from_dict(run.config["base"])
    db = args.test_cache or f"sqlite:///{work_dir(args) / 'test-cache.db'}"
    print(f"  [{NATIVE}] test evaluation of {NATIVE_SOURCE}'s pick ({state.get('dspy_best')}) in DSPy's format, "
          f"{args.dspy_threads} threads", file=sys.stderr, flush=True)  # fmt: skip
    test = cells.native_test(task, base, program_state, backend, examples=task.examples("test", args.test_limit),
                             db=db, threads=args.dspy_threads)  # fmt: skip
    calls = int(state["dspy_requests"])
    search_info = {
        "source": NATIVE_SOURCE,
        "source_run_id": run_id,
        "db": str(db_path),
        "replayed": replayed,
        "cap": source["search"].get("cap"),
        "matched_to": None,
        "dspy_threads": args.dspy_threads,
        "calls": calls,
        "selection_calls": 0,
        "calls_to_find": calls,
        "trace": [],
        "tokens_in": int(state["dspy_tokens_in"]),
        "tokens_out": int(state["dspy_tokens_out"]),
        "selection_tokens_in": 0,
        "selection_tokens_out": 0,
        "wall_s": state.get("dspy_wall_s"),
        "dspy_best": state.get("dspy_best"),
        "dspy_program": program_state,
        "policy_state": {k: state[k] for k in ("mipro",) if k in state},
    }
    prompt = candidate_from_state(program_state, task, base=base, strict=False)
    return prompt, search_info, test


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    from promptopt.backends import make_backend
    from promptopt.tasks import get_task

    name = args.worker
    started = time.perf_counter()
    load_start = os.getloadavg()
    work_dir(args).mkdir(parents=True, exist_ok=True)
    task = get_task(task_ref(args), args.data_dir)
    backend = (
        fake_backend()
        if args.fake
        else make_backend(args.model, batch_size=args.batch_size, dtype=args.dtype)
    )
    search_info: dict[str, Any] | None = None
    summary_prefix = ""
    if name == NATIVE:
        prompt, search_info, test = run_native(task, backend, args)
        summary_prefix = "DSPy's format: "
    else:
        if name in BASELINES:
            prompt = start_prompt(task, args, name)
        else:
            prompt, search_info = run_search(name, task, backend, args)
        print(f"  [{name}] test evaluation: {describe_prompt(prompt)}", file=sys.stderr, flush=True)
        test = test_evaluation(task, prompt, backend, args)
    versions = {"python": platform.python_version(), "executable": sys.executable}
    if kind_of(name) == "dspy":
        from importlib.metadata import version

        versions["dspy"] = version("dspy")
    return {
        "name": name,
        "kind": kind_of(name),
        "status": "ok",
        "settings": settings(args),
        "model_id": backend.model_id,
        "prompt": prompt.to_dict(),
        "prompt_hash": prompt.hash,
        "prompt_summary": summary_prefix + describe_prompt(prompt),
        "search": search_info,
        "test": test,
        "wall_s": time.perf_counter() - started,
        "load_avg": [load_start[0], os.getloadavg()[0]],
        "versions": versions,
    }


# --------------------------------------------------------------------------- driver


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def dspy_problem(args: argparse.Namespace) -> str | None:
    """Why the dspy-* workers cannot run, or None."""
    python = args.dspy_python
    if not Path(python).exists():
        return (
            f"no dspy Python at {python} (--dspy-python, $PROMPTOPT_DSPY_PYTHON; install: see the docstring)"
        )
    needs = "import dspy, promptopt" + (
        "; from promptopt.testing.dspy_fakes import fake_model"
        if args.fake
        else "; import promptopt.backends.local"
    )
    probe = subprocess.run([python, "-c", needs], capture_output=True, text=True, env=worker_env(), cwd=REPO,
                           check=False)  # fmt: skip
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"{python} cannot run the dspy workers ({needs!r}: {last})"
    return None


def run_entry(args: argparse.Namespace, name: str, cap: int | None = None) -> dict[str, Any]:
    python = sys.executable
    base = {"name": name, "kind": kind_of(name), "settings": settings(args)}
    extra = [] if cap is None else ["--search-cap", str(cap)]
    if kind_of(name) == "dspy":
        problem = dspy_problem(args)
        if problem:
            print(f"  {name}: skipped: {problem}", flush=True)
            return {**base, "status": "skipped", "reason": problem}
        python = args.dspy_python
    result_file = work_dir(args) / f"{_slug(name)}.result.json"
    result_file.unlink(missing_ok=True)
    command = [
        python,
        str(Path(__file__).resolve()),
        *args.argv,
        "--worker",
        name,
        "--result-file",
        str(result_file),
        *extra,
    ]
    started = time.perf_counter()
    process = subprocess.run(command, env=worker_env(), cwd=REPO, check=False)
    if process.returncode != 0 or not result_file.is_file():
        reason = f"worker exited with {process.returncode} after {time.perf_counter() - started:.0f} s (its output is above)"
        print(f"  {name}: failed: {reason}", flush=True)
        return {**base, "status": "failed", "reason": reason}
    row: dict[str, Any] = json.loads(result_file.read_text())
    result_file.unlink()
    return row


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def latest_rows(rows: Sequence[Mapping[str, Any]], entries: Sequence[str]) -> list[Mapping[str, Any]]:
    """The last row of each entry, in the order of ``entries``."""
    last = {row["name"]: row for row in rows}
    return [last[name] for name in entries if name in last]


# --------------------------------------------------------------------------- report


def paired(reference: Mapping[str, Any], other: Mapping[str, Any], seed: int) -> dict[str, float]:
    """``other`` minus ``reference`` on the test items both scored (promptopt's paired test)."""
    from promptopt.stats import paired_difference

    a_scores, b_scores = reference["test"]["scores"], other["test"]["scores"]
    common = [i for i in a_scores if i in b_scores and a_scores[i] is not None and b_scores[i] is not None]
    return paired_difference([a_scores[i] for i in common], [b_scores[i] for i in common], seed=seed)


def calls_to_find(row: Mapping[str, Any]) -> int:
    return int(row["search"]["calls_to_find"]) if row.get("search") else 0


def verdicts(rows: Sequence[Mapping[str, Any]], seed: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Every promptopt policy against every DSPy entry that finished; and the verdict lines."""
    from promptopt.controller import SIGNIFICANCE

    ok = [r for r in rows if r.get("status") == "ok"]
    ours = [r for r in ok if r["kind"] == "promptopt"]
    theirs = [r for r in ok if r["kind"] == "dspy"]
    comparisons: list[dict[str, Any]] = []
    lines: list[str] = []
    if not theirs:
        missing = [r for r in rows if r["kind"] == "dspy"]
        why = "; ".join(f"{r['name']}: {r.get('reason', r.get('status'))}" for r in missing) or "none was run"
        return [], [f"VERDICT: no DSPy result to compare with ({why})."]
    if not ours:
        return [], ["VERDICT: no promptopt policy finished; nothing to compare."]
    for dspy_row in theirs:
        budget = calls_to_find(dspy_row)
        rivals = []
        for row in ours:
            diff = paired(dspy_row, row, seed)
            entry = {
                "dspy": dspy_row["name"], "policy": row["name"], "paired": diff,
                "policy_calls": calls_to_find(row), "dspy_calls": budget,
                "no_more_calls": calls_to_find(row) <= budget,
                "significant": diff["diff"] > 0 and diff["p_value"] < SIGNIFICANCE,
            }  # fmt: skip
            comparisons.append(entry)
            rivals.append((row, entry))
        eligible = [(r, e) for r, e in rivals if e["no_more_calls"]]
        over = [f"{r['name']} ({e['policy_calls']})" for r, e in rivals if not e["no_more_calls"]]
        acc = dspy_row["test"]["accuracy"]
        head = f"VERDICT vs {dspy_row['name']} (test {acc:.1%}, {budget} calls to find):"
        tail = f" Excluded for spending more calls: {', '.join(over)}." if over else ""
        if not eligible:
            lines.append(f"{head} NO — every promptopt policy spent more calls.{tail}")
            continue
        row, best = max(eligible, key=lambda pair: (pair[1]["significant"], pair[1]["paired"]["diff"]))
        d = best["paired"]
        facts = (f"{row['name']} {row['test']['accuracy']:.1%}, {d['diff'] * 100:+.1f} points "
                 f"[{d['ci_low'] * 100:+.1f}, {d['ci_high'] * 100:+.1f}], McNemar p={d['p_value']:.3g}, "
                 f"n={d['n']}, {best['policy_calls']} calls")  # fmt: skip
        if best["significant"]:
            lines.append(f"{head} YES — {facts}: significant at the 5% level.{tail}")
        elif d["diff"] > 0:
            lines.append(f"{head} NOT SHOWN — best is {facts}: higher, but not significant at 5%.{tail}")
        else:
            lines.append(f"{head} NO — best is {facts}: not higher.{tail}")
    return comparisons, lines


def print_table(rows: Sequence[Mapping[str, Any]], args: argparse.Namespace) -> None:
    ok = [r for r in rows if r.get("status") == "ok"]
    # Differences against DSPy's result, else against the starting prompt, else the first baseline.
    reference = (next((r for r in ok if r["kind"] == "dspy"), None) or next((r for r in ok if r["name"] == START), None)
                 or next((r for r in ok if r["kind"] == "baseline"), None))  # fmt: skip
    print()
    print(f"{args.task} · {args.model} · max {args.max_calls} calls per search{dspy_cap_note(args)} · dev {args.dev_size} (from train) · "
          f"test: first {args.test_limit} · seed {args.seed} · accuracy with 95% CI")  # fmt: skip
    matched = sorted({(row_cap(r), r["search"].get("matched_to")) for r in ok
                      if r["kind"] == "promptopt" and row_cap(r) != args.max_calls}, key=str)  # fmt: skip
    for cap, to in matched:
        names = [r["name"] for r in ok if r["kind"] == "promptopt" and row_cap(r) == cap]
        print(f"searches capped at {cap} calls (--match-calls {to}): {', '.join(names)}")
    ref_name = reference["name"] if reference else "–"
    header = ["entry", "test acc", "95% CI", f"Δ vs {ref_name} (p)", "calls search+select", "tokens search+select",
              "test req (hits)", "test tokens", "wall s search/test", "winning prompt"]  # fmt: skip
    table = []
    for r in rows:
        if r.get("status") != "ok":
            table.append(
                [r["name"], r.get("status", "?"), "", "", "", "", "", "", "", r.get("reason", "")[:100]]
            )
            continue
        t, s = r["test"], r.get("search")
        delta = "–"
        if reference is not None and reference is not r:
            d = paired(reference, r, args.seed)
            delta = f"{d['diff'] * 100:+.1f} ({d['p_value']:.2g})"
        if s:
            calls = f"{s['calls']}+{s['selection_calls']}"
            tokens = (
                f"{s['tokens_in'] + s['tokens_out']}+{s['selection_tokens_in'] + s['selection_tokens_out']}"
            )
            wall = f"{'–' if s['wall_s'] is None else format(s['wall_s'], '.0f')}/{t['wall_s']:.0f}"
            if s.get("first_wall_s") is not None:  # run again from its cache: the first run's time too
                wall += f" (first {s['first_wall_s']:.0f})"
        else:
            calls, tokens, wall = "–", "–", f"–/{t['wall_s']:.0f}"
        table.append([
            r["name"], f"{t['accuracy']:.1%}", f"{t['ci95'][0]:.1%}–{t['ci95'][1]:.1%}", delta, calls, tokens,
            f"{t['requests']} ({t['cache_hits']})", str(t["tokens_in"] + t["tokens_out"]), wall, r["prompt_summary"],
        ])  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"Δ: points of test accuracy against {ref_name} on the same items (paired bootstrap, McNemar p); "
          "calls: requests, cache hits included; select = full-dev evaluation of the best three after the search")  # fmt: skip


def plot_traces(rows: Sequence[Mapping[str, Any]], args: argparse.Namespace, path: Path) -> bool:
    """Best dev score so far against calls spent, one step line per search that recorded
    its progress; False (with a message) without matplotlib."""
    opened = figure("; the JSON is written anyway")
    if opened is None:
        return False
    fig, ax = opened
    for row in rows:
        trace = (row.get("search") or {}).get("trace") or []
        if row.get("status") != "ok" or not trace:
            continue
        calls = [point[0] for point in trace]
        best = [point[1] for point in trace]
        test = row["test"]["accuracy"]
        ax.step(calls, best, where="post", linewidth=1.6, label=f"{row['name']} (winner's test {test:.1%})")
    ax.set_xlabel("LLM calls spent (requests, cache hits included; then the full-dev selection)")
    ax.set_ylabel("best dev score so far (leader's mean)")
    ax.set_title(
        f"{args.task} · {args.model} · dev {args.dev_size} · one run per policy, seed {args.seed}", fontsize=9
    )
    save(fig, ax, path)
    return True


def dry_run(args: argparse.Namespace) -> int:
    """Each search's own upper-bound estimate (promptopt's ``--dry-run``), nothing run."""
    from promptopt.controller import search
    from promptopt.tasks import get_task

    task = get_task(task_ref(args), args.data_dir)
    print(f"{args.task} · {args.model} · max {args.max_calls} calls per search{dspy_cap_note(args)} · dev {args.dev_size} · "
          f"test {args.test_limit} per entry · upper bounds from each policy's estimate")  # fmt: skip
    print(
        f"{'entry':<20} {'search calls':>12} {'under the cap':>13} {'select calls':>12} {'tokens/call in+out':>19}"
    )
    for name in args.entries:
        if name in BASELINES or name == NATIVE:  # no search of its own
            print(f"{name:<20} {'–':>12} {'–':>13} {'–':>12} {'–':>19}")
            continue
        plan = search(search_config(name, task, args), db="sqlite://", dry_run=True, task=task)
        assert isinstance(plan, dict)
        capped = min(
            plan["search_calls"], search_cap(args, name) + args.batch_size
        )  # the last batch may overshoot
        tokens = f"{plan['tokens_in_per_call']}+{plan['tokens_out_per_call']}"
        print(f"{name:<20} {plan['search_calls']:>12} {capped:>13} {plan['final_calls']:>12} {tokens:>19}")
    print(f"plus {min(args.test_limit, len(task.examples('test')))} test requests per entry (× samples); "
          "'under the cap': at most --max-calls plus one batch")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        row = run_worker(args)
        Path(args.result_file).write_text(json.dumps(row))
        return 0
    if args.dry_run:
        return dry_run(args)
    path = jsonl_path(args)
    if args.fresh:
        path.unlink(missing_ok=True)
        shutil.rmtree(work_dir(args), ignore_errors=True)
    earlier = read_rows(path)
    if earlier and not args.resume:
        print(f"{path} already has {len(earlier)} entries: pass --resume to continue it, or --fresh to start over",
              file=sys.stderr)  # fmt: skip
        return 2
    wrong = [r["name"] for r in earlier if not same_settings(r, args)]
    if wrong:
        print(f"{path} was written with other settings ({', '.join(wrong)}): use the same flags, "
              "another --out-dir, or --fresh", file=sys.stderr)  # fmt: skip
        return 2
    if args.test_cache:  # a bad URL is reported here once, not as a traceback in every worker
        from promptopt.errors import StoreError
        from promptopt.store import Store

        try:
            Store(args.test_cache).close()
        except StoreError as exc:
            print(f"error: --test-cache: {exc}", file=sys.stderr)
            return 2
    work_dir(args).mkdir(parents=True, exist_ok=True)
    rows_so_far = list(earlier)
    for name in args.entries:
        cap: int | None = None
        if args.match_calls and kind_of(name) == "promptopt" and name != args.match_calls:
            cap, why = matched_cap(args, rows_so_far)
            if cap is None:
                print(f"== {name}: not run: {why}", file=sys.stderr, flush=True)
                continue
            print(f"== {name}: {why}", flush=True)
        source_run = None  # the dspy-mipro search whose pick dspy-mipro-native tests
        if name == NATIVE:
            source = source_row(rows_so_far)
            if source is None:
                print(f"== {name}: not run: {NATIVE_SOURCE} has no finished result yet (run it first)",
                      file=sys.stderr, flush=True)  # fmt: skip
                continue
            source_run = source["search"]["run_id"]
        last = next((r for r in reversed(rows_so_far) if r["name"] == name), None)
        if (
            last is not None
            and last.get("status") == "ok"
            and (kind_of(name) != "promptopt" or row_cap(last) == (cap or args.max_calls))
            and (name != NATIVE or last["search"]["source_run_id"] == source_run)
        ):
            print(f"== {name}: already in {path.name}, skipped (--resume)", flush=True)
            continue
        print(f"== {name}", flush=True)
        row = run_entry(args, name, cap)
        mismatch = other_model(rows_so_far, row)
        if mismatch:  # not appended: its accuracy is not comparable with the others'
            print(f"error: {mismatch}", file=sys.stderr, flush=True)
            return 2
        rows_so_far.append(row)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
    rows = latest_rows(read_rows(path), args.entries)
    print_table(rows, args)
    comparisons, lines = verdicts(rows, args.seed)
    print()
    for line in lines:
        print(line)
    summary = args.out_dir / f"head_to_head-{_slug(args.model)}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record = {
        "command": " ".join(["python", "benchmarks/head_to_head.py", *args.argv]),
        "settings": settings(args),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": rows,
        "comparisons": comparisons,
        "verdict": lines,
    }
    summary.write_text(json.dumps(record, indent=1, default=str))
    print(f"wrote {summary} (entries: {path})")
    if any((r.get("search") or {}).get("trace") for r in rows):
        picture = args.out_dir / f"head_to_head-{run_name(args)}.png"
        if plot_traces(rows, args, picture):
            print(f"wrote {picture}")
    failed = [r["name"] for r in rows if r.get("status") == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
