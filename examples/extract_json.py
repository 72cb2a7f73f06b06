"""Extraction to JSON: four fields of a short notice, the `json` extractor with a JSON
Schema, scored field by field with `json_fields` (feedback names each field that missed).

    python examples/extract_json.py --model fake
"""

from __future__ import annotations

import argparse
import json
import random

import promptopt

SCHEMA = {
    "type": "object",
    "required": ["name", "city", "date", "amount"],
    "properties": {"name": {"type": "string"}, "city": {"type": "string"}, "date": {"type": "string"},
                   "amount": {"type": "number"}},
}  # fmt: skip
NAMES = ["Ada Byron", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth"]
CITIES = ["London", "Manchester", "Arlington", "Eindhoven", "Boston", "Stanford"]


def make_rows(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        fields = {"name": rng.choice(NAMES), "city": rng.choice(CITIES),
                  "date": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", "amount": rng.randint(5, 500)}  # fmt: skip
        notice = (f"On {fields['date']}, {fields['name']} of {fields['city']} paid a fee of "
                  f"${fields['amount']} for the library card.")  # fmt: skip
        rows.append({"notice": notice, "fields": fields})
    return rows


def main(model: str = "qwen2.5-coder-1.5b", db: str = "examples.db") -> None:
    task = promptopt.Task.from_records(
        train=make_rows(40, 1), test=make_rows(20, 2), input_fields=["notice"], target_field="fields",
        name="notice-fields", extractor="json", json_schema=SCHEMA, metric="json_fields",
        instruction="Extract name, city, date (YYYY-MM-DD) and amount (a number) from the notice.",
    )  # fmt: skip
    best = promptopt.optimize(
        task, model=model, max_calls=40, db=db, progress=False, dev_size=8, test_size=20
    )
    print(f"best instruction: {best.candidate.instruction!r}")
    print(f"test score (mean of per-field matches): {best.provenance['test']['accuracy']:.1%}")
    answer = best.run(notice="On 2024-05-01, Ada Byron of London paid a fee of $12 for the library card.")
    print(
        "extracted:",
        json.dumps(json.loads(answer.answer)) if answer.answer else None,
        "| raw:",
        answer.outputs[0][:80],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--db", default="examples.db")
    args = parser.parse_args()
    main(args.model, args.db)
