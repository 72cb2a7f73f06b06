"""Constrained decoding to one JSON object, for the local engines (``json_mode`` of a task).

An OpenAI-compatible server constrains its output through ``response_format``; our two
local engines (transformers and llama.cpp) run their own decoding loops, so they
constrain it themselves, token by token, with `llguidance`_ (the grammar library that
llama.cpp and vLLM use): before a token is chosen, every token that could not continue
a valid JSON object (or, when the task gives a JSON Schema, an object valid under that
schema) is removed from the choice, and the end-of-sequence token is allowed only once
the object is complete. Greedy decoding then picks the best token that keeps the output
valid, instead of the best token.

One :class:`JsonGrammar` per loaded model holds the tokenizer's view that llguidance
needs (built once: about a second) and the compiled grammars by schema; each request
gets its own :class:`JsonMatcher`, which follows the tokens that request generates.

.. _llguidance: https://github.com/guidance-ai/llguidance
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from promptopt.errors import MissingDependencyError, ModelError

__all__ = ["JsonGrammar", "JsonMatcher", "any_object_schema"]

INSTALL_HINT = "pip install 'llguidance>=1.0' (it comes with the local extra: pip install 'promptopt[local]')"


_COMPACT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
"""One line, single spaces: a small model cannot wander into endless blank lines or
indentation between keys, and the object costs fewer tokens."""


def any_object_schema() -> str:
    """The schema of a request that asks for JSON without a schema: one JSON object."""
    return json.dumps({"type": "object"}, sort_keys=True)


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError:
        raise MissingDependencyError(
            "json_mode on a local model needs the llguidance package", hint=INSTALL_HINT
        ) from None
    return llguidance


class JsonMatcher:
    """The grammar state of one request: which tokens may come next, and whether it is done."""

    def __init__(self, matcher: Any, n_vocab: int) -> None:
        self._matcher = matcher
        self._n_vocab = n_vocab

    def allowed(self) -> np.ndarray:
        """A boolean array over the model's vocabulary: True where the token keeps the output valid."""
        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        mask = np.unpackbits(bits, bitorder="little").astype(bool)
        if mask.size < self._n_vocab:  # the model's rows past the tokenizer's words: never allowed
            mask = np.concatenate([mask, np.zeros(self._n_vocab - mask.size, dtype=bool)])
        return mask[: self._n_vocab]

    def pick(self, logits: np.ndarray, temperature: float, rng: np.random.Generator | None) -> int:
        """Choose the next token among the allowed ones (greedy, or sampled at ``temperature``
        with ``rng``) and follow it."""
        scores = np.where(self.allowed(), np.asarray(logits, dtype=np.float64), -np.inf)
        if temperature > 0 and rng is not None:
            scaled = scores / temperature
            probs = np.exp(scaled - scaled.max())
            cumulative = np.cumsum(probs)
            token = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            token = min(token, self._n_vocab - 1)
            while not np.isfinite(scores[token]):  # rounding at the edge of the last allowed token
                token -= 1
        else:
            token = int(np.argmax(scores))
        self.consume(token)
        return token

    def consume(self, token: int) -> None:
        """Follow the chosen token (always one that :meth:`allowed` permitted)."""
        if not self._matcher.consume_token(int(token)):
            raise ModelError(f"JSON grammar rejected token {token}: {self._matcher.get_error()}")

    @property
    def done(self) -> bool:
        """True once the object is complete and nothing more may follow."""
        return bool(self._matcher.is_stopped())

    @property
    def failed(self) -> str | None:
        return str(self._matcher.get_error()) if self._matcher.is_error() else None


class JsonGrammar:
    """Compiled JSON grammars for one model's vocabulary (see the module docstring)."""

    def __init__(self, lltokenizer: Any, n_vocab: int) -> None:
        self._tokenizer = lltokenizer
        self._n_vocab = n_vocab
        self._grammars: dict[str, str] = {}

    @classmethod
    def for_hf_tokenizer(cls, tokenizer: Any, n_vocab: int, eos_ids: list[int]) -> JsonGrammar:
        """For the transformers engine: a fast Hugging Face tokenizer and the model's logits width."""
        _llguidance()
        from llguidance.hf import from_tokenizer

        try:
            lltok = from_tokenizer(tokenizer, n_vocab=n_vocab, eos_token=sorted(eos_ids))
        except ValueError as exc:  # a slow (Python) tokenizer
            raise ModelError(f"json_mode: this model's tokenizer cannot be constrained: {exc}") from None
        return cls(lltok, n_vocab)

    @classmethod
    def for_llama_vocab(cls, vocab: Any, n_vocab: int) -> JsonGrammar:
        """For the llama.cpp engine: the model's ``llama_vocab`` (its special tokens never form JSON)."""
        _llguidance()
        import warnings

        from llguidance.llamacpp import lltokenizer_from_vocab

        with warnings.catch_warnings():  # it calls llama_token_get_attr, deprecated, once per token
            warnings.simplefilter("ignore", DeprecationWarning)
            return cls(lltokenizer_from_vocab(vocab, n_vocab=n_vocab), n_vocab)

    def matcher(self, schema: str | None) -> JsonMatcher:
        """A fresh matcher for one request; ``schema`` is the JSON Schema text (None: any object)."""
        llguidance = _llguidance()
        key = schema or any_object_schema()
        grammar = self._grammars.get(key)
        if grammar is None:
            try:
                grammar = llguidance.LLMatcher.grammar_from_json_schema(key, defaults=_COMPACT)
            except ValueError as exc:
                raise ModelError(f"json_mode: the JSON Schema is not usable as a grammar: {exc}") from None
            self._grammars[key] = grammar
        matcher = llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ModelError(f"json_mode: the JSON Schema is not usable as a grammar: {matcher.get_error()}")
        return JsonMatcher(matcher, self._n_vocab)
