"""An open-ended rewrite scored by an LLM judge with a rubric (`llm_judge`): make curt
messages polite without changing what they ask. The judge may be another model.

    python examples/judge_rewrite.py --model fake --judge fake
"""

from __future__ import annotations

import argparse

import promptopt

CURT = ["send the report", "fix the build now", "call me back", "stop pushing to main", "review my change",
        "book the room for friday", "answer the client", "update the docs", "move the meeting", "pay the invoice"]  # fmt: skip
RUBRIC = (
    "The output must be a single polite request that asks for exactly what the input asks for, no more and no "
    "less. 5: polite, faithful and short; 3: polite but changes or pads the request; 1: rude or unfaithful."
)


def main(
    model: str = "qwen2.5-coder-1.5b", judge: str = "qwen2.5-coder-1.5b", db: str = "examples.db"
) -> None:
    rows = [{"message": f"{text} ({i})", "reference": ""} for i, text in enumerate(CURT * 4)]
    task = promptopt.Task.from_records(
        train=rows[:28], test=rows[28:], input_fields=["message"], target_field="reference", name="polite-rewrite",
        extractor="text", metric={"llm_judge": {"rubric": RUBRIC, "scale": [1, 5], "model": judge}},
        instruction="Rewrite the message as one polite request.", answer_format="Reply with the rewrite only.",
    )  # fmt: skip
    best = promptopt.optimize(
        task, model=model, max_calls=40, db=db, progress=False, dev_size=8, test_size=12
    )
    print(f"best instruction: {best.candidate.instruction!r}")
    print(f"judged test score: {best.provenance['test']['accuracy']:.1%} (scale 1-5 mapped to 0-1)")
    print(best.run(message="send me the slides").outputs[0])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--judge", default="qwen2.5-coder-1.5b")
    parser.add_argument("--db", default="examples.db")
    args = parser.parse_args()
    main(args.model, args.judge, args.db)
