"""The ``promptopt`` command line. Thin by design: parse options, call one library
function, print its result; a :class:`PromptOptError` becomes one clear message and
exit code 2."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from promptopt.backends import DTYPES
from promptopt.bias.checks import CALIBRATIONS
from promptopt.cli_answers import with_bias_options
from promptopt.cli_checks import (
    check_demos,
    parse_ray_resources,
    refuse_with_resume,
    resume_command,
    warn_sizes,
)
from promptopt.errors import PromptOptError
from promptopt.terminal import printable

DB_HELP = "Database URL (SQLAlchemy) or SQLite file path. Default: $PROMPTOPT_DB, else ./promptopt.db."
DATA_HELP = "Folder with the benchmark data (e.g. ../shared/data). Default: $PROMPTOPT_DATA_DIR, else the hub (online)."


class PromptOptGroup(click.Group):
    """Turns library errors into a message and exit code 2 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PromptOptError as exc:
            click.secho(f"error: {printable(exc.message)}", fg="red", err=True)
            if exc.hint:
                click.echo(f"  hint: {printable(exc.hint)}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted; results stored so far are kept", err=True)
            ctx.exit(130)


@click.group(
    cls=PromptOptGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="promptopt")
def cli() -> None:
    """promptopt: find the prompt that scores best on your task, and keep every result.

    \b
    Quick start (offline, local model):
      promptopt tasks
      promptopt eval --task gsm-symbolic --limit 20 --cot "Let's think step by step."
    """


@cli.command("tasks")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Also list the bbh: subtasks whose data is here. Default: $PROMPTOPT_DATA_DIR.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def tasks_command(data_dir: str | None, as_json: bool) -> None:
    """List the tasks that can be named with --task (built-in and custom task files).

    Custom tasks are YAML files in ./tasks or in the folders of $PROMPTOPT_TASK_PATH;
    a path to a YAML file also works as --task."""
    from promptopt.tasks import list_tasks

    infos = list_tasks(data_dir)
    if as_json:
        click.echo(
            json.dumps(
                [{"name": i.name, "description": i.description, "origin": i.origin} for i in infos], indent=2
            )
        )
        return
    width = max(len(i.name) for i in infos)
    for info in infos:
        origin = "" if info.origin == "builtin" else f"  [{info.origin}]"
        click.echo(printable(f"{info.name:<{width}}  {info.description}{origin}"))


def _progress_display(enabled: bool, total_label: str) -> Any:
    from promptopt.progress import EvalProgressBar

    return EvalProgressBar(total_label, enabled=enabled)


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _options(*decorators: Decorator) -> Decorator:
    """Apply a group of click options (shared by `eval` and `search`) in reading order."""

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


