"""Local GGUF chat models on llama.cpp (``llama-cpp-python``), batched: the default engine.

llama.cpp does the heavy work: quantized matmuls straight on the GGUF weights (no
dequantization, no conversion cache), a key/value cache per sequence, and copies of a
cached prefix between sequences. This module only schedules requests onto it:

- **Slots.** The context holds ``batch_size`` sequences (*slots*), each with a KV stream
  of its own (``kv_unified = false``). A request takes a free slot, its prompt is
  evaluated there, and every decoding step then advances all busy slots in one
  ``llama_decode`` call (one token each). A slot that finishes takes the next waiting
  request at once (continuous batching).
- **Shared prefixes computed once.** A slot keeps the tokens of its last request in its
  cache. A new request reuses the longest prefix it shares with its slot's cache, or
  copies the stream of another slot whose cache shares a longer prefix
  (``llama_memory_seq_cp``), and evaluates only the rest. A few-shot prompt's
  instruction and demonstrations are therefore computed once per batch, and not again
  for the next batch under the same candidate.
- **Batch invariance.** With a KV stream per sequence, a sequence's attention sees only
  its own cells at the same places whatever else runs, and the decode batch is always
  padded to ``batch_size`` rows with the same dummy token, so every decoding step has the
  same shape: the matmul kernels llama.cpp picks (and how they split rows into blocks)
  do not depend on how many requests are running. Prompts are evaluated one sequence at
  a time. docs/engines.md has the measurement.

Greedy requests are deterministic; sampled requests draw from a generator seeded by the
request itself (its content and ``sample_index``). Text is detokenized with llama.cpp's
vocabulary; the chat template is the one in the GGUF metadata, rendered with jinja2 as
transformers renders it.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.backends.base import OnResults, StreamingBackend
from promptopt.errors import MissingDependencyError, ModelError
from promptopt.models import DEFAULT_MODEL, ResolvedModel, resolve_model, sha256_file
from promptopt.types import Completion, GenerationRequest

__all__ = ["LlamaCppBackend", "llama_cpp_available"]

LLAMA_CPP_VERSION = "0.3.36"
INSTALL_HINT = (
    "run ./setup.sh (it builds llama-cpp-python once, with portable AVX2 flags, into "
    "~/.cache/promptopt and installs it), or use the transformers backend: --dtype float32"
)


def llama_cpp_available() -> bool:
    """True when ``llama_cpp`` can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _import_llama_cpp() -> Any:
    # ggml's threads meet at an OpenMP barrier after every operation (hundreds per token).
    # libgomp spins there by default, which on a busy machine burns the time slice the
    # other thread needs: with 2 threads on 2 shared cores it ran 2.5x slower than
    # sleeping at once (docs/engines.md). Read by libgomp when llama.cpp loads it.
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependencyError(
            "the llama.cpp backend needs llama-cpp-python, which is not installed", hint=INSTALL_HINT
        ) from None
    except OSError as exc:  # the shared library failed to load (wrong CPU flags, missing libgomp)
        raise MissingDependencyError(
            f"llama-cpp-python is installed but its library does not load: {exc}", hint=INSTALL_HINT
        ) from None
    _quiet(llama_cpp)
    return llama_cpp


_log_callback: Any = None  # kept referenced: llama.cpp calls it from C


def _quiet(lib: Any) -> None:
    """Pass llama.cpp's log lines to the ``promptopt.llamacpp`` logger (errors only by
    default) instead of printing each model load's hundred lines to stderr."""
    global _log_callback
    if _log_callback is not None:
        return
    logger = logging.getLogger("promptopt.llamacpp")
    levels = {2: logging.WARNING, 3: logging.ERROR}

    def forward(level: int, text: bytes, _user: Any) -> None:
        if level == 3 or (level in levels and logger.isEnabledFor(levels[level])):
            logger.log(levels[level], "%s", text.decode("utf-8", errors="replace").rstrip())

    _log_callback = lib.llama_log_callback(forward)
    lib.llama_log_set(_log_callback, ctypes.c_void_p(0))
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)


