"""The local backend's key/value cache and prefix grouping: the preallocated buffers a
running batch writes into, the loaded model, the rows of a batch, and the grouping of
prompts by the longest shared prefix."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from promptopt.backends.base import common_prefix
from promptopt.types import GenerationRequest

# --------------------------------------------------------------------------- key/value buffers

_HEADROOM = 64  # columns allocated ahead so most decode steps write in place


@functools.lru_cache(maxsize=1)
def _make_buffer_layer_class() -> Any:
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        """A cache layer that writes into a preallocated buffer (grown by doubling).

        transformers' ``DynamicLayer`` concatenates, copying the whole cache at every
        decode step; with a 1,000-token few-shot prompt at batch 16 that copy cost about
        as much as the attention itself."""

        def __init__(self, kbuf: Any, vbuf: Any, length: int) -> None:
            super().__init__()
            self.kbuf, self.vbuf, self.length = kbuf, vbuf, length
            self.dtype, self.device = kbuf.dtype, kbuf.device
            self.is_initialized = True
            self._refresh()

        def _refresh(self) -> None:
            self.keys = self.kbuf[:, :, : self.length]
            self.values = self.vbuf[:, :, : self.length]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            end = self.length + key_states.shape[-2]
            if end > self.kbuf.shape[2]:
                capacity = max(end + _HEADROOM, 2 * self.kbuf.shape[2])
                self.kbuf = _with_capacity(self.kbuf, self.length, capacity)
                self.vbuf = _with_capacity(self.vbuf, self.length, capacity)
            self.kbuf[:, :, self.length : end] = key_states
            self.vbuf[:, :, self.length : end] = value_states
            self.length = end
            self._refresh()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

    return BufferLayer


def _with_capacity(buffer: Any, length: int, capacity: int) -> Any:
    shape = list(buffer.shape)
    shape[2] = capacity
    grown = buffer.new_empty(shape)
    grown[:, :, :length] = buffer[:, :, :length]
    return grown


# --------------------------------------------------------------------------- loading


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    eos_ids: frozenset[int]
    pad_id: int
    dtype: str
    load_s: float
    from_cache: bool
    packed_linears: int
    max_positions: int | None


# --------------------------------------------------------------------------- prefix cache


@dataclass
class _Prefix:
    tokens: tuple[int, ...]
    kv: list[tuple[Any, Any]]  # per layer (key, value), batch 1


@dataclass
class _Row:
    index: int  # position of the request in the caller's list
    request: GenerationRequest
    prompt: list[int]
    suffix: list[int]
    started: float
    ended: float = 0.0
    generated: list[int] = field(default_factory=list)
    text: str = ""
    finish: str | None = None
    generator: Any = None
    json: Any = None  # the JsonMatcher of a json_mode request (backends/json_grammar.py)


def _group_by_prefix(prompts: list[list[int]], min_tokens: int) -> list[tuple[list[int], int]]:
    """Split prompts into groups that share a prefix, maximizing prefix tokens saved.

    Returns ``(member indices, shared prefix length)``; length 0 means "no shared prefix".
    Prompts are sorted so that any group's common prefix is that of its first and last
    member; a range is split at its weakest adjacent link whenever the parts save more
    than the whole (a Cartesian-tree recursion, n log n on typical inputs).
    """
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    # A prefix must leave at least one token of every member to run.
    adjacent = [
        min(
            common_prefix(prompts[order[k]], prompts[order[k + 1]]),
            len(prompts[order[k]]) - 1,
            len(prompts[order[k + 1]]) - 1,
        )
        for k in range(len(order) - 1)
    ]
    groups: list[tuple[list[int], int]] = []

    def best(lo: int, hi: int) -> tuple[int, list[tuple[int, int, int]]]:
        # members order[lo..hi] inclusive; returns (tokens saved, [(lo, hi, prefix_len)])
        if lo == hi:
            return 0, [(lo, hi, 0)]
        links = adjacent[lo:hi]
        weakest = min(range(len(links)), key=links.__getitem__) + lo
        shared = adjacent[weakest]
        whole = (hi - lo) * shared if shared >= min_tokens else 0
        left_saved, left = best(lo, weakest)
        right_saved, right = best(weakest + 1, hi)
        if left_saved + right_saved > whole:
            return left_saved + right_saved, left + right
        return whole, [(lo, hi, shared if whole else 0)]

    if not prompts:
        return groups
    _, ranges = best(0, len(order) - 1)
    for lo, hi, shared in ranges:
        groups.append(([order[k] for k in range(lo, hi + 1)], shared))
    return groups
