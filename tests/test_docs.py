"""The front door and the documentation site cannot drift from the code.

- Every ```python block marked ``<!-- runnable -->`` (on the line before its fence) in the
  README and under ``docs/`` is executed, a page's blocks in order in one fresh process
  (so a later block may use what an earlier one defined), in an empty directory with its
  own database and cache. Runnable samples use the fake backend, so they take seconds.
- ``mkdocs build --strict`` succeeds: every page is in the nav, every link resolves.
  Skipped when mkdocs is not installed, unless ``PROMPTOPT_REQUIRE_DOCS`` is set (CI).
- The README stays a front door: at most 300 lines, and it keeps the set-up and test
  commands that ``.ci/run`` relies on.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- runnable -->"
_BLOCK = re.compile(r"^" + re.escape(MARK) + r"[ \t]*\n```python[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def runnable_blocks(text: str) -> list[str]:
    return [found.group(1) for found in _BLOCK.finditer(text)]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PROMPTOPT_DB"] = f"sqlite:///{tmp_path / 'promptopt.db'}"
    env["PROMPTOPT_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def test_runnable_blocks_are_found() -> None:
    text = f"a\n{MARK}\n```python\nx = 1\n```\n\n```python\nnot marked\n```\n{MARK}\n```python\ny = 2\n```\n"
    assert runnable_blocks(text) == ["x = 1\n", "y = 2\n"]
    # The README and the site both show code that runs.
    assert runnable_blocks((ROOT / "README.md").read_text())
    assert sum(len(runnable_blocks(p.read_text())) for p in doc_pages()) >= 5


@pytest.mark.parametrize(
    "page",
    [p for p in doc_pages() if runnable_blocks(p.read_text())],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_code_samples_run(page: Path, tmp_path: Path) -> None:
    script = "\n\n".join(runnable_blocks(page.read_text()))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{page.name}: the samples failed\n{done.stdout}\n{done.stderr}"


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        if os.environ.get("PROMPTOPT_REQUIRE_DOCS"):
            raise
        pytest.skip("mkdocs and mkdocs-material are not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("bash setup.sh", ".venv/bin/python -m pytest -q"):
        assert command in readme and command in ci
    # Every page the README links to exists.
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).exists(), target
