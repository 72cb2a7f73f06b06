"""Backends by name. A model spec is what a user types after ``--model``:

- ``fake`` — the deterministic scripted backend (tests, dry runs);
- ``openai/<model>`` — any OpenAI-compatible server (``--base-url``; key from the environment);
- ``local/<name-or-path>``, a known local model name (``promptopt models``), a ``.gguf``
  file or a Hugging Face model folder — a local model.

A local GGUF model runs on llama.cpp (:class:`~promptopt.backends.llamacpp.LlamaCppBackend`)
when llama-cpp-python is installed and ``dtype`` is ``auto``; a Hugging Face model, an
explicit ``dtype`` (``float32`` is the exact reference, ``int8``, ``bfloat16``) or
``$PROMPTOPT_LOCAL_ENGINE=transformers`` selects the transformers backend
(:class:`~promptopt.backends.local.TransformersBackend`). docs/engines.md compares them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from promptopt.backends.base import Backend
from promptopt.backends.cache import CachingBackend
from promptopt.backends.fake import FakeBackend
from promptopt.backends.retry import RetryingBackend
from promptopt.errors import ConfigError

__all__ = [
    "DTYPES",
    "Backend",
    "CachingBackend",
    "FakeBackend",
    "RetryingBackend",
    "is_local_spec",
    "make_backend",
]

DTYPES = ("auto", "int8", "float32", "bfloat16")  # a local model's weights (--dtype)
LOCAL_ENGINE_ENV = "PROMPTOPT_LOCAL_ENGINE"  # "llama.cpp" or "transformers" (default: auto)


def is_local_spec(spec: str) -> bool:
    """True if ``spec`` names a local model (anything but ``fake`` and ``openai/...``)."""
    spec = spec.strip()
    return not (spec == "fake" or spec.startswith(("fake/", "openai/")))


def make_backend(
    spec: str,
    *,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    batch_size: int = 16,
    dtype: str = "auto",
) -> Backend:
    """Build the backend a model spec names (see the module docstring). ``dtype`` applies to
    local models only (see :class:`~promptopt.backends.local.TransformersBackend`)."""
    spec = spec.strip()
    if dtype != "auto" and not is_local_spec(spec):
        raise ConfigError(f"--dtype {dtype} applies to local models, not {spec!r}")
    if spec == "fake" or spec.startswith("fake/"):
        return FakeBackend(model=spec)
    if spec.startswith("openai/"):
        from promptopt.backends.openai_backend import OpenAIBackend

        model = spec[len("openai/") :]
        if not model:
            raise ConfigError("--model openai/<model>: name the model, e.g. openai/gpt-4o-mini")
        return OpenAIBackend(model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency)
    local = spec[len("local/") :] if spec.startswith("local/") else spec
    from promptopt.models import KNOWN_MODELS

    if (
        spec.startswith("local/")
        or local in KNOWN_MODELS
        or Path(local).expanduser().exists()
        or "/" in local
    ):
        return _local_backend(local, batch_size=batch_size, dtype=dtype)
    raise ConfigError(
        f"unknown model {spec!r}",
        hint="use fake, openai/<model>, local/<name-or-path>, a .gguf file, or one of: "
        + ", ".join(KNOWN_MODELS),
    )


def _local_backend(local: str, *, batch_size: int, dtype: str) -> Backend:
    """llama.cpp for GGUF files at ``dtype`` auto (when installed), else transformers."""
    from promptopt.models import resolve_model

    engine = os.environ.get(LOCAL_ENGINE_ENV, "auto").strip().lower() or "auto"
    if engine not in ("auto", "llama.cpp", "transformers"):
        raise ConfigError(f"${LOCAL_ENGINE_ENV}={engine!r}: expected llama.cpp, transformers or auto")
    if engine == "llama.cpp" and dtype != "auto":
        raise ConfigError(
            f"--dtype {dtype} selects the transformers backend, but ${LOCAL_ENGINE_ENV}=llama.cpp"
        )
    if engine != "transformers" and dtype == "auto" and resolve_model(local).kind == "gguf":
        from promptopt.backends.llamacpp import INSTALL_HINT, LlamaCppBackend, llama_cpp_available

        if llama_cpp_available() or engine == "llama.cpp":
            return LlamaCppBackend(local, batch_size=batch_size)
        warnings.warn(
            f"llama-cpp-python is not installed: {local} runs on the slower transformers backend ({INSTALL_HINT})",
            stacklevel=3,
        )
    from promptopt.backends.local import TransformersBackend

    return TransformersBackend(local, batch_size=batch_size, dtype=dtype)