_task_options = _options(
    click.option(
        "--task",
        "task_name",
        required=True,
        help="Task name (see `promptopt tasks`) or path to a task YAML file.",
    ),
    click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=DATA_HELP),
)
_prompt_options = _options(
    click.option("--instruction", default=None, help="Instruction (system message). Default: the task's own."),
    click.option("--cot", default=None, help="Chain-of-thought trigger, e.g. \"Let's think step by step.\" Zero-shot "
                 "CoT with --shots 0; with --shots N the demos show worked solutions (few-shot CoT)."),
    click.option("--shots", type=click.IntRange(min=0), default=0, show_default=True, help="Number of demos from the train split."),
    click.option("--demos", default=None, help="Comma-separated demo ids instead of --shots (e.g. train-00012,cot-0)."),
    click.option("--answer-format", default=None, help="Line that tells the model how to state its answer. Default: the task's."),
    click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Self-consistency: sample N answers and take the majority vote."),
    click.option("--temperature", type=click.FloatRange(min=0.0), default=None,
                 help="Sampling temperature. Default: 0 (greedy), or 0.7 with --samples > 1."),
    click.option("--max-new-tokens", type=click.IntRange(min=1), default=512, show_default=True,
                 help="Most tokens generated per answer."),
    click.option("--two-stage", is_flag=True,
                 help="Ask a second short question for the final answer after the reasoning (Kojima et al.)."),
    click.option("--permute", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Show a multiple-choice item N times with its options reordered; vote over the answers "
                 "mapped back to the original letters (docs/answer-bias.md)."),
    click.option("--calibration", type=click.Choice(CALIBRATIONS), default="none", show_default=True,
                 help="Answer from the labels' log-probabilities with the model's prior divided out: contextual, "
                 "batch or position (docs/answer-bias.md)."),
    click.option("--from-dspy", "from_dspy", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                 help="Start from a DSPy predictor saved with program.save(FILE) (or `export --format dspy`): its "
                 "instruction, demos and chain of thought; the other prompt options fill in the rest."),
)  # fmt: skip
_model_options = _options(
    click.option("--model", default=None, help="Model: a local model name (`promptopt models`; default "
                 "qwen2.5-coder-1.5b), local/<path.gguf|hf_dir>, openai/<model>, or fake."),
    click.option("--base-url", default=None, help="Endpoint of an OpenAI-compatible server (with --model openai/...). "
                 "Default: $OPENAI_BASE_URL, else OpenAI."),
    click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
                 help="Environment variable that holds the API key (keys are never stored)."),
    click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
                 help="Requests in flight at once (API backends)."),
    click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                 help="Requests generated as one batch."),
    click.option("--dtype", type=click.Choice(DTYPES), default="auto",
                 show_default=True, help="Weights of a local model: int8 (auto's choice on x86 CPUs without "
                 "AMX; ~4x float32's speed), float32 (exact reference: bit-identical prefix reuse), bfloat16."),
    click.option("--db", default=None, help=DB_HELP),
    click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                 help="Seed for every random choice (recorded with the run), 0 to 4294967295."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
    click.option("--no-progress", is_flag=True, help="Do not show the progress display."),
    click.option("--metric", "metric", default=None, metavar="SPEC",
                 help="Score with this metric instead of the task's: a name (exact_match, numeric, choice, contains, "
                 "token_f1, regex, json_fields), a mapping like '{numeric: {tolerance: 0.01}}', or module:function / "
                 "path/to/file.py:function (loading it runs that code). See docs/metrics.md."),
)  # fmt: skip


def _candidate_from_options(task: Any, options: dict[str, Any]) -> Any:
    from promptopt.evaluation import make_candidate

    demos = options["demos"]
    from_dspy = options.get("from_dspy")
    if from_dspy is not None:
        ctx = click.get_current_context()
        given = [f"--{name}" for name in ("shots", "demos")
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]  # fmt: skip
        if given:
            raise click.UsageError(
                f"{', '.join(given)} cannot be combined with --from-dspy: the demos are the program's"
            )
    candidate = make_candidate(
        task, instruction=options["instruction"], cot=options["cot"], shots=options["shots"],
        answer_format=options["answer_format"], samples=options["samples"], temperature=options["temperature"],
        max_tokens=options["max_new_tokens"], two_stage=options["two_stage"],
        demo_ids=[d.strip() for d in demos.split(",") if d.strip()] if demos else None, seed=options["seed"],
    )  # fmt: skip
    check_demos(task, candidate, options["shots"])
    candidate = with_bias_options(candidate, options)
    if from_dspy is None:
        from promptopt.evaluation import cot_demo_note

        note = cot_demo_note(task, candidate, None if demos else options["shots"])
        if note:
            click.echo(f"note: {note}", err=True)
        return candidate
    from promptopt.dspy_interop import candidate_from_dspy

    return candidate_from_dspy(from_dspy, task, base=candidate)


_PROMPT_OPTION_NAMES = ("instruction", "cot", "shots", "demos", "answer_format", "samples", "temperature",
                        "max_new_tokens", "two_stage", "from_dspy", "permute", "calibration")  # fmt: skip


