"""Speed of the local transformers backend: tokens/s by batch size, load time, peak RSS,
and the speed-up of shared-prefix reuse on an 8-shot chain-of-thought GSM8K prompt.

    python benchmarks/local_speed.py                       # both Qwen models, everything
    python benchmarks/local_speed.py --models qwen2.5-coder-0.5b --batch-sizes 1,8 --repeats 3

Each model runs in its own subprocess so that its peak RSS and load time are its own.
Prints a table and writes ``benchmarks/results/local_speed-<time>.json``.

Timings on a shared machine are noisy: every measurement is repeated (``--repeats``) and
the table shows the median with min-max; the load average before and after each model
is recorded with the result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from promptopt.types import GenerationRequest, Message  # noqa: E402

ZERO_SHOT_SYSTEM = 'Solve the math word problem. Think step by step, then end with "The answer is N."'
FEW_SHOT_SYSTEM = (
    "Solve grade-school math word problems. Reason step by step like the examples, "
    'then end with "The answer is N."'
)


# --------------------------------------------------------------------------- data


def load_gsm8k(data_dir: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, test) as dicts with question, solution, answer; via promptopt.tasks when present."""
    try:
        from promptopt.tasks import get_task

        task = get_task("gsm8k", data_dir=data_dir)
        convert = lambda e: {  # noqa: E731
            "question": task.render_input(e),
            "solution": e.solution or "",
            "answer": e.target,
        }
        return [convert(e) for e in task.examples("train")], [convert(e) for e in task.examples("test")]
    except Exception as exc:  # the task registry is optional here; fall back to the raw files
        print(f"(promptopt.tasks unavailable: {type(exc).__name__}: {exc}; reading JSONL directly)")

    def read(split: str) -> list[dict[str, str]]:
        rows = []
        with open(data_dir / "gsm8k" / f"{split}.jsonl", encoding="utf-8") as handle:
            for line in handle:
                item = json.loads(line)
                reasoning, _, answer = item["answer"].rpartition("#### ")
                solution = re.sub(r"<<[^>]*>>", "", reasoning).strip()
                rows.append({"question": item["question"], "solution": solution, "answer": answer.strip()})
        return rows

    return read("train"), read("test")


def few_shot_messages(demos: list[dict[str, str]], question: str) -> tuple[Message, ...]:
    messages = [Message("system", FEW_SHOT_SYSTEM)]
    for demo in demos:
        solution = demo["solution"]
        if "The answer is" not in solution:
            solution = f"{solution}\nThe answer is {demo['answer']}."
        messages.append(Message("user", f"Question: {demo['question']}"))
        messages.append(Message("assistant", solution))
    messages.append(Message("user", f"Question: {question}"))
    return tuple(messages)


