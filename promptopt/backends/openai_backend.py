"""A backend for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM,
llama.cpp server, Ollama, ...) through the official ``openai`` client.

Requests of a batch run concurrently on a thread pool over one shared client, at most
``concurrency`` in flight per backend (also across batches submitted from several
threads). The client's own retries are turned off: retrying is the job of the retry
wrapper, which reads ``Completion.retryable`` and ``retry_after``.

The API key is read from the environment variable named by ``api_key_env`` and handed
only to the client; it is never kept on the backend, shown by ``describe()`` or
``model_id``, and is scrubbed from every error text this backend produces.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from promptopt.backends.base import OnResults, StreamingBackend
from promptopt.backends.openai_wire import (
    MAX_STOP_SEQUENCES,
    PLACEHOLDER_API_KEY,
    RETRYABLE_STATUSES,
    error_detail,
    parse_retry_after,
    request_body,
)
from promptopt.errors import BackendError, ConfigError, MissingDependencyError
from promptopt.types import Completion, GenerationRequest

if TYPE_CHECKING:
    import openai

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
BASE_URL_ENV = "OPENAI_BASE_URL"


class OpenAIBackend(StreamingBackend):
    """Chat completions from an OpenAI-compatible HTTP endpoint.

    ``base_url`` defaults to ``$OPENAI_BASE_URL``, then to OpenAI's own API. The key
    comes from the environment variable ``api_key_env`` only: it must be set for
    OpenAI's API (else :class:`BackendError`); a custom endpoint without one gets a
    placeholder. ``timeout`` is per request, in seconds.

    ``model_id`` is ``openai/<model>`` on OpenAI's API and ``openai/<model>@<host>[:<port>]``
    elsewhere, so caches of different servers never mix.

    Outcomes map to :class:`Completion`: 429 (with ``retry_after`` from ``Retry-After``),
    408, 500, 502, 503, 504, timeouts, connection failures, malformed bodies and replies
    without choices are retryable errors; other HTTP errors are not. Greedy requests
    send no seed; sampled ones (``temperature > 0``) send ``seed=sample_index`` so that
    self-consistency samples differ from each other yet repeat across runs (on servers
    that honour seeds).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
    ) -> None:
        if not model:
            raise ConfigError("the openai backend needs a model name, e.g. 'gpt-4o-mini'")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        if not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout}")
        if not api_key_env:
            raise ConfigError("api_key_env must name an environment variable")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout

        resolved_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        parts = urlsplit(resolved_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"base_url must be an http(s) URL such as http://localhost:8000/v1, got {_public_url(resolved_url)!r}"
            )
        self._is_default_endpoint = parts.hostname.lower() == "api.openai.com"
        self._host = _host_port(resolved_url)
        self._public_base_url = _public_url(resolved_url)

        api_key = os.environ.get(api_key_env) or ""
        if not api_key and self._is_default_endpoint:
            raise BackendError(
                f"no API key for the OpenAI API: environment variable {api_key_env} is not set",
                retryable=False,
                hint=f"export {api_key_env}=<your key>, or pass base_url= for a local OpenAI-compatible server",
            )
        # Kept only so that error texts can be scrubbed of it; never shown.
        self._secret = api_key

        openai_module = _import_openai()
        self._openai = openai_module
        self._client: openai.OpenAI | None = openai_module.OpenAI(
            api_key=api_key or PLACEHOLDER_API_KEY,
            base_url=resolved_url,
            max_retries=0,
            timeout=timeout,
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._warned_stop = False

    # -- Backend interface -----------------------------------------------------------

    @property
    def model_id(self) -> str:
        return f"openai/{self.model}" if self._is_default_endpoint else f"openai/{self.model}@{self._host}"

    def describe(self) -> dict[str, object]:
        return {
            "model": self.model_id,
            "backend": type(self).__name__,
            "base_url": self._public_base_url,
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout,
        }

    def _generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """One completion per request, in order; requests run concurrently. Reports the
        answers that came back since the last report, from the caller's thread."""
        if not requests:
            return []
        # Even a single request goes through the pool: it is what bounds the requests
        # in flight when several threads share this backend.
        pool = self._get_pool()
        position: dict[Future[Completion], int] = {}
        try:
            for index, request in enumerate(requests):
                position[pool.submit(self._generate_one, request)] = index
            results: list[Completion | None] = [None] * len(requests)
            waiting = set(position)
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                answered = sorted((position[f], f.result()) for f in done)
                for index, completion in answered:
                    results[index] = completion
                if on_results is not None:
                    on_results(answered)
        finally:
            for future in position:
                future.cancel()  # only those not started yet: after an error or an interrupt
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
            client, self._client = self._client, None
        if pool is not None:
            pool.shutdown(wait=True)
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self._public_base_url!r}, api_key_env={self.api_key_env!r})"

    # -- one request -----------------------------------------------------------------

    def _get_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._client is None:
                raise BackendError(f"{self!r} is closed")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.concurrency, thread_name_prefix="promptopt-openai"
                )
            return self._pool

    def can_score_labels(self) -> bool:
        """Label scoring asks the server for ``logprobs``; one that returns none makes
        each scoring request fail with a clear error."""
        return True

    def _request_params(self, request: GenerationRequest) -> dict[str, Any]:
        if request.stop and len(request.stop) > MAX_STOP_SEQUENCES and not self._warned_stop:
            self._warned_stop = True
            logger.warning(
                "the chat-completions API takes at most %d stop sequences; sending the first %d of %d",
                MAX_STOP_SEQUENCES,
                MAX_STOP_SEQUENCES,
                len(request.stop),
            )
        return request_body(self.model, request)

    def _generate_one(self, request: GenerationRequest) -> Completion:
        client = self._client
        if client is None:
            return self._failure("backend closed before the request was sent", retryable=False, latency_s=0.0)
        openai_module = self._openai
        params = self._request_params(request)
        if request.score_labels:  # label log-probabilities (promptopt.backends.openai_scores)
            from promptopt.backends.openai_scores import scoring_params

            params = scoring_params(request, params)
        started = time.perf_counter()
        try:
            response = client.chat.completions.create(**params)
        except openai_module.APITimeoutError:
            return self._failure(
                f"request timed out after {self.timeout:g}s",
                retryable=True,
                latency_s=time.perf_counter() - started,
            )
        except openai_module.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            return self._failure(
                f"connection to {self._host} failed: {type(cause).__name__}: {cause}",
                retryable=True,
                latency_s=time.perf_counter() - started,
            )
        except openai_module.APIStatusError as exc:
            return self._status_failure(exc, latency_s=time.perf_counter() - started)
        except (openai_module.APIResponseValidationError, json.JSONDecodeError) as exc:
            # The client lets json's error through for a 200 whose body is not JSON.
            return self._failure(
                f"malformed response from {self._host}: {type(exc).__name__}: {exc}",
                retryable=True,
                latency_s=time.perf_counter() - started,
            )
        if request.score_labels:
            from promptopt.backends.openai_scores import label_completion

            return label_completion(response, request, self._host, time.perf_counter() - started)
        return self._completion(response, latency_s=time.perf_counter() - started)

    def _completion(self, response: Any, *, latency_s: float) -> Completion:
        try:
            choices = response.choices
            if not choices:
                return self._failure(
                    f"response from {self._host} had no choices", retryable=True, latency_s=latency_s
                )
            choice = choices[0]
            text = choice.message.content
            finish_reason = choice.finish_reason
            usage = getattr(response, "usage", None)
            tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
            tokens_out = int(getattr(usage, "completion_tokens", 0) or 0) if usage is not None else 0
        except (AttributeError, TypeError, IndexError, KeyError, ValueError) as exc:
            # Lenient parsing lets odd shapes through (e.g. "choices": "x"): treat as malformed.
            return self._failure(
                f"malformed response from {self._host}: {type(exc).__name__}: {exc}",
                retryable=True,
                latency_s=latency_s,
            )
        if text is not None and not isinstance(text, str):
            return self._failure(
                f"malformed response from {self._host}: message content is {type(text).__name__}, not text",
                retryable=True,
                latency_s=latency_s,
            )
        return Completion(
            text=text or "",
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            finish_reason=str(finish_reason) if finish_reason else "unknown",
            latency_s=latency_s,
        )

    def _status_failure(self, exc: Any, *, latency_s: float) -> Completion:
        status = int(exc.status_code)
        detail = error_detail(exc.body) or error_detail(getattr(exc, "message", None)) or ""
        message = f"HTTP {status} from {self._host}"
        if detail:
            message += f": {detail}"
        retryable = status in RETRYABLE_STATUSES
        retry_after = parse_retry_after(exc.response.headers) if retryable else None
        return self._failure(message, retryable=retryable, retry_after=retry_after, latency_s=latency_s)

    def _failure(
        self, message: str, *, retryable: bool, latency_s: float, retry_after: float | None = None
    ) -> Completion:
        return Completion(
            text="",
            finish_reason="error",
            latency_s=latency_s,
            error=self._redact(message),
            retryable=retryable,
            retry_after=retry_after,
        )

    def _redact(self, text: str) -> str:
        if self._secret and self._secret in text:
            text = text.replace(self._secret, "[redacted]")
        return text


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise MissingDependencyError(
            "the openai backend needs the 'openai' package",
            hint="pip install 'openai>=1.30' (it is a dependency of promptopt; reinstall promptopt)",
        ) from exc
    return openai


def _host_port(url: str) -> str:
    """``host`` or ``host:port`` of a URL: never user info, path or query."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port is not None else host


def _public_url(url: str) -> str:
    """The URL without user info, query or fragment, safe to store and show."""
    parts = urlsplit(url)
    if not parts.hostname:
        return "<invalid URL>"
    return f"{parts.scheme}://{_host_port(url)}{parts.path}"
