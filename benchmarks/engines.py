"""Local inference engines side by side, in one run, on the same work.

    python benchmarks/engines.py                                   # everything (long)
    python benchmarks/engines.py --models smollm2-135m --questions 16 --fewshot-questions 4
    python benchmarks/engines.py --engines llama.cpp,transformers --models qwen2.5-coder-1.5b

For each model, each engine runs in a subprocess of its own (its own peak RSS and load
time), in turn (A B A B ... with ``--repeats``), on:

- **zero-shot**: the real evaluation of ``benchmarks/local_speed.py``: GSM8K test
  questions 200.. with a zero-shot chain-of-thought instruction, greedy, up to 256
  tokens, all sent as one batch (rows stop at their own end of turn);
- **8-shot**: an 8-shot chain-of-thought prompt (the same demos for every question: a
  shared prefix) on test questions 100.., greedy, up to 256 tokens;
- **batch invariance**: the first ``--invariance`` zero-shot questions again, each alone
  and in a batch with other partners; an output that differs from the one it had in the
  full batch counts as batch-variant.

It reports aggregate tokens/s (completion tokens / wall time), load time (first load in
the process, then a second load), peak RSS, GSM8K accuracy, how many greedy outputs equal
those of the transformers float32 reference (engine ``transformers-f32``, when it ran),
and the batch-invariance counts. Results go to a JSON file (``--out``); a rerun with the
same ``--out`` skips the (model, engine, repeat) entries already there, so an interrupted
run resumes.

Engines: ``llama.cpp`` (the default backend), ``transformers`` (the transformers backend
as it runs by default on x86: int8), ``transformers-f32`` (its float32 reference),
``openvino`` (OpenVINO GenAI's continuous-batching pipeline on the same GGUF files:
promptopt's ``OpenVINOBackend``, through ``benchmarks/engines_openvino.py``).
Options follow a colon: ``llama.cpp:pad_batch=0,repack=0``, ``openvino:exact=1``
(qwen2.5-coder-0.5b's Q5_0 tensors, which OpenVINO's GGUF reader cannot read, are
rewritten once as Q8_0; ``openvino:requantize=0`` refuses the file instead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from local_speed import (  # noqa: E402
    ZERO_SHOT_SYSTEM,
    current_rss_mb,
    few_shot_messages,
    load_gsm8k,
    peak_rss_mb,
)

from promptopt.types import GenerationRequest, Message  # noqa: E402

DEFAULT_ENGINES = "llama.cpp,transformers,transformers-f32"
DEFAULT_MODELS = "qwen2.5-coder-1.5b,qwen2.5-coder-0.5b,smollm2-135m"


# --------------------------------------------------------------------------- worker


def make_engine(engine: str, model: str, batch: int, cache_dir: str | None) -> Any:
    name, _, options = engine.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        kwargs[key] = int(value) if value.isdigit() else value
    if name == "llama.cpp":
        from promptopt.backends.llamacpp import LlamaCppBackend

        for key in ("pad_batch", "repack", "flash_attention", "prefix_reuse"):
            if key in kwargs:
                kwargs[key] = bool(kwargs[key])
        return LlamaCppBackend(model, batch_size=batch, cache_dir=cache_dir, **kwargs)
    if name in ("transformers", "transformers-f32"):
        from promptopt.backends.local import TransformersBackend

        dtype = "float32" if name == "transformers-f32" else kwargs.pop("dtype", "auto")
        return TransformersBackend(model, batch_size=batch, cache_dir=cache_dir, dtype=dtype, **kwargs)
    if name == "openvino":
        from engines_openvino import OpenVINOEngine

        return OpenVINOEngine(model, batch_size=batch, cache_dir=cache_dir, **kwargs)
    raise SystemExit(f"unknown engine {engine!r}")


def zero_shot_requests(test: list[dict[str, str]], count: int, max_tokens: int) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            (Message("system", ZERO_SHOT_SYSTEM), Message("user", q["question"])), max_tokens=max_tokens
        )
        for q in test[200 : 200 + count]
    ]


def few_shot_requests(
    train: list[dict[str, str]], test: list[dict[str, str]], count: int, shots: int, max_tokens: int
) -> list[GenerationRequest]:
    demos = train[:shots]
    return [
        GenerationRequest(few_shot_messages(demos, q["question"]), max_tokens=max_tokens)
        for q in test[100 : 100 + count]
    ]


def cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(backend: Any, requests: list[GenerationRequest]) -> dict[str, Any]:
    """Wall time, and CPU time: on a machine shared with other work, completion tokens per
    CPU-second times the cores is what the run would reach alone (an estimate: it assumes
    the threads keep every core busy)."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    completions = backend.generate(requests)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    out = sum(c.tokens_out for c in completions)
    return {
        "cpu_s": cpu,
        "tok_per_cpu_s": out / cpu if cpu else 0.0,
        "wall_s": wall,
        "tokens_out": out,
        "tokens_in": sum(c.tokens_in for c in completions),
        "tok_s": out / wall if wall else 0.0,
        "errors": sum(not c.ok for c in completions),
        "texts": [c.text for c in completions],
    }


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    train, test = load_gsm8k(Path(args.data_dir))
    result: dict[str, Any] = {"load_avg_start": os.getloadavg()[0]}
    cache_dir = None
    if args.cold:
        import tempfile

        cache_dir = tempfile.mkdtemp(prefix="engines-cold-")
    backend = make_engine(args.engine, args.worker, args.batch, cache_dir)
    t0 = time.perf_counter()
    backend.load()
    result["load_s"] = time.perf_counter() - t0
    result["rss_after_load_mb"] = current_rss_mb()
    backend.close()
    t0 = time.perf_counter()
    backend.load()
    result["reload_s"] = time.perf_counter() - t0
    result["describe"] = backend.describe()
    zero = zero_shot_requests(test, args.questions, args.max_tokens)
    if zero:
        result["zero_shot"] = timed(backend, zero)
        print(f"  zero-shot: {result['zero_shot']['tok_s']:.1f} tok/s", file=sys.stderr, flush=True)
    few = few_shot_requests(train, test, args.fewshot_questions, args.shots, args.max_tokens)
    if few:
        result["few_shot"] = timed(backend, few)
        print(f"  8-shot: {result['few_shot']['tok_s']:.1f} tok/s", file=sys.stderr, flush=True)
    if args.invariance and zero:
        k = min(args.invariance, len(zero))
        alone = [backend.generate([r])[0].text for r in zero[:k]]
        # other partners: the same questions, in reverse order, each with a few others
        mixed_requests = (
            list(reversed(zero[:k]))
            + zero_shot_requests(test, args.questions + 6, args.max_tokens)[args.questions :]
        )
        mixed = backend.generate(mixed_requests)
        mixed_texts = [c.text for c in mixed[:k]][::-1]
        full = result["zero_shot"]["texts"][:k]
        result["invariance"] = {
            "questions": k,
            "alone_equal_full_batch": sum(a == b for a, b in zip(alone, full, strict=True)),
            "other_batch_equal_full_batch": sum(a == b for a, b in zip(mixed_texts, full, strict=True)),
        }
    result["peak_rss_mb"] = peak_rss_mb()
    result["load_avg_end"] = os.getloadavg()[0]
    stats = getattr(backend, "stats", None)
    if stats:
        result["stats"] = dict(stats)
    backend.close()
    return result


