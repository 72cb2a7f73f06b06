"""The report's "Answers" section: what the winning prompt's outputs held.

Outputs with no answer found and outputs cut off at the token limit, counted on their
own with a few raw examples; the model's answer distribution; and, where the run stored
one, the constant baseline (always giving the one best answer) beside the scores.
"""

from __future__ import annotations

import html
from typing import Any

from promptopt.answer_counts import answer_distribution, count_answers, gold_distribution, raw_examples
from promptopt.constant import constant_scores_text
from promptopt.store import RunRecord, Store


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def answers_section(store: Store, run: RunRecord, winner: str) -> str:
    """HTML for the winner's answers in ``run`` (every split it was scored on)."""
    results = store.get_evaluations(run.id, winner)
    if not results:
        return "<p>No stored results for the winning prompt.</p>"
    parts = []
    sides = (run.summary or {}).get("winner_dev_test")
    if isinstance(sides, dict) and sides.get("dev"):
        dev, test = sides["dev"], sides["test"]
        parts.append(
            f"<p>Winner: dev {dev['accuracy']:.1%} (n={dev['n']}) · test {test['accuracy']:.1%} (n={test['n']}) · "
            f"starting prompt on test {sides['starting_prompt_test']:.1%}.</p>"
        )
        if sides.get("test_below_starting_prompt"):
            parts.append(
                '<p class="flag"><b>Warning:</b> the winner scores below the starting prompt on test: its dev '
                "score, the best of many, does not hold up.</p>"
            )
    rows = []
    for split in ("dev", "test", "train"):
        in_split = [r for r in results if r.split == split]
        if not in_split:
            continue
        counts = count_answers(r for r in in_split if r.score is not None)
        distribution = ", ".join(f"{_e(a)} {n}" for a, n in answer_distribution(in_split, top=6))
        gold = ", ".join(f"{_e(a)} {n}" for a, n in gold_distribution(in_split, top=6))
        flag = ' <b class="flag">more than 10%</b>' if counts.flagged else ""
        rows.append(
            f"<tr><td>{split}</td><td>{counts.n}</td><td>{counts.no_answer}</td><td>{counts.truncated}{flag}</td>"
            f"<td>{distribution}</td><td>{gold}</td></tr>"
        )
    parts.append(
        '<table id="answers"><thead><tr><th>split</th><th>scored</th><th>no answer found</th>'
        "<th>cut off at the token limit</th><th>the model's answers (most common first)</th>"
        "<th>the gold answers</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    constant = (run.summary or {}).get("constant_baseline")
    if isinstance(constant, dict) and constant.get("answer") is not None:
        scores = constant_scores_text(constant)
        parts.append(
            f"<p>Constant baseline: always answering <code>{_e(constant['answer'])}</code> (the best single "
            f"answer on {_e(constant.get('chosen_on', 'train'))}) scores {_e(scores)}.</p>"
        )
    shown = raw_examples(results)
    if shown:
        parts.append("<p>Raw outputs that held no answer or were cut off:</p>")
        for example_id, why, output in shown:
            parts.append(
                f'<div class="message"><div class="role">{_e(example_id)}: {_e(why)}</div>'
                f"<pre>{_e(output[-1200:])}</pre></div>"
            )
    return "".join(parts)
