"""How the Ray pool tells a lost cluster from any other error, without Ray.

A Ray Client driver whose connection is gone gets ``ConnectionError`` from one call and a
bare ``Exception("Ray Client is not connected ...")`` from the next; either must end the
run as *lost the Ray cluster* (interrupted, resumable), while an error of the user's own
code, with the cluster still there, must come through unchanged.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from promptopt.errors import ClusterLostError
from promptopt.pool import backend as pool_backend
from promptopt.pool.backend import RayBackend
from promptopt.types import GenerationRequest, Message


class FakeRay:
    def __init__(self) -> None:
        self.connected = True
        self.cancelled: list[Any] = []

    def is_initialized(self) -> bool:
        return self.connected

    def cancel(self, ref: Any) -> None:
        self.cancelled.append(ref)


class Raising:
    """An actor whose ``generate.remote`` raises what it is given."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.generate = self

    def remote(self, requests: Any) -> Any:
        raise self.error


class FakeWatch:
    target = "127.0.0.1:10001"

    def __init__(self) -> None:
        self.lost = threading.Event()

    def stop(self) -> None:
        pass


def pool(
    monkeypatch: pytest.MonkeyPatch, error: BaseException, *, joined: bool = True
) -> tuple[RayBackend, FakeRay]:
    ray = FakeRay()
    monkeypatch.setattr(pool_backend, "import_ray", lambda: ray)
    monkeypatch.setattr(pool_backend, "ensure_ray", lambda address, num_cpus=None: False)
    watch = FakeWatch() if joined else None
    monkeypatch.setattr(pool_backend.ClusterWatch, "of", classmethod(lambda cls, address, r: watch))
    backend = RayBackend(lambda: Raising(error), workers=1, ray_address="ray://127.0.0.1:10001" if joined else None,
                         model_id="fake", description={})  # fmt: skip
    return backend, ray


REQUESTS = [GenerationRequest(messages=(Message("user", "2+2?"),), max_tokens=8)]


def test_a_connection_error_is_a_lost_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, _ = pool(
        monkeypatch, ConnectionError("Failed to reconnect within the reconnection grace period")
    )
    with pytest.raises(ClusterLostError, match="lost the Ray cluster at 127.0.0.1:10001"):
        backend.generate_each(REQUESTS, None)


def test_a_client_that_is_no_longer_connected_is_a_lost_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, ray = pool(
        monkeypatch, Exception("Ray Client is not connected. Please connect by calling `ray.init`.")
    )
    ray.connected = False
    with pytest.raises(ClusterLostError, match="lost the Ray cluster.*not connected"):
        backend.generate_each(REQUESTS, None)


def test_any_error_once_the_watch_has_fired_is_a_lost_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, _ = pool(monkeypatch, RuntimeError("GCS unreachable"))
    backend._watch.lost.set()  # type: ignore[union-attr]
    with pytest.raises(ClusterLostError):
        backend.generate_each(REQUESTS, None)


def test_the_users_own_error_comes_through_while_the_cluster_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, _ = pool(monkeypatch, ValueError("the metric raised"))
    with pytest.raises(ValueError, match="the metric raised"):
        backend.generate_each(REQUESTS, None)


def test_a_local_ray_is_never_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, ray = pool(monkeypatch, RuntimeError("boom"), joined=False)
    ray.connected = False
    with pytest.raises(RuntimeError, match="boom"):
        backend.generate_each(REQUESTS, None)
