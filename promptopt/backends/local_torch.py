"""Importing torch and transformers for the local backend, with the install hint."""

from __future__ import annotations

from typing import Any

from promptopt.errors import MissingDependencyError

_INSTALL_HINT = (
    "pip install 'promptopt[local]' — install the CPU build of torch first "
    "(pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu), "
    "an unpinned torch pulls a multi-GB CUDA build; GGUF loading also needs accelerate"
)


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
