"""Local chat models on CPU with transformers: GGUF or Hugging Face weights, batched,
with the key/value cache of shared prompt prefixes computed once and reused.

How a call to :meth:`TransformersBackend.generate` runs:

1. Every request is rendered with the model's chat template and tokenized.
2. Requests that share a long token prefix (system instruction + few-shot demos) are
   grouped; the prefix's key/value cache is computed once per group and kept in a small
   LRU across calls, so the next batch under the same candidate skips it entirely.
3. Each group is decoded as a *running batch*: rows stop independently (EOS, a stop
   string, ``max_tokens``) and leave the batch, and waiting requests of the same group
   join it, so the batch stays full until the group's queue is empty.

The cache layout of a running batch is ``[shared prefix][padding][row's suffix + generated]``:
padding sits between prefix and suffix, is masked out, and position ids are computed from
the attention mask, so every row sees exactly the tokens (and positions) it would see
alone. That is why greedy outputs equal a full recompute (up to float rounding of
different matrix shapes, which the tests check on a real model).

Speed on CPU: ``dtype="auto"`` picks int8 on x86 CPUs without AMX (this project's
2-core machines): every ``nn.Linear`` becomes an fbgemm int8 x int8 matmul
with per-channel weight scales and per-token activation scales (see
``RowwiseInt8Linear``), about 4x the tokens/s of float32 at batch 1-16 there, with
greedy outputs independent of batch composition (log-probabilities are not: int8 label
scores move by about 0.5-0.9 nats between a padded batch and a prompt scored apart).
``dtype="float32"`` is the exact reference: every ``nn.Linear`` runs on a oneDNN pre-packed weight, 2-3x faster than the default MKL path at
batch 4-32. bfloat16 is chosen only on CPUs with AMX; on AVX2 alone it ran 4x *slower*
than float32, and with AVX512-BF16 but no AMX (an AMD EPYC) 1.7x slower than int8.

Loading a GGUF file dequantizes it (about two minutes for the 1.5B model); the result is
saved as safetensors under ``<cache>/converted/<sha256 prefix>/`` so later loads take
seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from promptopt.backends.base import DTYPES, StreamingBackend
from promptopt.backends.chat_template import END_OF_TURN_TOKENS
from promptopt.backends.json_grammar import JsonGrammar, JsonMode
from promptopt.backends.local_batching import RunningBatch
from promptopt.backends.local_kv import (
    _Loaded,
    _Prefix,
    _Row,
)
from promptopt.backends.local_linears import (
    _int8_available,
    _pack_linears,
    _quantize_linears,
)
from promptopt.backends.local_torch import _INSTALL_HINT, _import_torch, _import_transformers
from promptopt.errors import MissingDependencyError, ModelError
from promptopt.models import DEFAULT_MODEL, ResolvedModel, cache_dir, resolve_model, sha256_file
from promptopt.types import Completion, GenerationRequest

__all__ = ["TransformersBackend"]

_CONVERTED_FORMAT = 1


def _cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """True on CPUs with AMX tiles for bfloat16 (``amx_bf16``). AVX512-BF16 alone does not
    count: on an AMD EPYC with it (and AVX512-VNNI), the int8 path ran zero-shot CoT
    GSM8K test answers 1.7x faster than bfloat16 (README, Models)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    return any("amx_bf16" in line.split() for line in cpuinfo.splitlines() if line.startswith("flags"))


def _json_grammar(loaded: _Loaded) -> JsonGrammar:
    """json_mode's grammar for the loaded model: its tokenizer, over the logits' width."""
    width = int(loaded.model.config.vocab_size)
    return JsonGrammar.for_hf_tokenizer(loaded.tokenizer, width, sorted(loaded.eos_ids))


