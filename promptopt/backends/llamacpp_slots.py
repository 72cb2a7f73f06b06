"""The scheduler of :class:`~promptopt.backends.llamacpp.LlamaCppBackend`: one
``generate`` call's requests through the context's slots (see that module's docstring)."""

from __future__ import annotations

import ctypes
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptopt.backends.base import OnResults, admit_request, common_prefix, find_stop
from promptopt.backends.sampling import sample_token, stable_seed
from promptopt.types import Completion, GenerationRequest

if TYPE_CHECKING:
    from promptopt.backends.llamacpp import LlamaCppBackend


@dataclass
class _Row:
    index: int  # position of the request in the caller's list
    request: GenerationRequest
    prompt: list[int]
    started: float = 0.0
    ended: float = 0.0
    generated: list[int] = field(default_factory=list)
    pieces: list[bytes] = field(default_factory=list)
    text: str = ""
    finish: str | None = None
    rng: Any = None
    json: Any = None  # the JsonMatcher of a json_mode request (backends/json_grammar.py)


@dataclass
class _Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what its KV stream holds, in order
    prompt_len: int = 0  # how many of them were evaluated as prompt chunks (reusable)
    row: _Row | None = None


CHUNK = 32
"""Prompts are evaluated in chunks of this many tokens at fixed positions (0-31, 32-63,
...), and only whole chunks are reused. llama.cpp's matmul kernels differ with the number
of rows (tokens) per call, so a token evaluated in a chunk of another size gives other
float roundings: reusing any cached prefix and evaluating the rest as one call changed
smollm2's greedy answers. With fixed chunks, a reused chunk holds exactly the bytes a
recompute would write, and the rest is evaluated in the same chunks as a recompute."""


@dataclass
class _Loaded:
    lib: Any
    model: Any
    ctx: Any
    vocab: Any
    memory: Any
    n_vocab: int
    n_ctx_seq: int
    n_batch: int
    template: Any  # a compiled jinja2 template
    bos: str
    eos: str
    load_s: float
    batch: Any = None
    pieces: dict[int, bytes] = field(default_factory=dict)  # token (x2, +1 for special) -> bytes