# --------------------------------------------------------------------------- scoring


def scorer(data_dir: str) -> Any:
    """A function text -> (test question index -> correct?) from promptopt's GSM8K task."""
    from promptopt.tasks import get_task

    task = get_task("gsm8k", data_dir=data_dir)
    examples = task.examples("test")

    def correct(text: str, example: Any) -> bool:
        try:
            return task.score(task.extract(text), example) == 1.0
        except ArithmeticError:  # extract_number fails on some long digit strings (decimal)
            return False

    def score(texts: list[str], start: int) -> list[bool]:
        return [correct(t, examples[start + i]) for i, t in enumerate(texts)]

    return score


# --------------------------------------------------------------------------- driver


def key(model: str, engine: str, repeat: int) -> str:
    return f"{model}|{engine}|{repeat}"


def summarize(record: dict[str, Any], data_dir: str) -> list[str]:
    import statistics

    score = scorer(data_dir)
    lines = []
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for k, r in record["runs"].items():
        model, engine, _ = k.split("|")
        runs.setdefault((model, engine), []).append(r)
    header = (
        f"{'model':<20} {'engine':<22} {'0-shot tok/s':>17} {'8-shot tok/s':>17} {'tok/cpu-s 0/8':>13} {'acc 0/8':>9} "
        f"{'=f32 0/8':>9} {'invariant':>9} {'load s':>11} {'peak MB':>8}"
    )
    lines.append(header)
    for (model, engine), results in runs.items():
        ref = runs.get((model, "transformers-f32"))

        def rate(phase: str, results: list[dict[str, Any]] = results) -> str:
            rates = [r[phase]["tok_s"] for r in results if phase in r]
            if not rates:
                return "-"
            if len(rates) == 1:
                return f"{rates[0]:.1f}"
            return f"{statistics.median(rates):.1f} ({min(rates):.0f}-{max(rates):.0f})"

        first = results[0]

        def per_cpu(phase: str, first: dict[str, Any] = first) -> str:
            value = first.get(phase, {}).get("tok_per_cpu_s")
            return f"{value:.1f}" if value else "-"

        def acc(phase: str, start: int, first: dict[str, Any] = first) -> str:
            if phase not in first:
                return "-"
            return str(sum(score(first[phase]["texts"], start)))

        def same(phase: str, first: dict[str, Any] = first, ref: Any = ref) -> str:
            if not ref or phase not in first or phase not in ref[0]:
                return "-"
            return str(
                sum(a == b for a, b in zip(first[phase]["texts"], ref[0][phase]["texts"], strict=False))
            )

        inv = first.get("invariance")
        invariant = (
            f"{min(inv['alone_equal_full_batch'], inv['other_batch_equal_full_batch'])}/{inv['questions']}"
            if inv
            else "-"
        )
        loads = f"{first['load_s']:.1f}/{first['reload_s']:.1f}"
        peak = max(r["peak_rss_mb"] for r in results)
        lines.append(
            f"{model:<20} {engine:<22} {rate('zero_shot'):>17} {rate('few_shot'):>17} "
            f"{per_cpu('zero_shot') + '/' + per_cpu('few_shot'):>13} "
            f"{acc('zero_shot', 200) + '/' + acc('few_shot', 100):>9} {same('zero_shot') + '/' + same('few_shot'):>9} "
            f"{invariant:>9} {loads:>11} {peak:>8.0f}"
        )
    counts = {}
    for r in record["runs"].values():
        for phase in ("zero_shot", "few_shot"):
            if phase in r:
                counts[phase] = len(r[phase]["texts"])
    lines.append(
        f"({counts.get('zero_shot', 0)} zero-shot and {counts.get('few_shot', 0)} 8-shot questions; "
        "tok/s median (min-max) over repeats; tok/cpu-s = completion tokens per CPU-second of the worker; acc = correct answers; =f32 = outputs equal to "
        "transformers float32; invariant = outputs equal alone, in the full batch and in another batch; "
        "load = first load / second load in the same process)"
    )
    return lines


