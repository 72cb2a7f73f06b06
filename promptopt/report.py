"""``promptopt report RUN -o report.html``: one self-contained HTML page about a run.

The page has no script and loads nothing: plots are inline SVG, style is inline CSS, so it
opens offline and from an e-mail attachment alike. Every piece of text that a model, a
proposer or a dataset wrote goes through :func:`html.escape` (an instruction containing
``<script>`` shows as text), and so does everything else, to keep one rule.

Sections: the run and its winner's scores; the leading dev accuracy against model
requests spent (defined on the page; it ends at the leaderboard's top); every candidate's dev accuracy with its 95% interval; accuracy against tokens
per example with the Pareto front; the leaderboard; the winning prompt in full.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError
from promptopt.leaderboard import (
    CandidateDetails,
    LeaderboardEntry,
    best_by_calls,
    candidate_details,
    leaderboard,
    run_candidate,
)
from promptopt.report_answers import answers_section
from promptopt.report_reflect import lineage_section
from promptopt.stats import pareto_front
from promptopt.store import Store
from promptopt.types import Candidate, EvalResult

__all__ = ["ReportResult", "pareto_front", "render_report", "write_report"]

WIDTH, HEIGHT = 640, 300
MARGIN = {"left": 56, "right": 16, "top": 16, "bottom": 44}


@dataclass(frozen=True)
class ReportResult:
    path: Path
    run_id: str
    candidates: int


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


class _Axes:
    """Linear scales from data to the plot area of one SVG."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.x0, self.x1 = x_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        self.y0, self.y1 = y_range
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1.0

    def x(self, value: float) -> float:
        span = WIDTH - MARGIN["left"] - MARGIN["right"]
        return MARGIN["left"] + (value - self.x0) / (self.x1 - self.x0) * span

    def y(self, value: float) -> float:
        span = HEIGHT - MARGIN["top"] - MARGIN["bottom"]
        return HEIGHT - MARGIN["bottom"] - (value - self.y0) / (self.y1 - self.y0) * span

    def frame(self, x_label: str, y_label: str, x_ticks: Sequence[float], x_fmt: str = "{:.0f}") -> str:
        parts = [
            f'<line class="axis" x1="{MARGIN["left"]}" y1="{HEIGHT - MARGIN["bottom"]}" '
            f'x2="{WIDTH - MARGIN["right"]}" y2="{HEIGHT - MARGIN["bottom"]}"/>',
            f'<line class="axis" x1="{MARGIN["left"]}" y1="{MARGIN["top"]}" x2="{MARGIN["left"]}" '
            f'y2="{HEIGHT - MARGIN["bottom"]}"/>',
        ]
        for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
            value = self.y0 + tick * (self.y1 - self.y0)
            y = self.y(value)
            parts.append(
                f'<line class="grid" x1="{MARGIN["left"]}" y1="{y:.1f}" x2="{WIDTH - MARGIN["right"]}" y2="{y:.1f}"/>'
            )
            parts.append(
                f'<text class="tick" x="{MARGIN["left"] - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.0%}</text>'
            )
        for value in x_ticks:
            x = self.x(value)
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - MARGIN["bottom"] + 16}" text-anchor="middle">{_e(x_fmt.format(value))}</text>'
            )
        parts.append(
            f'<text class="label" x="{(MARGIN["left"] + WIDTH - MARGIN["right"]) / 2:.0f}" y="{HEIGHT - 6}" '
            f'text-anchor="middle">{_e(x_label)}</text>'
        )
        parts.append(
            f'<text class="label" x="14" y="{HEIGHT / 2:.0f}" text-anchor="middle" '
            f'transform="rotate(-90 14 {HEIGHT / 2:.0f})">{_e(y_label)}</text>'
        )
        return "".join(parts)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = (high - low) / (count - 1)
    return [low + i * step for i in range(count)]


def _svg(name: str, title: str, body: str) -> str:
    return (
        f'<svg class="plot" id="{_e(name)}" role="img" aria-label="{_e(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>{body}</svg>'
    )


def _empty_plot(name: str, title: str, message: str) -> str:
    return _svg(
        name,
        title,
        f'<text class="label" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">{_e(message)}</text>',
    )


