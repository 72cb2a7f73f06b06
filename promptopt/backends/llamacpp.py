"""Local GGUF chat models on llama.cpp (``llama-cpp-python``), batched (``PROMPTOPT_LOCAL_ENGINE=llama.cpp``).

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

import contextlib
import ctypes
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptopt.backends.base import OnResults, StreamingBackend
from promptopt.backends.chat_template import compile_template
from promptopt.backends.json_grammar import JsonGrammar, JsonMode
from promptopt.backends.llamacpp_slots import _Loaded, _Run, _Slot, _token_text, _tokenize
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
        self._json = JsonMode(_json_grammar)  # its grammar is built at the first json_mode request
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
            self._json.reset()
            if loaded is not None:
                if loaded.batch is not None:
                    loaded.lib.llama_batch_free(loaded.batch)
                loaded.lib.llama_free(loaded.ctx)
                loaded.lib.llama_model_free(loaded.model)

    def __del__(self) -> None:  # free C memory of a backend nobody closed
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to do
            self.close()

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
            template=compile_template(raw_template.decode("utf-8")),
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


def _json_grammar(loaded: _Loaded) -> JsonGrammar:
    """json_mode's grammar for the loaded model: its vocabulary."""
    return JsonGrammar.for_llama_vocab(loaded.vocab, loaded.n_vocab)


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
