"""OpenVINO GenAI as an engine of ``benchmarks/engines.py`` (engine ``openvino``).

Benchmark only, not a promptopt backend and not a project dependency: install it into the
venv that runs the benchmark with ``pip install openvino-genai==2026.4.1.0`` (prebuilt
wheels: openvino, openvino-tokenizers, openvino-genai, openvino-telemetry; numpy is the
only dependency it shares with us, and any numpy below 2.6 does).

The same work as the other engines' workers:

- **The same model files.** The sha256-checked GGUF files of ``promptopt models``, read by
  OpenVINO GenAI's own GGUF reader (``ContinuousBatchingPipeline(<file>.gguf, ...)``), which
  reads the weights and the tokenizer from the file. That reader (2026.4.1) knows the
  tensor types F32, F16, Q4_0, Q4_1, Q8_0, Q4_K and Q6_K, and fails on the others with
  ``[load_gguf] gguf_tensor_to_f16 failed``. qwen2.5-coder-1.5b (Q4_K, Q6_K) and
  smollm2-135m (Q4_1, Q8_0) load as they are; qwen2.5-coder-0.5b's Q4_K_M file holds
  Q5_0 tensors (its 896-wide rows do not split into the 256-wide K-quant blocks), so with
  ``requantize=1`` those tensors are rewritten once as Q8_0 (same 32-value blocks, error at
  most 1/254 of each block's largest value, against Q5_0's own step of 1/16) into
  ``~/.cache/promptopt/openvino/``; without it the load fails with that message.
- **The same prompts.** Rendered with the chat template of the GGUF metadata by the same
  jinja2 environment as the llama.cpp backend, tokenized by OpenVINO's tokenizer with no
  special tokens added, and passed as token ids: the pipeline applies no chat template
  to token ids (``apply_chat_template`` is off anyway).
- **Continuous batching.** All requests of a phase go to one ``generate`` call of the
  ``ContinuousBatchingPipeline``: at most ``batch`` sequences decoded together
  (``SchedulerConfig.max_num_seqs``), prefix caching on (``enable_prefix_caching``: the
  8-shot prompt's demonstrations are computed once), a KV cache of ``cache_gb`` GB.
- **Greedy, the same stop.** ``do_sample`` off, up to ``max_tokens`` new tokens, stopped at
  the end-of-turn tokens the transformers backend stops at (``<|im_end|>``,
  ``<|endoftext|>``, ... those in the vocabulary, and the GGUF's EOS). ``tokens_out``
  counts the end-of-turn token, as the other engines do; the text is decoded without
  special tokens.
- **Threads.** ``INFERENCE_NUM_THREADS`` = ``threads`` (2 by default: the machines have 2
  cores); everything else is OpenVINO's CPU default, unless ``exact=1``: no dynamic
  quantization of activations, f32 inference, an f16 KV cache (``EXACT_PROPERTIES``: the
  defaults made an answer depend on its batch).

Options follow a colon, as for the other engines:
``openvino:requantize=1,threads=2,cache_gb=1,prefix_caching=1,exact=1``; options in capitals are
OpenVINO CPU properties passed to the pipeline as they are
(``openvino:KV_CACHE_PRECISION=f16,DYNAMIC_QUANTIZATION_GROUP_SIZE=0``).
"""

from __future__ import annotations

import gc
import importlib.metadata
import os
import time
from pathlib import Path
from typing import Any

from promptopt.backends.chat_template import END_OF_TURN_TOKENS as _END_OF_TURN_TOKENS
from promptopt.backends.chat_template import compile_template as _compile_template
from promptopt.models import cache_dir as promptopt_cache_dir
from promptopt.models import resolve_model
from promptopt.types import Completion, GenerationRequest

VERSION = "2026.4.1.0"
INSTALL_HINT = (
    f"openvino-genai is not installed in this Python; for the benchmark only: "
    f"pip install openvino-genai=={VERSION} (prebuilt wheels, about 68 MB)"
)
# tensor types OpenVINO GenAI 2026.4.1's GGUF reader converts (gguf_utils/gguf.cpp)
READABLE_TYPES = frozenset({"F32", "F16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K"})
# ``exact=1``: the CPU defaults that made greedy outputs depend on the batch (smollm2-135m,
# 8 questions, 64 tokens: alone 0 of 1 equal to the batch, reversed batch 3 of 8; with these
# three, 1 of 1 and 8 of 8): int8 dynamic quantization of activations, bf16 inference on
# CPUs with AVX-512 BF16, and a u8 KV cache.
EXACT_PROPERTIES = {
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
    "INFERENCE_PRECISION_HINT": "f32",
    "KV_CACHE_PRECISION": "f16",
}


