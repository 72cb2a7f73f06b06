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
``RowwiseInt8Linear``), about 4x the tokens/s of float32 at batch 1-16 there, with outputs
independent of batch composition. ``dtype="float32"`` is the exact reference: every
``nn.Linear`` runs on a oneDNN pre-packed weight, 2-3x faster than the default MKL path at
batch 4-32. bfloat16 is chosen only on CPUs with AMX; on AVX2 alone it ran 4x *slower*
than float32, and with AVX512-BF16 but no AMX (an AMD EPYC) 1.7x slower than int8.

Loading a GGUF file dequantizes it (about two minutes for the 1.5B model); the result is
saved as safetensors under ``<cache>/converted/<sha256 prefix>/`` so later loads take
seconds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptopt.backends import DTYPES
from promptopt.backends.base import OnResults, StreamingBackend, find_stop, request_problem
from promptopt.errors import MissingDependencyError, ModelError
from promptopt.models import DEFAULT_MODEL, ResolvedModel, cache_dir, resolve_model, sha256_file
from promptopt.types import Completion, GenerationRequest

if TYPE_CHECKING:
    pass

__all__ = ["TransformersBackend"]

_INSTALL_HINT = (
    "pip install 'promptopt[local]' — install the CPU build of torch first "
    "(pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu), "
    "an unpinned torch pulls a multi-GB CUDA build; GGUF loading also needs accelerate"
)
# Tokens that end an assistant turn in common chat templates; added to the EOS set when
# the vocabulary has them (GGUF metadata often names only <|endoftext|> as EOS).
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "</s>")
_CONVERTED_FORMAT = 1


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(
            "the local backend needs torch, which is not installed", hint=_INSTALL_HINT
        ) from None
    return torch


def _import_transformers() -> Any:
    _import_torch()
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(
            "the local backend needs transformers, which is not installed", hint=_INSTALL_HINT
        ) from None
    return transformers


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


def _stable_seed(request: GenerationRequest) -> int:
    digest = hashlib.sha256(request.cache_key("seed").encode("ascii")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


# --------------------------------------------------------------------------- packed linear


@functools.lru_cache(maxsize=1)
def _make_packed_linear_class() -> Any:
    torch = _import_torch()

    class PackedLinear(torch.nn.Module):  # type: ignore[name-defined]
        """``nn.Linear`` on a oneDNN pre-packed float32 weight (inference only)."""

        def __init__(self, linear: Any, batch_hint: int) -> None:
            super().__init__()
            self.in_features = linear.in_features
            self.out_features = linear.out_features
            weight = linear.weight.detach().to(torch.float32).contiguous()
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch_hint)
            self.bias = None if linear.bias is None else linear.bias.detach().to(torch.float32).contiguous()

        def forward(self, x: Any) -> Any:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")

    return PackedLinear


def _pack_linears(model: Any, batch_hint: int) -> int:
    """Replace every ``nn.Linear`` with a packed one; returns how many (0 when unavailable)."""
    torch = _import_torch()
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return 0
    packed_cls = _make_packed_linear_class()
    # Check the kernel on a small matrix before trusting it with the model.
    probe = torch.nn.Linear(64, 48)
    x = torch.randn(3, 5, 64)
    try:
        with torch.inference_mode():
            if not torch.allclose(packed_cls(probe, batch_hint)(x), probe(x), atol=1e-4, rtol=1e-4):
                return 0
    except RuntimeError:
        return 0
    return _replace_linears(model, lambda linear: packed_cls(linear, batch_hint))


def _replace_linears(model: Any, convert: Any) -> int:
    """Swap every plain ``nn.Linear`` in ``model`` for ``convert(linear)``; returns how many."""
    torch = _import_torch()
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, convert(child))
                replaced += 1
    return replaced


