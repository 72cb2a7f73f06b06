"""Where the pool's actors run on a cluster: model workers on the nodes that offer the
resources asked for, and the actors that hold state for every worker on the driver's node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptopt.errors import ConfigError


def _placement(resources: Mapping[str, float] | None) -> dict[str, Any]:
    """Actor options that place a worker on the nodes offering ``resources``."""
    if not resources:
        return {}
    bad = {k: v for k, v in resources.items() if not isinstance(v, int | float) or v <= 0}
    if bad:
        raise ConfigError(f"Ray resources must be positive numbers, got {bad}")
    return {"resources": {str(k): float(v) for k, v in resources.items()}}


def on_driver_node() -> dict[str, Any]:
    """Actor options that keep an actor on the driver's node (for a Ray Client driver, the
    head, where its client server runs). The pool's own actors that hold state for every
    worker (the API key, the rate limiter) go there: they then share the driver's fate, and
    losing any other node cannot take them, and every worker's restarts, with it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)}