def _refuse_prompt_options(ctx: click.Context, because: str) -> None:
    given = [
        "--" + name.replace("_", "-")
        for name in _PROMPT_OPTION_NAMES
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(
            f"{', '.join(given)} cannot be combined with {because}: the file holds the whole prompt"
        )


def _model_spec(model: str | None) -> str:
    if model is not None:
        return model
    from promptopt.models import DEFAULT_MODEL

    return DEFAULT_MODEL


def _backend_options(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "base_url": options["base_url"],
        "api_key_env": options["api_key_env"],
        "concurrency": options["concurrency"],
        "dtype": options["dtype"],
    }


@cli.command("eval")
@click.option(
    "--task", "task_name", default=None, help="Task name (see `promptopt tasks`) or path to a task YAML file."
)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=DATA_HELP)
@click.option(
    "--split",
    type=click.Choice(["dev", "test", "train"]),
    default="test",
    show_default=True,
    help="Split to score: test is the official held-out split; dev is drawn from train.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Score only the first N examples of the split."
)
@click.option(
    "--prompt-file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Evaluate an exported prompt (yaml/json from `promptopt export`) instead of the prompt options; "
    "on dev it reproduces the stored dev score (same model, cache on).",
)
@_prompt_options
@_model_options
@click.option(
    "--no-cache",
    is_flag=True,
    help="Call the model even for requests already answered in the response cache.",
)
def eval_command(
    task_name: str | None, data_dir: str | None, split: str, limit: int | None, prompt_file: str | None, **options: Any
) -> None:  # fmt: skip
    """Score one prompt on a task split; print accuracy with its 95% CI, tokens, calls and time.

    Every evaluation (raw output, parsed answer, score, tokens, latency) is stored in the
    database, and every model answer in its response cache.

    \b
    Example:
      promptopt eval --task gsm8k --data-dir ../shared/data --split test --limit 100 \\
          --instruction "Solve the math word problem." --cot "Let's think step by step."
    """
    from promptopt.backends import make_backend
    from promptopt.evaluation import evaluate
    from promptopt.metrics import parse_metric_option
    from promptopt.store import Store
    from promptopt.tasks import get_task

    as_json = options["as_json"]
    if options["no_progress"]:
        from promptopt.progress import quiet_library_progress

        quiet_library_progress()
    if prompt_file is not None:
        _refuse_prompt_options(click.get_current_context(), "--prompt-file")
        from promptopt.export import load

        loaded = load(prompt_file)
        task = get_task(task_name or loaded.task.name, data_dir)
        if split == "dev" and limit is None:
            limit = (loaded.provenance.get("dev") or {}).get("n_examples")
        model = options["model"] or loaded.model
    else:
        if task_name is None:
            raise click.UsageError("--task is required (or --prompt-file)")
        task = get_task(task_name, data_dir)
        candidate = _candidate_from_options(task, options)
        model = _model_spec(options["model"])
    metric = parse_metric_option(options["metric"])
    if metric is not None:
        task = task.with_metric(metric)
    metric_obj = task.metric  # a bad metric fails here, before any work (a task file's reference loads now)
    store = Store(options["db"])
    examples = len(task.examples(split, limit))
    backend = make_backend(model, batch_size=options["batch_size"], **_backend_options(options))
    settings = {"split": split, "limit": limit, "db": store, "cache": not options["no_cache"],
                "batch_size": options["batch_size"], "seed": options["seed"],
                "metric": metric_obj}  # fmt: skip
    with _progress_display(not options["no_progress"] and not as_json, f"{task.name} {split}") as bar:
        bar.start(examples, (loaded.candidate if prompt_file is not None else candidate).samples)
        settings["on_answers"] = bar.answered  # the bar moves with answers, not per stored batch
        if prompt_file is not None:
            report = loaded.evaluate(task, backend=backend, progress=bar.update, **settings)
        else:
            report = evaluate(task, candidate, backend, progress=bar.update, **settings)
    backend.close()
    sizes = task.split_sizes()
    if as_json:
        summary = {**report.summary(), "n_scored": report.n_scored, "splits": sizes, "db": store.display_url}
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_report(report, store.display_url)
        from promptopt.tasks.splits import sizes_line

        click.echo(sizes_line(sizes))
    store.close()
    from promptopt.failures import check_results

    check_results(report.results, "the evaluation", options["api_key_env"])