# --------------------------------------------------------------------------- worker


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    from promptopt.backends.local import TransformersBackend

    train, test = load_gsm8k(Path(args.data_dir))
    result: dict[str, Any] = {"model": args.worker, "load_avg_start": os.getloadavg()}
    max_batch = max(args.batch_sizes)
    backend = TransformersBackend(args.worker, batch_size=max_batch, threads=args.threads, dtype=args.dtype)
    started = time.perf_counter()
    backend.load()
    result["load_s"] = time.perf_counter() - started
    result["rss_after_load_mb"] = current_rss_mb()  # steady state; the peak includes conversion
    result["describe"] = backend.describe()

    throughput = []
    if not args.skip_throughput:
        for batch in args.batch_sizes:
            backend.batch_size = batch
            runs = []
            for repeat in range(args.repeats):
                # distinct questions per repeat: nothing is answered from any cache
                offset = repeat * batch
                questions = [q["question"] for q in test[offset : offset + batch]]
                requests = [
                    GenerationRequest(
                        (Message("system", ZERO_SHOT_SYSTEM), Message("user", q)),
                        max_tokens=args.new_tokens,
                    )
                    for q in questions
                ]
                t0 = time.perf_counter()
                completions = backend.generate(requests)
                wall = time.perf_counter() - t0
                out = sum(c.tokens_out for c in completions)
                runs.append({"wall_s": wall, "tokens_out": out, "tok_s": out / wall})
                print(
                    f"  {args.worker} batch {batch} run {repeat}: {out} tokens in {wall:.1f}s = {out / wall:.1f} tok/s",
                    flush=True,
                )
            rates = [r["tok_s"] for r in runs]
            throughput.append(
                {
                    "batch": batch,
                    "runs": runs,
                    "tok_s_median": statistics.median(rates),
                    "tok_s_min": min(rates),
                    "tok_s_max": max(rates),
                }
            )
    result["throughput"] = throughput

    if args.eval_questions:
        # "Real evaluation": zero-shot CoT, mixed prompt lengths, rows stop at their own EOS.
        backend.batch_size = args.eval_batch
        questions = test[200 : 200 + args.eval_questions]
        requests = [
            GenerationRequest(
                (Message("system", ZERO_SHOT_SYSTEM), Message("user", q["question"])),
                max_tokens=args.eval_max_tokens,
            )
            for q in questions
        ]
        t0 = time.perf_counter()
        completions = backend.generate(requests)
        wall = time.perf_counter() - t0
        out = sum(c.tokens_out for c in completions)
        result["eval"] = {
            "questions": len(requests),
            "batch": args.eval_batch,
            "max_tokens": args.eval_max_tokens,
            "wall_s": wall,
            "tokens_out": out,
            "tok_s": out / wall,
            "finished_by_stop": sum(c.finish_reason == "stop" for c in completions),
        }
        print(f"  {args.worker} eval: {out} tokens in {wall:.1f}s = {out / wall:.1f} tok/s", flush=True)

    if args.prefix_questions:
        demos = train[: args.shots]
        questions = test[100 : 100 + args.prefix_questions]
        requests = [
            GenerationRequest(few_shot_messages(demos, q["question"]), max_tokens=args.prefix_max_tokens)
            for q in questions
        ]
        backend.batch_size = args.prefix_batch
        timings: dict[str, Any] = {}
        outputs: dict[str, list[str]] = {}
        for mode in ("recompute", "reuse"):
            backend.prefix_reuse = mode == "reuse"
            backend._prefixes.clear()  # start cold: the reuse timing includes computing the prefix once
            t0 = time.perf_counter()
            completions = backend.generate(requests)
            timings[mode] = time.perf_counter() - t0
            outputs[mode] = [c.text for c in completions]
            print(f"  {args.worker} prefix {mode}: {timings[mode]:.1f}s", flush=True)
        backend.prefix_reuse = True
        t0 = time.perf_counter()
        backend.generate(requests)  # warm: the prefix is already cached (the next batch of a candidate)
        timings["reuse_warm"] = time.perf_counter() - t0
        prompt_tokens = [c.tokens_in for c in backend.generate(requests[:1])]
        result["prefix"] = {
            "shots": args.shots,
            "questions": len(requests),
            "batch": args.prefix_batch,
            "max_tokens": args.prefix_max_tokens,
            "prompt_tokens_first": prompt_tokens[0],
            "recompute_s": timings["recompute"],
            "reuse_cold_s": timings["reuse"],
            "reuse_warm_s": timings["reuse_warm"],
            "speedup_cold": timings["recompute"] / timings["reuse"],
            "speedup_warm": timings["recompute"] / timings["reuse_warm"],
            "identical_outputs": outputs["recompute"] == outputs["reuse"],
            "identical_count": sum(
                a == b for a, b in zip(outputs["recompute"], outputs["reuse"], strict=True)
            ),
        }
    result["peak_rss_mb"] = peak_rss_mb()
    result["load_avg_end"] = os.getloadavg()
    return result


# --------------------------------------------------------------------------- kernels


