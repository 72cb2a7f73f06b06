"""One step of a pipeline, optimized with its own Python metric: python examples/pipeline.py fake"""

import sys

import promptopt


def close_enough(example, prediction):  # partial credit, and the reason
    if prediction.answer is None:
        return promptopt.MetricResult(0.0, "no number found")
    gap = abs(float(prediction.answer) - float(example.target))
    return promptopt.MetricResult(max(0.0, 1 - gap / 10), f"off by {gap:g}" if gap else "")


rows = [{"a": a, "b": b, "sum": a + b} for a in range(9) for b in range(9)]
task = promptopt.Task.from_records(
    train=rows[:60],
    test=rows[60:],
    input_fields=["a", "b"],
    target_field="sum",
    extractor="number",
    metric=close_enough,
    instruction="Add the two numbers.",
)
best = promptopt.optimize(
    task,
    model=sys.argv[1] if len(sys.argv) > 1 else "qwen2.5-coder-1.5b",
    max_calls=30,
    db=sys.argv[2] if len(sys.argv) > 2 else "examples.db",
    progress=False,
    dev_size=8,
)
print(best.candidate.instruction, best.provenance["test"]["accuracy"], best.run(a=3, b=4).answer)
