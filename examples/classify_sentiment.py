"""Classification with a label set: optimize a sentiment prompt, scored by the `choice`
metric, and print the per-label accuracy the HTML report also shows.

    python examples/classify_sentiment.py                 # the default local model
    python examples/classify_sentiment.py --model fake    # offline, instant (a scripted model)
"""

from __future__ import annotations

import argparse
import random

import promptopt
from promptopt.diagnostics import per_label
from promptopt.report import write_report
from promptopt.store import Store

LABELS = ["positive", "negative", "neutral"]
PHRASES = {
    "positive": ["I loved {x}", "{x} was wonderful", "great {x}, would buy again", "{x} exceeded my hopes"],
    "negative": [
        "I hated {x}",
        "{x} broke after a day",
        "terrible {x}, avoid it",
        "{x} was a waste of money",
    ],
    "neutral": [
        "{x} arrived on Tuesday",
        "I got {x} as a gift",
        "{x} comes in blue",
        "{x} is made of plastic",
    ],
}
THINGS = [
    "the kettle",
    "this lamp",
    "the headphones",
    "the chair",
    "this book",
    "the blender",
    "the tent",
    "the mug",
]


def make_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(LABELS)
        rows.append({"review": rng.choice(PHRASES[label]).format(x=rng.choice(THINGS)), "label": label})
    return rows


def main(
    model: str = "qwen2.5-coder-1.5b", db: str = "examples.db", report: str = "classify_report.html"
) -> None:
    task = promptopt.Task.from_records(
        train=make_rows(60, 1), test=make_rows(30, 2), input_fields=["review"], target_field="label",
        name="sentiment", extractor="text", metric={"choice": {"labels": LABELS}},
        instruction="Classify the sentiment of the product review.",
        answer_format='End with "The answer is X." where X is positive, negative or neutral.',
    )  # fmt: skip
    best = promptopt.optimize(
        task, model=model, max_calls=60, db=db, progress=False, dev_size=12, test_size=30
    )
    run_id = best.provenance["run_id"]
    print(f"best instruction: {best.candidate.instruction!r}")
    print(f"test score: {best.provenance['test']['accuracy']:.1%} (n={best.provenance['test']['n']})")
    with Store(db) as store:
        results = store.get_evaluations(run_id, best.candidate.hash, "test")
        for row in per_label(results):
            print(f"  {row.label:<9} {row.mean:.1%} (n={row.n})")
        write_report(store, run_id, report)
    print(f"report: {report}")
    print(best.run(review="the blender is fantastic").answer)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--db", default="examples.db")
    parser.add_argument("--report", default="classify_report.html")
    args = parser.parse_args()
    main(args.model, args.db, args.report)
