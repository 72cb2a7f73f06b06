"""What the CLI prints about answers beside a score (issue #27): outputs with no answer
found or cut off, the constant baseline, split sizes, and a search winner's dev and test
side by side. Kept apart from :mod:`promptopt.cli` so that file stays a list of commands."""

from __future__ import annotations

from typing import Any

import click

from promptopt.constant import constant_scores_text


def print_eval_answers(report: Any) -> None:
    """After an eval's accuracy line: the answer counts (with a warning past 10%) and the
    constant baseline on the same items."""
    from promptopt.answer_counts import AnswerCounts
    from promptopt.constant import constant_line

    counts = AnswerCounts(report.n_scored, report.n_no_answer, report.n_truncated)
    click.echo(f"answers     {counts.text()} (scored as wrong)")
    warning = counts.warning()
    if warning:
        click.secho(f"warning     {warning}; see `promptopt show {report.run_id}`", fg="yellow")
    constant = constant_line(report.constant_baseline, report.accuracy, report.split, "this prompt")
    if constant:
        click.echo(f"constant    {constant}")


def print_search_splits(task: Any, plan: Any) -> None:
    """The task's split sizes and the part of them this search uses (on stderr)."""
    from promptopt.tasks.splits import sizes_line

    sizes = task.split_sizes()
    used = {
        **sizes,
        "dev": min(sizes["dev"], plan["dev_size"]),
        "test": min(sizes["test"], plan["test_size"]),
    }
    head = sizes_line(sizes).splitlines()[0]
    click.echo(f"{head}  (this search uses dev {used['dev']}, test {used['test']})", err=True)
    for line in sizes_line(used).splitlines()[1:]:
        click.echo(line, err=True)


def print_winner_checks(result: Any) -> None:
    """A search winner's dev and test side by side (warning when its test score is below
    the starting prompt's), and the constant baseline (saying when the winner does not beat it)."""
    from promptopt.answer_counts import winner_dev_test
    from promptopt.constant import constant_line

    sides = winner_dev_test(result)
    dev, test = sides["dev"], sides["test"]
    if dev is not None:
        click.echo(
            f"winner      dev {dev['accuracy']:.1%} (n={dev['n']})  |  test {test['accuracy']:.1%} "
            f"(n={test['n']})  |  starting prompt test {sides['starting_prompt_test']:.1%}"
        )
    if sides["test_below_starting_prompt"]:
        click.secho(
            "warning     the winner scores BELOW the starting prompt on test: its dev score, the best "
            "of many on a small set, does not hold up",
            fg="yellow",
        )
    constant = constant_line(result.constant_baseline, test["accuracy"], "test", "the winner")
    if constant:
        click.echo(f"constant    {constant}")


def leaderboard_constants(store: Any, entries: Any) -> list[str]:
    """One line per task and model shown: the constant baseline stored with the newest
    of its runs that has one (tasks with a small answer set)."""
    lines: list[str] = []
    seen: set[tuple[str, str]] = set()
    for entry in sorted(entries, key=lambda e: e.run_created_at, reverse=True):
        key = (entry.task, entry.model)
        if key in seen:
            continue
        constant = (store.get_run(entry.run_id).summary or {}).get("constant_baseline")
        if not isinstance(constant, dict) or constant.get("answer") is None:
            continue
        seen.add(key)
        scores = constant_scores_text(constant)
        lines.append(
            f"constant baseline · {entry.task}: always {constant['answer']}: {scores} (run {entry.run_id})"
        )
    return lines


def print_answer_distribution(results: Any) -> None:
    """``answers     (A) 43 · (B) 7`` for a candidate's scored results."""
    from promptopt.answer_counts import answer_distribution, gold_distribution

    results = list(results)
    distribution = answer_distribution(results)
    if distribution:
        click.echo("  answers " + " · ".join(f"{answer} {n}" for answer, n in distribution))
        gold = gold_distribution(results)
        click.echo("  gold    " + " · ".join(f"{answer} {n}" for answer, n in gold))


def print_run_checks(run: Any) -> None:
    """For `show RUN`: a search winner's dev and test side by side (warning when its test
    is below the starting prompt's) and the run's constant baseline, from its summary."""
    summary = run.summary or {}
    sides = summary.get("winner_dev_test")
    if isinstance(sides, dict) and sides.get("dev"):
        dev, test = sides["dev"], sides["test"]
        click.echo(
            f"winner: dev {dev['accuracy']:.1%} (n={dev['n']}) | test {test['accuracy']:.1%} (n={test['n']}) | "
            f"starting prompt test {sides['starting_prompt_test']:.1%}"
        )
        if sides.get("test_below_starting_prompt"):
            click.secho("warning: the winner scores below the starting prompt on test", fg="yellow")
    constant = summary.get("constant_baseline")
    if isinstance(constant, dict) and constant.get("answer") is not None:
        scores = constant_scores_text(constant)
        click.echo(f"constant baseline: always {constant['answer']}: {scores}")


def with_bias_options(candidate: Any, options: dict[str, Any]) -> Any:
    """The candidate with ``--permute`` and ``--calibration`` applied (issue #28)."""
    import dataclasses

    permute, calibration = options.get("permute") or 1, options.get("calibration") or "none"
    if permute == candidate.permute and calibration == candidate.calibration:
        return candidate
    return dataclasses.replace(candidate, permute=permute, calibration=calibration)


def leaderboard_answers(store: Any, entries: Any, limit: int = 10) -> list[str]:
    """For tasks with a small answer set: the first ``limit`` candidates' dev answers
    beside the gold answers of the same items, so a bias toward one answer (and its
    correction by permutation or calibration, docs/answer-bias.md) shows."""
    from promptopt.answer_counts import answer_distribution, gold_distribution
    from promptopt.bias import strategy_text

    lines: list[str] = []
    for entry in list(entries)[:limit]:
        results = [r for r in store.get_evaluations(entry.run_id, entry.candidate) if r.split == "dev"]
        if not results:
            continue
        answers = " · ".join(f"{a} {n}" for a, n in answer_distribution(results, top=5))
        gold = " · ".join(f"{a} {n}" for a, n in gold_distribution(results, top=5))
        lines.append(
            f"answers #{entry.rank} {entry.candidate[:10]}{strategy_text(entry.spec)}: {answers}  |  gold {gold}"
        )
    return lines
