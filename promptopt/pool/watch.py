"""Noticing that the Ray cluster a driver joined is gone.

Ray itself, when the head of a cluster disappears, lets a driver wait for a minute and
then ends its process (``Failed to connect to GCS within 60 seconds ... The program will
terminate``), and a Ray Client driver waits in ``ray.wait`` for good: either way the run
would be left marked *running*. :class:`ClusterWatch` probes the head from a thread of its
own, so that the pool can stop the run first, as interrupted and resumable.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any


class ClusterWatch:
    """Probes the head of a joined cluster (the GCS port, or the Ray Client server) every
    ``interval_s``; ``lost`` is set once it has refused connections for ``lost_after_s``."""

    def __init__(self, host: str, port: int, *, lost_after_s: float = 10.0, interval_s: float = 1.0) -> None:
        self.target = f"{host}:{port}"
        self.host, self.port = host, port
        self.lost_after_s, self.interval_s = lost_after_s, interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, name="promptopt-cluster-watch", daemon=True)
        self._thread.start()

    @classmethod
    def of(cls, address: str | None, ray: Any) -> ClusterWatch | None:
        """The watch for ``address`` (None: a local Ray, nothing to watch)."""
        if address is None:
            return None
        target = address[len("ray://") :] if address.startswith("ray://") else None
        if target is None:
            with contextlib.suppress(Exception):
                target = ray.get_runtime_context().gcs_address
        host, _, port = (target or "").rpartition(":")
        if not host or not port.isdigit():
            return None
        return cls(host, int(port))

    def _probe(self) -> None:
        failing_since: float | None = None
        while not self._stop.wait(self.interval_s):
            try:
                with socket.create_connection((self.host, self.port), timeout=2.0):
                    failing_since = None
            except OSError:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= self.lost_after_s:
                    self.lost.set()
                    return

    def stop(self) -> None:
        self._stop.set()