def _sha256_dir_fingerprint(path: Path) -> str:
    """Cheap identity of a Hugging Face directory: config.json bytes + weight file names and sizes."""
    digest = hashlib.sha256()
    config = path / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for file in sorted(path.iterdir()):
        if file.suffix in {".safetensors", ".bin", ".gguf"}:
            digest.update(f"{file.name}:{file.stat().st_size}".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- backend


class TransformersBackend(RunningBatch, StreamingBackend):
    """A local chat model on CPU (transformers), batch-first with shared-prefix reuse.

    ``model`` is a known name (see :data:`promptopt.models.KNOWN_MODELS`), a ``.gguf``
    file, a Hugging Face model directory or a hub id. Weights load lazily on the first
    :meth:`generate` (or an explicit :meth:`load`). ``batch_size`` is the number of
    sequences decoded together; ``threads`` sets torch's intra-op threads (process-wide;
    default: leave torch's choice); ``cache_dir`` overrides ``$PROMPTOPT_CACHE_DIR``;
    ``dtype`` is ``"auto"``, ``"int8"``, ``"float32"`` (exact reference) or ``"bfloat16"``.

    Greedy requests (``temperature == 0``) are deterministic. Sampled requests use a
    seed derived from the request's content and ``sample_index``, so the same request
    gives the same sample when run in the same batch composition.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        batch_size: int = 16,
        threads: int | None = None,
        cache_dir: str | None = None,
        dtype: str = "auto",
        prefix_reuse: bool = True,
        min_prefix_tokens: int = 16,
        prefix_cache_entries: int = 4,
    ) -> None:
        if batch_size < 1:
            raise ModelError(f"batch_size must be at least 1, got {batch_size}")
        if dtype not in DTYPES:
            raise ModelError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        self._model_arg = model
        self.batch_size = batch_size
        self.threads = threads
        self._cache_dir = cache_dir
        self._dtype_arg = dtype
        self.prefix_reuse = prefix_reuse
        self.min_prefix_tokens = max(1, min_prefix_tokens)
        self.prefix_cache_entries = prefix_cache_entries
        self.resolved: ResolvedModel = resolve_model(model, cache=cache_dir)
        self._sha256: str | None = self.resolved.sha256
        self._loaded: _Loaded | None = None
        self._prefixes: OrderedDict[tuple[int, ...], _Prefix] = OrderedDict()
        self._lock = threading.Lock()
        self._rows_finished: Callable[[list[_Row]], None] | None = None  # set while generating
        self._json = JsonMode(_json_grammar)  # its grammar is built at the first json_mode request
        # Finished rows are dropped from the running batch (a copy of its key/value
        # buffer) once this fraction of it has finished, or when new rows join.
        self.compact_fraction = 0.25
        self.stats: dict[str, float] = {
            "prefix_tokens_computed": 0,
            "prefix_tokens_reused": 0,
            "prefill_tokens": 0,
            "decode_steps": 0,
            "compactions": 0,
        }

    # ----------------------------------------------------------------- identity

    @property
    def dtype(self) -> str:
        if self._dtype_arg != "auto":
            return self._dtype_arg
        if _cpu_has_fast_bf16():
            return "bfloat16"
        # fbgemm's int8 kernels exist on x86 builds of torch; elsewhere stay exact
        return "int8" if platform.machine().lower() in ("x86_64", "amd64") else "float32"

    def _content_sha256(self) -> str:
        if self._sha256 is None:
            path = Path(self.resolved.path)
            if self.resolved.kind == "gguf":
                self._sha256 = sha256_file(path)
            elif self.resolved.kind == "hf_dir":
                self._sha256 = _sha256_dir_fingerprint(path)
            else:
                self._sha256 = hashlib.sha256(self.resolved.path.encode()).hexdigest()
        return self._sha256

    @property
    def model_id(self) -> str:
        if self.resolved.kind == "hub_id" or self.resolved.sha256 is not None:
            base = f"local/{self.resolved.name}"
        else:
            base = f"local/{self.resolved.name}@{self._content_sha256()[:12]}"
        # float32 is the reference; another dtype gives (slightly) other outputs
        return base if self.dtype == "float32" else f"{base}:{self.dtype}"

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {
            "model": self.model_id,
            "backend": type(self).__name__,
            "source": self.resolved.kind,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "prefix_reuse": self.prefix_reuse,
        }
        if self.resolved.kind != "hub_id":
            info["sha256"] = self._content_sha256()
        if self._loaded is not None:
            info["load_s"] = round(self._loaded.load_s, 2)
            info["loaded_from_cache"] = self._loaded.from_cache
            info["packed_linears"] = self._loaded.packed_linears
        return info

    # ----------------------------------------------------------------- loading

    def load(self) -> None:
        """Load weights and tokenizer now (otherwise the first ``generate`` does)."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()

    def close(self) -> None:
        with self._lock:
            self._loaded = None
            self._prefixes.clear()

    def _load(self) -> _Loaded:
        torch = _import_torch()
        transformers = _import_transformers()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        started = time.perf_counter()
        from_cache = False
        try:
            if self.resolved.kind == "gguf":
                model, tokenizer, from_cache = self._load_gguf(transformers, torch)
            else:
                tokenizer = transformers.AutoTokenizer.from_pretrained(self.resolved.path)
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    self.resolved.path, dtype=torch.float32
                )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"cannot load model {self.resolved.path!r}: {exc}") from exc
        layer_types = getattr(model.config.get_text_config(decoder=True), "layer_types", None) or []
        if any(kind != "full_attention" for kind in layer_types):
            raise ModelError(
                f"model {self.resolved.name!r} uses sliding-window attention, which the local "
                "backend's cache layout does not support yet"
            )
        model.eval()
        packed = 0
        if self.dtype == "float32":
            packed = _pack_linears(model, batch_hint=self.batch_size)
        elif self.dtype == "int8":
            if not _int8_available():
                raise ModelError(
                    "dtype int8 needs torch's fbgemm/x86 quantized engine, which this torch build lacks",
                    hint="use dtype float32",
                )
            packed = _quantize_linears(model)
        else:
            model.to(getattr(torch, self.dtype))
        eos_ids = self._eos_ids(model, tokenizer)
        if not eos_ids:
            raise ModelError(f"model {self.resolved.name!r} names no end-of-sequence token")
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)
        if getattr(tokenizer, "chat_template", None) is None:
            raise ModelError(
                f"model {self.resolved.name!r} has no chat template",
                hint="use an instruction-tuned model whose tokenizer (or GGUF metadata) carries one",
            )
        max_positions = getattr(model.config, "max_position_embeddings", None)
        return _Loaded(
            model=model,
            tokenizer=tokenizer,
            eos_ids=frozenset(eos_ids),
            pad_id=int(pad_id),
            dtype=self.dtype,
            load_s=time.perf_counter() - started,
            from_cache=from_cache,
            packed_linears=packed,
            max_positions=max_positions,
        )

    @staticmethod
    def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
        ids: set[int] = set()
        configured = model.generation_config.eos_token_id
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(int(i) for i in configured)
        if tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        vocab = tokenizer.get_vocab()
        ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
        return ids

    def _converted_dir(self) -> Path:
        return cache_dir(self._cache_dir) / "converted" / self._content_sha256()[:24]

    def _load_gguf(self, transformers: Any, torch: Any) -> tuple[Any, Any, bool]:
        target = self._converted_dir()
        marker = target / "promptopt.json"
        if marker.is_file():
            try:
                record = json.loads(marker.read_text(encoding="utf-8"))
            except ValueError:
                record = {}
            if record.get("format") == _CONVERTED_FORMAT and record.get("sha256") == self._content_sha256():
                tokenizer = transformers.AutoTokenizer.from_pretrained(target)
                model = transformers.AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
                return model, tokenizer, True
        gguf = Path(self.resolved.path)
        try:
            import accelerate  # noqa: F401  (transformers needs it to read GGUF)
            import gguf as _gguf  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "loading a GGUF file needs the gguf and accelerate packages", hint=_INSTALL_HINT
            ) from None
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        self._save_converted(model, tokenizer, target)
        return model, tokenizer, False

    def _save_converted(self, model: Any, tokenizer: Any, target: Path) -> None:
        """Save dequantized weights as safetensors, atomically (temp dir + rename).

        ``save_pretrained`` refuses models loaded from GGUF (they carry a GGUF
        quantization config although the weights are dequantized), so the config is
        saved without it and the weights with safetensors' shared-tensor-aware writer.
        """
        from safetensors.torch import save_model

        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        except OSError:
            return  # no cache: every load converts again, slower but correct
        try:
            config = model.config
            quant = getattr(config, "quantization_config", None)
            if quant is not None:
                del config.quantization_config
            try:
                config.save_pretrained(tmp)
            finally:
                if quant is not None:
                    config.quantization_config = quant
            model.generation_config.save_pretrained(tmp)
            save_model(model, str(tmp / "model.safetensors"))
            tokenizer.save_pretrained(tmp)
            (tmp / "promptopt.json").write_text(
                json.dumps(
                    {
                        "format": _CONVERTED_FORMAT,
                        "sha256": self._content_sha256(),
                        "source": self.resolved.path,
                    }
                ),
                encoding="utf-8",
            )
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)

    # ----------------------------------------------------------------- tokenizing

    def _render(self, loaded: _Loaded, request: GenerationRequest) -> list[int]:
        text = loaded.tokenizer.apply_chat_template(
            [m.to_dict() for m in request.messages], add_generation_prompt=True, tokenize=False
        )
        return list(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    def can_score_labels(self) -> bool:
        return True

    def _score_labels(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Label log-probabilities (:mod:`promptopt.backends.local_scores`)."""
        from promptopt.backends.local_scores import score_label_requests

        self.load()
        assert self._loaded is not None
        loaded = self._loaded

        def render(request: GenerationRequest) -> str:
            messages = [m.to_dict() for m in request.messages]
            return str(
                loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            )

        with self._lock:
            return score_label_requests(loaded, render, requests)

    def prompt_text(self, request: GenerationRequest) -> str:
        """The exact text the model sees for ``request`` (chat template applied)."""
        self.load()
        assert self._loaded is not None
        return str(
            self._loaded.tokenizer.apply_chat_template(
                [m.to_dict() for m in request.messages], add_generation_prompt=True, tokenize=False
            )
        )
