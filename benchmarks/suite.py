"""The benchmark suite (issue #21): tasks × entries × seeds at one equal cap on calls,
resumable, one table and one plot. The one harness for promptopt's benchmarks.

    python benchmarks/suite.py run --model fake --tasks gsm-symbolic --entries zero-shot-cot,tpe \\
        --max-calls 120 --dev-size 16 --test-size 40 --out /tmp/suite.jsonl     # seconds
    nice python benchmarks/suite.py run --data-dir ../shared/data --model qwen2.5-coder-0.5b \\
        --max-calls 300 --seeds 0 --resume                                      # the issue's grid, seed 0
    python benchmarks/suite.py summary --markdown suite.md --plot suite.png    # the table, the goals, the plot

**Cells.** One row per (task, entry, seed, model) in a JSON-lines file (``--out``), written
as soon as the cell is done. Seeds are the outer loop (seed 0 for every cell, then seed
1). ``--resume`` skips the cells already there with status ok and the same settings; a
cell that stopped midway runs again, its repeated requests answered by the response
cache (``--db``, shared by every cell: counted as calls all the same, so the cap binds as
in a cold run; only wall time benefits). Without ``--resume`` an existing file is refused.

**Entries** (``--entries``, default the issue's six): ``zero-shot-cot`` (no search; every
search starts from it), ``bootstrap-random`` (random search over 4-shot sets of the
model's own correct worked solutions, Wan et al. 2024), ``tpe`` (over ``--space``, else the
task's), ``reflect`` (the reflective policy),
``dspy-mipro-native`` and ``dspy-gepa-native`` (DSPy's own pick in DSPy's format, see
``benchmarks/suite_cells.py``); also ``plain``, ``8-shot-cot``, ``3-shot-cot``, ``random``, ``reinforce``,
``ape``, ``opro``, ``dspy-mipro``, ``dspy-mipro-matched``, ``dspy-gepa``. The dspy entries
run in ``--dspy-python`` (default ``$PROMPTOPT_DSPY_PYTHON``, else ``.venv-dspy``).

**The cap.** Every search has ``Budget(max_calls=--max-calls)``: requests, cache hits
included, the proposer's too when it is the task model (the default); the table shows the
proposer's and an LLM judge's calls apart. A native DSPy entry gives DSPy the whole cap
(``--dspy-share``, default 1.0).

**Matching DSPy's calls.** MIPROv2 ``auto="light"`` sizes itself and may stop well under
the cap. ``--match-calls ENTRY`` caps each promptopt search at ENTRY's calls to find on the
same task and seed, with a budget that covers the search's final full-dev selection too
(``Budget(covers_final=True)``, ``promptopt search --final-in-budget``), so that no promptopt
search spends more than ENTRY did; ENTRY runs first in each task and seed (or is read from
``--out``). (Until 2026-12-05 the cap was those calls minus ``final_top`` × dev, a reserve
the selections never used up.) The summary's verdicts
compare each promptopt search with each DSPy entry per task at no more calls.

**Tests** are the first ``--test-size`` test items (default 200 for gsm8k, 125 otherwise),
the same for every entry; per-item scores are kept in the row for the paired tests of
``summary`` (``benchmarks/suite_report.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.suite_cells import (  # noqa: E402
    DEFAULT_ENTRIES,
    ENTRIES,
    START,
    Entry,
    describe_prompt,
    native_search_facts,
    native_test,
    policy_problem,
    run_search_cell,
    start_prompt,
    test_evaluation,
)
from benchmarks.suite_report import calls_to_find, cell_key  # noqa: E402
from promptopt.selection import SELECTIONS  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "suite"
DEFAULT_TASKS = ("gsm8k", "bbh:object_counting", "bbh:date_understanding", "bbh:sports_understanding",
                 "rg:leg_counting", "rg:basic_arithmetic")  # fmt: skip
# Settings that change a cell's result: a resumed cell must have been run with the same.
SETTINGS = ("max_calls", "dev_size", "test_size", "preset", "proposals", "rounds", "race_start", "space",
            "max_new_tokens", "proposer_model", "dspy_share", "dtype", "slot", "start")  # fmt: skip


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the grid's missing cells, then print the table")
    run.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    run.add_argument("--entries", default=",".join(DEFAULT_ENTRIES), help=f"of: {', '.join(ENTRIES)}")
    run.add_argument(
        "--seeds", default="0", help="comma-separated, run in this order (0 for every cell first)"
    )
    run.add_argument(
        "--model", default="qwen2.5-coder-0.5b", help="a model spec; fake / fake-dspy: the test fakes"
    )
    run.add_argument("--dtype", default="auto")
    run.add_argument(
        "--proposer-model",
        default=None,
        help="the proposer's (and reflection's) model; default the task model",
    )
    run.add_argument("--demo-teacher", default="task", choices=["task", "proposer"],
                     help="who writes bootstrapped demos: the task model, or --proposer-model (promptopt search "
                          "--demo-teacher)")  # fmt: skip
    run.add_argument("--data-dir", default=None)
    run.add_argument("--max-calls", default="300", help="the cap on each search's calls ('none': no cap)")
    run.add_argument("--dev-size", type=int, default=30)
    run.add_argument("--test-size", type=int, default=None, help="default: 200 for gsm8k, else 125")
    run.add_argument("--preset", default="light", choices=["light", "medium", "heavy"])
    run.add_argument(
        "--proposals", type=int, default=None, help="proposals per round (default: the preset's)"
    )
    run.add_argument("--rounds", type=int, default=None,
                     help="default: 12 under a cap (so that the cap ends each search), else the preset's")  # fmt: skip
    run.add_argument("--slot", default="instruction", choices=["instruction", "cot_trigger"],
                     help="what ape/opro search (benchmarks/search_gsm8k.py's --search)")  # fmt: skip
    run.add_argument("--race-start", type=int, default=8)
    run.add_argument("--start", default="zero-shot-cot", choices=["zero-shot-cot", "plain", "3-shot-cot"],
                     help="the prompt every search starts from (plain: benchmarks/policies.py's; 3-shot-cot: "
                          "the task's own worked demos, BBH's paper prompt)")  # fmt: skip
    run.add_argument("--space", default=None, help="the space of tpe/random/reinforce (default: the task's)")
    run.add_argument(
        "--selection",
        default="best",
        choices=SELECTIONS,
        help="every search's final pick (promptopt search --selection)",
    )
    run.add_argument("--max-new-tokens", type=int, default=400)
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--dspy-threads", type=int, default=1)
    run.add_argument(
        "--dspy-share", type=float, default=None, help="DSPy's share of the cap (native: default 1.0)"
    )
    run.add_argument("--dspy-python", default=None)
    run.add_argument("--match-calls", default=None, metavar="ENTRY",
                     help="cap each promptopt search at ENTRY's calls to find on the same task and seed, "
                          "minus the full-dev selection's most (e.g. dspy-mipro)")  # fmt: skip
    run.add_argument("--out", default=str(RESULTS / "suite.jsonl"))
    run.add_argument("--db", default=None, help="the response cache (default: <out>.db)")
    run.add_argument("--resume", action="store_true", help="skip the cells already done")
    run.add_argument("--dry-run", action="store_true", help="print each cell's estimate; run nothing")
    run.add_argument("--cell", help=argparse.SUPPRESS)  # worker: task|entry|seed
    run.add_argument("--result-file", help=argparse.SUPPRESS)
    summary = sub.add_parser("summary", help="the table, the issue's goals and the plot from the rows")
    summary.add_argument("--out", nargs="+", default=[str(RESULTS / "suite.jsonl")],
                         help="the rows (JSON lines); several files are read as one, in order (a cell in two: "
                         "the later file's row)")  # fmt: skip
    summary.add_argument("--markdown", default=None, help="also write the table here")
    summary.add_argument("--plot", default=None, help="the plot's file (default: <out>.png)")
    summary.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command == "run":
        args.max_calls = None if args.max_calls.lower() == "none" else int(args.max_calls)
        if args.rounds is None and args.max_calls is not None:
            args.rounds = 12
        args.task_list, args.entry_list = _split(args.tasks), _split(args.entries)
        args.seed_list = [int(s) for s in _split(args.seeds)]
        unknown = [e for e in args.entry_list if e not in ENTRIES]
        if unknown:
            parser.error(f"unknown entries {unknown}; expected some of {', '.join(ENTRIES)}")
        if args.dspy_share is not None and not 0 < args.dspy_share <= 1:
            parser.error(f"--dspy-share {args.dspy_share}: must be above 0 and at most 1")
        if args.dspy_threads < 1:
            parser.error(f"--dspy-threads {args.dspy_threads}: must be at least 1")
        if args.match_calls is not None and args.match_calls not in ENTRIES:
            parser.error(
                f"--match-calls {args.match_calls!r}: not an entry; expected one of {', '.join(ENTRIES)}"
            )
        if args.match_calls is not None and ENTRIES[args.match_calls].kind == "baseline":
            parser.error(f"--match-calls {args.match_calls}: a baseline does not search; name a search entry")
        if args.demo_teacher == "proposer" and (not args.proposer_model or args.proposer_model == args.model):
            parser.error("--demo-teacher proposer: give a --proposer-model other than --model (the teacher)")
        args.db = args.db or f"sqlite:///{Path(args.out).with_suffix('.db')}"
        if args.dspy_python is None:
            args.dspy_python = os.environ.get("PROMPTOPT_DSPY_PYTHON") or str(
                REPO / ".venv-dspy" / "bin" / "python"
            )
    return args


def settings(args: argparse.Namespace) -> dict[str, Any]:
    made = {key: getattr(args, key) for key in SETTINGS}
    if args.selection != "best":  # (rows written before --selection existed were all "best")
        made["selection"] = args.selection
    if args.demo_teacher != "task":  # (and before --demo-teacher, "task")
        made["demo_teacher"] = args.demo_teacher
    return made


def test_size(args: argparse.Namespace, task: str) -> int:
    return args.test_size if args.test_size is not None else (200 if task == "gsm8k" else 125)


def cell_line(row: dict[str, Any]) -> str:
    """One finished cell in a line: its status, test accuracy, calls and time."""
    if row.get("status") != "ok":
        return f"{row.get('status')}: {row.get('reason')}"
    test, search = row.get("test") or {}, row.get("search") or {}
    calls = f", search {search.get('calls')} calls" if search else ""
    return f"ok: test {100 * test.get('accuracy', 0):.1f}% on {test.get('n')} items{calls}, {row.get('wall_s', 0):.0f} s"


def cell_base(args: argparse.Namespace, task_name: str, entry: Entry, seed: int) -> dict[str, Any]:
    """The fields every row of a cell has, whatever its status."""
    return {"task": task_name, "entry": entry.name, "kind": entry.kind, "seed": seed, "model": args.model,
            "settings": settings(args)}  # fmt: skip


def append_row(path: Path, rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """``row`` to the grid's rows and, at once, to its file."""
    rows.append(row)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- one cell


