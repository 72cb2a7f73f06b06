"""One pipeline step optimized with its own metric: python examples/pipeline.py [MODEL]"""

import sys

import promptopt


def close_enough(example, prediction):  # partial credit, and why points were lost
    if prediction.answer is None:
        return promptopt.MetricResult(0.0, "no number in the answer")
    gap = abs(float(prediction.answer) - float(example.target))
    return promptopt.MetricResult(max(0.0, 1 - gap / 10), f"off by {gap:g}")


rows = [{"a": a, "b": b, "sum": a + b} for a in range(9) for b in range(9)]
fields = dict(input_fields=["a", "b"], target_field="sum", extractor="number", metric=close_enough)
task = promptopt.Task.from_records(
    train=rows[:60], test=rows[60:], instruction="Add the two numbers.", **fields
)
model = sys.argv[1] if len(sys.argv) > 1 else "qwen2.5-coder-1.5b"
best = promptopt.optimize(task, model=model, max_calls=30, db="examples.db", progress=False, dev_size=8)
print(best.candidate.instruction, best.provenance["test"]["accuracy"], best.run(a=3, b=4).answer)
