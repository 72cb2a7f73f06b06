"""How the local engines (transformers and llama.cpp) draw a sampled token.

A request at ``temperature > 0`` gets a generator seeded by the request itself (its
content and ``sample_index``, :func:`stable_seed`), so the same request draws the same
tokens on any machine and in any batch. :func:`sample_token` is the numpy sampler: the
llama.cpp engine uses it for every sampled token, and both engines for a json_mode
request, whose disallowed tokens are ``-inf`` (:mod:`promptopt.backends.json_grammar`).
numpy is imported when a token is drawn, not with this module.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from promptopt.types import GenerationRequest

if TYPE_CHECKING:
    import numpy as np

__all__ = ["sample_token", "stable_seed"]


def stable_seed(request: GenerationRequest) -> int:
    """The seed of a sampled request's generator: a hash of its content and ``sample_index``."""
    digest = hashlib.sha256(request.cache_key("seed").encode("ascii")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_token(scores: np.ndarray, temperature: float, rng: Any) -> int:
    """A token drawn from ``softmax(scores / temperature)`` with the numpy generator ``rng``,
    or the best one when ``temperature`` is 0 or there is no ``rng``. Tokens scored
    ``-inf`` are never drawn."""
    import numpy as np

    if temperature <= 0 or rng is None:
        return int(np.argmax(scores))
    scaled = scores / temperature
    probs = np.exp(scaled - scaled.max())
    cumulative = np.cumsum(probs)
    token = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    token = min(token, len(scores) - 1)
    while token > 0 and not np.isfinite(scores[token]):  # rounding at the edge of the last allowed token
        token -= 1
    return token
