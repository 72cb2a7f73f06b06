"""The evaluation pool on Ray: candidates of a stage evaluated concurrently, their model
calls served by Ray actors (``pip install 'promptopt[ray]'``).

- :func:`make_evaluator` — what the controller calls: serial, or :class:`RayEvaluator`.
- :func:`pool_backend` — a model spec (as for ``--model``) served by Ray actors: async
  HTTP workers under a cluster-wide rate limiter for ``openai/...``, one model actor with
  dynamic batching for a local model, plain workers for ``fake``.
- :class:`RayBackend`, :class:`RateLimit`, :class:`Batching`, :class:`PoolStats`.

Ray itself is imported only when a pool is built.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from promptopt.pool.actors import Batching
from promptopt.pool.backend import PoolStats, RayBackend
from promptopt.pool.evaluator import RayEvaluator, make_evaluator
from promptopt.pool.ratelimit import RateLimit, Reservations

__all__ = [
    "Batching",
    "PoolStats",
    "RateLimit",
    "RayBackend",
    "RayEvaluator",
    "Reservations",
    "make_evaluator",
    "pool_backend",
]


def pool_backend(
    spec: str,
    *,
    workers: int = 2,
    ray_address: str | None = None,
    batch_size: int = 16,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 32,
    rate_limit: RateLimit | None = None,
    max_wait_ms: float = 20.0,
    model_cpus: int | None = None,
    num_cpus: int | None = None,
    dtype: str = "auto",
    resources: Mapping[str, float] | None = None,
) -> RayBackend:
    """The model ``spec`` served by Ray actors.

    - ``openai/<model>``: ``workers`` async actors with ``concurrency`` requests in
      flight each, sharing one ``rate_limit`` per provider across the cluster;
    - a local model: ``workers`` model actors (use 1 per machine), each loading the model
      once and batching concurrent requests dynamically (``batch_size`` requests or
      ``max_wait_ms``), with ``model_cpus`` CPUs (default: all of the local Ray's) and the
      weights in ``dtype``;
    - ``fake``: ``workers`` plain workers (tests, benchmarks).

    ``resources`` (Ray custom resources) places every worker on the nodes offering them.
    """
    from promptopt.backends import make_backend

    spec = spec.strip()
    if spec.startswith("openai/"):
        return RayBackend.openai(
            spec[len("openai/") :], base_url=base_url, api_key_env=api_key_env, workers=workers,
            concurrency=concurrency, rate_limit=rate_limit, ray_address=ray_address, num_cpus=num_cpus,
            resources=resources,
        )  # fmt: skip
    factory = functools.partial(make_backend, spec, batch_size=batch_size, dtype=dtype)
    if spec == "fake" or spec.startswith("fake/"):
        return RayBackend.wrapping(
            factory, workers=workers, ray_address=ray_address, rate_limit=rate_limit, provider=spec,
            num_cpus=num_cpus, resources=resources,
        )  # fmt: skip
    from promptopt.pool.backend import ensure_ray, import_ray

    started = ensure_ray(ray_address, num_cpus)
    cpus = model_cpus or max(1, int(import_ray().available_resources().get("CPU", 1)))
    backend = RayBackend.wrapping(
        factory, workers=workers, ray_address=ray_address, batching=Batching(batch_size, max_wait_ms),
        worker_cpus=cpus, num_cpus=num_cpus, chunk_size=batch_size, max_in_flight=max(64, 4 * batch_size),
        resources=resources,
    )  # fmt: skip
    backend.owns_ray = backend.owns_ray or started
    return backend