def _print_report(report: Any, db_url: str) -> None:
    def echo(line: str) -> None:
        click.echo(printable(line))

    echo(
        f"{report.task} · {report.split} · {report.n} examples · {report.model} · candidate {report.candidate.hash}"
    )
    echo(
        f"accuracy    {report.accuracy:.1%}  (95% CI {report.ci_low:.1%}–{report.ci_high:.1%}, "
        f"{report.n_scored} of {report.n} scored, {report.n_failed} failed)"
    )
    from promptopt.cli_answers import print_eval_answers

    print_eval_answers(report)
    echo(
        f"tokens      {report.tokens_in_per_example:.1f} in / {report.tokens_out_per_example:.1f} out per example"
    )
    echo(f"calls       {report.calls} (cache hits {report.cache_hits}, retries {report.retries})")
    if report.judge.get("calls"):
        echo(f"judge       {report.judge['calls']} judge requests ({report.judge.get('model_calls', 0)} real calls, "
             f"{report.judge.get('cache_hits', 0)} cache hits, {report.judge.get('failed', 0)} unreadable)")  # fmt: skip
    if report.metric != "exact_match":
        echo(f"metric      {report.metric} (mean score)")
    echo(f"wall time   {report.wall_s:.1f} s")
    echo(f"run         {report.run_id} in {db_url}")