@functools.lru_cache(maxsize=1)
def _make_int8_linear_class() -> Any:
    torch = _import_torch()

    class RowwiseInt8Linear(torch.nn.Module):  # type: ignore[name-defined]
        """``nn.Linear`` as an int8 x int8 matmul (fbgemm), quantized row by row.

        Weights: symmetric int8, one scale per output channel. Activations: each row
        (token) is divided by its own max |x| before torch's dynamic quantization, and a
        constant anchor row holding +1 and -1 is appended, so the quantization range is
        always exactly [-1, 1]. Each token is therefore quantized the same way whatever else
        is in the batch, and int32 accumulation is exact, so a row's output does not depend
        on batch composition: batched greedy decoding equals one-by-one decoding and prefix
        reuse equals a full recompute, as in float32. torch's own ``quantize_dynamic``
        uses one range for the whole batch, which breaks both and lets one outlier token
        blur every other row.
        """

        def __init__(self, linear: Any) -> None:
            super().__init__()
            self.in_features = linear.in_features
            self.out_features = linear.out_features
            weight = linear.weight.detach().to(torch.float32)
            scale = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12).to(torch.float64)
            zero = torch.zeros(weight.shape[0], dtype=torch.long)
            with warnings.catch_warnings():
                # quantized tensors are deprecated after torch 2.13 (pinned here); the
                # fbgemm kernels they feed are the fastest matmul this CPU has
                warnings.simplefilter("ignore", UserWarning)
                qweight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(qweight, None)
            self.bias = None if linear.bias is None else linear.bias.detach().to(torch.float32).contiguous()
            anchor = torch.zeros(1, self.in_features)
            anchor[0, 0], anchor[0, -1] = 1.0, -1.0
            self.anchor = anchor

        def forward(self, x: Any) -> Any:
            rows = x.reshape(-1, self.in_features).to(torch.float32)
            norm = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
            scaled = torch.cat([rows / norm, self.anchor], dim=0)
            # reduce_range: 7-bit activations, which fbgemm's AVX2 kernel needs to avoid
            # saturating its 16-bit intermediate sums
            out = torch.ops.quantized.linear_dynamic(scaled, self.packed, True)[:-1] * norm
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*x.shape[:-1], self.out_features)

    return RowwiseInt8Linear


def _int8_available() -> bool:
    torch = _import_torch()
    return "fbgemm" in torch.backends.quantized.supported_engines or "x86" in (
        torch.backends.quantized.supported_engines
    )


def _quantize_linears(model: Any) -> int:
    """Replace every ``nn.Linear`` with a row-wise int8 one; returns how many."""
    return _replace_linears(model, _make_int8_linear_class())


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


def _longest_common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


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
            _longest_common_prefix(prompts[order[k]], prompts[order[k + 1]]),
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


# --------------------------------------------------------------------------- backend


