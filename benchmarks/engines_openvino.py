"""OpenVINO GenAI as an engine of ``benchmarks/engines.py`` (engine ``openvino``): a thin
adapter over promptopt's own backend, :class:`promptopt.backends.openvino.OpenVINOBackend`
(``pip install 'promptopt[openvino]'``; docs/engines.md).

Options follow a colon, as for the other engines:
``openvino:requantize=1,threads=2,cache_gb=1,prefix_caching=1,exact=1``. Options in capitals
are OpenVINO CPU properties passed to the pipeline as they are
(``openvino:KV_CACHE_PRECISION=f16,DYNAMIC_QUANTIZATION_GROUP_SIZE=0``). ``requantize`` is
on by default now (the backend rewrites the tensors OpenVINO cannot read as Q8_0, once);
``requantize=0`` refuses such a file instead.
"""

from __future__ import annotations

from typing import Any

from promptopt.backends.openvino import EXACT_PROPERTIES, OpenVINOBackend

__all__ = ["EXACT_PROPERTIES", "OpenVINOEngine"]


def OpenVINOEngine(  # noqa: N802 - the name engines.py has always used
    model: str,
    batch_size: int = 16,
    cache_dir: str | None = None,
    threads: int = 0,
    cache_gb: int = 1,
    prefix_caching: int = 1,
    requantize: int = 1,
    exact: int = 0,
    **properties: Any,
) -> OpenVINOBackend:
    """The backend for ``openvino:<options>`` (see the module docstring)."""
    unknown = [k for k in properties if not k.isupper()]
    if unknown:
        raise SystemExit(f"engine openvino: unknown option(s) {', '.join(unknown)}")
    return OpenVINOBackend(
        model,
        batch_size=batch_size,
        cache_dir=cache_dir,
        threads=int(threads) or None,
        cache_gb=int(cache_gb),
        prefix_caching=bool(prefix_caching),
        requantize=bool(requantize),
        exact=bool(exact),
        properties=properties or None,
    )