@cli.command("search")
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
    "random over a search space (--space); dspy-mipro, dspy-mipro-matched, dspy-copro or dspy-bootstrap "
    "(DSPy's optimizers, needs dspy).",
)
@click.option(
    "--space",
    "space",
    default=None,
    metavar="FILE|NAME",
    help="Search space for tpe/reinforce/random: a YAML file or a name (built-in: default, gsm8k; or "
    "./search_spaces/NAME.yaml). Default: the task's own space if there is one, else default.",
)
@click.option(
    "--cost-penalty",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="reinforce/tpe: reward = dev score - this x (calls per example - 1), to favour cheaper prompts.",
)
@click.option(
    "--dspy-threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="dspy-* policies: threads for DSPy's evaluations; their requests are joined into one backend batch "
    "(much faster on a local model). Above 1, which examples DSPy gets answered before a call limit is spent "
    "depends on timing, so a rerun or resume may differ there.",
)
@click.option(
    "--dspy-share",
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    default=None,
    help="dspy-* policies: the share of --max-calls DSPy's optimizer may spend; the rest races the programs "
    "it evaluated. Default: half.",
)
@click.option(
    "--minibatch",
    type=click.IntRange(min=1),
    default=None,
    help="reflect: train items a parent and its rewrite answer before the rewrite is raced (default 6).",
)
@click.option(
    "--reflect-demos",
    type=click.IntRange(min=0),
    default=None,
    help="reflect: every other step swaps in K demos of the model's own correct work, alike the failed "
    "items (0: off, the default).",
)
@click.option(
    "--reflect-merge",
    is_flag=True,
    help="reflect: every third step merges two frontier candidates' instructions into one (off by default).",
)
@click.option(
    "--selection",
    type=click.Choice(["best", "noise-aware"]),
    default="best",
    show_default=True,
    help="The final pick: the best dev mean, or the cheapest finalist tied with it in a paired test "
    "(noise-aware; see docs/reflect.md).",
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
    task_name: str | None, data_dir: str | None, policy: str, space: str | None, cost_penalty: float,
    dspy_threads: int, dspy_share: float | None, minibatch: int | None, reflect_demos: int | None,
    reflect_merge: bool, selection: str, slot: str,
    preset: str, max_calls: int | None,
    max_tokens: int | None, max_minutes: float | None, max_cost: float | None, prices: str | None,
    proposals: int | None, rounds: int | None, dev_size: int | None, test_size: int | None,
    proposer_model: str | None, max_judge_calls: int | None, workers: int, ray_address: str | None,
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
    from promptopt.budget import Budget, load_prices
    from promptopt.controller import SearchConfig, search
    from promptopt.metrics import parse_metric_option
    from promptopt.store import Store
    from promptopt.tasks import get_task

    ctx = click.get_current_context()
    if resume is not None:
        refuse_with_resume(ctx)
    elif take_over:
        raise click.UsageError("--take-over is for --resume RUN_ID")
    store = Store(options["db"])
    metric = parse_metric_option(options["metric"])
    as_json = options["as_json"]
    if options["no_progress"]:
        from promptopt.progress import quiet_library_progress

        quiet_library_progress()
    if resume is None:
        if task_name is None:
            raise click.UsageError("--task is required (or --resume RUN_ID)")
        task = get_task(task_name, data_dir)
        base = _candidate_from_options(task, options)
        model = _model_spec(options["model"])
        price_in, price_out = load_prices(model, prices) if (prices or max_cost is not None) else (0.0, 0.0)
        budget = Budget(max_calls=max_calls, max_tokens=max_tokens, max_minutes=max_minutes, max_cost=max_cost,
                        price_in_per_mtok=price_in, price_out_per_mtok=price_out)  # fmt: skip
        from promptopt.policies import get_policy

        if space is not None and not getattr(get_policy(policy), "needs_space", False):
            raise click.UsageError(f"--space is for the tpe, reinforce and random policies, not {policy}")
        config = SearchConfig.from_preset(
            preset, task=task_name, model=model, base=base, policy=policy, slot=slot, n_proposals=proposals,
            rounds=rounds, dev_size=dev_size, test_size=test_size, seed=options["seed"],
            batch_size=options["batch_size"], proposer_model=proposer_model,
            data_dir=str(data_dir) if data_dir else None, budget=budget,
            backend_options={k: v for k, v in _backend_options(options).items() if v is not None},
            space=space, cost_penalty=cost_penalty, workers=workers, ray_address=ray_address,
            ray_resources=parse_ray_resources(ray_resources),
            dspy_threads=dspy_threads, dspy_share=dspy_share, max_judge_calls=max_judge_calls,
            minibatch=minibatch, reflect_demos=reflect_demos, reflect_merge=reflect_merge or None,
            selection=selection,
        )  # fmt: skip
        for flag, value in (("--minibatch", minibatch), ("--reflect-demos", reflect_demos),
                            ("--reflect-merge", reflect_merge or None)):  # fmt: skip
            if value is not None and policy != "reflect":
                raise click.UsageError(f"{flag} is for the reflect policy, not {policy}")
        for flag, given in (("--dspy-threads", dspy_threads > 1), ("--dspy-share", dspy_share is not None)):
            if given and not policy.startswith("dspy-"):
                raise click.UsageError(f"{flag} is for the dspy-* policies, not {policy}")
        warn_sizes(task, config.dev_size, config.test_size)
        plan = search(config, db=store, dry_run=True, task=task, metric=metric)
    else:
        plan = search(db=store, resume=resume, dry_run=True, metric=metric)
    if not as_json or dry_run:
        _print_estimate(plan, as_json)
        if resume is None and not as_json:
            from promptopt.cli_answers import print_search_splits

            print_search_splits(task, plan)
    if dry_run:
        store.close()
        return
    from promptopt.progress import SearchDisplay

    try:
        with SearchDisplay(enabled=not options["no_progress"] and not as_json) as display:
            if resume is None:
                result = search(config, db=store, progress=display.update, task=task, metric=metric,
                                phase_progress=display.phase_fraction)  # fmt: skip
            else:
                result = search(db=store, resume=resume, progress=display.update, take_over=take_over,
                                metric=metric, phase_progress=display.phase_fraction)  # fmt: skip
    except KeyboardInterrupt:
        runs = store.list_runs(limit=1)
        run_id = resume or (runs[0].id if runs else "RUN_ID")
        click.echo(f"search interrupted; resume with:  {resume_command(run_id, store.url)}", err=True)
        store.close()
        sys.exit(130)
    summary = result.summary()  # type: ignore[union-attr]
    if as_json:
        click.echo(json.dumps({**summary, "db": store.display_url}, indent=2, default=str))
    else:
        _print_search(result, store.display_url)
        from promptopt.cli_spaces import print_policy_state

        print_policy_state(result)
    store.close()


def _print_estimate(plan: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"estimate": plan}, indent=2))
        return
    click.echo(
        f"estimate: at most {plan['search_calls']} LLM calls for the search (~{plan['search_tokens']:,} tokens) "
        f"+ {plan['final_calls']} for the final dev/test evaluation; dev {plan['dev_size']}, test {plan['test_size']}",
        err=True,
    )
    if plan.get("judge_calls"):
        click.echo(
            f"judge: at most ~{plan['judge_calls']} judge calls (counted apart from the task's)", err=True
        )
    if plan.get("note"):
        click.echo(f"note: {plan['note']}", err=True)


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
        if row.candidate.cot_trigger != result.baseline.cot_trigger:
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

    echo(f"winner      {result.winner.hash}: {result.winner.instruction!r}"
         + (f" + {result.winner.cot_trigger!r}" if result.winner.cot_trigger else ""))  # fmt: skip
    echo(f"test (n={test['n']})  winner {test['winner']['accuracy']:.1%} "
         f"(95% CI {test['winner']['ci95'][0]:.1%}–{test['winner']['ci95'][1]:.1%})  vs  starting prompt "
         f"{test['baseline']['accuracy']:.1%} (95% CI {test['baseline']['ci95'][0]:.1%}–{test['baseline']['ci95'][1]:.1%})")  # fmt: skip
    for side in ("winner", "baseline"):
        got = test[side]
        if "no_answer" in got:
            echo(f"  {side if side == 'winner' else 'starting prompt'} on test: {got['no_answer']} no answer found, "
                 f"{got['truncated']} cut off at the token limit" + ("  (more than 10%)" if got["flagged"] else ""))  # fmt: skip
    from promptopt.cli_answers import print_winner_checks

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
        echo(f"stopped     {result.stopped_reason}{kept}")
    echo(f"wall time   {result.wall_s:.1f} s")
    echo(f"run         {result.run_id} in {db_url}")


