"""Undoing a model's answer bias at inference time (issue #28).

Small models lean on one answer whatever the question: an option position ("(A)") or a
label ("yes"). Two executor strategies remove that prior without touching the prompt's
wording, and a search can pick them like chain of thought or self-consistency:

- **option permutation** (``Candidate.permute``, :mod:`promptopt.bias.permute`): a
  multiple-choice item is shown ``k`` times with its options reordered, each answer is
  mapped back to the original letter, and the majority wins;
- **calibration** (``Candidate.calibration``, :mod:`promptopt.bias.calibration` for the
  math, :mod:`promptopt.bias.strategy` for the calls): the answer is the label whose
  log-probability after the prompt is highest once the model's prior over labels
  (contextual, batch or option position) is divided out (``raw``: as it is, the
  baseline the calibrations are measured against).

See docs/answer-bias.md.
"""


def strategy_text(candidate: object) -> str:
    """``, permute 3`` / ``, calibration batch`` for a candidate that uses a strategy, else ``""``."""
    parts = []
    if getattr(candidate, "permute", 1) != 1:
        parts.append(f"permute {candidate.permute}")  # type: ignore[attr-defined]
    if getattr(candidate, "calibration", "none") != "none":
        parts.append(f"calibration {candidate.calibration}")  # type: ignore[attr-defined]
    return "".join(f", {p}" for p in parts)


def export_note(candidate: object) -> dict[str, object]:
    """For an export format that is one request (the OpenAI request): what the strategy
    adds around it, which that format cannot express; empty without a strategy."""
    permute = getattr(candidate, "permute", 1)
    calibration = getattr(candidate, "calibration", "none")
    if permute == 1 and calibration == "none":
        return {}
    prior = "" if calibration == "raw" else f" and divide out the {calibration} prior"
    if permute != 1 and calibration != "none":
        how = (
            f"score each label's log-probability after the messages{prior}, under {permute} orderings (at most "
            "once per cyclic shift) of the option texts of the '(A) …' lines; map each ordering's letters back "
            "to the original options, average the normalised log-probabilities"
            + (
                ", then divide out the mean of those averages over the batch of items"
                if calibration == "batch"
                else ""
            )
            + ", answer with the best; "
            "`promptopt.load(FILE).run()` does this"
        )
        return {"answer_bias": {"permute": permute, "calibration": calibration, "how": how}}
    if permute != 1:
        how = (
            f"send the request {permute} times (at most once per cyclic shift) with the option texts of the "
            "'(A) …' lines reordered, map each answer's letter back to the original option, take the majority"
        )
        return {"answer_bias": {"permute": permute, "how": how}}
    how = (
        f"score each label's log-probability after the messages{prior}, answer with the best label "
        "instead of reading a generated answer; `promptopt.load(FILE).run()` does this"
    )
    return {"answer_bias": {"calibration": calibration, "how": how}}