def run_kernels(rows: list[int], repeats: int) -> list[dict[str, Any]]:
    """GOPS of one MLP-sized linear layer (1536 -> 8960, the 1.5B model's up projection)
    per path and batch rows: the ceiling each dtype's decode step can reach on this CPU."""
    import torch

    from promptopt.backends.local_linears import _make_int8_linear_class, _make_packed_linear_class

    torch.manual_seed(0)
    linear = torch.nn.Linear(1536, 8960, bias=False)
    bf16 = torch.nn.Linear(1536, 8960, bias=False, dtype=torch.bfloat16)
    bf16.weight.data.copy_(linear.weight.data)
    paths = {
        "int8 (row-wise, fbgemm)": _make_int8_linear_class()(linear),
        "float32 (oneDNN packed)": _make_packed_linear_class()(linear, 16),
        "float32 (default)": linear,
        "bfloat16": bf16,  # what --dtype bfloat16 runs
    }
    out = []
    with torch.inference_mode():
        for m in rows:
            x = torch.randn(m, 1536)
            row: dict[str, Any] = {"rows": m}
            for name, layer in paths.items():
                x = x.to(torch.bfloat16 if name == "bfloat16" else torch.float32)
                layer(x)
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    layer(x)
                    times.append(time.perf_counter() - t0)
                row[name] = 2 * m * 1536 * 8960 / statistics.median(times) / 1e9
            out.append(row)
            print(
                "  "
                + "  ".join(f"{k}: {v:.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True,
            )
    return out


def run_bandwidth(repeats: int, gib: float = 1.0) -> dict[str, float]:
    """Memory read and copy bandwidth (GB/s, median): a one-stream decode step reads every
    weight once, so read bandwidth / weight bytes bounds batch-1 tokens/s."""
    import torch

    n = int(gib * 2**30) // 4
    src = torch.ones(n, dtype=torch.float32)
    dst = torch.empty_like(src)
    reads, copies = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        src.sum()
        reads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dst.copy_(src)
        copies.append(time.perf_counter() - t0)
    size = n * 4
    return {
        "read_gbs": size / statistics.median(reads) / 1e9,
        "copy_gbs": 2 * size / statistics.median(copies) / 1e9,  # read + write
    }


# --------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="qwen2.5-coder-1.5b,qwen2.5-coder-0.5b")
    parser.add_argument("--batch-sizes", default="1,4,8,16,32", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument(
        "--new-tokens", type=int, default=24, help="max_tokens per request in the throughput runs"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--eval-questions", type=int, default=0, help="real-evaluation run: zero-shot CoT questions"
    )
    parser.add_argument("--eval-batch", type=int, default=16)
    parser.add_argument("--eval-max-tokens", type=int, default=256)
    parser.add_argument("--prefix-questions", type=int, default=8, help="0 skips the prefix-reuse comparison")
    parser.add_argument("--prefix-batch", type=int, default=8)
    parser.add_argument("--prefix-max-tokens", type=int, default=24)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", "int8", "float32", "bfloat16"], help="the backend's dtype"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--kernels",
        action="store_true",
        help="only the matmul kernels (GOPS per dtype path and batch rows) and memory bandwidth",
    )
    args = parser.parse_args()

    if args.kernels:
        rows = run_kernels([1, 4, 16, 32, 128, 512], repeats=max(5, args.repeats))
        print(f"\n{'rows':>5} " + " ".join(f"{k:>25}" for k in rows[0] if k != "rows") + "   (GOPS, median)")
        for row in rows:
            print(f"{row['rows']:>5} " + " ".join(f"{v:>25.0f}" for k, v in row.items() if k != "rows"))
        bandwidth = run_bandwidth(max(5, args.repeats))
        print(
            f"memory: read {bandwidth['read_gbs']:.1f} GB/s, copy (read + write) {bandwidth['copy_gbs']:.1f} GB/s"
        )
        print(f"load average {os.getloadavg()[0]:.2f}")
        return
    if args.worker:
        print("RESULT " + json.dumps(run_worker(args)), flush=True)
        return

    results = []
    for model in args.models.split(","):
        print(f"== {model}", flush=True)
        command = [sys.executable, __file__, "--worker", model, *sys.argv[1:]]
        process = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        lines = process.stdout.splitlines()
        for line in lines:
            if not line.startswith("RESULT "):
                print(line)
        found = [json.loads(line[7:]) for line in lines if line.startswith("RESULT ")]
        if process.returncode != 0 or not found:
            print(f"  {model}: worker failed (exit {process.returncode})")
            continue
        results.append(found[0])

    print()
    print(f"{'model':<20} {'batch':>5} {'tok/s median':>13} {'min-max':>13}")
    for r in results:
        for t in r["throughput"]:
            print(
                f"{r['model']:<20} {t['batch']:>5} {t['tok_s_median']:>13.1f} {t['tok_s_min']:>6.1f}-{t['tok_s_max']:<6.1f}"
            )
    print()
    for r in results:
        d = r["describe"]
        print(
            f"{r['model']}: load {r['load_s']:.1f}s ({'converted-weights cache' if d.get('loaded_from_cache') else 'from GGUF, first time'}), "
            f"dtype {d.get('dtype')}, RSS after load {r.get('rss_after_load_mb', float('nan')):.0f} MB, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB, load avg {r['load_avg_start'][0]:.2f} -> {r['load_avg_end'][0]:.2f}"
        )
        if "eval" in r:
            e = r["eval"]
            print(
                f"  eval ({e['questions']} q, batch {e['batch']}, max {e['max_tokens']}): {e['tok_s']:.1f} tok/s, {e['finished_by_stop']} stopped early"
            )
        if "prefix" in r:
            p = r["prefix"]
            print(
                f"  prefix reuse ({p['shots']}-shot CoT, {p['prompt_tokens_first']} prompt tokens, {p['questions']} q): "
                f"recompute {p['recompute_s']:.1f}s, reuse {p['reuse_cold_s']:.1f}s cold / {p['reuse_warm_s']:.1f}s warm "
                f"-> {p['speedup_cold']:.1f}x / {p['speedup_warm']:.1f}x, "
                f"identical outputs: {p.get('identical_count', '?')}/{p['questions']}"
            )
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"local_speed-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
    }
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
