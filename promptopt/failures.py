"""When every request of a phase failed: the error a user sees, with what to do about it.

A run whose every request failed (a wrong or missing key, a server answering 500, a wrong
``--base-url``) measured nothing, so it must not look like a run that scored 0%: the
commands print the first error with a hint and exit non-zero (:class:`AllRequestsFailed`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from promptopt.errors import BackendError

_STATUS = re.compile(r"\bHTTP (\d{3})\b")


class AllRequestsFailed(BackendError):
    """Every request of a phase failed; ``message`` quotes the first error."""


def hint_for(error: str, api_key_env: str | None = "OPENAI_API_KEY") -> str | None:
    """What to check after ``error`` (a stored completion error), or None."""
    match = _STATUS.search(error)
    status = int(match.group(1)) if match else None
    if status in (401, 403):
        if api_key_env and not os.environ.get(api_key_env):
            return f"{api_key_env} is not set: export the endpoint's key (or name its variable with --api-key-env)"
        return f"check {api_key_env or 'the API key'}: the endpoint refused the key"
    if status == 404:
        return "check the model name and --base-url (the endpoint does not know this path or model)"
    if status == 429:
        return "the endpoint rate-limited every request: lower --concurrency or wait and retry"
    if status is not None and status >= 500:
        return "the endpoint failed on its side: check the server (its logs) and try again later"
    if status is not None and status >= 400:
        return "the endpoint refused the requests: check the model name and its options"
    lowered = error.lower()
    if "malformed response" in lowered or "had no choices" in lowered:
        return "the replies are not OpenAI chat completions: check --base-url (it usually ends in /v1)"
    if "connect" in lowered or "refused" in lowered or "resolve" in lowered:
        return "check --base-url and that the server is running and reachable"
    if "timed out" in lowered or "timeout" in lowered:
        return "the endpoint did not answer in time: check the server or raise the timeout"
    return None


def check_not_all_failed(
    errors: Iterable[str | None], what: str, api_key_env: str | None = "OPENAI_API_KEY"
) -> None:
    """Raise :class:`AllRequestsFailed` when every one of ``errors`` (one per result, None
    for a success) is set; do nothing when there are none or any succeeded."""
    errors = list(errors)
    if not errors or any(e is None for e in errors):
        return
    first = next((e for e in errors if e), "unknown error")
    raise AllRequestsFailed(
        f"every request of {what} failed ({len(errors)} of {len(errors)}); the first: {first}",
        hint=hint_for(first, api_key_env) or "see the stored errors with `promptopt show RUN_ID`",
    )


def check_results(results: Iterable[Any], what: str, api_key_env: str | None = "OPENAI_API_KEY") -> None:
    """:func:`check_not_all_failed` for EvalResults (a failure has no score)."""
    check_not_all_failed(
        ((r.error or "unknown error") if r.score is None else None for r in results), what, api_key_env
    )
