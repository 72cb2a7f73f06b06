"""Backends by name. A model spec is what a user types after ``--model``:

- ``fake`` — the deterministic scripted backend (tests, dry runs);
- ``openai/<model>`` — any OpenAI-compatible server (``--base-url``; key from the environment);
- ``local/<name-or-path>``, a known local model name (``promptopt models``), a ``.gguf``
  file or a Hugging Face model folder — a local model.

A local GGUF model (the known models, a ``.gguf`` file) runs on OpenVINO GenAI
(:class:`~promptopt.backends.openvino.OpenVINOBackend`, :data:`DEFAULT_LOCAL_ENGINE`);
a Hugging Face checkpoint, an explicit ``--dtype`` or a machine without OpenVINO GenAI
get the transformers backend (:class:`~promptopt.backends.local.TransformersBackend`,
the exact reference); ``$PROMPTOPT_LOCAL_ENGINE`` names one of ``openvino``,
``openvino-exact`` (batch-invariant numerics), ``transformers`` or ``llama.cpp`` (:class:`~promptopt.backends.llamacpp.LlamaCppBackend`)
outright. docs/engines.md compares them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from promptopt.backends.base import DTYPES, Backend
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
    "local_engine",
    "make_backend",
    "stored_local_model",
]

LOCAL_ENGINE_ENV = "PROMPTOPT_LOCAL_ENGINE"
LOCAL_ENGINES = ("transformers", "llama.cpp", "openvino", "openvino-exact")
DEFAULT_LOCAL_ENGINE = "openvino"
"""The engine of a local GGUF model when ``$PROMPTOPT_LOCAL_ENGINE`` is unset and no
``--dtype`` is given (docs/engines.md); Hugging Face checkpoints, an explicit ``--dtype``
and a machine without OpenVINO GenAI get the transformers backend."""


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
    engine = None
    from promptopt.models import KNOWN_MODELS

    if not Path(local).expanduser().exists() and (stored := stored_local_model(local)) is not None:
        local, engine, stored_dtype = stored  # a run's model id, as a store or an export holds it
        forced = os.environ.get(LOCAL_ENGINE_ENV, "").strip().lower()
        if dtype == "auto" and forced in ("", "transformers"):  # the environment's engine may take no dtype
            dtype = stored_dtype
        if local not in KNOWN_MODELS and "/" not in local and not Path(local).expanduser().exists():
            raise ConfigError(
                f"model {spec!r} is a local file's id: it names the file ({local}), not where it is",
                hint="pass the file's path as --model (or a backend to run())",
            )
    if (
        spec.startswith("local/")
        or local in KNOWN_MODELS
        or Path(local).expanduser().exists()
        or "/" in local
    ):
        return _local_backend(local, batch_size=batch_size, dtype=dtype, engine=engine)
    raise ConfigError(
        f"unknown model {spec!r}",
        hint="use fake, openai/<model>, local/<name-or-path>, a .gguf file, or one of: "
        + ", ".join(KNOWN_MODELS),
    )


def local_engine(local: str, dtype: str = "auto") -> str:
    """The engine a local model runs on in this Python: the one ``$PROMPTOPT_LOCAL_ENGINE``
    names, else :data:`DEFAULT_LOCAL_ENGINE` where it applies (docs/engines.md: the default
    changes when a side-by-side run shows an engine 1.5x faster on the real evaluation)."""
    engine = os.environ.get(LOCAL_ENGINE_ENV, "").strip().lower() or _default_engine(local, dtype)
    if engine not in LOCAL_ENGINES:
        raise ConfigError(f"${LOCAL_ENGINE_ENV}={engine!r}: expected one of {', '.join(LOCAL_ENGINES)}")
    return engine


#: A local model's id as its backend writes it (``<name>[@<sha>]:<engine or dtype>``).
_STORED_LOCAL = re.compile(
    r"^(?P<name>.+?)(?:@[0-9a-f]{12})?:(?P<tail>openvino(?:-exact)?(?:-p[0-9a-f]{8})?(?:-q8_0)?|llama\.cpp|"
    + "|".join(re.escape(d) for d in DTYPES if d != "auto")
    + ")$"
)


def stored_local_model(local: str) -> tuple[str, str, str] | None:
    """``(name, engine, dtype)`` of a local model id as a run stores it and an export
    writes it (``qwen2.5-coder-0.5b:openvino-q8_0``, ``mymodel@1a2b3c4d5e6f:llama.cpp``,
    ``qwen2.5-coder-0.5b:int8`` on transformers), so that ``--model`` and
    ``promptopt.load(...).run()`` rebuild the backend it names: the same id for a known
    model or a hub id on its engine's default settings (a float32 transformers id names no
    engine; an OpenVINO id with other properties, ``-p<hash>``, loses them); None for
    anything else."""
    found = _STORED_LOCAL.match(local)
    if found is None:
        return None
    tail = found["tail"]
    if tail.startswith("openvino"):
        return found["name"], "openvino-exact" if "-exact" in tail else "openvino", "auto"
    if tail == "llama.cpp":
        return found["name"], "llama.cpp", "auto"
    return found["name"], "transformers", tail


def _local_backend(local: str, *, batch_size: int, dtype: str, engine: str | None = None) -> Backend:
    """The backend of a local model on :func:`local_engine`'s engine (``engine``: the one a
    stored model id names, unless ``$PROMPTOPT_LOCAL_ENGINE`` says otherwise)."""
    if engine is None or os.environ.get(LOCAL_ENGINE_ENV, "").strip():
        engine = local_engine(local, dtype)
    if engine != "transformers" and dtype != "auto":
        raise ConfigError(f"--dtype {dtype} is for the transformers backend, but the engine is {engine}")
    if engine == "llama.cpp":
        from promptopt.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(local, batch_size=batch_size)
    if engine in ("openvino", "openvino-exact"):
        from promptopt.backends.openvino import OpenVINOBackend

        return OpenVINOBackend(local, batch_size=batch_size, exact=engine == "openvino-exact")
    from promptopt.backends.local import TransformersBackend

    return TransformersBackend(local, batch_size=batch_size, dtype=dtype)


def _default_engine(local: str, dtype: str) -> str:
    """:data:`DEFAULT_LOCAL_ENGINE` for a GGUF model; transformers for a Hugging Face
    checkpoint, for an explicit ``--dtype`` (a transformers setting) and when OpenVINO
    GenAI is not installed."""
    if DEFAULT_LOCAL_ENGINE != "openvino":
        return DEFAULT_LOCAL_ENGINE
    from promptopt.backends.openvino import openvino_available
    from promptopt.models import KNOWN_MODELS

    path = Path(local).expanduser()
    gguf = (
        local in KNOWN_MODELS
        or (path.is_file() and path.suffix.lower() == ".gguf")
        or (path.is_dir() and not (path / "config.json").is_file() and any(path.glob("*.gguf")))
    )
    if dtype != "auto" or not gguf or not openvino_available():
        return "transformers"
    return "openvino"
