"""Shared fixtures. Benchmark data is read from the shared data folder (never copied
into the repository): $PROMPTOPT_DATA_DIR, else ../shared/data next to the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# No per-example deadline: a garbage collection or a loaded machine can stall one example past
# Hypothesis's default 200 ms and fail a test that is not about speed. Under CI the examples
# are derived from each test (the same every run), so a run cannot fail on a draw no other saw.
settings.register_profile("promptopt", deadline=None, derandomize=bool(os.environ.get("CI")))
settings.load_profile("promptopt")


def shared_data_dir() -> Path | None:
    candidates = [os.environ.get("PROMPTOPT_DATA_DIR"), REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "gsm8k" / "train.jsonl").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("benchmark data not found: set PROMPTOPT_DATA_DIR or put it at ../shared/data")
        pytest.skip("benchmark data (../shared/data) not available")
    return path


@pytest.fixture()
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No test may write ./promptopt.db or pick up a developer's own settings.
    monkeypatch.setenv("PROMPTOPT_DB", f"sqlite:///{tmp_path / 'default.db'}")
    monkeypatch.delenv("PROMPTOPT_TASK_PATH", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
