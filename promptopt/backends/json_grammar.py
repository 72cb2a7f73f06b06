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
Each engine holds a :class:`JsonMode`, which builds the grammar at the first json_mode
request and admits each request (:func:`promptopt.backends.base.admit_request`); a
sampled token is drawn by :func:`promptopt.backends.sampling.sample_token`.

.. _llguidance: https://github.com/guidance-ai/llguidance
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from promptopt.backends.sampling import sample_token
from promptopt.errors import MissingDependencyError, ModelError, PromptOptError
from promptopt.types import GenerationRequest

if TYPE_CHECKING:
    import numpy as np

__all__ = ["JsonGrammar", "JsonMatcher", "JsonMode", "any_object_schema"]

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
        import numpy as np

        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        mask = np.unpackbits(bits, bitorder="little").astype(bool)
        if mask.size < self._n_vocab:  # the model's rows past the tokenizer's words: never allowed
            mask = np.concatenate([mask, np.zeros(self._n_vocab - mask.size, dtype=bool)])
        return mask[: self._n_vocab]

    def pick(self, logits: np.ndarray, temperature: float, rng: np.random.Generator | None) -> int:
        """Choose the next token among the allowed ones (greedy, or sampled at ``temperature``
        with ``rng``) and follow it."""
        import numpy as np

        scores = np.where(self.allowed(), np.asarray(logits, dtype=np.float64), -np.inf)
        token = sample_token(scores, temperature, rng)
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


class JsonMode:
    """json_mode in one local engine: its model's :class:`JsonGrammar`, built by ``build``
    from the engine's loaded model at the first json_mode request, and the matchers of
    the requests."""

    def __init__(self, build: Callable[[Any], JsonGrammar]) -> None:
        self._build = build
        self._grammar: JsonGrammar | None = None

    def matcher(self, loaded: Any, request: GenerationRequest) -> JsonMatcher:
        """A fresh matcher for ``request`` (it raises what building the grammar raises)."""
        if self._grammar is None:
            self._grammar = self._build(loaded)
        return self._grammar.matcher(request.json_schema)

    def admit(self, loaded: Any, request: GenerationRequest) -> tuple[JsonMatcher | None, str | None]:
        """The check of a request before it joins a batch, so that a bad schema or a missing
        llguidance fails that request alone and not the batch midway: ``(matcher, None)``
        for a json_mode request, ``(None, None)`` for any other, ``(None, error)`` for one
        that cannot be constrained."""
        if request.response_format != "json":
            return None, None
        try:
            return self.matcher(loaded, request), None
        except PromptOptError as exc:
            return None, str(exc)

    def reset(self) -> None:
        """Forget the grammar (its tokenizer view belongs to a model that is being freed)."""
        self._grammar = None
