"""Label log-probabilities from an OpenAI-compatible server (see
:mod:`promptopt.backends.scoring`).

The chat API scores no given text, so a scoring request is sent as the prompt followed
by an assistant message holding the labels' common beginning (``So the answer is (``),
which the server continues (vLLM's ``continue_final_message``; llama.cpp's server and
others continue a final assistant message), for one token with ``top_logprobs``. A
label's score is the log-probability of the token that starts the rest of it (``A)``);
a label whose token is not among the top ones gets the lowest returned log-probability
minus one, a stand-in below anything seen. A server that returns no ``logprobs`` gives a
clear, non-retryable error.
"""

from __future__ import annotations

import os
from typing import Any

from promptopt.backends.scoring import scores_completion
from promptopt.types import Completion, GenerationRequest

TOP_LOGPROBS = 20


def common_prefix(texts: tuple[str, ...]) -> str:
    return os.path.commonprefix(list(texts))


def scoring_params(request: GenerationRequest, params: dict[str, Any]) -> dict[str, Any]:
    """The chat-completion parameters of a scoring request."""
    prefix = common_prefix(request.score_labels)
    messages = list(params["messages"])
    if prefix:
        messages.append({"role": "assistant", "content": prefix})
    return {
        **params,
        "messages": messages,
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": TOP_LOGPROBS,
        "extra_body": {"continue_final_message": bool(prefix), "add_generation_prompt": not prefix},
    }


def label_completion(response: Any, request: GenerationRequest, host: str, latency_s: float) -> Completion:
    """The scores in a chat-completion response to :func:`scoring_params`."""
    try:
        choice = response.choices[0]
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        top = list(content[0].top_logprobs) if content else []
        tokens = [(str(t.token), float(t.logprob)) for t in top]
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
    except (AttributeError, TypeError, IndexError, KeyError, ValueError) as exc:
        return Completion(
            text="",
            error=f"malformed logprobs from {host}: {type(exc).__name__}: {exc}",
            finish_reason="error",
        )
    if not tokens:
        return Completion(
            text="",
            error=f"the server at {host} returned no logprobs: label scoring (calibration) needs an "
            "OpenAI-compatible endpoint that returns them",
            finish_reason="error",
        )
    prefix = common_prefix(request.score_labels)
    floor = min(lp for _, lp in tokens) - 1.0
    scores: dict[str, float] = {}
    for label in request.score_labels:
        rest = label[len(prefix) :]
        matches = [lp for token, lp in tokens if token.strip() and rest.lstrip().startswith(token.strip())]
        scores[label] = max(matches) if matches else floor
    return scores_completion(scores, tokens_in=tokens_in, latency_s=latency_s)
