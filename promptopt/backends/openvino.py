"""Local GGUF chat models on OpenVINO GenAI (``PROMPTOPT_LOCAL_ENGINE=openvino``).

OpenVINO GenAI's ``ContinuousBatchingPipeline`` does the work: it reads our
sha256-checked GGUF files itself (weights and tokenizer), schedules the requests,
decodes up to ``batch_size`` sequences together (``max_num_seqs``), lets a finished
sequence's place go to a waiting one at once, and keeps a paged key/value cache in which
a prompt prefix already computed is reused (prefix caching: a few-shot prompt's
instruction and demonstrations are computed once). This module only feeds it:

- **Prompts.** Rendered with the chat template of the GGUF metadata by the same jinja2
  environment as the llama.cpp backend (:mod:`promptopt.backends.chat_template`),
  tokenized by OpenVINO's tokenizer without added special tokens, and passed as token
  ids, so the pipeline applies no template of its own.
- **One pipeline for every caller.** Each request is added to the pipeline
  (``add_request``) and the callers take turns calling ``step()``; a step advances every
  running request, whoever added it. Several threads calling :meth:`generate` at once
  (several candidates of a racing stage, DSPy's threads) are therefore decoded together,
  and each caller's ``generate_each`` reports its requests as the step that ends them.
- **Stops, seeds, counts.** Generation ends at the GGUF's EOS and the end-of-turn tokens
  of :data:`~promptopt.backends.chat_template.END_OF_TURN_TOKENS`, at a stop string (the
  text is cut where it starts, as the other engines cut it) or at ``max_tokens``. A
  sampled request (``temperature > 0``) is seeded by the request itself
  (:func:`~promptopt.backends.sampling.stable_seed`: its content and ``sample_index``),
  and OpenVINO keeps a generator per request, so a sample does not depend on its batch.
  ``tokens_out`` counts the end-of-turn token, as the other engines do.
- **Numerics.** OpenVINO's CPU defaults on a CPU with AVX-512 BF16 infer in bf16,
  quantize activations to int8 on the fly and keep the KV cache in u8: fast, but a
  greedy answer may then depend on its batch. :data:`EXACT_PROPERTIES` (``exact=True``)
  turns all three off; :data:`DEFAULT_PROPERTIES` is what a backend gets by default. The
  properties enter :attr:`OpenVINOBackend.model_id`, so the response cache never mixes
  outputs of different numerics (docs/engines.md has the measurements).

- **Label scoring and json_mode** go to the transformers backend on the same file, built
  on first use: OpenVINO GenAI gives no log-probabilities of given texts and no grammar of
  ours (calibration and JSON tasks therefore keep working on the default engine).
"""

from __future__ import annotations

import gc
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.backends.base import (
    Backend,
    OnResults,
    StreamingBackend,
    admit_request,
    find_stop,
    shared_prefixes,
)
from promptopt.backends.chat_template import END_OF_TURN_TOKENS, compile_template
from promptopt.backends.openvino_gguf import GGUFInfo, read_gguf, requantized_copy
from promptopt.backends.sampling import stable_seed
from promptopt.backends.scoring import split_scoring
from promptopt.errors import ConfigError, MissingDependencyError, ModelError
from promptopt.models import DEFAULT_MODEL, ResolvedModel, cache_dir, resolve_model, sha256_file
from promptopt.progress import notice
from promptopt.types import Completion, GenerationRequest

__all__ = ["DEFAULT_PROPERTIES", "EXACT_PROPERTIES", "OpenVINOBackend", "openvino_available"]

OPENVINO_GENAI_VERSION = "2026.4.1.0"
INSTALL_HINT = (
    f"pip install 'promptopt[openvino]' (or: pip install openvino-genai=={OPENVINO_GENAI_VERSION}; "
    "prebuilt wheels, about 68 MB)"
)

DEFAULT_PROPERTIES: dict[str, Any] = {}
# a prefix that several requests of one call share is computed once first when it is at
# least this long (a few-shot prompt's demos; shorter ones are not worth the extra step)
WARM_MIN_TOKENS = 64
# the KV cache's block on CPU, in tokens: the prefix cache reuses whole blocks
CACHE_BLOCK_TOKENS = 32
"""OpenVINO CPU properties every backend gets (on top of ``INFERENCE_NUM_THREADS``);
empty: OpenVINO's own CPU defaults."""

