"""Label log-probabilities on the real transformers engine (smollm2-135m), issue #28."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from promptopt.backends.local import TransformersBackend
from promptopt.backends.scoring import read_scores
from promptopt.types import GenerationRequest, Message
from tests.test_local_backend import MODEL, needs_model

QUESTION = (
    Message("user", "Is the sky blue on a clear day? Options:\n(A) yes\n(B) no\nAnswer with (A) or (B)."),
)


@pytest.fixture(scope="module")
def backend() -> Iterator[TransformersBackend]:
    with TransformersBackend(MODEL, batch_size=2, dtype="float32") as b:
        b.load()
        yield b


@pytest.mark.model
@needs_model
def test_label_scores_are_the_log_probability_of_the_greedy_continuation(
    backend: TransformersBackend,
) -> None:
    greedy = backend.generate([GenerationRequest(QUESTION, max_tokens=3)])[0].text
    labels = (greedy, "Zebra crossing purple", "So the answer is (B)")
    scored = backend.generate([GenerationRequest(QUESTION, max_tokens=1, score_labels=labels)])[0]
    assert scored.ok and scored.finish_reason == "scored" and scored.tokens_in > 0
    scores = read_scores(scored)
    assert max(scores, key=scores.get) == greedy  # type: ignore[arg-type]
    assert all(v < 0 and math.isfinite(v) for v in scores.values())
    # one label at a time (no padding) gives the same numbers as the padded batch
    for label in labels:
        alone = read_scores(
            backend.generate([GenerationRequest(QUESTION, max_tokens=1, score_labels=(label,))])[0]
        )
        assert alone[label] == pytest.approx(scores[label], abs=1e-3)
    # the prompt's shared pass gives what one full pass over prompt + label gives
    import torch

    loaded = backend._loaded
    prompt = loaded.tokenizer.apply_chat_template(
        [m.to_dict() for m in QUESTION], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for label in labels:
        row = loaded.tokenizer(prompt + label, add_special_tokens=False)["input_ids"]
        start = next(
            (i for i, (a, b) in enumerate(zip(prompt_ids, row, strict=False)) if a != b), len(prompt_ids)
        )
        with torch.inference_mode():
            logprobs = torch.log_softmax(
                loaded.model(input_ids=torch.tensor([row])).logits[0].float(), dim=-1
            )
        full = sum(float(logprobs[t - 1, row[t]]) for t in range(start, len(row)))
        assert scores[label] == pytest.approx(full, abs=1e-3)
    # a batch that mixes scoring and generation answers each in its place
    mixed = backend.generate(
        [
            GenerationRequest(QUESTION, max_tokens=3),
            GenerationRequest(QUESTION, max_tokens=1, score_labels=labels),
        ]
    )
    assert mixed[0].text == greedy and read_scores(mixed[1]) == pytest.approx(scores, abs=1e-3)
    assert backend.can_score_labels()
