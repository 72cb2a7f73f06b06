"""A built wheel must carry the task files and migrations: install-from-wheel, not only
editable installs, must work."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from promptopt.store import head_revision

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_carries_package_data_and_runs_from_elsewhere(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
    )
    [wheel] = tmp_path.glob("promptopt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("promptopt/tasks/builtin/gsm8k.yaml", "promptopt/tasks/builtin/bbh.yaml",
                     "promptopt/store/migrations/env.py", "promptopt/store/migrations/versions/0001_initial.py",
                     "promptopt/store/migrations/versions/0005_feedback.py", "promptopt/metrics/judge.py",
                     "promptopt/py.typed"):  # fmt: skip
        assert required in names, f"{required} missing from the wheel"
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    script = (
        "import promptopt.tasks as t; from promptopt.store import Store; "
        "assert 'gsm8k' in {i.name for i in t.list_tasks()}; "
        "s = Store('sqlite:///x.db'); print(s.current_revision()); s.close()"
    )
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == head_revision()
    # it really imported the unpacked wheel, not the source tree
    where = subprocess.run([sys.executable, "-c", "import promptopt; print(promptopt.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert where.stdout.startswith(str(unpacked))