class TransformersBackend(StreamingBackend):
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
        ids.update(vocab[token] for token in _END_OF_TURN_TOKENS if token in vocab)
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

    def prompt_text(self, request: GenerationRequest) -> str:
        """The exact text the model sees for ``request`` (chat template applied)."""
        self.load()
        assert self._loaded is not None
        return str(
            self._loaded.tokenizer.apply_chat_template(
                [m.to_dict() for m in request.messages], add_generation_prompt=True, tokenize=False
            )
        )

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

    # ----------------------------------------------------------------- generation

    def _generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """Reports the rows of the running batch that each decoding step ends."""
        if not requests:
            return []
        if any(r.score_labels for r in requests):
            from promptopt.backends.scoring import split_scoring

            return split_scoring(requests, on_results, self._generate_each, self._score_labels)
        self.load()
        assert self._loaded is not None
        loaded = self._loaded
        torch = _import_torch()
        results: list[Completion | None] = [None] * len(requests)
        rows: list[_Row] = []
        invalid: list[tuple[int, Completion]] = []
        for index, request in enumerate(requests):
            error = request_problem(request)
            prompt: list[int] = []
            if error is None:
                try:
                    prompt = self._render(loaded, request)
                except Exception as exc:  # a template may raise anything (jinja2, ValueError, ...)
                    error = f"cannot apply the chat template: {type(exc).__name__}: {exc}"
            if (
                error is None
                and loaded.max_positions
                and len(prompt) + request.max_tokens > loaded.max_positions
            ):
                error = (
                    f"prompt of {len(prompt)} tokens + max_tokens {request.max_tokens} exceeds the "
                    f"model's context of {loaded.max_positions} tokens"
                )
            if error is not None:
                failed = results[index] = Completion(text="", error=error, finish_reason="error")
                invalid.append((index, failed))
                continue
            rows.append(_Row(index, request, prompt, prompt, 0.0))
        if on_results is not None and invalid:
            on_results(invalid)

        def finished(ended: list[_Row], failure: str | None = None) -> None:
            report: list[tuple[int, Completion]] = []
            for row in ended:
                if results[row.index] is not None:
                    continue
                if failure is not None:
                    done = Completion(
                        text="", error=failure, finish_reason="error", tokens_in=len(row.prompt)
                    )
                else:
                    done = Completion(
                        text=row.text,
                        tokens_in=len(row.prompt),
                        tokens_out=len(row.generated),
                        finish_reason=row.finish or "length",
                        latency_s=(row.ended or time.perf_counter()) - row.started,
                    )
                results[row.index] = done
                report.append((row.index, done))
            if on_results is not None and report:
                on_results(report)

        with self._lock, torch.inference_mode():
            self._rows_finished = finished
            try:
                for prefix, members in self._plan(loaded, rows):
                    try:
                        self._run_group(loaded, prefix, members)
                    except (RuntimeError, MemoryError) as exc:
                        unfinished = [row for row in members if row.finish is None]
                        for row in unfinished:
                            row.finish = "error"
                        finished(unfinished, f"generation failed: {type(exc).__name__}: {exc}")
                    finished(members)
            finally:
                self._rows_finished = None
        return [r if r is not None else Completion(text="", error="not generated") for r in results]

    # ----------------------------------------------------------------- planning

    def _plan(self, loaded: _Loaded, rows: list[_Row]) -> list[tuple[_Prefix | None, list[_Row]]]:
        """Assign each row a shared prefix (cached, or new for a group) and bucket by it."""
        buckets: OrderedDict[tuple[int, ...] | None, list[_Row]] = OrderedDict()
        prefixes: dict[tuple[int, ...], _Prefix] = {}
        pending: list[_Row] = []
        for row in rows:
            hit = self._cached_prefix_for(row.prompt) if self.prefix_reuse else None
            if hit is not None:
                prefixes[hit.tokens] = hit
                buckets.setdefault(hit.tokens, []).append(row)
            else:
                pending.append(row)
        if self.prefix_reuse and len(pending) > 1:
            groups = _group_by_prefix([r.prompt for r in pending], self.min_prefix_tokens)
        else:
            groups = [([i], 0) for i in range(len(pending))]
        for members, shared in groups:
            key: tuple[int, ...] | None = None
            if shared >= self.min_prefix_tokens and len(members) > 1:
                key = tuple(pending[members[0]].prompt[:shared])
            for i in members:
                buckets.setdefault(key, []).append(pending[i])
        plan: list[tuple[_Prefix | None, list[_Row]]] = []
        for key, bucket in buckets.items():
            prefix = None
            if key is not None:
                prefix = prefixes.get(key) or self._compute_prefix(loaded, key)
                self.stats["prefix_tokens_reused"] += len(key) * len(bucket) - (
                    0 if key in prefixes else len(key)
                )
            for row in bucket:
                row.suffix = row.prompt[len(key) :] if key is not None else row.prompt
            bucket.sort(key=lambda r: len(r.suffix))
            plan.append((prefix, bucket))
        return plan

    def _cached_prefix_for(self, prompt: list[int]) -> _Prefix | None:
        best: _Prefix | None = None
        for tokens, prefix in self._prefixes.items():
            n = len(tokens)
            if n < len(prompt) and (best is None or n > len(best.tokens)) and tuple(prompt[:n]) == tokens:
                best = prefix
        if best is not None:
            self._prefixes.move_to_end(best.tokens)
        return best

    def _compute_prefix(self, loaded: _Loaded, tokens: tuple[int, ...]) -> _Prefix:
        torch = _import_torch()
        with torch.inference_mode():
            ids = torch.tensor([tokens], dtype=torch.long)
            out = loaded.model(
                input_ids=ids,
                position_ids=torch.arange(len(tokens)).unsqueeze(0),
                use_cache=True,
                logits_to_keep=1,
            )
        kv = [(layer.keys, layer.values) for layer in out.cache.layers]
        prefix = _Prefix(tokens, kv)
        self.stats["prefix_tokens_computed"] += len(tokens)
        if self.prefix_cache_entries > 0:
            self._prefixes[tokens] = prefix
            while len(self._prefixes) > self.prefix_cache_entries:
                self._prefixes.popitem(last=False)
        return prefix

    # ----------------------------------------------------------------- running batch

    def _run_group(self, loaded: _Loaded, prefix: _Prefix | None, queue: list[_Row]) -> None:
        """Decode every row of one prefix group as a running batch, refilled as rows finish.

        A finished row stays in the batch (computed, its tokens ignored) until
        ``compact_fraction`` of the batch has finished or new rows join: dropping it at once
        would copy the whole key/value buffer for every finished row, which with a long
        few-shot prefix cost several decode steps' time each."""
        torch = _import_torch()
        p = len(prefix.tokens) if prefix is not None else 0
        waiting = list(queue)
        running: list[_Row] = []
        layers: list[Any] | None = None  # BufferLayers: [batch, heads, p + pad + ..., dim]
        mask = torch.zeros(0, 0, dtype=torch.long)
        refill_at = max(1, self.batch_size // 4)
        while waiting or running:
            keep = [i for i, row in enumerate(running) if row.finish is None]
            free = self.batch_size - len(keep)
            refill = bool(waiting) and (not keep or free >= min(refill_at, len(waiting)))
            finished = len(running) - len(keep)
            if finished and (
                refill or not keep or finished >= max(1, int(len(running) * self.compact_fraction))
            ):
                if keep:
                    assert layers is not None
                    layers, mask = self._select(layers, mask, keep)
                    self.stats["compactions"] += 1
                else:
                    layers, mask = None, mask[:0]
                running = [running[i] for i in keep]
            if refill:
                joining, waiting = waiting[:free], waiting[free:]
                new_layers, new_mask, survivors = self._prefill(loaded, prefix, joining)
                if survivors:
                    layers, mask = self._merge(layers, mask, new_layers, new_mask, p)
                    running = running + survivors
                continue
            if running:
                layers, mask = self._decode_step(loaded, layers, mask, running)

    def _prefill(
        self, loaded: _Loaded, prefix: _Prefix | None, rows: list[_Row]
    ) -> tuple[list[Any], Any, list[_Row]]:
        torch = _import_torch()
        p = len(prefix.tokens) if prefix is not None else 0
        width = max(len(r.suffix) for r in rows)
        ids = torch.full((len(rows), width), loaded.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), p + width), dtype=torch.long)
        mask[:, :p] = 1
        now = time.perf_counter()
        for i, row in enumerate(rows):
            row.started = now
            n = len(row.suffix)
            ids[i, width - n :] = torch.tensor(row.suffix, dtype=torch.long)
            mask[i, p + width - n :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, p:]
        if prefix is not None:
            pairs = [(k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1)) for k, v in prefix.kv]
            layers = self._buffers(pairs, extra=width + _HEADROOM)
        else:
            layers = self._empty_buffers(loaded, len(rows), width + _HEADROOM)
        out = loaded.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self._as_cache(layers),
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats["prefill_tokens"] += sum(len(r.suffix) for r in rows)
        self._choose(loaded, out.logits[:, -1, :], rows)
        keep = [i for i, row in enumerate(rows) if row.finish is None]
        if len(keep) < len(rows):
            layers, mask = self._select(layers, mask, keep)
        return layers, mask, [rows[i] for i in keep]

    @staticmethod
    def _as_cache(layers: list[Any]) -> Any:
        from transformers import DynamicCache

        cache = DynamicCache()
        cache.layers = layers
        return cache

    @staticmethod
    def _buffers(pairs: list[tuple[Any, Any]], extra: int) -> list[Any]:
        """BufferLayers holding copies of ``pairs`` with room for ``extra`` more columns."""
        layer_cls = _make_buffer_layer_class()
        layers = []
        for k, v in pairs:
            length = k.shape[2]
            kbuf = _with_capacity(k, length, length + extra)
            vbuf = _with_capacity(v, length, length + extra)
            layers.append(layer_cls(kbuf, vbuf, length))
        return layers

    @staticmethod
    def _empty_buffers(loaded: _Loaded, batch: int, capacity: int) -> list[Any]:
        torch = _import_torch()
        config = loaded.model.config.get_text_config(decoder=True)
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        dtype = next(loaded.model.parameters()).dtype
        layer_cls = _make_buffer_layer_class()
        return [
            layer_cls(
                torch.empty(batch, heads, capacity, head_dim, dtype=dtype),
                torch.empty(batch, heads, capacity, head_dim, dtype=dtype),
                0,
            )
            for _ in range(config.num_hidden_layers)
        ]

    @staticmethod
    def _select(layers: list[Any], mask: Any, keep: list[int]) -> tuple[list[Any], Any]:
        torch = _import_torch()
        index = torch.tensor(keep, dtype=torch.long)
        layer_cls = _make_buffer_layer_class()
        selected = [
            layer_cls(layer.kbuf.index_select(0, index), layer.vbuf.index_select(0, index), layer.length)
            for layer in layers
        ]
        return selected, mask.index_select(0, index)

    def _merge(
        self, layers: list[Any] | None, mask: Any, new_layers: list[Any], new_mask: Any, p: int
    ) -> tuple[list[Any], Any]:
        """Join two running batches: pad the shorter one's cache after the prefix (masked)."""
        torch = _import_torch()
        if layers is None or mask.shape[0] == 0:
            return new_layers, new_mask

        def widen(pairs: list[tuple[Any, Any]], m: Any, extra: int) -> tuple[list[tuple[Any, Any]], Any]:
            if extra == 0:
                return pairs, m
            widened = []
            for k, v in pairs:
                zk = k.new_zeros(k.shape[0], k.shape[1], extra, k.shape[3])
                zv = v.new_zeros(v.shape[0], v.shape[1], extra, v.shape[3])
                widened.append(
                    (
                        torch.cat([k[:, :, :p], zk, k[:, :, p:]], 2),
                        torch.cat([v[:, :, :p], zv, v[:, :, p:]], 2),
                    )
                )
            zm = m.new_zeros(m.shape[0], extra)
            return widened, torch.cat([m[:, :p], zm, m[:, p:]], 1)

        width = max(mask.shape[1], new_mask.shape[1])
        old, mask = widen([(x.keys, x.values) for x in layers], mask, width - mask.shape[1])
        new, new_mask = widen([(x.keys, x.values) for x in new_layers], new_mask, width - new_mask.shape[1])
        merged = [
            (torch.cat([k, nk], 0), torch.cat([v, nv], 0)) for (k, v), (nk, nv) in zip(old, new, strict=False)
        ]
        return self._buffers(merged, extra=_HEADROOM), torch.cat([mask, new_mask], 0)

    def _decode_step(
        self, loaded: _Loaded, layers: Any, mask: Any, rows: list[_Row]
    ) -> tuple[list[Any], Any]:
        """One token for every row; rows already finished are computed but ignored."""
        torch = _import_torch()
        ids = torch.tensor([[row.generated[-1]] for row in rows], dtype=torch.long)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        positions = (mask.sum(-1, keepdim=True) - 1).clamp(min=0)
        out = loaded.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self._as_cache(layers),
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats["decode_steps"] += 1
        self._choose(loaded, out.logits[:, -1, :], rows)
        return layers, mask

    def _choose(self, loaded: _Loaded, logits: Any, rows: list[_Row]) -> None:
        """Pick each row's next token, then apply EOS, stop strings and max_tokens."""
        torch = _import_torch()
        greedy = logits.argmax(-1).tolist()
        for i, row in enumerate(rows):
            if row.finish is not None:  # finished earlier, still in the batch
                continue
            request = row.request
            if request.temperature > 0:
                if row.generator is None:
                    row.generator = torch.Generator().manual_seed(_stable_seed(request))
                probs = torch.softmax(logits[i].float() / request.temperature, -1)
                token = int(torch.multinomial(probs, 1, generator=row.generator).item())
            else:
                token = int(greedy[i])
            row.generated.append(token)
            if token in loaded.eos_ids:
                row.finish = "stop"
                row.text = self._decode(loaded, row.generated[:-1])
                continue
            text = self._decode(loaded, row.generated)
            if request.stop:
                cut = find_stop(text, request.stop, len(row.text))
                if cut is not None:
                    row.text = text[:cut]
                    row.finish = "stop"
                    continue
            row.text = text
            if len(row.generated) >= request.max_tokens:
                row.finish = "length"
        now = time.perf_counter()
        ended = [row for row in rows if row.finish is not None and not row.ended]
        for row in ended:
            row.ended = now
        if ended and self._rows_finished is not None:
            self._rows_finished(ended)

    @staticmethod
    def _decode(loaded: _Loaded, ids: list[int]) -> str:
        return str(loaded.tokenizer.decode(ids, skip_special_tokens=True))
