"""What the ``reflect`` policy did, for the terminal and the HTML report: how many
reflections were usable and accepted, and the lineage of its proposals (each with its
parent, the failed items it was shown with their feedback, and its fate)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any


def reflection_line(counts: Mapping[str, Any]) -> str:
    """``6 steps: 5 reflections, 4 usable, 2 accepted (1 skipped: parent perfect ...)``;
    demo swaps and merges, when there are any, are counted apart."""
    skipped = int(counts.get("skipped", 0))
    demos, merges = int(counts.get("demo_steps", 0)), int(counts.get("merges", 0))
    made = f"{counts.get('proposals', 0)} reflections"
    if demos or merges:
        kinds = [f"{counts.get('reflections', 0)} reflections"]
        kinds += [f"{demos} demo swaps"] if demos else []
        kinds += [f"{merges} merges"] if merges else []
        made = f"{counts.get('proposals', 0)} proposals ({', '.join(kinds)})"
    return (
        f"{counts.get('steps', 0)} steps: {made}, "
        f"{counts.get('usable', 0)} usable, {counts.get('accepted', 0)} accepted"
        + (f" ({skipped} skipped: parent perfect on its minibatch)" if skipped else "")
        + f"; minibatch {counts.get('minibatch', '?')}"
    )


def generations(proposals: Sequence[Mapping[str, Any]], root: str) -> dict[str, int]:
    """How many accepted rewrites separate each accepted candidate from ``root``."""
    depth = {root: 0}
    for entry in proposals:
        if entry.get("accepted") and entry.get("child"):
            depth[entry["child"]] = depth.get(entry["parent"], 0) + 1
    return depth


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def lineage_section(summary: Mapping[str, Any], baseline: str | None, winner: str | None) -> str:
    """The report's lineage table of a reflect run (empty for other policies)."""
    state = summary.get("policy_state") if isinstance(summary.get("policy_state"), Mapping) else {}
    assert isinstance(state, Mapping)
    proposals = state.get("proposals")
    counts = state.get("reflection")
    if not isinstance(proposals, list) or not isinstance(counts, Mapping):
        return ""
    depth = generations(proposals, baseline or "")
    rows = []
    for entry in proposals:
        child = entry.get("child") or ""
        fate = (
            "accepted" if entry.get("accepted") else "rejected" if entry.get("usable")
            else "skipped" if str(entry.get("reason", "")).startswith("skipped") else "not usable"
        )  # fmt: skip
        shown = "<br>".join(f"{_e(s['example'])}: {_e(s['feedback'])}" for s in entry.get("shown", []))
        scores = (
            f"{entry['parent_score']:g} → {entry['child_score']:g}"
            if entry.get("child_score") is not None
            else f"{entry.get('parent_score', 0):g}"
        )
        mark = " ★" if child and child == winner else ""
        indent = "&nbsp;&nbsp;" * depth.get(entry.get("parent", ""), 0)
        rows.append(
            f"<tr><td>{entry.get('step')}</td><td><code>{indent}{_e(str(entry.get('parent', ''))[:10])}</code></td>"
            f"<td><code>{_e(child[:10])}</code>{mark}</td><td>{_e(fate)}</td><td>{_e(entry.get('reason', ''))}</td>"
            f"<td>{scores}</td><td>{shown}</td><td>{_e(entry.get('text', ''))}</td></tr>"
        )
    return (
        f'<h2>Reflection lineage</h2><p class="meta">{_e(reflection_line(counts))}. Each step draws a parent '
        "from the per-item frontier on dev, shows the reflection model the minibatch items the parent "
        "failed (with feedback), and keeps the rewrite only if it scores higher on the same minibatch. "
        "Parents are indented by their generation; ★ the winner.</p>"
        "<table><tr><th>step</th><th>parent</th><th>child</th><th>fate</th><th>why</th>"
        "<th>minibatch score</th><th>items shown</th><th>text</th></tr>" + "".join(rows) + "</table>"
    )