EXACT_PROPERTIES: dict[str, Any] = {
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
    "INFERENCE_PRECISION_HINT": "f32",
    "KV_CACHE_PRECISION": "f16",
}
"""``exact=True``: no int8 quantization of activations, f32 inference, an f16 KV cache.
With OpenVINO's defaults a greedy answer depended on its batch (smollm2-135m, 8 questions:
alone 0 of 1 equal to the batch, reversed batch 3 of 8; the 1.5B over 256 tokens: 2 of 8
alone); with these three, 8 of 8 in each (docs/engines.md)."""

_NUMERICS_IGNORED = frozenset({"INFERENCE_NUM_THREADS"})  # properties that do not enter model_id


def openvino_available() -> bool:
    """True when ``openvino_genai`` can be imported (without importing it)."""

    return importlib.util.find_spec("openvino_genai") is not None


def _import_openvino() -> tuple[Any, Any]:
    try:
        import openvino
        import openvino_genai
    except ImportError as exc:
        raise MissingDependencyError(
            f"the OpenVINO backend needs openvino-genai, which is not installed ({exc})", hint=INSTALL_HINT
        ) from None
    return openvino, openvino_genai


def _installed(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class _Loaded:
    pipe: Any
    tokenizer: Any
    ov: Any
    genai: Any
    template: Any  # a compiled jinja2 template
    bos: str
    eos: str
    eos_id: int
    stop_ids: frozenset[int]
    path: Path
    load_s: float


@dataclass
class _Row:
    index: int
    request: GenerationRequest
    prompt: list[int]
    handle: Any = None
    started: float = field(default_factory=time.perf_counter)


class _NoJson:
    """json_mode is refused before admission; every request passes this check."""

    @staticmethod
    def admit(_loaded: Any, _request: GenerationRequest) -> tuple[None, None]:
        return None, None


class OpenVINOBackend(StreamingBackend):
    """A local GGUF chat model on OpenVINO GenAI's continuous-batching pipeline (CPU).

    ``model`` is a known name (sha256-verified) or a ``.gguf`` file. ``batch_size`` is the
    number of sequences decoded together; ``threads`` OpenVINO's inference threads
    (default: the cores this process may run on); ``cache_gb`` the size of the key/value
    cache; ``prefix_caching`` reuses computed prompt prefixes. ``exact`` adds
    :data:`EXACT_PROPERTIES`; ``properties`` are OpenVINO CPU properties on top of
    :data:`DEFAULT_PROPERTIES` (and of ``exact``'s), e.g. ``{"KV_CACHE_PRECISION": "f16"}``.
    A file holding tensor types OpenVINO cannot read is rewritten once as Q8_0 into
    ``<cache>/openvino/`` (:mod:`promptopt.backends.openvino_gguf`; ``requantize=False``
    refuses instead). Weights load on the first :meth:`generate` or an explicit :meth:`load`.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        batch_size: int = 16,
        threads: int | None = None,
        cache_dir: str | None = None,
        cache_gb: int = 1,
        prefix_caching: bool = True,
        exact: bool = False,
        properties: dict[str, Any] | None = None,
        requantize: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if cache_gb <= 0:
            raise ConfigError(f"cache_gb must be positive, got {cache_gb}")
        if not openvino_available():
            raise MissingDependencyError(
                "the OpenVINO backend needs openvino-genai, which is not installed", hint=INSTALL_HINT
            )
        self.batch_size = batch_size
        self.threads = threads or _cores()
        self.cache_gb = cache_gb
        self.prefix_caching = prefix_caching
        self.exact = exact
        self.requantize = requantize
        self._cache_dir = cache_dir
        self.properties: dict[str, Any] = {
            **DEFAULT_PROPERTIES,
            **(EXACT_PROPERTIES if exact else {}),
            **(properties or {}),
        }
        self.properties.setdefault("INFERENCE_NUM_THREADS", self.threads)
        self.resolved: ResolvedModel = resolve_model(model, cache=cache_dir)
        if self.resolved.kind != "gguf":
            raise ModelError(
                f"the OpenVINO backend reads GGUF files; {model!r} is a Hugging Face model",
                hint="use the transformers backend for it (PROMPTOPT_LOCAL_ENGINE=transformers)",
            )
        self._sha256: str | None = self.resolved.sha256
        self._info: GGUFInfo | None = None
        self._context: int | None = None  # the model's context length, read at load
        self._loaded: _Loaded | None = None
        self._spec = model
        self._transformers: Backend | None = None  # label scoring and json_mode, on first use
        self._load_lock = threading.Lock()
        self._pipe_lock = threading.Lock()  # add_request and step, one caller at a time
        self._ids = itertools.count()
        self.stats: dict[str, float] = {"steps": 0, "requests": 0, "warmed_prefixes": 0}

    # ----------------------------------------------------------------- identity

    def _content_sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = sha256_file(self.resolved.path)
        return self._sha256

    def _source(self) -> GGUFInfo:
        if self._info is None:
            self._info = read_gguf(Path(self.resolved.path))
        return self._info

    def numerics(self) -> dict[str, str]:
        """The properties that may change outputs (all but the thread count), as strings."""
        return {k: str(v) for k, v in sorted(self.properties.items()) if k not in _NUMERICS_IGNORED}

    @property
    def model_id(self) -> str:
        """``local/<model>:openvino``, then ``-exact`` for :data:`EXACT_PROPERTIES` or
        ``-p<hash>`` for any other non-empty set of properties, and ``-q8_0`` when the file
        is read through its requantized copy: outputs of other numerics get another id."""
        base = f"local/{self.resolved.name}"
        if self.resolved.sha256 is None:
            base += f"@{self._content_sha256()[:12]}"
        numerics = self.numerics()
        engine = "openvino"
        if numerics == {k: str(v) for k, v in sorted(EXACT_PROPERTIES.items())}:
            engine += "-exact"
        elif numerics:
            engine += "-p" + hashlib.sha256(json.dumps(numerics, sort_keys=True).encode()).hexdigest()[:8]
        if self._source().unreadable:
            engine += "-q8_0"
        return f"{base}:{engine}"

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {
            "model": self.model_id,
            "backend": type(self).__name__,
            "engine": f"openvino-genai {_installed('openvino-genai')}",
            "openvino": _installed("openvino"),
            "properties": {k: str(v) for k, v in sorted(self.properties.items())},
            "batch_size": self.batch_size,
            "threads": self.threads,
            "cache_gb": self.cache_gb,
            "prefix_caching": self.prefix_caching,
            "sha256": self._content_sha256(),
            "tensor_types": dict(sorted(self._source().tensor_types.items())),
            "requantized_to_q8_0": self._source().unreadable,
            "label_scoring_and_json_mode": "transformers backend, same file",
        }
        if self._loaded is not None:
            info["gguf"] = str(self._loaded.path)
            info["load_s"] = round(self._loaded.load_s, 2)
        return info

    # ----------------------------------------------------------------- loading

    def load(self) -> None:
        """Load the weights now (otherwise the first ``generate`` does)."""
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load()

    def close(self) -> None:
        with self._load_lock, self._pipe_lock:
            loaded, self._loaded = self._loaded, None
            reference, self._transformers = self._transformers, None
        if reference is not None:
            reference.close()
        if loaded is not None:
            del loaded
            gc.collect()  # the pipeline's memory goes with its last reference

    def _model_file(self) -> Path:
        """The file OpenVINO reads: the model's, or its requantized copy."""
        info = self._source()
        if not info.unreadable:
            return info.path
        if not self.requantize:
            raise ModelError(
                f"{info.path.name} holds {', '.join(info.unreadable)} tensors, which OpenVINO GenAI's "
                "GGUF reader cannot read",
                hint="let the backend rewrite them once as Q8_0 (OpenVINOBackend(requantize=True), the default)",
            )
        return requantized_copy(info.path, self._content_sha256(), cache_dir(self._cache_dir) / "openvino")

    def _load(self) -> _Loaded:
        ov, genai = _import_openvino()
        started = time.perf_counter()
        path = self._model_file()
        info = self._source() if path == self._source().path else read_gguf(path)
        if not info.chat_template:
            raise ModelError(
                f"model {self.resolved.name!r} has no chat template",
                hint="use an instruction-tuned model whose GGUF metadata carries one",
            )
        # Loading is silent and takes seconds to a minute: say what the wait is (stderr,
        # above a live display; the requantizing step above says its own).
        notice(f"loading {self.resolved.name} on OpenVINO GenAI (CPU) ...")
        loading = time.perf_counter()  # (after a first run's requantizing, which says its own time)
        scheduler = genai.SchedulerConfig()
        scheduler.max_num_seqs = self.batch_size
        scheduler.cache_size = self.cache_gb
        scheduler.enable_prefix_caching = self.prefix_caching
        try:
            pipe = genai.ContinuousBatchingPipeline(str(path), scheduler, "CPU", dict(self.properties))
        except RuntimeError as exc:
            raise ModelError(
                f"OpenVINO GenAI cannot load {path}: {str(exc).strip().splitlines()[-1][:300]}",
                hint=f"check the file and the properties {self.numerics() or '{}'}; a known model is "
                "sha256-verified (`promptopt models`)",
            ) from None
        tokenizer = pipe.get_tokenizer()
        eos_id = int(tokenizer.get_eos_token_id())
        loaded = _Loaded(
            pipe=pipe,
            tokenizer=tokenizer,
            ov=ov,
            genai=genai,
            template=compile_template(info.chat_template),
            bos=str(tokenizer.get_bos_token()),
            eos=str(tokenizer.get_eos_token()),
            eos_id=eos_id,
            stop_ids=frozenset(),
            path=path,
            load_s=0.0,
        )
        stop = {eos_id}
        for token in END_OF_TURN_TOKENS:
            ids = _encode(loaded, token)
            if len(ids) == 1 and tokenizer.decode(ids, skip_special_tokens=False) == token:
                stop.add(ids[0])
        loaded.stop_ids = frozenset(stop)
        self._context = info.context_length
        loaded.load_s = time.perf_counter() - started
        notice(f"{self.resolved.name} loaded in {time.perf_counter() - loading:.0f} s")
        return loaded

    def _ready(self) -> _Loaded:
        self.load()
        loaded = self._loaded
        if loaded is None:
            raise ModelError("the OpenVINO backend was closed during generate")
        return loaded

    # ----------------------------------------------------------------- tokenizing

    def prompt_text(self, request: GenerationRequest) -> str:
        """The exact text the model sees for ``request`` (chat template applied)."""
        return _render(self._ready(), request)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens such as ``<|im_start|>`` parsed, none added)."""
        loaded = self._ready()
        with self._pipe_lock:
            return _encode(loaded, text)

    # ----------------------------------------------------------------- generation

    def _generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """Reports the requests that each pipeline step ends; label scoring and json_mode
        requests go to the transformers backend on the same file (:meth:`_reference`)."""
        if any(_for_transformers(r) for r in requests):
            reference = self._reference()
            return split_scoring(
                requests, on_results, self._generate_openvino, reference.generate, route=_for_transformers
            )
        return self._generate_openvino(requests, on_results)

    def can_score_labels(self) -> bool:
        return importlib.util.find_spec("transformers") is not None

    def _reference(self) -> Backend:
        """The transformers backend on the same file, built on first use: OpenVINO GenAI
        gives no log-probabilities of given texts and no grammar-constrained output."""
        with self._load_lock:
            if self._transformers is None:
                from promptopt.backends.local import TransformersBackend

                self._transformers = TransformersBackend(self._spec, batch_size=self.batch_size)
            return self._transformers

    def _generate_openvino(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        if not requests:
            return []
        loaded = self._ready()
        results: list[Completion | None] = [None] * len(requests)
        rows: list[_Row] = []
        invalid: list[tuple[int, Completion]] = []
        with self._pipe_lock:
            for index, request in enumerate(requests):
                prompt, _, error = admit_request(
                    request,
                    lambda r: _encode(loaded, _render(loaded, r)),
                    self._context,
                    "model's context of {} tokens",
                    _NoJson(),  # type: ignore[arg-type]
                    loaded,
                )
                if error is not None:
                    failed = Completion(text="", error=error, finish_reason="error")
                    results[index] = failed
                    invalid.append((index, failed))
                    continue
                rows.append(_Row(index, request, prompt))
        if on_results is not None and invalid:
            on_results(invalid)
        self._warm_shared_prefixes(loaded, rows)
        with self._pipe_lock:
            self._add(loaded, rows)
            self.stats["requests"] += len(rows)
        self._drive(loaded, rows, results, on_results)
        return [r if r is not None else Completion(text="", error="not generated") for r in results]

    def _add(self, loaded: _Loaded, rows: list[_Row]) -> None:
        for row in rows:
            tensor = loaded.ov.Tensor(_int64_row(row.prompt))
            row.handle = loaded.pipe.add_request(next(self._ids), tensor, self._config(loaded, row.request))

    def _warm_shared_prefixes(self, loaded: _Loaded, rows: list[_Row]) -> None:
        """Compute each prefix that several of ``rows`` share once, before they start.

        Requests added together are prefilled together, so none finds another's prefix
        in the cache yet and a few-shot batch computes its demos once per question. One
        token generated after the shared prefix alone puts it in the cache first (16
        8-shot questions on the 0.5B: 23.4 s instead of 138.1 s, docs/engines.md)."""
        if not self.prefix_caching or len(rows) < 2:
            return
        # whole cache blocks only: the generated token must not land in a block the others reuse
        prefixes = [
            p[: len(p) // CACHE_BLOCK_TOKENS * CACHE_BLOCK_TOKENS]
            for p in shared_prefixes([row.prompt for row in rows], WARM_MIN_TOKENS)
        ]
        if not prefixes:
            return
        warm = [
            _Row(i, GenerationRequest(messages=(), max_tokens=1), prefix) for i, prefix in enumerate(prefixes)
        ]
        with self._pipe_lock:
            self._add(loaded, warm)
            self.stats["warmed_prefixes"] += len(warm)
        self._drive(loaded, warm, [None] * len(warm), None)

    def _drive(
        self,
        loaded: _Loaded,
        rows: list[_Row],
        results: list[Completion | None],
        on_results: OnResults | None,
    ) -> None:
        """Step the pipeline (taking turns with other callers) until ``rows`` are done,
        reporting each group the step ends. Requests left unfinished (an exception, a
        Ctrl-C) are cancelled, so other callers' steps do not go on decoding them."""
        running = loaded.genai.GenerationStatus.RUNNING
        pending = rows
        try:
            while pending:
                failure: str | None = None
                with self._pipe_lock:
                    if self._loaded is not loaded:
                        raise ModelError("the OpenVINO backend was closed during generate")
                    if any(row.handle.get_status() == running for row in pending):
                        try:
                            loaded.pipe.step()
                        except RuntimeError as exc:
                            failure = f"generation failed: {exc}"
                            for row in pending:
                                row.handle.cancel()
                        else:
                            self.stats["steps"] += 1
                done = [row for row in pending if failure or row.handle.get_status() != running]
                if not done:
                    continue
                finished = {id(row) for row in done}  # another caller may step meanwhile
                pending = [row for row in pending if id(row) not in finished]
                report = [(row.index, self._completion(loaded, row, failure)) for row in done]
                for index, completion in report:
                    results[index] = completion
                if on_results is not None:
                    on_results(report)
        finally:
            for row in pending:
                row.handle.cancel()

    def _config(self, loaded: _Loaded, request: GenerationRequest) -> Any:
        config = loaded.genai.GenerationConfig()
        config.max_new_tokens = request.max_tokens
        config.apply_chat_template = False
        config.eos_token_id = loaded.eos_id
        config.stop_token_ids = set(loaded.stop_ids)
        if request.stop:
            # OpenVINO stops at the token that completes a stop string; the text is cut
            # where the string starts (below), as the other engines cut it
            config.stop_strings = set(request.stop)
            config.include_stop_str_in_output = True
        if request.temperature > 0:
            config.do_sample = True
            config.temperature = request.temperature
            config.rng_seed = stable_seed(request)
        else:
            config.do_sample = False
        return config

    def _completion(self, loaded: _Loaded, row: _Row, failure: str | None) -> Completion:
        genai = loaded.genai
        status = row.handle.get_status()
        if failure is None and status == genai.GenerationStatus.IGNORED:
            failure = (
                f"the key/value cache of {self.cache_gb} GB cannot hold this request "
                f"({len(row.prompt)} prompt tokens + max_tokens {row.request.max_tokens})"
            )
        outputs = [] if failure else row.handle.read_all()
        if failure or not outputs:
            return Completion(
                text="",
                error=failure or f"OpenVINO returned no output (status {status})",
                finish_reason="error",
                tokens_in=len(row.prompt),
            )
        output = outputs[0]
        ids = [int(x) for x in output.generated_ids]
        stopped = output.finish_reason == genai.GenerationFinishReason.STOP
        text_ids = ids[:-1] if stopped and ids and ids[-1] in loaded.stop_ids else ids
        with self._pipe_lock:
            text = str(loaded.tokenizer.decode(text_ids, skip_special_tokens=True))
        if row.request.stop:
            cut = find_stop(text, row.request.stop, 0)
            if cut is not None:
                text, stopped = text[:cut], True
        return Completion(
            text=text,
            tokens_in=len(row.prompt),
            tokens_out=len(ids),
            finish_reason="stop" if stopped else "length",
            latency_s=time.perf_counter() - row.started,
        )


def _for_transformers(request: GenerationRequest) -> bool:
    return bool(request.score_labels) or request.response_format == "json"


def _render(loaded: _Loaded, request: GenerationRequest) -> str:
    return str(
        loaded.template.render(
            messages=[m.to_dict() for m in request.messages],
            add_generation_prompt=True,
            bos_token=loaded.bos,
            eos_token=loaded.eos,
        )
    )


def _encode(loaded: _Loaded, text: str) -> list[int]:
    encoded = loaded.tokenizer.encode(text, add_special_tokens=False)
    return [int(x) for x in encoded.input_ids.data[0]]


def _int64_row(tokens: list[int]) -> Any:
    import numpy as np

    return np.array([tokens], dtype=np.int64)