def _stable_seed(request: GenerationRequest) -> int:
    digest = hashlib.sha256(request.cache_key("seed").encode("ascii")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


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


@dataclass
class _Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what its KV stream holds, in order
    row: _Row | None = None


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


class LlamaCppBackend(StreamingBackend):
    """A local GGUF chat model on llama.cpp, batch-first, with shared prefixes computed once.

    ``model`` is a known name (:data:`promptopt.models.KNOWN_MODELS`, sha256-verified) or
    a ``.gguf`` file. ``batch_size`` is the number of sequences decoded together;
    ``context`` the tokens each sequence may hold (prompt + answer); ``threads`` the
    threads llama.cpp uses (default: every CPU). Weights load on the first
    :meth:`generate` or an explicit :meth:`load`.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        batch_size: int = 16,
        context: int = 4096,
        threads: int | None = None,
        cache_dir: str | None = None,
        prefix_reuse: bool = True,
        flash_attention: bool = False,
        repack: bool = True,
        pad_batch: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ModelError(f"batch_size must be at least 1, got {batch_size}")
        if context < 64:
            raise ModelError(f"context must be at least 64 tokens, got {context}")
        self._model_arg = model
        self.batch_size = batch_size
        self.context = context
        self.threads = threads or os.cpu_count() or 1
        self.prefix_reuse = prefix_reuse
        self.flash_attention = flash_attention
        self.repack = repack
        self.pad_batch = pad_batch
        self.resolved: ResolvedModel = resolve_model(model, cache=cache_dir)
        if self.resolved.kind != "gguf":
            raise ModelError(
                f"llama.cpp reads GGUF files; {model!r} is a Hugging Face model",
                hint="use the transformers backend for it (--dtype float32)",
            )
        self._sha256: str | None = self.resolved.sha256
        self._loaded: _Loaded | None = None
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self.stats: dict[str, float] = {
            "prompt_tokens_computed": 0,
            "prompt_tokens_reused": 0,
            "prefix_copies": 0,
            "decode_steps": 0,
        }

    # ----------------------------------------------------------------- identity

    def _content_sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = sha256_file(self.resolved.path)
        return self._sha256

    @property
    def model_id(self) -> str:
        base = f"local/{self.resolved.name}"
        if self.resolved.sha256 is None:
            base += f"@{self._content_sha256()[:12]}"
        return f"{base}:llama.cpp"

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {
            "model": self.model_id,
            "backend": type(self).__name__,
            "engine": f"llama-cpp-python {_installed_version()}",
            "batch_size": self.batch_size,
            "context": self.context,
            "threads": self.threads,
            "prefix_reuse": self.prefix_reuse,
            "sha256": self._content_sha256(),
        }
        if self._loaded is not None:
            info["load_s"] = round(self._loaded.load_s, 2)
        return info

    # ----------------------------------------------------------------- loading

    def load(self) -> None:
        """Load the weights now (otherwise the first ``generate`` does)."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()

    def close(self) -> None:
        with self._lock:
            loaded, self._loaded = self._loaded, None
            self._slots = []
            if loaded is not None:
                if loaded.batch is not None:
                    loaded.lib.llama_batch_free(loaded.batch)
                loaded.lib.llama_free(loaded.ctx)
                loaded.lib.llama_model_free(loaded.model)

    def __del__(self) -> None:  # free C memory of a backend nobody closed
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to do
            pass

    def _load(self) -> _Loaded:
        lib = _import_llama_cpp()
        started = time.perf_counter()
        path = Path(self.resolved.path)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        _backend_init(lib)
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = 0
        mparams.use_extra_bufts = self.repack
        model = lib.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise ModelError(
                f"llama.cpp cannot load {path}: not a valid GGUF file, or a model it does not support",
                hint="check the file (a known model is sha256-verified: `promptopt models`)",
            )
        cparams = lib.llama_context_default_params()
        cparams.n_seq_max = self.batch_size
        cparams.n_ctx = self.context * self.batch_size
        cparams.n_batch = cparams.n_ubatch = 512
        cparams.n_threads = cparams.n_threads_batch = self.threads
        cparams.kv_unified = False
        cparams.no_perf = True
        cparams.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attention else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        ctx = lib.llama_init_from_model(model, cparams)
        if not ctx:
            lib.llama_model_free(model)
            raise ModelError(
                f"llama.cpp cannot create a context of {self.batch_size} x {self.context} tokens for {path}"
            )
        vocab = lib.llama_model_get_vocab(model)
        raw_template = lib.llama_model_chat_template(model, None)
        if not raw_template:
            lib.llama_free(ctx)
            lib.llama_model_free(model)
            raise ModelError(
                f"model {self.resolved.name!r} has no chat template",
                hint="use an instruction-tuned model whose GGUF metadata carries one",
            )
        loaded = _Loaded(
            lib=lib,
            model=model,
            ctx=ctx,
            vocab=vocab,
            memory=lib.llama_get_memory(ctx),
            n_vocab=int(lib.llama_vocab_n_tokens(vocab)),
            n_ctx_seq=int(lib.llama_n_ctx_seq(ctx)),
            n_batch=int(lib.llama_n_batch(ctx)),
            template=_compile_template(raw_template.decode("utf-8")),
            bos="",
            eos="",
            load_s=0.0,
        )
        loaded.bos = _token_text(loaded, lib.llama_vocab_bos(vocab))
        loaded.eos = _token_text(loaded, lib.llama_vocab_eos(vocab))
        loaded.batch = lib.llama_batch_init(max(loaded.n_batch, self.batch_size), 0, 1)
        self._slots = [_Slot(seq_id) for seq_id in range(self.batch_size)]
        loaded.load_s = time.perf_counter() - started
        return loaded

    # ----------------------------------------------------------------- tokenizing

    def prompt_text(self, request: GenerationRequest) -> str:
        """The exact text the model sees for ``request`` (chat template applied)."""
        self.load()
        assert self._loaded is not None
        return self._render(self._loaded, request)

    @staticmethod
    def _render(loaded: _Loaded, request: GenerationRequest) -> str:
        return str(
            loaded.template.render(
                messages=[m.to_dict() for m in request.messages],
                add_generation_prompt=True,
                bos_token=loaded.bos,
                eos_token=loaded.eos,
            )
        )

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens such as ``<|im_start|>`` parsed, none added)."""
        self.load()
        assert self._loaded is not None
        return _tokenize(self._loaded, text)

    # ----------------------------------------------------------------- generation

    def _generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """Reports the requests that each decoding step ends."""
        if not requests:
            return []
        self.load()
        with self._lock:
            loaded = self._loaded
            if loaded is None:
                raise ModelError("the llama.cpp backend was closed during generate")
            return _Run(self, loaded, requests, on_results).run()


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
        for index, request in enumerate(requests):
            error = _validate(request)
            prompt: list[int] = []
            if error is None:
                try:
                    prompt = _tokenize(loaded, backend._render(loaded, request))
                except Exception as exc:  # a template may raise anything (jinja2, TypeError, ...)
                    error = f"cannot apply the chat template: {type(exc).__name__}: {exc}"
            if error is None and len(prompt) + request.max_tokens > loaded.n_ctx_seq:
                error = (
                    f"prompt of {len(prompt)} tokens + max_tokens {request.max_tokens} exceeds the "
                    f"context of {loaded.n_ctx_seq} tokens per sequence (LlamaCppBackend(context=...))"
                )
            if error is not None:
                failed = self.results[index] = Completion(text="", error=error, finish_reason="error")
                invalid.append((index, failed))
                continue
            self.waiting.append(_Row(index, request, prompt))
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
        keep = _common_prefix(slot.tokens, row.prompt) if self.backend.prefix_reuse else 0
        donor: _Slot | None = None
        if self.backend.prefix_reuse:
            for other in self.backend._slots:
                if other is not slot and other.tokens:
                    shared = _common_prefix(other.tokens, row.prompt)
                    if shared >= keep + 16:  # copying a stream beats evaluating 16 tokens
                        donor, keep = other, shared
        keep = min(keep, len(row.prompt) - 1)  # evaluate at least one token: its logits
        if donor is not None:
            lib.llama_memory_seq_cp(memory, donor.seq_id, slot.seq_id, -1, -1)  # the whole stream
            self.backend.stats["prefix_copies"] += 1
        lib.llama_memory_seq_rm(memory, slot.seq_id, keep, -1)
        slot.tokens = row.prompt[:keep]
        self.backend.stats["prompt_tokens_reused"] += keep
        slot.row = row
        try:
            logits = self._prefill(slot, row.prompt[keep:])
        except _DecodeError as exc:
            self._fail([slot], str(exc))
            return
        self._choose([(slot, logits)])

    def _prefill(self, slot: _Slot, tokens: list[int]) -> Any:
        """Evaluate ``tokens`` after ``slot.tokens``; returns the last token's logits."""
        batch, n_batch = self.loaded.batch, self.loaded.n_batch
        for start in range(0, len(tokens), n_batch):
            chunk = tokens[start : start + n_batch]
            base = len(slot.tokens)
            for i, token in enumerate(chunk):
                _set_token(batch, i, token, base + i, slot.seq_id, i == len(chunk) - 1)
            batch.n_tokens = len(chunk)
            self._decode()
            slot.tokens.extend(chunk)
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
            if request.temperature > 0:
                if row.rng is None:
                    row.rng = np.random.default_rng(_stable_seed(request))
                scaled = logits.astype(np.float64) / request.temperature
                probs = np.exp(scaled - scaled.max())
                cumulative = np.cumsum(probs)
                token = int(np.searchsorted(cumulative, row.rng.random() * cumulative[-1], side="right"))
                token = min(token, self.loaded.n_vocab - 1)
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
                cut = _find_stop(text, request.stop, len(row.text))
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
            slot.tokens = []
        self._finish(slots, f"generation failed: {message}")


class _DecodeError(RuntimeError):
    pass


# --------------------------------------------------------------------------- helpers

_backend_ready = False


def _backend_init(lib: Any) -> None:
    global _backend_ready
    if not _backend_ready:
        lib.llama_backend_init()
        _backend_ready = True


def _installed_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _compile_template(source: str) -> Any:
    """The chat template as transformers compiles it: a sandboxed jinja2 environment."""
    import json

    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **_: Any) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)

    def strftime_now(fmt: str) -> str:
        return time.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


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


def _validate(request: GenerationRequest) -> str | None:
    if not request.messages:
        return "request has no messages"
    if request.max_tokens < 1:
        return f"max_tokens must be at least 1, got {request.max_tokens}"
    if request.temperature < 0:
        return f"temperature must be >= 0, got {request.temperature}"
    return None


def _find_stop(text: str, stops: tuple[str, ...], previous_len: int) -> int | None:
    longest = max(len(s) for s in stops)
    start = max(0, previous_len - longest)
    found = [pos for s in stops if s and (pos := text.find(s, start)) >= 0]
    return min(found) if found else None