class _Run:
    """One ``generate`` call: requests through the slots until every one is answered."""

    def __init__(
        self,
        backend: LlamaCppBackend,
        loaded: _Loaded,
        requests: Sequence[GenerationRequest],
        on_results: OnResults | None,
    ) -> None:
        self.backend = backend
        self.loaded = loaded
        self.lib = loaded.lib
        self.on_results = on_results
        self.results: list[Completion | None] = [None] * len(requests)
        self.waiting: deque[_Row] = deque()
        invalid: list[tuple[int, Completion]] = []

        def tokens(request: GenerationRequest) -> list[int]:
            return _tokenize(loaded, backend._render(loaded, request))

        for index, request in enumerate(requests):
            prompt, matcher, error = admit_request(
                request,
                tokens,
                loaded.n_ctx_seq,
                "context of {} tokens per sequence (LlamaCppBackend(context=...))",
                backend._json,
                loaded,
            )
            if error is not None:
                failed = self.results[index] = Completion(text="", error=error, finish_reason="error")
                invalid.append((index, failed))
                continue
            row = _Row(index, request, prompt)
            row.json = matcher
            self.waiting.append(row)
        if on_results is not None and invalid:
            on_results(invalid)

    def run(self) -> list[Completion]:
        slots = self.backend._slots
        while True:
            for slot in slots:
                while slot.row is None and self.waiting:
                    self._start(slot, self.waiting.popleft())
            busy = [slot for slot in slots if slot.row is not None]
            if not busy:
                break
            self._step(busy)
        return [r if r is not None else Completion(text="", error="not generated") for r in self.results]

    # -- a request takes a slot

    def _start(self, slot: _Slot, row: _Row) -> None:
        lib, memory = self.lib, self.loaded.memory
        row.started = time.perf_counter()

        def reusable(cached: _Slot) -> int:
            # whole chunks of its prompt part, leaving at least one token to evaluate
            shared = min(common_prefix(cached.tokens, row.prompt), cached.prompt_len, len(row.prompt) - 1)
            return shared - shared % CHUNK

        keep = reusable(slot) if self.backend.prefix_reuse else 0
        donor: _Slot | None = None
        if self.backend.prefix_reuse:
            for other in self.backend._slots:
                if other is not slot and other.prompt_len:
                    shared = reusable(other)
                    if shared > keep:  # copying a stream beats evaluating a chunk
                        donor, keep = other, shared
        if donor is not None:
            lib.llama_memory_seq_cp(memory, donor.seq_id, slot.seq_id, -1, -1)  # the whole stream
            self.backend.stats["prefix_copies"] += 1
        lib.llama_memory_seq_rm(memory, slot.seq_id, keep, -1)
        slot.tokens = row.prompt[:keep]
        slot.prompt_len = keep
        self.backend.stats["prompt_tokens_reused"] += keep
        slot.row = row
        try:
            logits = self._prefill(slot, row.prompt[keep:])
        except _DecodeError as exc:
            self._fail([slot], str(exc))
            return
        self._choose([(slot, logits)])

    def _prefill(self, slot: _Slot, tokens: list[int]) -> Any:
        """Evaluate ``tokens`` after ``slot.tokens`` (a whole number of chunks) in chunks of
        :data:`CHUNK`; returns the last token's logits."""
        batch = self.loaded.batch
        assert len(slot.tokens) % CHUNK == 0
        for start in range(0, len(tokens), CHUNK):
            chunk = tokens[start : start + CHUNK]
            base = len(slot.tokens)
            for i, token in enumerate(chunk):
                _set_token(batch, i, token, base + i, slot.seq_id, i == len(chunk) - 1)
            batch.n_tokens = len(chunk)
            self._decode()
            slot.tokens.extend(chunk)
            slot.prompt_len = len(slot.tokens)
        self.backend.stats["prompt_tokens_computed"] += len(tokens)
        return self._logits(1)[0]

    # -- one decoding step for every busy slot

    def _step(self, busy: list[_Slot]) -> None:
        batch = self.loaded.batch
        rows = len(busy)
        for i, slot in enumerate(busy):
            assert slot.row is not None
            _set_token(batch, i, slot.row.generated[-1], len(slot.tokens), slot.seq_id, True)
        if self.backend.pad_batch:
            # Same shape every step: the idle slots each take a dummy token (output
            # ignored, removed from their cache below), so llama.cpp runs the same
            # kernels on the same row blocks whatever the number of running requests.
            idle = [slot for slot in self.backend._slots if slot.row is None]
            for slot in idle:
                _set_token(batch, rows, 0, len(slot.tokens), slot.seq_id, True)
                rows += 1
        else:
            idle = []
        batch.n_tokens = rows
        try:
            self._decode()
        except _DecodeError as exc:
            self._fail(busy, str(exc))
            return
        for slot in idle:
            self.lib.llama_memory_seq_rm(self.loaded.memory, slot.seq_id, len(slot.tokens), -1)
        self.backend.stats["decode_steps"] += 1
        logits = self._logits(len(busy))
        for slot in busy:
            assert slot.row is not None
            slot.tokens.append(slot.row.generated[-1])
        self._choose(list(zip(busy, logits, strict=True)))

    def _decode(self) -> None:
        code = self.lib.llama_decode(self.loaded.ctx, self.loaded.batch)
        if code != 0:
            raise _DecodeError(f"llama_decode failed with code {code}")

    def _logits(self, count: int) -> Any:
        """The first ``count`` rows of the last decode's logits (one per output, in batch order)."""
        import numpy as np

        pointer = self.lib.llama_get_logits(self.loaded.ctx)
        if not pointer:
            raise _DecodeError("llama.cpp returned no logits")
        return np.ctypeslib.as_array(pointer, shape=(count, self.loaded.n_vocab))

    def _choose(self, pairs: list[tuple[_Slot, Any]]) -> None:
        """Pick each row's next token, then apply end of generation, stops and max_tokens."""
        import numpy as np

        lib, vocab = self.lib, self.loaded.vocab
        ended: list[_Slot] = []
        for slot, logits in pairs:
            row = slot.row
            assert row is not None
            request = row.request
            if request.temperature > 0 and row.rng is None:
                row.rng = np.random.default_rng(stable_seed(request))
            if row.json is not None:
                token = row.json.pick(logits, request.temperature, row.rng)
            elif request.temperature > 0:
                token = sample_token(logits.astype(np.float64), request.temperature, row.rng)
            else:
                token = int(np.argmax(logits))
            row.generated.append(token)
            if lib.llama_vocab_is_eog(vocab, token):
                row.finish = "stop"
                row.text = _join(row.pieces)
                ended.append(slot)
                continue
            row.pieces.append(_piece(self.loaded, token))
            if request.stop:
                text = _join(row.pieces)
                cut = find_stop(text, request.stop, len(row.text))
                row.text = text
                if cut is not None:
                    row.text = text[:cut]
                    row.finish = "stop"
                    ended.append(slot)
                    continue
            if len(row.generated) >= request.max_tokens:
                row.finish = "length"
                row.text = _join(row.pieces)
                ended.append(slot)
        if ended:
            self._finish(ended)

    def _finish(self, slots: list[_Slot], failure: str | None = None) -> None:
        now = time.perf_counter()
        report: list[tuple[int, Completion]] = []
        for slot in slots:
            row = slot.row
            assert row is not None
            slot.row = None
            if failure is not None:
                done = Completion(text="", error=failure, finish_reason="error", tokens_in=len(row.prompt))
            else:
                done = Completion(
                    text=row.text,
                    tokens_in=len(row.prompt),
                    tokens_out=len(row.generated),
                    finish_reason=row.finish or "length",
                    latency_s=now - row.started,
                )
            self.results[row.index] = done
            report.append((row.index, done))
        if self.on_results is not None and report:
            self.on_results(report)

    def _fail(self, slots: list[_Slot], message: str) -> None:
        for slot in slots:  # what their streams hold is unknown now: start them afresh
            self.lib.llama_memory_seq_rm(self.loaded.memory, slot.seq_id, -1, -1)
            slot.tokens, slot.prompt_len = [], 0
        self._finish(slots, f"generation failed: {message}")


