"""SQL storage of runs, candidates, evaluations and the response cache.

``Store(url)`` opens (and, if new, creates) a database; ``Store.upgrade(url)`` migrates
an older one. See :mod:`promptopt.store.store` for the contract and
:mod:`promptopt.store.schema` for the tables.
"""

from promptopt.store.store import (
    RUN_STATUSES,
    RunRecord,
    Store,
    head_revision,
    mask_url,
    scrub_secrets,
    url_without_password,
)

__all__ = [
    "RUN_STATUSES",
    "RunRecord",
    "Store",
    "head_revision",
    "mask_url",
    "scrub_secrets",
    "url_without_password",
]
