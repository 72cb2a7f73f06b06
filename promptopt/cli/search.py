"""``promptopt search``: its options, the estimate printed by ``--dry-run``, and the
summary printed after a search. Registered in :mod:`promptopt.cli.app`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from promptopt.cli.checks import parse_ray_resources, refuse_with_resume, resume_command, warn_sizes
from promptopt.cli.options import (
    DATA_HELP,
    _backend_options,
    _candidate_from_options,
    _model_options,
    _model_spec,
    _prompt_options,
)
from promptopt.cli.policy_options import policy_option_flags, take_policy_options
from promptopt.errors import PromptOptError, RunInterruptedError
from promptopt.selection import SELECTIONS
from promptopt.terminal import printable


@click.command("search")
@click.option(
    "--task", "task_name", default=None, help="Task name (see `promptopt tasks`) or path to a task YAML file."
)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=DATA_HELP)
@click.option(
    "--policy",
    default="ape",
    show_default=True,
    help="Search policy: ape, opro or reflect (instruction search; reflect learns from failed items, see "
    "docs/reflect.md); tpe (Optuna, Bayesian), reinforce (RL) or "
    "random over a search space (--space); bootstrap-random (random 4-shot sets of the model's own worked "
    "solutions); dspy-mipro, dspy-mipro-matched, dspy-copro, dspy-gepa or dspy-bootstrap "
    "(DSPy's optimizers, needs dspy).",
)
@click.option(
    "--space",
    "space",
    default=None,
    metavar="FILE|NAME",
    help="Search space for tpe/reinforce/random: a YAML file or a name (built-in: default, demos, "
    "answer-bias, answer-bias-only, gsm8k; or "
    "./search_spaces/NAME.yaml). Default: the task's own space if there is one, else default.",
)
@policy_option_flags
@click.option(
    "--selection",
    type=click.Choice(SELECTIONS),
    default="best",
    show_default=True,
    help="The final pick: the best dev mean, the cheapest finalist tied with it in a paired test "
    "(noise-aware; see docs/reflect.md), or the best balanced accuracy on dev, the mean over gold "
    "answers of each one's accuracy (balanced: the race ranks by it too; for a small answer set and a "
    "model that leans on one answer).",
)
@click.option(
    "--search",
    "slot",
    type=click.Choice(["instruction", "cot_trigger"]),
    default="instruction",
    show_default=True,
    help="Which part of the prompt to search.",
)
@click.option(
    "--budget",
    "preset",
    type=click.Choice(["light", "medium", "heavy"]),
    default="light",
    show_default=True,
    help="Search size preset (see the README): proposals, rounds, dev and test sizes.",
)
@click.option(
    "--max-calls",
    type=click.IntRange(min=1),
    default=None,
    help="Stop the search after this many LLM requests.",
)
@click.option(
    "--final-in-budget",
    is_flag=True,
    help="Make --max-calls bound the final full-dev scoring of the best candidates too: the search "
    "keeps back what it takes and stops earlier (default: the final scoring comes after the cap).",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Stop the search after this many tokens (in + out).",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Stop the search after this many minutes.",
)
@click.option(
    "--max-cost",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Stop the search at this cost in USD (prices from --prices or $PROMPTOPT_PRICES).",
)
@click.option(
    "--prices",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML file of model prices: `openai/gpt-4o-mini: {input: 0.15, output: 0.6}` (USD per million tokens).",
)
@click.option(
    "--proposals",
    type=click.IntRange(min=1),
    default=None,
    help="Override the preset: proposals in the first round (APE), per step (OPRO) or per round "
    "(tpe, reinforce, random).",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=0),
    default=None,
    help="Override the preset: resampling rounds (APE), steps (OPRO) or rounds after the first "
    "(tpe, reinforce, random; light gives them 1).",
)
@click.option(
    "--dev-size", type=click.IntRange(min=1), default=None, help="Override the preset: dev examples used."
)
@click.option(
    "--test-size",
    type=click.IntRange(min=1),
    default=None,
    help="Override the preset: held-out test examples.",
)
@click.option("--proposer-model", default=None, help="Model that writes proposals (default: the task model).")
@click.option(
    "--demo-teacher",
    type=click.Choice(["task", "proposer"]),
    default="task",
    show_default=True,
    help="Who writes the worked solutions of bootstrapped demos: the task model's own correct work, "
    "or the --proposer-model's (a stronger teacher; its answers are checked against gold the same way).",
)
@click.option(
    "--max-judge-calls",
    type=click.IntRange(min=1),
    default=None,
    help="With an llm_judge metric: stop after this many judge requests (counted apart from --max-calls).",
)
@_prompt_options
@_model_options
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Evaluate the candidates of each racing stage concurrently on a Ray pool of N model workers "
    "(0: serial, in this process). Worth it for API models; see the README.",
)
@click.option(
    "--ray-address", default=None, help="Join a Ray cluster (auto or ray://host:port) instead of a local Ray."
)
@click.option(
    "--ray-resources",
    default=None,
    metavar="JSON",
    help="Ray custom resources each model worker asks for, placing it on the nodes that have them, "
    "e.g. '{\"worker_node\": 0.01}'.",
)
@click.option("--resume", default=None, help="Continue an interrupted search run (see `promptopt runs`).")
@click.option(
    "--take-over",
    is_flag=True,
    help="With --resume: resume a run whose process still looks alive (it then stops at its next heartbeat).",
)
@click.option("--dry-run", is_flag=True, help="Print the estimate of calls and tokens and exit.")
def search_command(
    task_name: str | None, data_dir: str | None, policy: str, space: str | None, selection: str, slot: str,
    preset: str, max_calls: int | None, final_in_budget: bool,
    max_tokens: int | None, max_minutes: float | None, max_cost: float | None, prices: str | None,
    proposals: int | None, rounds: int | None, dev_size: int | None, test_size: int | None,
    proposer_model: str | None, demo_teacher: str, max_judge_calls: int | None, workers: int, ray_address: str | None,
    ray_resources: str | None, resume: str | None, take_over: bool, dry_run: bool, **options: Any,
) -> None:  # fmt: skip
    """Search for the prompt that scores best on dev, and prove it on held-out test.

    The starting prompt is built from the prompt options (as in `promptopt eval`); the
    policy proposes new instructions (or chain-of-thought triggers), racing drops weak
    ones early, the best get a full dev evaluation, and the winner and the starting
    prompt are compared on the test split with a paired test.

    \b
    Example:
      promptopt search --task gsm8k --data-dir ../shared/data --policy ape --budget light \\
          --cot "Let's think step by step."
    """
    from promptopt.budget import Budget
    from promptopt.controller import SearchConfig, prepare_search
    from promptopt.metrics import parse_metric_option
    from promptopt.session import Session
    from promptopt.tasks import get_task

    ctx = click.get_current_context()
    if resume is not None:
        refuse_with_resume(ctx)
        take_policy_options(ctx, options, None)
    elif take_over:
        raise click.UsageError("--take-over is for --resume RUN_ID")
    session = Session(options["db"])
    store = session.store
    metric = parse_metric_option(options["metric"])
    as_json = options["as_json"]
    if options["no_progress"]:
        from promptopt.progress import quiet_library_progress

        quiet_library_progress()
    moved_from = None
    if resume is None:
        if task_name is None:
            raise click.UsageError("--task is required (or --resume RUN_ID)")
        if final_in_budget and max_calls is None:
            raise click.UsageError("--final-in-budget bounds --max-calls: give --max-calls too")
        task = get_task(task_name, data_dir)
        base = _candidate_from_options(task, options)
        model = _model_spec(options["model"])
        budget = Budget(
            max_calls=max_calls,
            max_tokens=max_tokens,
            max_minutes=max_minutes,
            max_cost=max_cost,
            covers_final=final_in_budget,
        )
        from promptopt.policies import get_policy

        if space is not None and not getattr(get_policy(policy), "needs_space", False):
            raise click.UsageError(f"--space is for the tpe, reinforce and random policies, not {policy}")
        policy_options = take_policy_options(ctx, options, policy)
        config = SearchConfig.from_preset(
            preset, task=task_name, model=model, base=base, policy=policy, slot=slot, n_proposals=proposals,
            rounds=rounds, dev_size=dev_size, test_size=test_size, seed=options["seed"],
            batch_size=options["batch_size"], proposer_model=proposer_model, demo_teacher=demo_teacher,
            data_dir=str(data_dir) if data_dir else None, budget=budget,
            backend_options={k: v for k, v in _backend_options(options).items() if v is not None},
            space=space, workers=workers, ray_address=ray_address, ray_resources=parse_ray_resources(ray_resources),
            max_judge_calls=max_judge_calls, policy_options=policy_options, selection=selection,
        )  # fmt: skip
        warn_sizes(task, config.dev_size, config.test_size)
        prepared = prepare_search(config, db=session, task=task, metric=metric, prices=prices)
    else:
        moved_from = data_dir  # the run's data, moved; said again in a resume command printed below
        prepared = prepare_search(
            db=session, resume=resume, metric=metric, take_over=take_over, data_dir=data_dir
        )
    plan = prepared.plan
    if not as_json or dry_run:
        _print_estimate(plan, as_json)
        if resume is None and not as_json:
            from promptopt.cli.answers import print_search_splits

            print_search_splits(task, plan)
    if dry_run:
        session.close()
        return
    from promptopt.progress import SearchDisplay

    try:
        with SearchDisplay(enabled=not options["no_progress"] and not as_json) as display:
            result = prepared.run(progress=display.update, phase_progress=display.phase_fraction)
    except KeyboardInterrupt:
        if prepared.run_id is None:  # stopped while the model loaded: nothing was stored
            click.echo("search interrupted before its run was stored; nothing to resume", err=True)
        else:
            command = resume_command(prepared.run_id, store.url, prepared.config.metric, moved_from)
            click.echo(f"search interrupted; resume with:  {command}", err=True)
        session.close()
        sys.exit(130)
    except PromptOptError as exc:
        # the run's work stopped (the run is stored, failed): say how to go on once fixed,
        # unless the error says it already (an interruption: a lost Ray cluster) or the run is
        # not this process's to resume (a live run, a lease taken over: no run_id)
        if exc.run_id is not None and not isinstance(exc, RunInterruptedError):
            command = resume_command(exc.run_id, store.url, prepared.config.metric, moved_from)
            exc.hint = f"{exc.hint}; then resume with:  {command}" if exc.hint else f"resume with:  {command}"
        raise
    summary = result.summary()
    if as_json:
        click.echo(json.dumps({**summary, "db": store.display_url}, indent=2, default=str))
    else:
        _print_search(result, store.display_url)
        from promptopt.cli.spaces import print_policy_state

        print_policy_state(result)
    session.close()


def _print_estimate(plan: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"estimate": plan}, indent=2))
        return
    proposer = f", {plan['proposer_calls']} of them the proposer's" if plan.get("proposer_calls") else ""
    click.echo(
        f"estimate: at most {plan['search_calls']} LLM calls for the search{proposer} (~{plan['search_tokens']:,} tokens in all) "
        f"+ {plan['final_calls']} for the final dev/test evaluation; dev {plan['dev_size']}, test {plan['test_size']}",
        err=True,
    )
    if plan.get("judge_calls"):
        click.echo(
            f"judge: at most ~{plan['judge_calls']} judge calls (counted apart from the task's)", err=True
        )
    if plan.get("note"):
        click.echo(f"note: {plan['note']}", err=True)
    if plan.get("warning"):
        click.echo(f"warning: {plan['warning']}", err=True)


def _print_search(result: Any, db_url: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from promptopt.terminal import rich_text

    console = Console()
    table = Table(title="Top candidates (dev)")
    for column in ("candidate", "origin", "dev", "95% CI", "n", "no ans/cut", "tokens/ex", "text"):
        table.add_column(column)
    for row in result.leaderboard[:8]:
        # show the searched part: the trigger when that is what differs, else the instruction
        text = row.candidate.instruction
        if row.candidate.cot_trigger and row.candidate.cot_trigger != result.baseline.cot_trigger:
            text = row.candidate.cot_trigger
        counts = row.counts
        flag = "!" if counts is not None and counts.flagged else ""
        table.add_row(
            row.candidate.hash[:10], row.origin, f"{row.mean:.1%}", f"{row.ci_low:.1%}–{row.ci_high:.1%}", str(row.n),
            f"{counts.no_answer}/{counts.truncated}{flag}" if counts else "–",
            f"{row.tokens_per_example:.0f}", rich_text(text[:70] + ("…" if len(text) > 70 else "")),
        )  # fmt: skip
    console.print(table)
    if any(r.counts is not None and r.counts.flagged for r in result.leaderboard[:8]):
        click.echo(
            "no ans/cut: dev outputs with no answer found / cut off at the token limit; !: more than 10%"
        )
    test = result.test
    diff = test["difference"]

    def echo(line: str) -> None:
        click.echo(printable(line))

    from promptopt.bias import strategy_text

    winner = result.winner
    echo(f"winner      {winner.hash}: " + (repr(winner.instruction) if winner.instruction else "(no instruction)")
         + (f" + {winner.cot_trigger!r}" if winner.cot_trigger else "")
         + (f", {len(winner.demo_ids)} demos" if winner.demo_ids else "")
         + (f", {winner.samples} samples at temperature {winner.temperature:g} (majority vote)" if winner.samples > 1 else "")
         + strategy_text(winner))  # fmt: skip
    echo(f"test (n={test['n']})  winner {test['winner']['accuracy']:.1%} "
         f"(95% CI {test['winner']['ci95'][0]:.1%}–{test['winner']['ci95'][1]:.1%})  vs  starting prompt "
         f"{test['baseline']['accuracy']:.1%} (95% CI {test['baseline']['ci95'][0]:.1%}–{test['baseline']['ci95'][1]:.1%})")  # fmt: skip
    for side in ("winner", "baseline"):
        got = test[side]
        if "no_answer" in got:
            echo(f"  {side if side == 'winner' else 'starting prompt'} on test: {got['no_answer']} no answer found, "
                 f"{got['truncated']} cut off at the token limit" + ("  (more than 10%)" if got["flagged"] else ""))  # fmt: skip
    from promptopt.cli.answers import print_winner_checks

    print_winner_checks(result)
    verdict = "significant" if result.significant else "NOT significant"
    echo(f"difference  {diff['diff']:+.1%} (95% CI {diff['ci_low']:+.1%} to {diff['ci_high']:+.1%}), "
         f"paired p = {diff['p_value']:.3g}: the gain is {verdict} at the 5% level")  # fmt: skip
    spent = result.spent
    estimate = result.estimate
    echo(f"spent       {spent['calls']} search calls of ~{estimate['search_calls']} estimated, {spent['tokens_in'] + spent['tokens_out']:,} tokens, "
         f"{result.final_calls} final-evaluation calls; {result.model_calls} real model calls, {result.cache_hits} cache hits")  # fmt: skip
    faults = result.faults
    if faults.get("faults_met") or faults.get("failed_evaluations"):
        echo(f"faults      {faults['faults_met']} failed requests met, {faults['retries']} retried; "
             f"{faults['failed_evaluations']} evaluations stored as failures (excluded from scores)")  # fmt: skip
    judge = getattr(result, "judge", None) or {}
    if judge.get("calls"):
        echo(f"judge       {judge['calls']} judge requests ({judge.get('model_calls', 0)} real calls, "
             f"{judge.get('cache_hits', 0)} cache hits, {judge.get('failed', 0)} unreadable) with {judge.get('model')}")  # fmt: skip
    if result.stopped_reason:
        kept = "" if result.stopped_reason.endswith("is the result") else "; the best found so far was kept"
        if kept and not any(r.n and r.candidate.hash != result.baseline.hash for r in result.leaderboard):
            limit = "--max-calls" if "calls (" in result.stopped_reason else "the limit that ran out"
            kept = ("; no proposal was scored before it ran out, so the starting prompt is the result "
                    f"(raise {limit}: the proposals and a first race need more)")  # fmt: skip
        echo(f"stopped     {result.stopped_reason}{kept}")
    echo(f"wall time   {result.wall_s:.1f} s")
    echo(f"run         {result.run_id} in {db_url}")


COMMANDS = [search_command]