@cli.command("runs")
@click.option("--db", default=None, help=DB_HELP)
@click.option(
    "--limit", type=click.IntRange(min=1), default=30, show_default=True, help="How many runs, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def runs_command(db: str | None, limit: int, as_json: bool) -> None:
    """List runs (newest first) with their state; interrupted searches can be resumed."""
    from promptopt.lease import owner_alive
    from promptopt.store import Store

    store = Store(db)
    runs = store.list_runs(limit=limit)
    store.close()
    # A "running" run whose process is gone (killed, machine lost) is stale: resumable.
    stale = {r.id for r in runs if r.status == "running" and not owner_alive(r)}
    if as_json:
        click.echo(json.dumps([{"id": r.id, "kind": r.kind, "task": r.task, "model": r.model, "status": r.status,
                                "stale": r.id in stale, "created_at": r.created_at.isoformat()} for r in runs],
                              indent=2))  # fmt: skip
        return
    for run in runs:
        status = "stale" if run.id in stale else run.status
        score = ""
        summary = run.summary or {}
        if "accuracy" in summary:
            score = f"accuracy {summary['accuracy']:.1%} (n={summary.get('n')})"
        elif "test" in summary and "winner" in summary.get("test", {}):
            score = f"winner test {summary['test']['winner']['accuracy']:.1%}"
        click.echo(printable(
            f"{run.id}  {run.created_at:%Y-%m-%d %H:%M}  {run.kind:<6} {status:<11} {run.task:<22} {run.model:<28} {score}"
        ))  # fmt: skip


@cli.group("db")
def db_group() -> None:
    """Manage the results database (schema migrations)."""


@db_group.command("upgrade")
@click.option("--db", default=None, help=DB_HELP)
def db_upgrade(db: str | None) -> None:
    """Bring a database written by an older promptopt up to this version's schema."""
    from promptopt.store import Store

    before, after = Store.upgrade(db)
    if before == after:
        click.echo(f"database already at schema revision {after}")
    else:
        click.echo(f"upgraded database from schema revision {before or '(empty)'} to {after}")


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models_command(as_json: bool) -> None:
    """List the known local models, whether each is installed, and how to install it."""
    from promptopt.models import model_status

    statuses = model_status()
    if as_json:
        click.echo(json.dumps([_plain(s) for s in statuses], indent=2, default=str))
        return
    for status in statuses:
        data = _plain(status)
        state = "installed" if data.get("installed") else "not installed"
        click.echo(f"{data['name']}: {state} — {data.get('description', '')}")
        if not data.get("installed") and data.get("install_command"):
            click.echo(f"    install: {data['install_command']}")


def _plain(value: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return dict(value)


def _register_result_commands() -> None:
    from promptopt.cli_results import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_register_result_commands()


def _register_space_commands() -> None:
    from promptopt.cli_spaces import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_register_space_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="promptopt")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
