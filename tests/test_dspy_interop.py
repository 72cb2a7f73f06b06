"""DSPy interop (issue #8): the LM adapter, the dspy-* policies, import of saved predictors,
and DSPy's network and disk habits kept in check.

dspy pins older openai/huggingface_hub releases than promptopt's main venv has, so the
tests that need it run their code in a Python that has it: this one if dspy imports here,
else ``$PROMPTOPT_DSPY_PYTHON`` (CI's ``.venv-dspy``). Without either they skip, unless
``PROMPTOPT_REQUIRE_DSPY=1`` (set by CI), where they fail. Every dspy subprocess runs
with a fresh HOME, with ``socket.connect`` refusing any non-loopback address, and the
tests check that no connection was tried and no file was written outside promptopt's
cache directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptopt.cli import cli
from promptopt.dspy_interop import candidate_from_dspy, candidate_from_state
from promptopt.errors import ConfigError
from promptopt.evaluation import evaluate
from promptopt.export import export
from promptopt.tasks import Task, get_task
from promptopt.testing.dspy_fakes import INSTRUCTIONS
from promptopt.types import Candidate

REPO = Path(__file__).resolve().parent.parent

# The scripted model (promptopt/testing/dspy_fakes.py): it answers DSPy's ChatAdapter prompts (task
# and instruction proposals) and promptopt's own; it gets every question whose sum is a
# multiple of 3 wrong unless the prompt shows demos or says "carefully".
FAKE_MODEL = """
from promptopt.testing.dspy_fakes import fake_model
"""

# Runs first in every dspy subprocess: refuse and record any connection off loopback.
GUARD = """
import json as _json, os as _os, socket as _socket
_attempts = []
_real_connect = _socket.socket.connect
def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else str(address)
    if self.family in (_socket.AF_INET, _socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
        _attempts.append(str(address))
        raise OSError("test: network access refused: %r" % (address,))
    return _real_connect(self, address)
_socket.socket.connect = _guarded_connect
import atexit as _atexit
_atexit.register(lambda: open(_os.environ["GUARD_LOG"], "w").write(_json.dumps(_attempts)))
"""


def _write_task(folder: Path) -> Path:
    rows = [
        {"question": f"What is {a} plus {b}?", "answer": str(a + b)}
        for a in range(1, 10)
        for b in range(1, 5)
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:28]))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[28:]))
    path = folder / "tiny-add.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: tiny-add
        version: 1
        source: {type: records, files: {train: train.jsonl, test: test.jsonl}, target_field: answer}
        input_fields: [question]
        template: "Question: {question}"
        extractor: number
        dev: {size: 8, seed: 0}
        """)
    )
    return path


@pytest.fixture()
def task_file(tmp_path: Path) -> Path:
    folder = tmp_path / "task"
    folder.mkdir()
    return _write_task(folder)


@pytest.fixture()
def task(task_file: Path) -> Task:
    return get_task(str(task_file))