def _progress_plot(points: Sequence[tuple[int, float]], min_n: int = 1) -> str:
    title = "Leading dev accuracy against model requests spent"
    if not points:
        return _empty_plot("plot-progress", title, "no dev evaluations in this run")
    max_x = max(p[0] for p in points)
    axes = _Axes((0.0, float(max_x)), (0.0, 1.0))
    path = []
    previous_y = None
    for calls, best in points:
        x, y = axes.x(calls), axes.y(best)
        if previous_y is None:
            path.append(f"M{x:.1f},{y:.1f}")
        else:
            path.append(f"H{x:.1f}V{y:.1f}")
        previous_y = y
    dots = "".join(
        f'<circle class="dot" cx="{axes.x(c):.1f}" cy="{axes.y(b):.1f}" r="3"><title>{c} requests: {b:.1%}</title></circle>'
        for c, b in points
    )
    body = axes.frame("model requests (samples) recorded", "leading dev accuracy", _ticks(0, max_x))
    svg = _svg("plot-progress", title, body + f'<path class="line" d="{"".join(path)}"/>' + dots)
    return (
        f'<figure class="plot-figure">{svg}<figcaption class="meta">At each point: the highest dev accuracy '
        f"among the candidates scored on at least {min_n} dev example{'s' if min_n != 1 else ''} so far, each on "
        "the examples it had been scored on then. It falls when the leader meets harder examples; its last "
        "point is the top dev accuracy of the leaderboard.</figcaption></figure>"
    )


def _ci_plot(entries: Sequence[LeaderboardEntry], winner: str | None) -> str:
    title = "Dev accuracy per candidate with 95% confidence interval"
    rows = [e for e in entries if e.dev is not None]
    if not rows:
        return _empty_plot("plot-ci", title, "no candidate has a dev score")
    row_h = 18
    height = MARGIN["top"] + MARGIN["bottom"] + row_h * len(rows)
    left, right = 150, WIDTH - MARGIN["right"]

    def x(value: float) -> float:
        return left + value * (right - left)

    parts = [
        f'<line class="axis" x1="{left}" y1="{height - MARGIN["bottom"]}" x2="{right}" y2="{height - MARGIN["bottom"]}"/>'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line class="grid" x1="{x(tick):.1f}" y1="{MARGIN["top"]}" x2="{x(tick):.1f}" y2="{height - MARGIN["bottom"]}"/>'
        )
        parts.append(
            f'<text class="tick" x="{x(tick):.1f}" y="{height - MARGIN["bottom"] + 16}" text-anchor="middle">{tick:.0%}</text>'
        )
    parts.append(
        f'<text class="label" x="{(left + right) / 2:.0f}" y="{height - 6}" text-anchor="middle">dev accuracy (95% Wilson interval)</text>'
    )
    for index, entry in enumerate(rows):
        assert entry.dev is not None
        y = MARGIN["top"] + row_h * index + row_h / 2
        css = "ci winner" if entry.candidate == winner else "ci"
        tip = f"{entry.candidate} ({entry.origin}): {entry.dev.accuracy:.1%}, 95% CI {entry.dev.ci_low:.1%}–{entry.dev.ci_high:.1%}, n={entry.dev.n}"
        parts.append(
            f'<g class="{css}"><title>{_e(tip)}</title>'
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(entry.candidate[:10])} n={entry.dev.n}</text>'
            f'<line class="whisker" x1="{x(entry.dev.ci_low):.1f}" y1="{y:.1f}" x2="{x(entry.dev.ci_high):.1f}" y2="{y:.1f}"/>'
            f'<line class="whisker" x1="{x(entry.dev.ci_low):.1f}" y1="{y - 4:.1f}" x2="{x(entry.dev.ci_low):.1f}" y2="{y + 4:.1f}"/>'
            f'<line class="whisker" x1="{x(entry.dev.ci_high):.1f}" y1="{y - 4:.1f}" x2="{x(entry.dev.ci_high):.1f}" y2="{y + 4:.1f}"/>'
            f'<circle class="dot" cx="{x(entry.dev.accuracy):.1f}" cy="{y:.1f}" r="4"/></g>'
        )
    return (
        f'<svg class="plot" id="plot-ci" role="img" aria-label="{_e(title)}" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>{"".join(parts)}</svg>'
    )


