"""Label log-probabilities on the transformers engine (see :mod:`promptopt.backends.scoring`).

For each scoring request, every label text is appended to the chat-templated prompt (the
assistant turn just opened) and one forward pass gives the sum of the label tokens'
log-probabilities. A request's labels go through the model as one padded batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from promptopt.backends.base import request_problem
from promptopt.backends.scoring import scores_completion
from promptopt.types import Completion, GenerationRequest


def score_label_requests(
    loaded: Any, render_text: Any, requests: Sequence[GenerationRequest]
) -> list[Completion]:
    """``render_text(request)`` is the prompt text the model sees (chat template applied,
    generation prompt added); ``loaded`` the engine's loaded model and tokenizer."""
    import torch

    out: list[Completion] = []
    for request in requests:
        problem = request_problem(request)
        if problem is not None:
            out.append(Completion(text="", error=problem, finish_reason="error"))
            continue
        started = time.perf_counter()
        try:
            prompt = render_text(request)
            prompt_ids = list(loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            rows = [
                list(loaded.tokenizer(prompt + label, add_special_tokens=False)["input_ids"])
                for label in request.score_labels
            ]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), loaded.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, row in enumerate(rows):
                ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            with torch.inference_mode():
                logits = loaded.model(input_ids=ids, attention_mask=mask).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)
            scores: dict[str, float] = {}
            for i, (label, row) in enumerate(zip(request.score_labels, rows, strict=True)):
                start = _shared(prompt_ids, row)
                total = sum(float(logprobs[i, t - 1, row[t]]) for t in range(max(1, start), len(row)))
                scores[label] = total
        except (RuntimeError, ValueError, MemoryError) as exc:
            out.append(
                Completion(
                    text="", error=f"label scoring failed: {type(exc).__name__}: {exc}", finish_reason="error"
                )
            )
            continue
        out.append(
            scores_completion(scores, tokens_in=len(prompt_ids), latency_s=time.perf_counter() - started)
        )
    return out


def _shared(prompt: Sequence[int], row: Sequence[int]) -> int:
    """Tokens the prompt and the prompt-plus-label share (the label starts after them)."""
    n = 0
    for a, b in zip(prompt, row, strict=False):
        if a != b:
            break
        n += 1
    return n