def dspy_python() -> str:
    try:
        import dspy  # noqa: F401

        return sys.executable
    except ImportError:
        pass
    python = os.environ.get("PROMPTOPT_DSPY_PYTHON")
    if python:
        return python
    reason = "dspy is not installed here and PROMPTOPT_DSPY_PYTHON is unset (pip install 'promptopt[dspy]')"
    if os.environ.get("PROMPTOPT_REQUIRE_DSPY") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def run_dspy(script: str, tmp_path: Path, *args: str) -> dict:
    """Run ``script`` in the dspy Python with a fresh HOME and the network guard; return
    the JSON it prints last. Asserts no connection was tried and nothing was written to
    HOME outside promptopt's cache directory."""
    python = dspy_python()
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    guard_log = tmp_path / "guard.json"
    source = tmp_path / "script.py"
    source.write_text(GUARD + FAKE_MODEL + textwrap.dedent(script))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GUARD_LOG": str(guard_log),
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    out = subprocess.run([python, str(source), *args], capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    assert json.loads(guard_log.read_text()) == [], "a connection off loopback was attempted"
    written = [p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()]
    outside = [p for p in written if not p.startswith(".cache/promptopt/")]
    assert outside == [], f"files written outside promptopt's cache: {outside}"
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- no dspy needed


def test_registering_the_policies_does_not_import_dspy() -> None:
    code = "import sys, promptopt.policies as p; print(sorted(p.POLICIES)); print('dspy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    names, imported = out.stdout.strip().splitlines()
    assert {"dspy-mipro", "dspy-copro", "dspy-bootstrap"} <= set(json.loads(names.replace("'", '"')))
    assert imported == "False"


def test_export_to_dspy_then_import_gives_back_the_candidate(task: Task, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    demos = tuple(e.id for e in task.examples("train")[:3])
    for candidate in (
        Candidate(instruction="Add the numbers.", demo_ids=demos, cot_mode="few_shot", cot_trigger="Go.",
                  answer_format=task.spec.answer_format, samples=3, temperature=0.5),
        Candidate(instruction="Add.", demo_ids=demos[:1], answer_format=""),
        Candidate(instruction="Add them.", demo_ids=demos[:2], cot_mode="few_shot", demo_solutions={demos[1]: "Mine."}),
        Candidate(answer_format=task.spec.answer_format),  # empty instruction: DSPy's default text comes back as ""
    ):  # fmt: skip
        report = evaluate(task, candidate, "fake", split="dev", limit=2, db=db)
        path = tmp_path / f"{candidate.hash}.json"
        export(db, report.run_id, "dspy", path, task=task)
        imported = candidate_from_dspy(path, task)
        assert imported == candidate and imported.hash == candidate.hash


def test_import_names_demos_outside_the_pool(task: Task) -> None:
    state = {
        "signature": {"instructions": "Add.", "fields": [{"prefix": "Question:"}, {"prefix": "Answer:"}]},
        "demos": [{"question": "What is 100 plus 1?", "answer": "101"},
                  {"question": task.examples("train")[0].inputs["question"], "answer": "2"}],
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"demo\(s\) 0 are not in task tiny-add"):
        candidate_from_state(state, task)
    kept = candidate_from_state(state, task, strict=False)
    assert kept.demo_ids == (task.examples("train")[0].id,) and kept.cot_mode == "none"
    with pytest.raises(ConfigError, match="name the task"):
        candidate_from_state(state)
    with pytest.raises(ConfigError, match="one DSPy predictor"):
        candidate_from_state({"a": state, "b": state}, task)


def test_a_candidate_with_per_question_demos_is_no_dspy_program(task: Task) -> None:
    from promptopt.dspy_interop.programs import program_from_candidate

    with pytest.raises(ConfigError, match="picks its 2 demos per question"):
        program_from_candidate(Candidate(instruction="Add.", similar_demos=2), task)


def test_import_reports_a_file_that_is_not_a_program(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json:1: not a DSPy program state"):
        candidate_from_dspy(bad)


def test_cli_starts_eval_and_search_from_a_dspy_program(task_file: Path, task: Task, tmp_path: Path) -> None:
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    demo = task.examples("train")[3]
    saved = tmp_path / "saved.json"  # what dspy.Predict("question -> answer").save() writes
    saved.write_text(json.dumps({
        "traces": [], "train": [],
        "demos": [{"augmented": True, "question": demo.inputs["question"], "answer": demo.target}],
        "signature": {"instructions": "Add both numbers.",
                      "fields": [{"prefix": "Question:", "description": "${question}"},
                                 {"prefix": "Answer:", "description": "${answer}"}]},
        "lm": None, "metadata": {"dependency_versions": {"python": "3.11", "dspy": "3.4.1"}},
    }))  # fmt: skip
    common = ["--task", str(task_file), "--model", "fake", "--db", db, "--json", "--no-progress"]
    result = runner.invoke(cli, ["eval", *common, "--split", "dev", "--limit", "2", "--from-dspy", str(saved),
                                 "--samples", "3"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    expected = candidate_from_dspy(
        saved, task, base=Candidate(instruction=task.spec.instruction, answer_format=task.spec.answer_format,
                                    samples=3, temperature=0.7),
    )  # fmt: skip
    assert expected.instruction == "Add both numbers." and expected.demo_ids == (demo.id,)
    assert expected.samples == 3  # the other prompt options fill in what DSPy has not
    run_id = json.loads(result.stdout)["run_id"]
    assert json.loads(result.stdout)["candidate"] == expected.hash

    # promptopt's own export of that run comes back as the same starting prompt of a search
    exported = tmp_path / "exported.json"
    assert runner.invoke(cli, ["export", run_id, "--format", "dspy", "-o", str(exported), "--db", db,
                               "--task", str(task_file)]).exit_code == 0  # fmt: skip
    search = runner.invoke(cli, ["search", *common, "--policy", "ape", "--from-dspy", str(exported), "--dev-size",
                                 "4", "--test-size", "4", "--proposals", "1", "--rounds", "0"])  # fmt: skip
    assert search.exit_code == 0, search.stderr
    assert json.loads(search.stdout)["baseline"] == expected.hash

    # a bad file is one message naming it, and exit code 2
    (tmp_path / "bad.json").write_text("{not json")
    outside = tmp_path / "outside.json"
    outside.write_text(
        json.dumps({"signature": {"instructions": "x"}, "demos": [{"question": "What is 99 plus 99?"}]})
    )
    for name, problem in (("missing.json", "cannot read the DSPy program"), ("bad.json", "not a DSPy program state"),
                          ("outside.json", "are not in task tiny-add's demo pool")):  # fmt: skip
        for command in ("eval", "search"):
            bad = runner.invoke(cli, [command, *common, "--from-dspy", str(tmp_path / name)])
            assert bad.exit_code == 2 and name in bad.stderr and problem in bad.stderr, bad.stderr
            assert "Traceback" not in bad.stderr
    mixed = runner.invoke(cli, ["eval", *common, "--from-dspy", str(saved), "--shots", "2"])
    assert mixed.exit_code == 2 and "--shots cannot be combined with --from-dspy" in mixed.stderr


def test_dry_run_of_a_dspy_policy_is_its_own_estimate(task_file: Path, task: Task, tmp_path: Path) -> None:
    from promptopt.budget import Budget
    from promptopt.controller import SearchConfig, search

    def plan(policy: str, max_calls: int | None = None) -> dict:
        config = SearchConfig.from_preset(
            "light", task=str(task_file), model="fake", policy=policy, base=Candidate(instruction="Add."),
            n_proposals=3, rounds=1, dev_size=8, test_size=8, race_start=4, budget=Budget(max_calls=max_calls),
        )  # fmt: skip
        out = search(config, db=f"sqlite:///{tmp_path / 'plan.db'}", dry_run=True, task=task)
        assert isinstance(out, dict)
        return out

    ape, boot, copro = plan("ape"), plan("dspy-bootstrap"), plan("dspy-copro")
    assert "dspy_calls" not in ape and boot["search_calls"] != ape["search_calls"]
    train = len(task.examples("train"))
    # bootstrap: 3 random sets + 3 baselines scored on 8 dev, 4 bootstraps over the trainset, x2 for DSPy's JSON retry
    assert boot["dspy_calls"] == 2 * (6 * 8 + 4 * train) and boot["dspy_programs"] == 6
    assert boot["search_calls"] == boot["dspy_calls"] + boot["race_calls"]
    # COPRO: breadth 3, depth 2: 6 programs on 8 dev, 2 + 3 proposals
    assert copro["dspy_calls"] == 2 * (6 * 8 + 5) and copro["dspy_programs"] == 6
    assert boot["final_calls"] == ape["final_calls"]  # the final evaluation is the same for every policy
    # under a call limit, DSPy's part is its share (half) plus at most one call's overshoot
    assert plan("dspy-bootstrap", max_calls=60)["dspy_calls"] == 30
    assert plan("dspy-copro", max_calls=60)["dspy_calls"] == 30 - 1 + 3
    assert plan("dspy-mipro-matched", max_calls=60)["dspy_calls"] <= 30
    cli_plan = CliRunner().invoke(cli, ["search", "--task", str(task_file), "--model", "fake", "--dry-run", "--json",
                                        "--policy", "dspy-mipro", "--db", f"sqlite:///{tmp_path / 'c.db'}"])  # fmt: skip
    assert cli_plan.exit_code == 0, cli_plan.stderr
    assert (
        json.loads(cli_plan.stdout)["estimate"]["dspy_programs"] == 1 + 10
    )  # default program + light's 10 trials


# --------------------------------------------------------------------------- with dspy

ADAPTER = """
import sys, json
from promptopt.backends import CachingBackend
from promptopt.dspy_interop import PromptOptLM, import_dspy
from promptopt.errors import BackendError
from promptopt.store import Store
from promptopt.types import Completion
dspy = import_dspy()
fake = fake_model()
lm = PromptOptLM(CachingBackend(fake, Store(sys.argv[1])))
with dspy.context(lm=lm):
    first = dspy.ChainOfThought("question -> answer")(question="What is 2 plus 2?")
    again = dspy.ChainOfThought("question -> answer")(question="What is 2 plus 2?")
    samples = lm("What is 3 plus 4?", n=3, temperature=0.7)
    rollout = lm("What is 3 plus 4?", n=2, temperature=0.7, rollout_id=5)
    fake.enqueue(Completion(text="", error="server fell over"))
    try:
        lm("What is 1 plus 1?", n=1, temperature=0.9)
        failure = None
    except BackendError as exc:
        failure = str(exc)
print(json.dumps({
    "answer": first.answer, "reasoning": first.reasoning, "again": again.answer,
    "system": fake.history[0].messages[0].content, "user": fake.history[0].messages[-1].content,
    "calls_to_model": len(fake.history), "samples": samples,
    "indices": [r.sample_index for r in fake.history[1:6]], "temperatures": [r.temperature for r in fake.history[1:4]],
    "usage": {"calls": lm.usage.calls, "requests": lm.usage.requests, "cache_hits": lm.usage.cache_hits,
              "tokens_in": lm.usage.tokens_in, "tokens_out": lm.usage.tokens_out},
    "failure": failure,
}))
"""


def test_adapter_passes_dspy_calls_through_the_promptopt_backend(tmp_path: Path) -> None:
    out = run_dspy(ADAPTER, tmp_path, f"sqlite:///{tmp_path / 'cache.db'}")
    assert out["answer"] == "4" and out["reasoning"] == "Add them."
    assert "[[ ## question ## ]]" in out["user"] and "What is 2 plus 2?" in out["user"]
    assert "`reasoning`" in out["system"]  # DSPy's ChatAdapter wrote the prompt
    # the second identical call came from promptopt's response cache, not the model
    assert out["again"] == "4" and out["usage"]["cache_hits"] == 1
    assert len(out["samples"]) == 3 and out["indices"] == [0, 1, 2, 12, 13]  # rollout 5 -> (5+1)*2
    assert out["temperatures"] == [0.7, 0.7, 0.7]
    assert out["calls_to_model"] == 1 + 3 + 2 + 1
    assert out["usage"]["calls"] == 5 and out["usage"]["requests"] == 8 and out["usage"]["tokens_out"] > 0
    assert out["failure"] and "server fell over" in out["failure"]


SEARCH = """
import sys, json
from promptopt.budget import Budget
from promptopt.controller import SearchConfig, search
from promptopt.tasks import get_task
from promptopt.types import Candidate
task_file, db, max_calls, policy, dev_size, proposals, rounds, threads, share = sys.argv[1:10]
task = get_task(task_file)
model = fake_model()
model_calls = []  # the size of each call the model got
max_tokens = set()  # the token limits its requests asked for
answer = model.generate
model.generate = lambda requests: (model_calls.append(len(requests)), max_tokens.update(r.max_tokens for r in requests),
                                   answer(requests))[2]
config = SearchConfig.from_preset(
    "light", task=task_file, model="fake", policy=policy,
    base=Candidate(instruction="Add the numbers.", answer_format=task.spec.answer_format, max_tokens=300),
    n_proposals=int(proposals), rounds=int(rounds), dev_size=int(dev_size), test_size=8, race_start=4,
    budget=Budget(max_calls=int(max_calls) if max_calls != "none" else None), dspy_threads=int(threads),
    dspy_share=None if share == "none" else float(share),
)
result = search(config, backend=model, db=db, task=task)
print(json.dumps({"run": result.run_id, "spent": result.spent["calls"], "final_calls": result.final_calls,
                  "model_calls": model_calls, "max_tokens": sorted(max_tokens),
                  "base_max_tokens": config.base.max_tokens,
                  "estimate": dict(result.estimate), "policy_state": dict(result.policy_state),
                  "rows": [[r.origin, r.candidate.hash, r.n, list(r.candidate.demo_ids), r.candidate.instruction]
                           for r in result.leaderboard]}))
"""


def run_search(tmp_path: Path, task_file: Path, policy: str = "dspy-bootstrap", max_calls: int | None = 400,
               dev_size: int = 8, proposals: int = 3, rounds: int = 0, db: str | None = None,
               threads: int = 1, share: float | None = None) -> dict:  # fmt: skip
    db = db or f"sqlite:///{tmp_path / 'search.db'}"
    return run_dspy(SEARCH, tmp_path, str(task_file), db, str(max_calls or "none"), policy, str(dev_size),
                    str(proposals), str(rounds), str(threads), str(share or "none"))  # fmt: skip


def assert_within_estimate(out: dict) -> None:
    """The run spent no more than its dry-run estimate said, part by part."""
    estimate, state = out["estimate"], out["policy_state"]
    assert state["dspy_requests"] <= estimate["dspy_calls"]
    assert len(state["dspy_programs"]) <= estimate["dspy_programs"]
    assert out["spent"] <= estimate["search_calls"] and out["final_calls"] <= estimate["final_calls"]


def assert_on_the_leaderboard(out: dict, db: str, origin: str) -> set[str]:
    """Every program DSPy evaluated was raced by promptopt on dev and is stored on the
    leaderboard; returns their hashes."""
    from promptopt.leaderboard import leaderboard
    from promptopt.store import Store

    evaluated = {p["candidate"] for p in out["policy_state"]["dspy_programs"]}
    assert evaluated <= {row[1] for row in out["rows"]}
    store = Store(db)
    try:
        stored = {e.candidate: e for e in leaderboard(store, run=out["run"], top=None)}
        for candidate_hash in evaluated:
            dev = stored[candidate_hash].dev
            assert dev is not None and dev.n >= 4
        assert sum(1 for e in stored.values() if e.origin.startswith(origin)) >= 2
    finally:
        store.close()
    return evaluated


def test_dspy_bootstrap_search_records_every_evaluated_program(task_file: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'search.db'}"
    out = run_search(tmp_path, task_file, db=db, dev_size=6)
    state = out["policy_state"]
    assert state["optimizer"] == "BootstrapFewShotWithRandomSearch" and state["stopped"] is None
    # DSPy's valset is the search's dev set: --dev-size 6 of the task's 8
    assert {p["n"] for p in state["dspy_programs"]} == {6}
    assert_within_estimate(out)
    assert_on_the_leaderboard(out, db, "dspy-bootstrap")
    evaluated = {p["candidate"] for p in state["dspy_programs"]}
    assert len(evaluated) >= 3 and all(p["dspy_score"] is not None for p in state["dspy_programs"])
    rows = {row[1]: row for row in out["rows"]}
    # every program DSPy evaluated was scored by promptopt on dev and is on the leaderboard
    assert evaluated <= set(rows)
    dspy_rows = [r for r in out["rows"] if r[0].startswith("dspy-bootstrap")]
    assert len(dspy_rows) >= 2 and any(r[3] for r in dspy_rows)  # demo sets found by DSPy
    assert out["spent"] <= 400
    # DSPy's requests have the starting prompt's token limit, as promptopt's own (not DSPy's 512)
    assert out["max_tokens"] == [out["base_max_tokens"]]


def test_dspy_copro_search_runs_end_to_end(task_file: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'copro.db'}"
    out = run_search(tmp_path, task_file, policy="dspy-copro", db=db, max_calls=None, proposals=3, rounds=1)
    state = out["policy_state"]
    assert state["optimizer"] == "COPRO" and state["stopped"] is None
    assert len(state["dspy_programs"]) == 6 and {p["n"] for p in state["dspy_programs"]} == {
        8
    }  # breadth 3 x depth 2
    assert_within_estimate(out)
    assert_on_the_leaderboard(out, db, "dspy-copro")
    # the instructions COPRO's proposer wrote (in DSPy's field format) are candidates
    instructions = {row[4] for row in out["rows"] if row[0].startswith("dspy-copro")}
    assert len(instructions) >= 3 and instructions <= set(INSTRUCTIONS) | {"Add the numbers."}
    # the fake is right on every question when asked to add "carefully": DSPy's pick says so
    best = next(row for row in out["rows"] if row[0] == "dspy-copro-best")
    assert "carefully" in best[4]


def test_dspy_mipro_light_search_runs_end_to_end(task_file: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'mipro.db'}"
    out = run_search(tmp_path, task_file, policy="dspy-mipro", db=db, max_calls=None)
    state = out["policy_state"]
    assert state["optimizer"] == "MIPROv2" and state["stopped"] is None
    # light: 6 demo sets, 3 instructions, 10 trials, all on the 8 dev examples (no minibatch under 50)
    assert state["mipro"] == {"auto": "light", "instruction_candidates": 3, "demo_sets": 6, "trials": 10,
                              "valset": 8, "minibatch": False, "minibatch_size": 35, "full_eval_steps": 5}  # fmt: skip
    assert len(state["dspy_programs"]) == 1 + 10 and {p["n"] for p in state["dspy_programs"]} == {8}
    assert_within_estimate(out)
    assert_on_the_leaderboard(out, db, "dspy-mipro")
    proposed = {row[4] for row in out["rows"]} - {"Add the numbers."}
    assert proposed and proposed <= set(INSTRUCTIONS)  # instructions from MIPRO's grounded proposer
    # DSPy's pick as DSPy dumped it: its instruction is the dspy-mipro-best candidate's
    best = next(row for row in out["rows"] if row[0] == "dspy-mipro-best")
    assert best[1] == state["dspy_best"] and best[4] in json.dumps(state["dspy_best_state"])
    assert state["dspy_tokens_in"] > 0 and state["dspy_tokens_out"] > 0 and state["dspy_wall_s"] > 0
    assert any(row[3] for row in out["rows"] if row[0].startswith("dspy-mipro"))  # and its demo sets
    # the task model's requests have the starting prompt's token limit; MIPROv2's instruction
    # proposer keeps DSPy's 512 (at least), so that a proposal is not cut off by a small limit
    assert out["max_tokens"] == sorted({out["base_max_tokens"], max(512, out["base_max_tokens"])})


def test_dspy_threads_join_dspy_requests_into_batches_with_the_same_results(
    task_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "one").mkdir(), (tmp_path / "four").mkdir()
    one = run_search(tmp_path / "one", task_file, policy="dspy-mipro", max_calls=None)
    four = run_search(tmp_path / "four", task_file, policy="dspy-mipro", max_calls=None, threads=4)
    assert (one["policy_state"]["dspy_threads"], four["policy_state"]["dspy_threads"]) == (1, 4)
    # the same programs, the same DSPy scores, the same race and leaderboard
    assert one["policy_state"]["dspy_programs"] == four["policy_state"]["dspy_programs"]
    assert one["rows"] == four["rows"] and sum(one["model_calls"]) == sum(four["model_calls"])
    # ... in fewer, larger model calls: DSPy's evaluations of 8 dev items came 4 at a time
    assert len(four["model_calls"]) < len(one["model_calls"]), (one["model_calls"], four["model_calls"])
    assert four["model_calls"].count(4) >= one["model_calls"].count(4) + 10


def test_dspy_mipro_matched_is_sized_by_the_call_limit(task_file: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'matched.db'}"
    out = run_search(tmp_path, task_file, policy="dspy-mipro-matched", db=db, max_calls=120)
    state = out["policy_state"]
    sizes = state["mipro"]
    assert sizes["auto"] is None and sizes["instruction_candidates"] == sizes["demo_sets"] == 3
    # DSPy's share is 60 calls: 8 for the default program, 8 bootstrapping, 12 proposing, then 8 per trial
    assert sizes["trials"] == (60 - 8 - 8 - 12) // 8
    assert state["stopped"] is None and state["dspy_requests"] <= 60
    assert len(state["dspy_programs"]) == 1 + sizes["trials"]
    assert_within_estimate(out)
    assert_on_the_leaderboard(out, db, "dspy-mipro-matched")
    assert out["spent"] <= 120


def test_dspy_share_of_the_call_limit_stops_dspy_and_leaves_room_for_the_race(
    task_file: Path, tmp_path: Path
) -> None:
    out = run_search(tmp_path, task_file, max_calls=40)
    state = out["policy_state"]
    assert state["stopped"] and "budget spent" in state["stopped"]
    assert state["dspy_requests"] <= 20 + 1  # half the limit (plus the call that found it spent)
    assert len(out["rows"]) >= 2  # the race still scored what DSPy evaluated
    assert (state["dspy_share"], state["dspy_limit"]) == (0.5, 20)
    wider = run_search(tmp_path, task_file, max_calls=40, share=0.75, db=f"sqlite:///{tmp_path / 'wider.db'}")
    state = wider["policy_state"]
    assert (state["dspy_share"], state["dspy_limit"]) == (0.75, 30)
    assert 21 < state["dspy_requests"] <= 30 + 1 and "budget spent" in state["stopped"]


SAVE = """
import sys, json
from promptopt.dspy_interop import import_dspy, program_from_candidate
from promptopt.tasks import get_task
from promptopt.types import Candidate
dspy = import_dspy()
task = get_task(sys.argv[1])
demos = [e.id for e in task.examples("train")[2:4]]
candidate = Candidate(instruction="Add both numbers.", demo_ids=demos, cot_mode="few_shot",
                      demo_solutions=[(demos[0], "Two and one.")])
program = program_from_candidate(candidate, task)
program.save(sys.argv[2])
plain = dspy.Predict("question -> answer")
plain.demos = [dspy.Example(question=task.examples("train")[5].inputs["question"], answer="x")]
plain.save(sys.argv[3])
print(json.dumps(candidate.to_dict()))
"""


def test_a_predictor_saved_by_dspy_imports_as_a_starting_candidate(
    task_file: Path, task: Task, tmp_path: Path
) -> None:
    cot, plain = tmp_path / "cot.json", tmp_path / "plain.json"
    original = Candidate.from_dict(run_dspy(SAVE, tmp_path, str(task_file), str(cot), str(plain)))
    imported = candidate_from_dspy(cot, task)
    assert imported.instruction == "Add both numbers." and imported.cot_mode == "few_shot"
    assert imported.demo_ids == original.demo_ids
    assert imported.demo_solutions == original.demo_solutions
    simple = candidate_from_dspy(plain, task)
    assert simple.cot_mode == "none" and simple.instruction == ""  # DSPy's default instruction
    assert simple.demo_ids == (task.examples("train")[5].id,)


ROUND_TRIP = """
import json, sys
import dspy
from promptopt.dspy_interop import candidate_from_state, program_from_candidate
from promptopt.tasks import get_task
task = get_task(sys.argv[1])
train = task.examples("train")
program = dspy.ChainOfThought("question -> answer")
program.predict.signature = program.predict.signature.with_instructions("Add both numbers.")
# as MIPROv2 compiles it: bootstrapped demos (the model's own reasoning), then a labelled one
program.predict.demos = [
    dspy.Example(augmented=True, question=train[0].inputs["question"], reasoning="My own sum.",
                 answer=task.target(train[0])),
    dspy.Example(augmented=True, question=train[1].inputs["question"], reasoning=train[1].solution,
                 answer=task.target(train[1])),
    dspy.Example(question=train[2].inputs["question"], answer=task.target(train[2]), promptopt_id=train[2].id),
]
state = program.dump_state()
candidate = candidate_from_state(state, task)
rebuilt = program_from_candidate(candidate, task)
def sent(p):
    predictor = p.predict
    return dspy.ChatAdapter().format(predictor.signature, predictor.demos, {"question": "What is 7 plus 7?"})
print(json.dumps({"candidate": candidate.to_dict(), "same": sent(rebuilt) == sent(program),
                  "labelled_first": "not supplied" in sent(rebuilt)[1]["content"]}))
"""


def test_a_dspy_program_with_labelled_demos_is_rebuilt_from_its_candidate(tmp_path: Path) -> None:
    """A compiled ChainOfThought's demos: a bootstrapped one's reasoning becomes its
    solution; a labelled one (no reasoning) keeps none although the data has one, so the
    rebuilt program sends DSPy's exact messages (DSPy shows a labelled demo first, its
    reasoning "not supplied") and promptopt's own prompt shows that demo's answer only."""
    from promptopt.prompt import render_messages

    folder = tmp_path / "solved"
    folder.mkdir()
    task_file = _write_task(folder)  # the same task, with worked solutions
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]
        (folder / f"{split}.jsonl").write_text(
            "".join(
                json.dumps({**r, "solution": f"{r['question'][8:-1]} makes {r['answer']}."}) + "\n"
                for r in rows
            )
        )
    task_file.write_text(
        task_file.read_text().replace(
            "target_field: answer}", "target_field: answer, solution_field: solution}"
        )
    )
    task = get_task(str(task_file))
    assert task.examples("train")[1].solution
    out = run_dspy(ROUND_TRIP, tmp_path, str(task_file))
    assert out["same"] and out["labelled_first"]
    candidate = Candidate.from_dict(out["candidate"])
    train = task.examples("train")
    assert candidate.demo_ids == tuple(e.id for e in train[:3]) and candidate.cot_mode == "few_shot"
    assert candidate.demo_solutions == ((train[0].id, "My own sum."), (train[2].id, ""))
    shown = [
        m.content for m in render_messages(candidate, task, task.examples("dev")[0]) if m.role == "assistant"
    ]
    assert shown[0].startswith("My own sum.") and train[1].solution.strip() in shown[1]
    assert shown[2] == f"The answer is {task.target(train[2])}."


@pytest.mark.slow
def test_suite_tests_miprov2s_own_pick_in_dspys_format_and_matches_its_calls(
    task_file: Path, tmp_path: Path
) -> None:
    """benchmarks/suite.py's dspy-mipro-native cell: MIPROv2's compiled program, exactly as
    DSPy dumped it, on the test items through dspy.Evaluate in the dspy Python; ape capped
    at its calls to find (--match-calls), and the verdict that compares the two."""
    out = tmp_path / "suite.jsonl"
    # --max-calls 600: DSPy's whole cap, more than MIPRO light spends here, so no budget
    # cuts it mid-trial.
    command = [sys.executable, str(REPO / "benchmarks" / "suite.py"), "run", "--model", "fake-dspy", "--tasks",
               str(task_file), "--entries", "zero-shot-cot,ape,dspy-mipro-native", "--match-calls",
               "dspy-mipro-native", "--max-calls", "600", "--dev-size", "8", "--test-size", "8", "--rounds", "3",
               "--dspy-threads", "4", "--dspy-python", dspy_python(), "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # the reference runs first: the others' caps need its calls
    assert [(r["entry"], r["status"]) for r in rows] == [
        ("dspy-mipro-native", "ok"), ("zero-shot-cot", "ok"), ("ape", "ok"),
    ]  # fmt: skip
    native, zero_shot, ape = rows
    search, test, state = native["search"], native["test"], native["search"]["policy_state"]
    assert native["kind"] == "native" and native["prompt_summary"].startswith("DSPy's format")
    assert search["dspy_program"] and "dspy" in native["versions"]
    # calls to find: what DSPy spent inside the search, not the race after it
    assert search["calls"] == search["task_calls"] == state["dspy_requests"] < search["race_calls"]
    assert search["tokens"] == state["dspy_tokens_in"] + state["dspy_tokens_out"] > 0
    assert set(test["scores"]) == set(zero_shot["test"]["scores"]) and test["n"] == 8
    assert round(test["accuracy"] * 100, 2) == test["dspy_score"] and test["requests"] >= 8
    assert test["model_calls"] + test["cache_hits"] == test["requests"] and test["tokens_in"] > 0
    cap = search["calls"]  # ape's search and its full-dev selection together
    assert f"capped at {cap} calls, the final selection included: dspy-mipro-native's" in done.stderr
    assert ape["search"]["cap"] == cap and ape["search"]["calls"] + ape["search"]["selection_calls"] <= cap
    assert f"VERDICT vs dspy-mipro-native on {task_file}" in done.stdout