def split_engines(text: str) -> list[str]:
    """``llama.cpp:pad_batch=0,repack=0,transformers`` -> ``["llama.cpp:pad_batch=0,repack=0",
    "transformers"]``: an item ``key=value`` without a colon is one more option of the engine
    before it, not an engine."""
    engines: list[str] = []
    for item in text.split(","):
        if engines and "=" in item and ":" not in item:
            engines[-1] += "," + item
        else:
            engines.append(item)
    return engines


def worker_args(argv: list[str]) -> list[str]:
    """The command line without ``--out`` (the driver's file, not the worker's)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--engines", default=DEFAULT_ENGINES)
    parser.add_argument("--questions", type=int, default=64, help="zero-shot questions")
    parser.add_argument("--fewshot-questions", type=int, default=16)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16, help="sequences decoded together")
    parser.add_argument(
        "--invariance", type=int, default=8, help="questions rerun alone and in another batch"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cold", action="store_true", help="load from an empty cache (assemble, convert)")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("PROMPTOPT_DATA_DIR", str(HERE.parent.parent / "shared" / "data")),
    )
    parser.add_argument("--out", default=None, help="JSON results file (resumes when it exists)")
    parser.add_argument("--summary", action="store_true", help="only print the table of --out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print("RESULT " + json.dumps(run_worker(args)), flush=True)
        return
    out = Path(args.out) if args.out else HERE / "results" / f"engines-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record: dict[str, Any] = {"runs": {}}
    if out.is_file():
        record = json.loads(out.read_text(encoding="utf-8"))
    if not args.summary:
        record["command"] = " ".join([Path(sys.executable).name, *sys.argv])
        record["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
        engines = split_engines(args.engines)
        for model in args.models.split(","):
            for repeat in range(args.repeats):
                for engine in engines:  # A B A B ...: drift hits every engine alike
                    k = key(model, engine, repeat)
                    if k in record["runs"]:
                        continue
                    print(f"== {model} {engine} (repeat {repeat})", flush=True)
                    passthrough = worker_args(sys.argv[1:])
                    command = [sys.executable, __file__, *passthrough, "--worker", model, "--engine", engine]
                    process = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
                    found = [
                        json.loads(x[7:]) for x in process.stdout.splitlines() if x.startswith("RESULT ")
                    ]
                    if process.returncode != 0 or not found:
                        print(f"  failed (exit {process.returncode})", flush=True)
                        continue
                    record["runs"][k] = found[0]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print()
    for line in summarize(record, args.data_dir):
        print(line)
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
