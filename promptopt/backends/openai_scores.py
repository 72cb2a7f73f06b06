"""Label log-probabilities from an OpenAI-compatible server (see
:mod:`promptopt.backends.scoring`).

The chat API scores no given text, so a scoring request is sent as the prompt followed
by an assistant message holding the labels' common beginning (``So the answer is (``),
which the server continues (vLLM's ``continue_final_message``; llama.cpp's server and
others continue a final assistant message), for one token with ``top_logprobs``. A
label's score is the log-probability of the token that starts the rest of it (``A)``);
a label whose token is not among the top ones gets the lowest returned log-probability
minus one, a stand-in below anything seen. A server that returns no ``logprobs``, a
reply with none of the labels among its top tokens, and labels that one token cannot
tell apart (``1`` and ``10``) give a clear, non-retryable error.
"""

from __future__ import annotations

import os
from typing import Any

from promptopt.backends.scoring import scores_completion
from promptopt.types import Completion, GenerationRequest

TOP_LOGPROBS = 20


def common_prefix(texts: tuple[str, ...]) -> str:
    """The labels' common beginning, ended where a token would end: without a trailing
    space (``So the answer is`` before ``yes``/``no``: the server then continues with
    `` yes`` as the model would write it, not with ``yes`` after a bare space) and never
    inside a word (``ye`` of ``yes``/``yet``)."""
    prefix = os.path.commonprefix(list(texts))
    if (
        prefix
        and prefix[-1].isalnum()
        and any(len(t) > len(prefix) and t[len(prefix)].isalnum() for t in texts)
    ):
        prefix = prefix[: len(prefix) - len(prefix.split()[-1])] if prefix.split() else ""
    return prefix.rstrip()


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
    read_by: dict[str, str] = {}  # label -> the token its score is read from
    for label in request.score_labels:
        rest = label[len(prefix) :].strip()
        matches = [(lp, t.strip()) for t, lp in tokens if t.strip() and rest.startswith(t.strip())]
        if matches:  # the longest token the label starts with (``10`` rather than ``1``)
            scores[label], read_by[label] = max(matches, key=lambda m: (len(m[1]), m[0]))
        else:
            scores[label] = floor
    problem = _unreadable(request.score_labels, prefix, read_by, host)
    if problem:
        return Completion(text="", error=problem, finish_reason="error")
    return scores_completion(scores, tokens_in=tokens_in, latency_s=latency_s)


def _unreadable(labels: tuple[str, ...], prefix: str, read_by: dict[str, str], host: str) -> str | None:
    """Why one token of the reply cannot rank ``labels``, or None: no label is among the
    top tokens (every label would get the same stand-in score), or two labels are read
    from the same token, one of them longer than it (``1`` and ``10`` after a tokenizer
    that splits digits): their scores would be equal whatever the model prefers."""
    if not read_by:
        return (
            f"none of the labels is among the {TOP_LOGPROBS} most likely tokens the server at {host} "
            f"returned after {prefix!r}: they cannot be ranked"
        )
    by_token: dict[str, list[str]] = {}
    for label, token in read_by.items():
        by_token.setdefault(token, []).append(label[len(prefix) :].strip())
    for token, rests in by_token.items():
        if len(rests) > 1:
            return (
                f"the labels {', '.join(repr(r) for r in rests)} begin with the same token {token!r} after "
                f"{prefix!r}: one token of the server's reply cannot tell them apart, so calibration cannot be "
                "used with this task on this endpoint (the transformers engine scores whole labels)"
            )
    return None