def make_backends(args: argparse.Namespace, task: Any) -> tuple[Any, Any]:
    """The task model and the proposer's (None: the task model)."""
    from promptopt.backends import make_backend

    backend: Any
    if args.model == "fake":
        from promptopt.testing.space_fakes import space_backend

        backend = space_backend(task)
    elif args.model == "fake-dspy":
        from promptopt.testing.dspy_fakes import fake_model

        backend = fake_model()
    else:
        backend = make_backend(args.model, batch_size=args.batch_size, dtype=args.dtype)
    proposer = None
    if args.proposer_model and args.proposer_model != args.model:
        proposer = make_backend(args.proposer_model, batch_size=args.batch_size)
    return backend, proposer


def search_config(
    args: argparse.Namespace, task_name: str, task: Any, entry: Entry, seed: int, cap: int | None = None
) -> Any:
    """The cell's search; ``cap`` (from ``--match-calls``) replaces ``--max-calls``."""
    from promptopt.budget import Budget
    from promptopt.controller import SearchConfig

    space: Any = None
    if entry.space:
        space = args.space
        if space is None and args.model == "fake":
            from promptopt.testing.space_fakes import SPACE

            space = SPACE
    share = args.dspy_share if args.dspy_share is not None else (1.0 if entry.kind == "native" else None)
    from promptopt.policies import get_policy

    # the teacher writes bootstrapped demos; an entry whose policy bootstraps none keeps its own
    teacher = args.demo_teacher if entry.policy and get_policy(entry.policy).bootstraps else "task"
    return SearchConfig.from_preset(
        args.preset, task=task_name, data_dir=args.data_dir, model=args.model,
        base=start_prompt(task, ENTRIES[args.start].baseline or START, args.max_new_tokens), policy=entry.policy, dev_size=args.dev_size,
        test_size=0, seed=seed, batch_size=args.batch_size, n_proposals=args.proposals, rounds=args.rounds,
        race_start=args.race_start, budget=Budget(max_calls=args.max_calls if cap is None else cap, covers_final=cap is not None), space=space,
        dspy_threads=args.dspy_threads, dspy_share=share, proposer_model=args.proposer_model, slot=args.slot,
        selection=args.selection, demo_teacher=teacher, **dict(entry.options),
    )  # fmt: skip