def _pareto_plot(entries: Sequence[LeaderboardEntry], winner: str | None) -> str:
    title = "Dev accuracy against tokens per example (Pareto front)"
    rows = [e for e in entries if e.dev is not None]
    if not rows:
        return _empty_plot("plot-pareto", title, "no candidate has a dev score")
    points = [(e.tokens_per_example, e.dev.accuracy) for e in rows if e.dev is not None]
    front = pareto_front(points)
    xs = [p[0] for p in points]
    low, high = min(xs), max(xs)
    pad = max(1.0, (high - low) * 0.05)
    axes = _Axes((max(0.0, low - pad), high + pad), (0.0, 1.0))
    body = axes.frame("tokens per example (in + out)", "dev accuracy", _ticks(axes.x0, axes.x1))
    line = " ".join(f"{axes.x(points[i][0]):.1f},{axes.y(points[i][1]):.1f}" for i in front)
    body += f'<polyline class="front" points="{line}"/>'
    for index, entry in enumerate(rows):
        x, y = points[index]
        css = "dot winner" if entry.candidate == winner else ("dot front-dot" if index in front else "dot")
        tip = f"{entry.candidate} ({entry.origin}): {y:.1%} at {x:.0f} tokens/example"
        body += f'<circle class="{css}" cx="{axes.x(x):.1f}" cy="{axes.y(y):.1f}" r="5"><title>{_e(tip)}</title></circle>'
    return _svg("plot-pareto", title, body)


def _score_cell(score: Any) -> str:
    if score is None:
        return "<td>–</td><td>–</td><td>–</td>"
    return f"<td>{_pct(score.accuracy)}</td><td>{_pct(score.ci_low)}–{_pct(score.ci_high)}</td><td>{score.n}</td>"


def _counts_cell(score: Any) -> str:
    if score is None:
        return "<td>–</td>"
    flag = " !" if score.counts.flagged else ""
    return f"<td>{score.n_no_answer}/{score.n_truncated}{flag}</td>"


def _leaderboard_table(entries: Sequence[LeaderboardEntry], winner: str | None) -> str:
    head = (
        "<tr><th>#</th><th>candidate</th><th>origin</th><th>dev</th><th>95% CI</th><th>n</th>"
        "<th title='dev outputs with no answer found / cut off at the token limit'>no ans/cut</th><th>test</th><th>95% CI</th><th>n</th><th>tokens/ex</th><th>cost/ex</th><th>instruction</th></tr>"
    )
    rows = []
    for entry in entries:
        css = ' class="winner"' if entry.candidate == winner else ""
        cost = "–" if entry.cost_per_example is None else f"${entry.cost_per_example:.5f}"
        text = entry.spec.instruction
        if entry.spec.cot_trigger:
            text += f" [CoT: {entry.spec.cot_trigger}]"
        rows.append(
            f"<tr{css}><td>{entry.rank}</td><td><code>{_e(entry.candidate)}</code></td><td>{_e(entry.origin)}</td>"
            f"{_score_cell(entry.dev)}{_counts_cell(entry.dev)}{_score_cell(entry.test)}<td>{entry.tokens_per_example:.0f}</td>"
            f'<td>{cost}</td><td class="text">{_e(text)}</td></tr>'
        )
    return f'<table id="leaderboard"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _prompt_section(details: CandidateDetails | None) -> str:
    if details is None:
        return "<p>This run has no winning candidate.</p>"
    parts = [
        f"<p>Candidate <code>{_e(details.candidate.hash)}</code> ({_e(details.origin)}); "
        f"chain of thought: {_e(details.candidate.cot_mode)}; samples {details.candidate.samples} at temperature "
        f"{details.candidate.temperature}; max tokens {details.candidate.max_tokens}; two-stage "
        f"{'on' if details.candidate.two_stage else 'rescue' if details.candidate.rescue else 'off'}.</p>"
    ]
    if details.messages is None:
        parts.append(f"<p>The full prompt cannot be rendered here: {_e(details.render_error)}</p>")
        parts.append(f'<pre class="message">{_e(json.dumps(details.candidate.to_dict(), indent=2))}</pre>')
    else:
        for message in details.messages:
            parts.append(
                f'<div class="message {_e(message["role"])}"><div class="role">{_e(message["role"])}</div>'
                f"<pre>{_e(message['content'])}</pre></div>"
            )
    return "".join(parts)


