"""Which combinations of the answer-bias fields a candidate may hold."""

from __future__ import annotations

from typing import Any

from promptopt.errors import ConfigError

#: How a candidate answers from label scores: ``none`` generates its answer as usual;
#: ``raw`` takes the best-scored label as it is (no prior divided out: the baseline the
#: calibrations are measured against); the others divide the model's prior out.
CALIBRATIONS: tuple[str, ...] = ("none", "raw", "contextual", "batch", "position")


def check_bias_fields(candidate: Any) -> None:
    """Raise :class:`ConfigError` for a ``permute`` or ``calibration`` value, or a mix with
    other fields, that has no meaning. Calibration reads the labels' log-probabilities
    right after the prompt, so it needs a direct answer: no chain of thought, one greedy
    sample, no second stage. With ``permute`` k it scores the labels under k orderings of
    the options and averages them (:func:`promptopt.bias.calibration.average_orderings`)."""
    if isinstance(candidate.permute, bool) or not isinstance(candidate.permute, int) or candidate.permute < 1:
        raise ConfigError(f"permute must be a whole number >= 1, got {candidate.permute!r}")
    if candidate.calibration not in CALIBRATIONS:
        raise ConfigError(
            f"unknown calibration {candidate.calibration!r}; expected one of {', '.join(CALIBRATIONS)}"
        )
    if candidate.calibration == "none":
        return
    clashes = [
        what
        for what, clash in (
            (f"cot_mode {candidate.cot_mode}", candidate.cot_mode != "none"),
            (f"samples {candidate.samples}", candidate.samples != 1),
            ("two_stage", candidate.two_stage),
            ("rescue", candidate.rescue),
        )
        if clash
    ]
    if clashes:
        raise ConfigError(
            f"calibration {candidate.calibration} answers from label log-probabilities right after the "
            f"prompt; it cannot be combined with {', '.join(clashes)}",
            hint="use calibration with cot_mode none, one sample, no two_stage or rescue",
        )