def compute_cell(
    args: argparse.Namespace, task_name: str, entry: Entry, seed: int, cap: int | None = None
) -> dict[str, Any]:
    """Run one cell here and return its row (``cap``: the matched cap of its search)."""
    from promptopt.tasks import get_task

    started = time.perf_counter()
    task = get_task(task_name, args.data_dir)
    backend, proposer = make_backends(args, task)
    limit = test_size(args, task_name)
    print(f"== {task_name} · {entry.name} · seed {seed}", file=sys.stderr, flush=True)
    available = len(task.examples("test"))
    if available < limit:  # e.g. BBH's test split here: 100 of its 250 items
        print(f"   {task_name}: its test split has {available} items, fewer than the {limit} asked: "
              f"all {available} are used", file=sys.stderr, flush=True)  # fmt: skip
    search_info: dict[str, Any] | None = None
    prefix = ""
    if entry.kind == "baseline":
        assert entry.baseline is not None
        prompt = start_prompt(task, entry.baseline, args.max_new_tokens)
    else:
        config = search_config(args, task_name, task, entry, seed, cap)
        result, search_info = run_search_cell(config, task, backend, proposer, args.db, [],
                                              count_proposer=not entry.needs_dspy)  # fmt: skip
        search_info["matched_to"] = args.match_calls if cap is not None else None
        prompt = result.winner
    if entry.kind == "native":
        from promptopt.dspy_interop import candidate_from_state

        assert search_info is not None
        program_state = result.policy_state.get("dspy_best_state")
        if program_state is None:
            raise RuntimeError(f"{entry.policy} compiled no program ({result.policy_state.get('stopped')})")
        base = config.base
        test = native_test(task, base, program_state, backend, examples=task.examples("test", limit), db=args.db,
                           threads=args.dspy_threads)  # fmt: skip
        search_info = {
            **native_search_facts(search_info),
            "dspy_program": program_state,
        }  # DSPy's own, as dumped
        prompt = candidate_from_state(program_state, task, base=base, strict=False)
        prefix = "DSPy's format: "
    else:
        test = test_evaluation(
            task, prompt, backend, limit=limit, db=args.db, batch_size=args.batch_size, seed=seed
        )
    versions = {"python": platform.python_version()}
    if entry.needs_dspy:
        from importlib.metadata import version

        versions["dspy"] = version("dspy")
    return {
        "task": task_name, "entry": entry.name, "kind": entry.kind, "seed": seed, "model": args.model,
        "status": "ok", "settings": settings(args), "model_id": backend.model_id, "prompt": prompt.to_dict(),
        "prompt_hash": prompt.hash, "prompt_summary": prefix + describe_prompt(prompt), "search": search_info,
        "test": test, "wall_s": time.perf_counter() - started, "versions": versions,
        "load_avg": os.getloadavg()[0],
    }  # fmt: skip


