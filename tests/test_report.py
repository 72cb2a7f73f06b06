"""The HTML report: self-contained, escaped, and rendered by a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import promptopt
from promptopt.controller import SearchResult
from promptopt.errors import ConfigError
from promptopt.report import pareto_front, render_report, write_report
from promptopt.store import Store
from promptopt.tasks import Task, get_task
from promptopt.types import Candidate
from tests.test_leaderboard import TASK, results_cli, run_search

INJECTED = "Answer. <script>document.title='PWNED';document.body.setAttribute('data-pwned','1')</script><img src=x onerror=\"document.title='PWNED'\">"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="module")
def task() -> Task:
    return get_task(TASK)


@pytest.fixture(scope="module")
def reported(task: Task, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SearchResult, str, Path]:
    """A search whose starting instruction carries a script, and an eval run whose only
    (hence winning) prompt does; both reports written."""
    folder = tmp_path_factory.mktemp("report")
    db = f"sqlite:///{folder / 'r.db'}"
    result = run_search(task, db, instruction=INJECTED)
    evaluation = promptopt.evaluate(
        task, Candidate(instruction=INJECTED), "fake", split="dev", limit=4, db=db
    )
    write_report(db, result.run_id, folder / "search.html")
    write_report(db, evaluation.run_id, folder / "eval.html")
    return db, result, evaluation.run_id, folder


def test_page_is_self_contained_and_escaped(reported: tuple[str, SearchResult, str, Path]) -> None:
    _, result, _, folder = reported
    for name in ("search.html", "eval.html"):
        page = (folder / name).read_text()
        assert "<script" not in page.lower() and 'onerror="' not in page
        assert "&lt;script&gt;document.title=" in page
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing loads from the network
        assert "default-src 'none'" in page
    page = (folder / "search.html").read_text()
    assert page.count("<svg") == 3 and all(f'id="plot-{p}"' in page for p in ("progress", "pareto", "ci"))
    assert result.winner.hash in page and 'id="leaderboard"' in page
    assert page.count('<g class="ci') == len(result.leaderboard)
    # every model call (the proposer's too), not only the evaluation requests the curve shows
    assert "model calls" in page and f">{result.model_calls}<" in page
    assert "model calls" not in (folder / "eval.html").read_text()
    winner_text = (folder / "eval.html").read_text()
    assert winner_text.count("&lt;script&gt;") >= 2  # leaderboard row and the winning prompt


def test_pareto_front() -> None:
    points = [(100.0, 0.5), (200.0, 0.7), (150.0, 0.4), (300.0, 0.7), (50.0, 0.2), (250.0, 0.9)]
    assert pareto_front(points) == [4, 0, 1, 5]


def test_bad_input(reported: tuple[str, SearchResult, str, Path], tmp_path: Path) -> None:
    db, result, _, _ = reported
    with Store(db) as store:
        with pytest.raises(ConfigError, match="takes a run id"):
            write_report(store, result.winner.hash, tmp_path / "x.html")
        empty = store.create_run(kind="eval", task=TASK, model="fake", config={})
        with pytest.raises(ConfigError, match="no evaluations"):
            render_report(store, empty)
    out = CliRunner().invoke(
        results_cli(), ["report", result.run_id, "-o", str(tmp_path / "cli.html"), "--db", db]
    )
    assert out.exit_code == 0, out.output
    assert (tmp_path / "cli.html").read_text().startswith("<!DOCTYPE html>")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_renders_in_headless_chromium(reported: tuple[str, SearchResult, str, Path], tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    _, result, _, folder = reported
    url = (folder / "search.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert shot.is_file(), done.stderr[-2000:]
    assert _png_size(shot) == (1280, 2000) and shot.stat().st_size > 20_000
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with the local-model extras
        Image = None
    if Image is not None:
        with Image.open(shot) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 50  # text, plots and colours, not a blank page

    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0 and "<svg" in dom.stdout, dom.stderr[-2000:]
    html = dom.stdout
    for plot in ("plot-progress", "plot-pareto", "plot-ci"):
        assert f'id="{plot}"' in html
    assert len(re.findall(r"<circle", html)) >= len(result.leaderboard)  # points of the plots
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "PWNED" not in re.search(r"<title>(.*?)</title>", html, re.S).group(1)  # type: ignore[union-attr]
    assert "data-pwned" not in html.split("<body", 1)[1].split(">", 1)[0]
    assert "&lt;script&gt;document.title=" in html  # shown as text