class _DecodeError(RuntimeError):
    pass


def _tokenize(loaded: _Loaded, text: str) -> list[int]:
    lib = loaded.lib
    data = text.encode("utf-8")
    capacity = len(data) + 8
    tokens = (lib.llama_token * capacity)()
    count = lib.llama_tokenize(loaded.vocab, data, len(data), tokens, capacity, False, True)
    if count < 0:  # too small a buffer: -count is the size needed
        capacity = -count
        tokens = (lib.llama_token * capacity)()
        count = lib.llama_tokenize(loaded.vocab, data, len(data), tokens, capacity, False, True)
    return list(tokens[:count])


def _piece(loaded: _Loaded, token: int, special: bool = False) -> bytes:
    key = token * 2 + special
    found = loaded.pieces.get(key)
    if found is None:
        buffer = ctypes.create_string_buffer(256)
        n = loaded.lib.llama_token_to_piece(loaded.vocab, token, buffer, 256, 0, special)
        found = loaded.pieces[key] = buffer.raw[: max(n, 0)]
    return found


def _token_text(loaded: _Loaded, token: int) -> str:
    if token < 0:
        return ""
    return _piece(loaded, token, special=True).decode("utf-8", errors="replace")


def _join(pieces: list[bytes]) -> str:
    return b"".join(pieces).decode("utf-8", errors="replace")


def _set_token(batch: Any, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
    batch.token[i] = token
    batch.pos[i] = pos
    batch.n_seq_id[i] = 1
    batch.seq_id[i][0] = seq_id
    batch.logits[i] = logits