def dspy_problem(args: argparse.Namespace) -> str | None:
    """Why the dspy cells cannot run in ``--dspy-python``, or None."""
    python = args.dspy_python
    if not Path(python).exists():
        return f"no dspy Python at {python} (--dspy-python, $PROMPTOPT_DSPY_PYTHON)"
    probe = subprocess.run([python, "-c", "import dspy, promptopt"], capture_output=True, text=True,
                           env=worker_env(), cwd=REPO, check=False)  # fmt: skip
    if probe.returncode != 0:
        return (
            f"{python} cannot import dspy and promptopt: {(probe.stderr.strip().splitlines() or ['?'])[-1]}"
        )
    return engine_mismatch(args)


def engine_mismatch(args: argparse.Namespace) -> str | None:
    """Why a local model would run on another engine in ``--dspy-python`` than here (the
    dspy venv lacking OpenVINO GenAI falls back to transformers: other numerics, another
    cache key and several times the wall time), or None."""
    from promptopt.backends import is_local_spec, local_engine

    if args.model.startswith("fake") or not is_local_spec(args.model):
        return None
    local = args.model.removeprefix("local/")
    if Path(local).expanduser().exists():  # a path: the same file for the probe, run from the repository
        local = str(Path(local).expanduser().resolve())
    here = local_engine(local, args.dtype)
    code = f"from promptopt.backends import local_engine; print(local_engine({local!r}, {args.dtype!r}))"
    probe = subprocess.run([args.dspy_python, "-c", code], capture_output=True, text=True, env=worker_env(),
                           cwd=REPO, check=False)  # fmt: skip
    there = probe.stdout.strip().splitlines()[-1] if probe.returncode == 0 and probe.stdout.strip() else "?"
    if there == here:
        return None
    return (
        f"{args.model} runs on {here} here but on {there} in {args.dspy_python}: install the same engine "
        f"there (for openvino: pip install 'promptopt[openvino]') or set $PROMPTOPT_LOCAL_ENGINE for both"
    )


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def dspy_here() -> bool:
    try:
        import dspy  # noqa: F401
    except ImportError:
        return False
    return True


