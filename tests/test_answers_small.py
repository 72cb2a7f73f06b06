"""Smaller items of issue #27 (point 9): TPE trials end, the estimate respects --max-calls,
`promptopt tasks` lists every bbh: subtask found and a misspelled one gets a suggestion,
--no-progress prints no progress bar with --model fake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptopt.budget import Budget
from promptopt.cli import cli
from promptopt.controller import search
from promptopt.errors import TaskError
from promptopt.tasks import get_task, list_tasks
from promptopt.testing.space_fakes import space_backend
from tests.test_policies import config


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_tpe_leaves_no_trial_running_when_the_budget_ends_it(db_url: str) -> None:
    optuna = pytest.importorskip("optuna")
    task = get_task("gsm-symbolic")
    result = search(config("tpe", budget=Budget(max_calls=60)), backend=space_backend(task), db=db_url)
    assert result.stopped_reason  # the budget ended the search mid-race
    study = optuna.load_study(study_name=f"promptopt-{result.run_id}", storage=db_url)
    states = {t.state.name for t in study.get_trials(deepcopy=False)}
    assert "RUNNING" not in states and "running" not in result.policy_state["trials"]


def test_estimate_respects_max_calls(db_url: str) -> None:
    code, _, err = run("search", "--task", "gsm-symbolic", "--model", "fake", "--policy", "ape", "--budget", "medium",
                       "--max-calls", "50", "--db", db_url, "--dry-run")  # fmt: skip
    assert code == 0, err
    assert "at most 50 LLM calls for the search" in err


def _bbh_folder(tmp_path: Path, names: list[str]) -> Path:
    (tmp_path / "bbh").mkdir()
    for name in names:
        rows = [{"input": f"q{i}", "target": str(i % 3)} for i in range(40)]
        (tmp_path / "bbh" / f"{name}.json").write_text(json.dumps({"examples": rows}), encoding="utf-8")
    return tmp_path


def test_tasks_lists_every_bbh_subtask_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _bbh_folder(tmp_path, ["snarks", "navigate", "object_counting"])
    monkeypatch.setenv("PROMPTOPT_DATA_DIR", str(folder))
    names = {info.name for info in list_tasks()}
    assert {"bbh:snarks", "bbh:navigate", "bbh:object_counting", "bbh:date_understanding"} <= names
    code, out, _ = run("tasks", "--data-dir", str(folder))
    assert code == 0 and "bbh:navigate" in out
    with pytest.raises(TaskError) as info:
        get_task("bbh:snarkz", folder)
    assert "bbh:snarks" in (info.value.hint or "")


def test_no_progress_prints_no_bar_with_the_fake_model(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    code, out, err = run("eval", "--task", "gsm-symbolic", "--model", "fake", "--limit", "3", "--no-progress",
                         "--db", db_url)  # fmt: skip
    assert code == 0
    assert "Loading" not in out + err and "━" not in out + err
    # a library's bar (transformers' "Loading weights" is a tqdm bar) is silenced too, in a
    # fresh process as the CLI's: the environment is read when the library is imported
    script = (
        "from promptopt.progress import quiet_library_progress; quiet_library_progress(); "
        "from tqdm import tqdm; [None for _ in tqdm(range(3), desc='Loading weights')]"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "Loading weights" not in done.stderr + done.stdout
    # promptopt's own notices (a local model loading) too, and only under --no-progress
    script = (
        "from promptopt.progress import notice, quiet_library_progress; notice('one'); "
        "quiet_library_progress(); notice('two')"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMPTOPT_NO_PROGRESS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert done.stderr == "promptopt: one\n" and not done.stdout


def test_license_is_an_spdx_expression_not_a_deprecated_table() -> None:
    import tomllib

    data = tomllib.loads(
        (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    )
    assert data["project"]["license"] == "Apache-2.0"  # a table made setuptools warn twice on install
    assert "setuptools>=77" in data["build-system"]["requires"]  # the first to read PEP 639 license strings
