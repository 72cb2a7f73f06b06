"""Options shared by the ``eval`` and ``search`` commands (task, prompt, model) and the
helpers that turn them into a candidate and a backend spec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from promptopt.backends import DTYPES
from promptopt.bias.checks import CALIBRATIONS
from promptopt.cli.answers import with_bias_options
from promptopt.cli.checks import check_demos

DB_HELP = "Database URL (SQLAlchemy) or SQLite file path. Default: $PROMPTOPT_DB, else ./promptopt.db."
DATA_HELP = "Folder with the benchmark data (e.g. ../shared/data). Default: $PROMPTOPT_DATA_DIR, else the hub (online)."


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
    click.option("--rescue", is_flag=True,
                 help="Ask that question only where the reasoning holds no answer (cut off, or no answer stated): "
                 "one extra call per such output (docs/tasks-and-answers.md)."),
    click.option("--permute", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Show a multiple-choice item N times with its options reordered; vote over the answers "
                 "mapped back to the original letters; with --calibration, average the label scores of the N "
                 "orderings instead (docs/answer-bias.md)."),
    click.option("--calibration", type=click.Choice(CALIBRATIONS), default="none", show_default=True,
                 help="Answer from the labels' log-probabilities with the model's prior divided out: contextual, "
                 "batch or position; raw: the best-scored label as it is (docs/answer-bias.md)."),
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
    if options["two_stage"] and options["rescue"]:
        raise click.UsageError(
            "--rescue cannot be combined with --two-stage: --two-stage already asks the follow-up "
            "question of every output, --rescue only of those without an answer; pick one"
        )
    candidate = make_candidate(
        task, instruction=options["instruction"], cot=options["cot"], shots=options["shots"],
        answer_format=options["answer_format"], samples=options["samples"], temperature=options["temperature"],
        max_tokens=options["max_new_tokens"], two_stage=options["two_stage"], rescue=options["rescue"],
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
                        "max_new_tokens", "two_stage", "rescue", "from_dspy", "permute", "calibration")  # fmt: skip


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