def run_cell(
    args: argparse.Namespace, task_name: str, entry: Entry, seed: int, cap: int | None = None
) -> dict[str, Any]:
    """One cell's row: computed here, or in the dspy Python for a dspy entry; a cell that
    cannot run or fails is a row too (status ``failed``/``skipped``, with the reason)."""
    base = cell_base(args, task_name, entry, seed)
    problem = policy_problem(entry)
    if problem:
        print(f"== {task_name} · {entry.name} · seed {seed}: failed: {problem}", file=sys.stderr, flush=True)
        return {**base, "status": "failed", "reason": problem}
    if entry.needs_dspy and not dspy_here():
        problem = dspy_problem(args)
        if problem:
            print(f"== {task_name} · {entry.name}: skipped: {problem}", file=sys.stderr, flush=True)
            return {**base, "status": "skipped", "reason": problem}
        result_file = Path(args.out).with_suffix(".cell.json")
        result_file.unlink(missing_ok=True)
        command = [args.dspy_python, str(Path(__file__).resolve()), *args.argv, "--cell",
                   f"{task_name}|{entry.name}|{seed}", "--result-file", str(result_file)]  # fmt: skip
        process = subprocess.run(command, env=worker_env(), cwd=REPO, check=False)
        if process.returncode != 0 or not result_file.is_file():
            return {**base, "status": "failed", "reason": f"the dspy worker exited with {process.returncode}"}
        row: dict[str, Any] = json.loads(result_file.read_text())
        result_file.unlink()
        return row
    try:
        return compute_cell(args, task_name, entry, seed, cap)
    except Exception as exc:  # noqa: BLE001 - one cell's failure is its row; the grid goes on
        reason = f"{type(exc).__name__}: {exc}"[:500]
        print(f"== {task_name} · {entry.name} · seed {seed}: failed: {reason}", file=sys.stderr, flush=True)
        return {**base, "status": "failed", "reason": reason}


# --------------------------------------------------------------------------- matching calls


def is_matched(args: argparse.Namespace, entry: Entry) -> bool:
    """Whether ``--match-calls`` caps this entry's searches (promptopt's, not the reference's)."""
    return (
        args.match_calls is not None
        and entry.kind == "search"
        and not entry.needs_dspy
        and entry.name != args.match_calls
    )


def matched_cap(
    args: argparse.Namespace, rows: list[dict[str, Any]], task_name: str, seed: int
) -> tuple[int | None, str]:
    """The cap of a promptopt search on ``task_name`` and ``seed`` under ``--match-calls``,
    and why (or None and why not)."""
    ref = None
    for row in rows:
        if row.get("status") == "ok" and cell_key(row) == (task_name, args.match_calls, seed, args.model):
            ref = row
    if ref is None:
        return (
            None,
            f"--match-calls {args.match_calls}: no finished cell on {task_name}, seed {seed} yet (run it first)",
        )
    found = calls_to_find(ref)
    cap = found if args.max_calls is None else min(args.max_calls, found)
    if cap <= 0:
        return None, f"--match-calls {args.match_calls}: it found its prompt with no calls"
    return cap, f"capped at {cap} calls, the final selection included: {args.match_calls}'s calls to find"


