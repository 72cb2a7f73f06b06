"""The Ray evaluation pool: throughput, engine overhead, and dynamic batching.

    python benchmarks/pool.py                      # all three parts (about 5 minutes)
    python benchmarks/pool.py --parts throughput,overhead --repeats 3

1. **Throughput against concurrency** (1, 4, 16, 64 requests in flight) through the pool
   (``RayBackend.openai``: async HTTP workers on a local Ray) against a real
   OpenAI-compatible HTTP server on loopback that answers after 100 ms, run in its own
   process (``python -m promptopt.testing.openai_server``, nothing recorded). Ideal is
   concurrency / latency; goal >= 90 % of it at 64. Also the whole evaluator path
   (executor, cache, store, 16 candidates at once) at 64.
2. **Engine overhead per evaluation** with a zero-latency fake model through the whole
   path — policy -> evaluator -> executor -> cache -> store — as ``promptopt.search()``
   with the serial evaluator (goal < 1 ms) and with the Ray evaluator, against DSPy's
   ``Evaluate`` of a ``Predict`` program on DSPy's ``DummyLM``, run as a subprocess with
   the interpreter of a separate DSPy virtualenv (``--dspy-python``).
3. **Local model**: candidates evaluated per minute with one request at a time, with the
   executor's static batches, and with the Ray evaluator's one model actor batching
   concurrent candidates dynamically — same model, same candidates, same examples.

Prints a table and writes ``benchmarks/results/pool-<time>.json``. The machine may be
shared: every measurement is repeated (median, min-max) and the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DSPY_PYTHONS = (HERE.parent / ".venv-dspy" / "bin" / "python", Path("/tmp/dspy-venv/bin/python"))


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --------------------------------------------------------------------------- 1. throughput


def start_server(latency_s: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptopt.testing.openai_server", "--port", "0", "--latency", str(latency_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+/v1)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"the fake server did not start: {line!r}")
    return proc, match.group(1)


def bench_throughput(repeats: int, latency_s: float = 0.1, seconds: float = 4.0) -> list[dict[str, Any]]:
    from promptopt.pool import RayBackend
    from promptopt.types import GenerationRequest, Message

    server, base_url = start_server(latency_s)
    rows = []
    try:
        # concurrency -> (workers, requests in flight per worker, requests per actor call)
        for concurrency, (workers, per_worker, chunk) in {
            1: (1, 1, 1),
            4: (1, 4, 1),
            16: (2, 8, 2),
            64: (2, 32, 8),
        }.items():
            pool = RayBackend.openai(
                "fake-model", base_url=base_url, api_key_env="PROMPTOPT_BENCH_NO_KEY", workers=workers,
                concurrency=per_worker, chunk_size=chunk,
            )  # fmt: skip
            try:
                pool.generate(
                    [_request(f"warm-up {i}", GenerationRequest, Message) for i in range(2 * concurrency)]
                )
                n = int(concurrency / latency_s * seconds)
                rates = []
                for repeat in range(repeats):
                    requests = [_request(f"r{repeat} q{i}", GenerationRequest, Message) for i in range(n)]
                    started = time.perf_counter()
                    out = pool.generate(requests)
                    rates.append(n / (time.perf_counter() - started))
                    assert all(c.ok for c in out), [c.error for c in out if not c.ok][:3]
            finally:
                pool.close()
            ideal = concurrency / latency_s
            rows.append({"path": "pool", "concurrency": concurrency, "workers": workers, "requests": n,
                         "rps": summary(rates), "ideal_rps": ideal,
                         "fraction_of_ideal": summary([r / ideal for r in rates]), "load": load()})  # fmt: skip
            print_throughput(rows[-1])
        rows.append(bench_evaluator_throughput(base_url, repeats, latency_s))
        print_throughput(rows[-1])
    finally:
        server.terminate()
        server.wait(timeout=10)
    return rows


def _request(text: str, request_type: Any, message_type: Any) -> Any:
    return request_type(messages=(message_type("user", text),), max_tokens=16)


def bench_evaluator_throughput(base_url: str, repeats: int, latency_s: float) -> dict[str, Any]:
    """16 candidates x 40 examples per stage through RayEvaluator with the controller's
    wrappers (budget, cache, retries) and a SQLite store: evaluations per second."""
    from promptopt.budget import Budget
    from promptopt.executor import Executor
    from promptopt.pool import RayBackend, RayEvaluator
    from promptopt.session import ModelStack
    from promptopt.store import Store
    from promptopt.tasks import get_task
    from promptopt.types import Candidate

    task = get_task("gsm-symbolic")
    dev = task.examples("dev")[:40]
    pool = RayBackend.openai(
        "fake-model", base_url=base_url, api_key_env="PROMPTOPT_BENCH_NO_KEY", workers=2, concurrency=32,
        chunk_size=8,
    )  # fmt: skip
    rates = []
    try:
        for repeat in range(repeats + 1):  # the first is a warm-up
            with tempfile.TemporaryDirectory() as tmp:
                store = Store(f"sqlite:///{tmp}/bench.db")
                run_id = store.create_run(kind="search", task=task.name, model=pool.model_id, config={})
                chain = ModelStack(pool, store, budget=Budget()).backend
                executor = Executor(task, chain, batch_size=16)
                candidates = [Candidate(instruction=f"Variant {repeat}-{k}: solve it.") for k in range(16)]
                for candidate in candidates:
                    store.add_candidate(run_id, candidate, origin="bench", parent=None)

                def sink(batch: Any, store: Any = store, run_id: str = run_id) -> None:
                    store.record_evaluations(run_id, batch)

                evaluator = RayEvaluator(executor, sink)
                started = time.perf_counter()
                evaluator.evaluate_many([(c, dev) for c in candidates], "dev")
                if repeat:
                    rates.append(len(candidates) * len(dev) / (time.perf_counter() - started))
                store.close()
    finally:
        pool.close()
    ideal = 64 / latency_s
    return {"path": "evaluator+store", "concurrency": 64, "workers": 2, "requests": 640, "rps": summary(rates),
            "ideal_rps": ideal, "fraction_of_ideal": summary([r / ideal for r in rates]), "load": load()}  # fmt: skip


def print_throughput(row: dict[str, Any]) -> None:
    rps, frac = row["rps"], row["fraction_of_ideal"]
    print(
        f"  {row['path']:<16} {row['concurrency']:>4} in flight  {rps['median']:8.1f} req/s "
        f"({rps['min']:.1f}-{rps['max']:.1f})  ideal {row['ideal_rps']:6.0f}  "
        f"{100 * frac['median']:5.1f}% ({100 * frac['min']:.1f}-{100 * frac['max']:.1f})  load {row['load']}",
        flush=True,
    )


# --------------------------------------------------------------------------- 2. overhead


def _bench_model(task: Any) -> Any:
    """A zero-latency fake model that plays the task model and the proposer (different
    instructions from one seeded hash), so that a search has many candidates to race."""
    import hashlib

    from promptopt.backends import FakeBackend

    def respond(request: Any) -> str:
        last = request.messages[-1].content
        digest = hashlib.sha256(f"{last}|{request.sample_index}".encode()).digest()
        if "nstruction" in last and ("teacher" in last or "improving" in last or "Rewrite" in last):
            return f"Instruction: Solve the problem, variant {digest[0]}-{digest[1]}."
        return f"Some reasoning. The answer is {digest[2] % 10}."

    return FakeBackend(respond)


def _search_config(task_name: str) -> Any:
    from promptopt.controller import SearchConfig
    from promptopt.types import Candidate

    return SearchConfig.from_preset(
        "medium", task=task_name, model="fake", base=Candidate(instruction="Answer the question."),
        policy="ape", n_proposals=12, rounds=2, dev_size=100, test_size=200,
    )  # fmt: skip


def bench_overhead(repeats: int, dspy_python: Path | None) -> dict[str, Any]:
    import dataclasses

    from promptopt.controller import search
    from promptopt.store import Store
    from promptopt.tasks import get_task

    task = get_task("gsm-symbolic")
    config = _search_config(task.name)
    out: dict[str, Any] = {"load_before": load()}
    modes = {"serial": config, "ray": dataclasses.replace(config, workers=2)}
    for mode, mode_config in modes.items():
        per_eval, evaluations = [], 0
        for _ in range(repeats + 1):  # the first is a warm-up (imports, Ray start)
            with tempfile.TemporaryDirectory() as tmp, Store(f"sqlite:///{tmp}/bench.db") as store:
                # the database is created (migrations) before the clock starts: a one-off per file
                started = time.perf_counter()
                # the task is loaded once, as DSPy's half is given its examples built
                result = search(mode_config, backend=_bench_model(task), db=store, task=task)
                wall = time.perf_counter() - started
                evaluations = len(store.get_evaluations(result.run_id))  # type: ignore[union-attr]
                per_eval.append(wall / evaluations * 1000)
        out[mode] = {"ms_per_evaluation": summary(per_eval[1:]), "evaluations": evaluations}
        print(f"  promptopt search, {mode:<8}: {_ms(out[mode]['ms_per_evaluation'])} per evaluation "
              f"({evaluations} evaluations)", flush=True)  # fmt: skip
    if dspy_python is None:
        print("  DSPy: no DSPy interpreter found (--dspy-python); comparison skipped")
        return out
    examples = [{"question": task.render_input(e), "answer": task.target(e)} for e in task.examples("test")]
    n = out["serial"]["evaluations"]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump((examples * (n // len(examples) + 1))[:n], handle)
    try:
        completed = subprocess.run(
            [str(dspy_python), __file__, "--dspy-half", handle.name, "--repeats", str(repeats)],
            capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONPATH": ""},
        )  # fmt: skip
    finally:
        os.unlink(handle.name)
    if completed.returncode != 0:
        print(f"  DSPy half failed: {completed.stderr[-2000:]}")
        out["dspy_error"] = completed.stderr[-2000:]
        return out
    dspy = json.loads(completed.stdout.strip().splitlines()[-1])
    out["dspy"] = dspy
    print(f"  DSPy {dspy['version']} Evaluate (Predict, DummyLM, 1 thread): {_ms(dspy['ms_per_evaluation'])} "
          f"per evaluation ({dspy['evaluations']} evaluations)", flush=True)  # fmt: skip
    out["dspy_ms_over_promptopt_ms"] = {}
    for mode in modes:
        ratio = dspy["ms_per_evaluation"]["median"] / out[mode]["ms_per_evaluation"]["median"]
        out["dspy_ms_over_promptopt_ms"][mode] = ratio
        print(f"    DSPy ms / promptopt ms ({mode}): {ratio:.2f}")
    out["load_after"] = load()
    return out


def _ms(s: dict[str, float]) -> str:
    return f"{s['median']:.3f} ms ({s['min']:.3f}-{s['max']:.3f})"


def dspy_half(path: str, repeats: int) -> None:
    """Runs under the DSPy virtualenv's interpreter: Evaluate a Predict program over the
    examples with DummyLM (no cache, one thread); prints one JSON line."""
    import logging

    import dspy
    from dspy.utils.dummies import DummyLM

    logging.getLogger("dspy").setLevel(logging.ERROR)
    if hasattr(dspy, "configure_cache"):
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    examples = json.loads(Path(path).read_text())
    devset = [
        dspy.Example(question=e["question"], answer=e["answer"]).with_inputs("question") for e in examples
    ]
    program = dspy.Predict("question -> answer")

    def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
        return str(example.answer) == str(prediction.answer)

    per_eval = []
    for _ in range(repeats + 1):
        lm = DummyLM([{"answer": str(k % 10)} for k in range(len(devset))])
        evaluate = dspy.Evaluate(devset=devset, metric=metric, num_threads=1, display_progress=False)
        with dspy.context(lm=lm):
            started = time.perf_counter()
            evaluate(program)
            per_eval.append((time.perf_counter() - started) / len(devset) * 1000)
    print(json.dumps({"version": dspy.__version__, "evaluations": len(devset),
                      "ms_per_evaluation": summary(per_eval[1:])}))  # fmt: skip


# --------------------------------------------------------------------------- 3. local model


LOCAL_INSTRUCTIONS = [
    "Solve the math word problem.",
    "Answer with the number only.",
    "Solve the problem carefully and state the answer.",
    "Work it out, then give the final number.",
]


def bench_local(model: str, n_examples: int, max_tokens: int, repeats: int) -> dict[str, Any]:
    from promptopt.backends import make_backend
    from promptopt.evaluator import SerialEvaluator
    from promptopt.executor import Executor
    from promptopt.pool import RayEvaluator, pool_backend
    from promptopt.tasks import get_task
    from promptopt.types import Candidate

    task = get_task("gsm-symbolic")
    dev = task.examples("dev")[:n_examples]
    candidates = [Candidate(instruction=text, max_tokens=max_tokens) for text in LOCAL_INSTRUCTIONS]
    jobs = [(c, dev) for c in candidates]
    out: dict[str, Any] = {"model": model, "candidates": len(candidates), "examples": len(dev),
                           "max_tokens": max_tokens, "load_before": load()}  # fmt: skip
    answers: dict[str, Any] = {}

    def measure(name: str, evaluator: Any) -> None:
        minutes = []
        for _ in range(repeats):
            started = time.perf_counter()
            results = evaluator.evaluate_many(jobs, "dev")
            minutes.append((time.perf_counter() - started) / 60)
            evaluator._memo.clear()  # score again, not from memory
        per_minute = [len(candidates) / m for m in minutes]
        answers[name] = [[r.answer for r in rs] for rs in results]
        out[name] = {"candidates_per_minute": summary(per_minute),
                     "evaluations_per_minute": summary([p * len(dev) for p in per_minute]), "load": load()}  # fmt: skip
        s = out[name]["candidates_per_minute"]
        print(f"  {name:<28} {s['median']:6.2f} candidates/min ({s['min']:.2f}-{s['max']:.2f}), "
              f"{s['median'] * len(dev):6.1f} evaluations/min  load {load()}", flush=True)  # fmt: skip

    backend = make_backend(model, batch_size=1)
    out["model_id"] = backend.model_id
    measure("one request at a time", SerialEvaluator(Executor(task, backend, batch_size=1), lambda b: None))
    backend.close()
    backend = make_backend(model, batch_size=16)
    measure(
        "serial, static batches of 16",
        SerialEvaluator(Executor(task, backend, batch_size=16), lambda b: None),
    )
    backend.close()
    del backend
    pool = pool_backend(model, workers=1, batch_size=16, max_wait_ms=20)
    evaluator = RayEvaluator(Executor(task, pool, batch_size=4), lambda b: None)
    measure("Ray, dynamic batching (B=16)", evaluator)
    [stats] = pool.worker_stats()
    out["dynamic_batches"] = stats
    evaluator.close()
    out["same_answers"] = len({json.dumps(a) for a in answers.values()}) == 1
    print(f"  answers identical in all modes: {out['same_answers']}; model actor: {stats}")
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="throughput,overhead,local")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--local-examples", type=int, default=4)
    parser.add_argument("--local-max-tokens", type=int, default=24)
    parser.add_argument(
        "--dspy-python", type=Path, default=next((p for p in DSPY_PYTHONS if p.exists()), None)
    )
    parser.add_argument("--dspy-half", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dspy_half:
        dspy_half(args.dspy_half, args.repeats)
        return
    sys.path.insert(0, str(HERE.parent))
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    parts = args.parts.split(",")
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                              "ray": ray.__version__, "load_before": load()}  # fmt: skip
    try:
        if "throughput" in parts:
            print("1. throughput, 100 ms server latency (median of repeats, min-max)")
            result["throughput"] = bench_throughput(args.repeats)
        if "overhead" in parts:
            print("2. engine overhead per evaluation, zero-latency model, whole search path")
            result["overhead"] = bench_overhead(args.repeats, args.dspy_python)
        if "local" in parts:
            print(f"3. local model {args.model}: {len(LOCAL_INSTRUCTIONS)} candidates x {args.local_examples} "
                  f"examples, max {args.local_max_tokens} new tokens")  # fmt: skip
            result["local"] = bench_local(
                args.model, args.local_examples, args.local_max_tokens, args.repeats
            )
    finally:
        ray.shutdown()
    result["load_after"] = load()
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"pool-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
