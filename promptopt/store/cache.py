"""The store's response cache: completions keyed by the hash of the request."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from promptopt.store.base import StoreBase
from promptopt.store.common import _IN_CHUNK, _INSERT_CHUNK, _chunks, _insert_ignore, _now
from promptopt.store.schema import CACHE
from promptopt.types import Completion, canonical_json

_GET = sa.select(CACHE.c.key, CACHE.c.response).where(CACHE.c.key.in_(sa.bindparam("keys", expanding=True)))
"""Built once: building a statement is most of a small lookup's cost in SQLAlchemy."""


class CacheMethods(StoreBase):
    """The response cache: :meth:`cache_get_many`, :meth:`cache_put_many`."""

    def cache_get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """Cached completions for those of ``keys`` that are stored, marked
        ``cached=True`` with ``latency_s=0``."""
        found: dict[str, Completion] = {}
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return found
        with self._transaction() as conn:
            for chunk in _chunks(wanted, _IN_CHUNK):
                for key, response in conn.execute(_GET, {"keys": list(chunk)}):
                    data = json.loads(response)
                    found[key] = Completion(
                        text=data["text"],
                        tokens_in=int(data.get("tokens_in", 0)),
                        tokens_out=int(data.get("tokens_out", 0)),
                        finish_reason=data.get("finish_reason", "stop"),
                        latency_s=0.0,
                        cached=True,
                    )
        return found

    def cache_put_many(self, entries: Sequence[tuple[str, str, Completion]]) -> None:
        """Store ``(key, model, completion)`` entries in one transaction. Failed
        completions are not cached; a key already stored keeps its first response."""
        now = _now()
        rows: dict[str, dict[str, Any]] = {}
        for key, model, completion in entries:
            if not completion.ok or key in rows:
                continue
            response = {
                "text": completion.text,
                "tokens_in": completion.tokens_in,
                "tokens_out": completion.tokens_out,
                "finish_reason": completion.finish_reason,
            }
            rows[key] = {"key": key, "model": model, "response": canonical_json(response), "created_at": now}
        if not rows:
            return
        cache = CACHE
        with self._transaction(write=True) as conn:
            for chunk in _chunks(list(rows.values()), _INSERT_CHUNK):
                _insert_ignore(conn, cache, chunk, ["key"])