# --------------------------------------------------------------------------- the grid


def dry_run(args: argparse.Namespace) -> int:
    from promptopt.controller import search
    from promptopt.tasks import get_task

    print(
        f"cap {args.max_calls} calls per search · dev {args.dev_size} · upper bounds from each policy's estimate"
    )
    if args.match_calls:
        print(f"--match-calls {args.match_calls}: the promptopt searches get its calls to find, their final "
              "selection included, known once it has run; the bounds below are --max-calls'")  # fmt: skip
    print(f"{'task':<26} {'entry':<20} {'search calls':>12} {'select':>7} {'test':>5}")
    for task_name in args.task_list:
        task = get_task(task_name, args.data_dir)
        n_test = min(test_size(args, task_name), len(task.examples("test")))
        for name in args.entry_list:
            entry = ENTRIES[name]
            calls, select = "–", "–"
            if policy_problem(entry):
                calls = "not registered"
            elif entry.kind != "baseline":
                plan = search(
                    search_config(args, task_name, task, entry, 0), db="sqlite://", dry_run=True, task=task
                )
                assert isinstance(plan, dict)
                capped = (
                    plan["search_calls"]
                    if args.max_calls is None
                    else min(plan["search_calls"], args.max_calls + args.batch_size)
                )
                calls, select = str(capped), str(plan["final_calls"])  # the search has no test of its own
            print(f"{task_name:<26} {name:<20} {calls:>12} {select:>7} {n_test:>5}")
    return 0


def run_grid(args: argparse.Namespace) -> int:
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = read_rows(path)
    if rows and not args.resume:
        print(f"{path} already has {len(rows)} cells: pass --resume to continue it, or another --out",
              file=sys.stderr)  # fmt: skip
        return 2
    done = {cell_key(r): r for r in rows if r.get("status") == "ok"}
    # the --match-calls reference runs first in each task and seed: the others' caps need it
    names = sorted(args.entry_list, key=lambda n: n != args.match_calls)
    ran = 0
    for seed in args.seed_list:
        for task_name in args.task_list:
            for name in names:
                entry, key, cap = ENTRIES[name], (task_name, name, seed, args.model), None
                if is_matched(args, entry):
                    cap, why = matched_cap(args, rows, task_name, seed)
                    if cap is None:
                        print(f"== {task_name} · {name} · seed {seed}: skipped: {why}", file=sys.stderr)
                        skipped = {
                            **cell_base(args, task_name, entry, seed),
                            "status": "skipped",
                            "reason": why,
                        }
                        append_row(path, rows, skipped)
                        continue
                    print(f"== {task_name} · {name} · seed {seed}: {why}", file=sys.stderr)
                if key in done:
                    if done[key].get("settings") != settings(args):
                        print(f"{path}: cell {key} was run with other settings ({done[key].get('settings')}): "
                              "use the same flags or another --out", file=sys.stderr)  # fmt: skip
                        return 2
                    was = (done[key].get("search") or {}).get("cap", args.max_calls)
                    if entry.kind != "search" or was == (args.max_calls if cap is None else cap):
                        print(
                            f"== {task_name} · {name} · seed {seed}: done, skipped (--resume)",
                            file=sys.stderr,
                        )
                        continue
                    print(f"== {task_name} · {name} · seed {seed}: searched with cap {was} before: again",
                          file=sys.stderr)  # fmt: skip
                row = run_cell(args, task_name, entry, seed, cap)
                ran += 1
                append_row(path, rows, row)
                print(f"   {cell_line(row)}", file=sys.stderr, flush=True)
    print(f"{ran} cells run, {path}", file=sys.stderr)
    from benchmarks.suite_report import print_summary

    print_summary(read_rows(path))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "summary":
        from benchmarks.suite_report import summary_command

        return summary_command(args)
    if args.cell:  # the dspy worker: one cell, its row to a file (a failure's row names why)
        task_name, name, seed = args.cell.split("|")
        row = run_cell(args, task_name, ENTRIES[name], int(seed))
        Path(args.result_file).write_text(json.dumps(row))
        return 0
    if args.dry_run:
        return dry_run(args)
    return run_grid(args)


if __name__ == "__main__":
    sys.exit(main())
