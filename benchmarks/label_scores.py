"""How far the transformers engine's int8 label scores are from float32's (issue #28).

Calibration and permutation's tie-break read each label's log-probability after the
prompt (:mod:`promptopt.backends.local_scores`). The local engine's default dtype on
these machines is int8; float32 is the exact reference. This scores the first ``--items``
test items of ``--task`` (its default prompt, every label as "So the answer is X") in
both and prints the differences and the time each took.

    python benchmarks/label_scores.py --task bbh:disambiguation_qa --items 10 --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="bbh:disambiguation_qa")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    from promptopt.backends.local import TransformersBackend
    from promptopt.backends.scoring import read_scores
    from promptopt.evaluation import make_candidate
    from promptopt.prompt import render_messages
    from promptopt.tasks import get_task
    from promptopt.types import GenerationRequest

    task = get_task(args.task, args.data_dir)
    if task.labels is None:
        parser.error(f"task {args.task} has no small answer set")
    candidate = make_candidate(task)
    labels = tuple(f"So the answer is {label}" for label in task.labels)
    requests = [
        GenerationRequest(render_messages(candidate, task, example), max_tokens=1, score_labels=labels)
        for example in task.examples("test", args.items)
    ]
    scores = {}
    for dtype in ("int8", "float32"):
        with TransformersBackend(args.model, dtype=dtype) as backend:
            backend.load()
            started = time.perf_counter()
            completions = backend.generate(requests)
            seconds = time.perf_counter() - started
        scores[dtype] = [read_scores(c) for c in completions]
        print(f"{dtype:8} {seconds:6.1f} s for {len(requests)} requests x {len(labels)} labels", flush=True)
    pairs = [(a[k], b[k]) for a, b in zip(scores["int8"], scores["float32"], strict=True) for k in a]
    differences = [abs(a - b) for a, b in pairs]
    same = sum(
        max(a, key=a.__getitem__) == max(b, key=b.__getitem__)
        for a, b in zip(scores["int8"], scores["float32"], strict=True)
    )
    print(json.dumps({
        "task": args.task, "model": args.model, "items": len(requests), "labels": len(labels),
        "mean_abs_difference": round(sum(differences) / len(differences), 3),
        "max_abs_difference": round(max(differences), 3), "same_best_label": same,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