def _import_openvino() -> tuple[Any, Any]:
    try:
        import openvino as ov
        import openvino_genai as ov_genai
    except ImportError as exc:
        raise SystemExit(f"engine openvino: {INSTALL_HINT} ({type(exc).__name__}: {exc})") from None
    return ov, ov_genai


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each GGML type the GGUF file holds."""
    import gguf

    counts: dict[str, int] = {}
    for tensor in gguf.GGUFReader(path).tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return counts


def requantized_copy(path: Path, sha256: str, target_dir: Path) -> Path:
    """A copy of the GGUF file whose tensors of types the reader cannot read are Q8_0.

    Made once per source file (named by its sha256) with gguf-py: the metadata copied as
    ``gguf/scripts/gguf_new_metadata.py`` copies it, each unreadable tensor dequantized and
    quantized again as Q8_0, the other tensors byte for byte."""
    import gguf
    import numpy as np

    target = target_dir / f"{path.stem}.{sha256[:12]}.q8_0-requantized.gguf"
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(path)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(tmp, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)
    q8 = gguf.GGMLQuantizationType.Q8_0
    for tensor in reader.tensors:
        data = tensor.data
        if tensor.tensor_type.name in READABLE_TYPES:
            writer.add_tensor(tensor.name, data, raw_shape=data.shape, raw_dtype=tensor.tensor_type)
            continue
        rows = data.reshape(-1, data.shape[-1])
        chunks = [
            gguf.quants.quantize(gguf.quants.dequantize(rows[i : i + 4096], tensor.tensor_type), q8)
            for i in range(0, rows.shape[0], 4096)
        ]
        requantized = np.concatenate(chunks).reshape(*data.shape[:-1], -1)
        writer.add_tensor(tensor.name, requantized, raw_shape=requantized.shape, raw_dtype=q8)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, target)
    return target


class OpenVINOEngine:
    """The subset of promptopt's ``Backend`` interface that ``benchmarks/engines.py`` uses."""

    def __init__(
        self,
        model: str,
        batch_size: int = 16,
        cache_dir: str | None = None,
        threads: int = 2,
        cache_gb: int = 1,
        prefix_caching: int = 1,
        requantize: int = 0,
        exact: int = 0,
        **properties: Any,
    ) -> None:
        self.resolved = resolve_model(model)
        if self.resolved.kind != "gguf":
            raise SystemExit(f"engine openvino reads GGUF files only, not {self.resolved.kind}: {model}")
        self.batch_size = batch_size
        self.threads = threads
        self.cache_gb = cache_gb
        self.prefix_caching = bool(prefix_caching)
        self.requantize = bool(requantize)
        unknown = [k for k in properties if not k.isupper()]
        if unknown:
            raise SystemExit(f"engine openvino: unknown option(s) {', '.join(unknown)}")
        self.properties: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, **properties}
        if exact:
            for key, value in EXACT_PROPERTIES.items():
                self.properties.setdefault(key, value)
        self.cache_dir = Path(cache_dir) if cache_dir else promptopt_cache_dir() / "openvino"
        self.source_types = tensor_types(Path(self.resolved.path))
        self._pipe: Any = None
        self._path: Path | None = None
        self.stats: dict[str, Any] = {}

    # ----------------------------------------------------------------- loading

    def _model_path(self) -> Path:
        path = Path(self.resolved.path)
        unreadable = sorted(set(self.source_types) - READABLE_TYPES)
        if not unreadable:
            return path
        if not self.requantize:
            raise SystemExit(
                f"engine openvino: {path.name} holds tensors of types {', '.join(unreadable)}, which "
                f"OpenVINO GenAI {VERSION}'s GGUF reader cannot read ([load_gguf] gguf_tensor_to_f16 "
                "failed); run it as openvino:requantize=1 to rewrite those tensors once as Q8_0"
            )
        started = time.perf_counter()
        target = requantized_copy(path, self.resolved.sha256 or "nosha", self.cache_dir)
        self.stats["requantize_s"] = round(time.perf_counter() - started, 1)
        return target

    def load(self) -> None:
        if self._pipe is not None:
            return
        _ov, ov_genai = _import_openvino()
        import gguf

        self._path = self._model_path()
        reader = gguf.GGUFReader(self._path)
        field = reader.get_field("tokenizer.chat_template")
        if field is None:
            raise SystemExit(f"engine openvino: {self._path.name} has no chat template")
        self._template = _compile_template(str(field.contents()))
        scheduler = ov_genai.SchedulerConfig()
        scheduler.max_num_seqs = self.batch_size
        scheduler.cache_size = self.cache_gb
        scheduler.enable_prefix_caching = self.prefix_caching
        self._pipe = ov_genai.ContinuousBatchingPipeline(str(self._path), scheduler, "CPU", self.properties)
        self._tokenizer = self._pipe.get_tokenizer()
        stop = {int(self._tokenizer.get_eos_token_id())}
        for token in _END_OF_TURN_TOKENS:
            ids = self._encode(token)
            if len(ids) == 1 and self._tokenizer.decode(ids, skip_special_tokens=False) == token:
                stop.add(ids[0])
        self._stop_ids = stop

    def close(self) -> None:
        self._pipe = None
        self._tokenizer = None
        gc.collect()

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "openvino",
            "openvino_genai": _installed("openvino-genai"),
            "openvino": _installed("openvino"),
            "model": self.resolved.name,
            "gguf": str(self._path or self.resolved.path),
            "sha256": self.resolved.sha256,
            "source_tensor_types": self.source_types,
            "reader": "openvino_genai GGUF reader (legacy)",
            "requantized_to_q8_0": sorted(set(self.source_types) - READABLE_TYPES) if self.requantize else [],
            "threads": self.threads,
            "properties": {k: str(v) for k, v in self.properties.items()},
            "max_num_seqs": self.batch_size,
            "cache_gb": self.cache_gb,
            "prefix_caching": self.prefix_caching,
            "stop_token_ids": sorted(getattr(self, "_stop_ids", ())),
        }

    # ----------------------------------------------------------------- generation

    def _encode(self, text: str) -> list[int]:
        encoded = self._tokenizer.encode(text, add_special_tokens=False)
        return [int(x) for x in encoded.input_ids.data[0]]

    def prompt_text(self, request: GenerationRequest) -> str:
        """The exact text the model sees: the GGUF's chat template, as the llama.cpp backend renders it."""
        self.load()
        return str(
            self._template.render(
                messages=[m.to_dict() for m in request.messages],
                add_generation_prompt=True,
                bos_token=self._tokenizer.get_bos_token(),
                eos_token=self._tokenizer.get_eos_token(),
            )
        )

    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        if not requests:
            return []
        self.load()
        ov, ov_genai = _import_openvino()
        import numpy as np

        prompts = [self._encode(self.prompt_text(r)) for r in requests]
        configs = []
        for request in requests:
            config = ov_genai.GenerationConfig()
            config.max_new_tokens = request.max_tokens
            config.do_sample = False
            config.apply_chat_template = False
            config.eos_token_id = int(self._tokenizer.get_eos_token_id())
            config.stop_token_ids = set(self._stop_ids)
            if request.stop:
                config.stop_strings = set(request.stop)
            configs.append(config)
        started = time.perf_counter()
        results = self._pipe.generate([ov.Tensor(np.array([p], dtype=np.int64)) for p in prompts], configs)
        elapsed = time.perf_counter() - started
        metrics = self._pipe.get_metrics()
        self.stats["max_cache_usage_pct"] = max(
            self.stats.get("max_cache_usage_pct", 0.0), float(metrics.max_cache_usage)
        )
        completions = []
        for prompt, result in zip(prompts, results, strict=True):
            ids = [int(x) for x in result.m_generation_ids[0]]
            stopped = result.finish_reasons[0] == ov_genai.GenerationFinishReason.STOP
            text_ids = ids[:-1] if stopped and ids and ids[-1] in self._stop_ids else ids
            completions.append(
                Completion(
                    text=str(self._tokenizer.decode(text_ids, skip_special_tokens=True)),
                    tokens_in=len(prompt),
                    tokens_out=len(ids),
                    finish_reason="stop" if stopped else "length",
                    latency_s=elapsed,
                )
            )
        return completions


def _installed(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