def _items_section(results: Sequence[EvalResult]) -> str:
    """Per-label scores (a classification task) and the worst items with the metric's
    reason: what a person reads to see *why* the winner lost points."""
    from promptopt.diagnostics import per_label, worst_items

    parts = []
    split = "test" if any(r.split == "test" for r in results) else "dev"
    labels = per_label(results, split)
    if labels:
        rows = "".join(
            f"<tr><td>{_e(row.label)}</td><td>{_pct(row.mean)}</td><td>{row.n}</td><td>{row.n_failed}</td></tr>"
            for row in labels
        )
        parts.append(
            f'<h2>Per label ({_e(split)})</h2><table id="labels"><thead><tr><th>label</th><th>score</th>'
            f"<th>n</th><th>failed</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    worst = worst_items(results, 10)
    if worst:
        rows = "".join(
            f"<tr><td>{'failed' if r.score is None else f'{r.score:.2f}'}</td><td>{_e(r.split)}</td>"
            f'<td><code>{_e(r.example_id)}</code></td><td class="text">{_e(r.answer)}</td>'
            f'<td class="text">{_e(r.gold)}</td><td class="text">{_e(r.feedback or r.error or "")}</td></tr>'
            for r in worst
        )
        parts.append(
            '<h2>Worst items of the winner</h2><table id="worst"><thead><tr><th>score</th><th>split</th>'
            "<th>example</th><th>answer</th><th>gold</th><th>why (the metric's feedback)</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    return "".join(parts)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1d2430;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.meta{color:#5a6473}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.card{border:1px solid #dde2ea;border-radius:6px;padding:8px 12px;min-width:150px}.card b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #e6e9ef;padding:4px 6px;text-align:left;vertical-align:top}
tr.winner{background:#eef6ee}td.text{max-width:380px;overflow-wrap:anywhere}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plot{border:1px solid #dde2ea;border-radius:6px;background:#fff;max-width:100%;height:auto}
.axis{stroke:#5a6473;stroke-width:1}.grid{stroke:#eceff4;stroke-width:1}.tick{font-size:11px;fill:#5a6473}.label{font-size:12px;fill:#1d2430}
.line{fill:none;stroke:#2f6fdb;stroke-width:2}.front{fill:none;stroke:#d9822b;stroke-width:1.5;stroke-dasharray:4 3}
.dot{fill:#2f6fdb}.front-dot{fill:#d9822b}.winner .dot,.dot.winner{fill:#2e8540}.whisker{stroke:#5a6473;stroke-width:1.5}
.message{border:1px solid #dde2ea;border-radius:6px;margin:8px 0;overflow:hidden}.message .role{background:#f3f5f8;padding:2px 8px;font-size:12px;color:#5a6473}
pre{margin:0;padding:8px;white-space:pre-wrap;overflow-wrap:anywhere;font:12.5px/1.4 ui-monospace,Menlo,Consolas,monospace}
code{font:12px ui-monospace,Menlo,Consolas,monospace}
"""


def render_report(
    store: Store, run_id: str, *, data_dir: str | Path | None = None, top: int | None = None
) -> str:
    """The report page of run ``run_id`` as one HTML string."""
    run = store.get_run(run_id)
    entries = leaderboard(store, run=run.id, top=top)
    if not entries:
        raise ConfigError(f"run {run.id} has no evaluations to report", hint="`promptopt runs` lists runs")
    winner = run_candidate(run) or entries[0].candidate
    details = candidate_details(store, run.id, winner, data_dir=data_dir, results=False)
    winner_results = store.get_evaluations(run.id, winner)
    min_n = int(run.config.get("race_start", 1) or 1) if run.kind == "search" else 1
    progress = best_by_calls(store, run.id, min_n=min_n)
    summary = run.summary or {}
    test = summary.get("test") if isinstance(summary.get("test"), dict) else None
    cards = []
    if details.scores.get("dev"):
        dev = details.scores["dev"]
        assert dev is not None
        cards.append(
            ("winner dev", _pct(dev.accuracy), f"95% CI {_pct(dev.ci_low)}–{_pct(dev.ci_high)}, n={dev.n}")
        )
    if test and "winner" in test:
        w, b = test["winner"], test["baseline"]
        cards.append(
            (
                "winner test",
                _pct(w["accuracy"]),
                f"95% CI {_pct(w['ci95'][0])}–{_pct(w['ci95'][1])}, n={test.get('n')}",
            )
        )
        cards.append(
            ("starting prompt test", _pct(b["accuracy"]), f"95% CI {_pct(b['ci95'][0])}–{_pct(b['ci95'][1])}")
        )
        diff = test.get("difference", {})
        if diff:
            verdict = "significant" if summary.get("significant") else "not significant"
            cards.append(
                ("difference", f"{diff['diff']:+.1%}", f"p = {diff['p_value']:.3g}, {verdict} at 5%")
            )
    elif details.scores.get("test"):
        t = details.scores["test"]
        assert t is not None
        cards.append(("test", _pct(t.accuracy), f"95% CI {_pct(t.ci_low)}–{_pct(t.ci_high)}, n={t.n}"))
    requests = progress[-1][0] if progress else 0
    cards.append(("evaluation requests", str(requests), f"{len(entries)} candidates"))
    if isinstance(summary.get("model_calls"), int):  # a search: every call, the proposer's too
        cards.append(("model calls", str(summary["model_calls"]),
                      f"{summary.get('cache_hits', 0)} cache hits; the proposer's and demos' included"))  # fmt: skip
    judge = summary.get("judge")
    if not isinstance(judge, dict):
        judge = {}
    if judge.get("calls"):  # an llm_judge metric's own calls, counted apart from the task's
        cards.append(("judge calls", str(judge["calls"]), f"{judge.get('model_calls', 0)} real, "
                      f"{judge.get('cache_hits', 0)} cached, {judge.get('failed', 0)} unreadable"))  # fmt: skip
    if summary.get("metric"):
        cards.append(("metric", str(summary["metric"]), "mean score per item, in [0, 1]"))
    cards_html = "".join(
        f'<div class="card">{_e(label)}<b>{_e(value)}</b><span class="meta">{_e(note)}</span></div>'
        for label, value, note in cards
    )
    policy = run.config.get("policy") if run.kind == "search" else None
    meta = (
        f"{_e(run.kind)} run <code>{_e(run.id)}</code> · task {_e(run.task)} · model {_e(run.model)}"
        + (f" · policy {_e(policy)}" if policy else "")
        + f" · {_e(run.status)} · started {_e(run.created_at.strftime('%Y-%m-%d %H:%M UTC'))}"
        + f" · dataset {_e(run.dataset_hash)} · promptopt {_e(run.promptopt_version)}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # No script may run and nothing may load, whatever ends up in the page.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        f"<title>promptopt report {_e(run.id)}</title><style>{CSS}</style></head><body>"
        f'<h1>promptopt report: {_e(run.task)}</h1><div class="meta">{meta}</div>'
        f'<div class="cards">{cards_html}</div>'
        '<h2>Search</h2><div class="plots">'
        f"{_progress_plot(progress, min_n)}{_pareto_plot(entries, winner)}</div>"
        f"<h2>Candidates on dev</h2>{_ci_plot(entries, winner)}"
        f"<h2>Leaderboard</h2>{_leaderboard_table(entries, winner)}"
        f"{lineage_section(summary, _base_hash(run.config), winner)}"
        f"<h2>Winning prompt</h2>{_prompt_section(details)}"
        f"<h2>Answers</h2>{answers_section(store, run, winner)}"
        f"{_items_section(winner_results)}"
        '<p class="meta">Requests are the stored model samples of this run\'s evaluations, in the order they '
        "were recorded (proposer calls are not included). Input fields are shown as {field} placeholders.</p>"
        "</body></html>\n"
    )


def _base_hash(config: Mapping[str, Any]) -> str | None:
    """The starting prompt's hash of a search run's config (the lineage's root)."""
    try:
        return Candidate.from_dict(config["base"]).hash
    except Exception:  # noqa: BLE001 - an older or foreign config: the lineage has no root mark
        return None


def write_report(
    store: Store | str | None, run_id: str, path: str | Path, *, data_dir: str | Path | None = None
) -> ReportResult:
    """Write the report of ``run_id`` to ``path`` (see :func:`render_report`)."""
    owned = not isinstance(store, Store)
    opened = store if isinstance(store, Store) else Store(store)
    try:
        from promptopt.leaderboard import resolve

        kind, value = resolve(opened, run_id)
        if kind != "run":
            raise ConfigError(f"{run_id!r} is a candidate; `promptopt report` takes a run id")
        page = render_report(opened, value, data_dir=data_dir)
        candidates = len(leaderboard(opened, run=value, top=None))
    finally:
        if owned:
            opened.close()
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the report ({exc.strerror})") from None
    return ReportResult(path=target, run_id=value, candidates=candidates)
