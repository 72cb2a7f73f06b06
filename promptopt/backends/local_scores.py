"""Label log-probabilities on the transformers engine (see :mod:`promptopt.backends.scoring`).

For each scoring request, every label text is appended to the chat-templated prompt (the
assistant turn just opened) and the sum of the label tokens' log-probabilities is read.
The prompt goes through the model once; its key/value cache is then shared by the
labels, which go through as one padded batch of their own tokens only (so ten labels
after a 600-token prompt cost one prompt pass, not ten, and no logits are kept for the
prompt's positions but its last).
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
            starts = [max(1, _shared(prompt_ids, row)) for row in rows]  # where each label starts
            scores = dict(zip(request.score_labels, _label_scores(loaded, rows, starts), strict=True))
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


def _label_scores(loaded: Any, rows: Sequence[Sequence[int]], starts: Sequence[int]) -> list[float]:
    """Each row's log-probability of its tokens from ``starts[i]`` on (its label): one
    pass over the tokens all rows start with, then the rows' own tokens as a padded batch
    over that pass's key/value cache."""
    import torch

    common = min(starts)  # every row has these tokens first
    width = max(len(r) for r in rows)
    with torch.inference_mode():
        first = loaded.model(
            input_ids=torch.tensor([list(rows[0][:common])]), use_cache=True, logits_to_keep=1
        )
        last = torch.log_softmax(first.logits[0, -1].float(), dim=-1)  # predicts token `common`
        if width == common:
            return [0.0 for _ in rows]
        ids = torch.full((len(rows), width - common), loaded.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        mask[:, :common] = 1
        for i, row in enumerate(rows):
            ids[i, : len(row) - common] = torch.tensor(list(row[common:]), dtype=torch.long)
            mask[i, : len(row)] = 1
        cache = first.cache
        cache.batch_repeat_interleave(len(rows))
        rest = loaded.model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=False)
        logprobs = torch.log_softmax(rest.logits.float(), dim=-1)  # position j predicts token common + j + 1
    out = []
    for i, row in enumerate(rows):
        total = 0.0
        for t in range(starts[i], len(row)):
            total += float(last[row[t]]) if t == common else float(logprobs[i, t - common - 1, row[t]])
        out.append(total)
    return out


def _shared(prompt: Sequence[int], row: Sequence[int]) -> int:
    """Tokens the prompt and the prompt-plus-label share (the label starts after them)."""
    n = 0
    for a, b in zip(prompt, row, strict=False):
        if a != b:
            break
        n += 1
    return n
