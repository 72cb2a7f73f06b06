"""promptopt's ``openai`` backend against a real third-party OpenAI-compatible server:
``llama-cpp-python``'s (``python -m llama_cpp.server``) serving smollm2-135m on loopback.

llama-cpp-python is built from source into a venv of its own (see the README: the default build
crashes on CPUs that advertise AMX a VM cannot run); ``$PROMPTOPT_LLAMA_PYTHON`` names that venv's
python. Without it the tests are skipped, except in CI (``$CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from promptopt.cli import cli
from promptopt.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.model]

LLAMA_PYTHON_ENV = "PROMPTOPT_LLAMA_PYTHON"
N_CTX = 1024
MODEL = "smollm2-135m"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = os.environ.get(LLAMA_PYTHON_ENV)
    if not python:
        message = f"needs llama-cpp-python[server] built in a venv of its own, named by ${LLAMA_PYTHON_ENV}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from promptopt.models import resolve_model

    gguf = resolve_model(MODEL).path
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL, "--host",
             "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", "2", "--seed", "0"],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                why = (
                    " (SIGILL: llama.cpp was built for instructions this CPU cannot run; rebuild it "
                    "with GGML_NATIVE=OFF and only the instruction sets /proc/cpuinfo lists)"
                    if process.returncode == -signal.SIGILL
                    else ""
                )
                pytest.fail(
                    f"llama_cpp.server exited with {process.returncode}{why}:\n{log.read_text()[-3000:]}"
                )
            try:
                models = _get(f"{base_url}/models")
                break
            except (OSError, urllib.error.URLError, ValueError):
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start in 180 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        assert MODEL in [m["id"] for m in models["data"]]
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _eval(base_url: str, db: Path, *extra: str, limit: int = 3, exit_code: int = 0) -> dict[str, Any]:
    result = CliRunner().invoke(cli, [
        "eval", "--task", "gsm-symbolic", "--limit", str(limit), "--model", f"openai/{MODEL}",
        "--base-url", base_url, "--db", f"sqlite:///{db}", "--json", "--no-progress", "--no-cache",
        "--max-new-tokens", "48", "--concurrency", "1", *extra,
    ])  # fmt: skip
    assert result.exit_code == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    if exit_code:  # every request failed: said on the terminal, after the stored summary
        assert "every request of the evaluation failed" in result.stderr and "HTTP 400" in result.stderr
    return dict(json.loads(result.stdout))


def _outputs(db: Path, run_id: str) -> dict[str, tuple[str, int, int]]:
    store = Store(f"sqlite:///{db}")
    try:
        return {
            r.example_id: (r.samples[0].raw_output, r.samples[0].tokens_in, r.samples[0].tokens_out)
            for r in store.get_evaluations(run_id)
        }
    finally:
        store.close()


def test_eval_against_llama_cpp_server_is_complete_counted_and_deterministic(
    llama_server: str, tmp_path: Path
) -> None:
    first = _eval(llama_server, tmp_path / "a.db")
    second = _eval(llama_server, tmp_path / "b.db")
    for summary in (first, second):
        assert summary["n"] == 3 and summary["n_failed"] == 0 and summary["retries"] == 0
        assert summary["calls"] == 3 and summary["cache_hits"] == 0  # --no-cache: the server answered each
        assert f"openai/{MODEL}@127.0.0.1" in summary["model"]
    a, b = _outputs(tmp_path / "a.db", first["run_id"]), _outputs(tmp_path / "b.db", second["run_id"])
    assert len(a) == 3 and all(text.strip() for text, _, _ in a.values())
    assert a == b, "greedy decoding must give the same text and token counts on every run"

    assert all(tokens_in > 0 and 0 < tokens_out <= 48 for _, tokens_in, tokens_out in a.values())

    # The token counts are the server's own (its tokenizer), not a word count: the same request
    # through the backend and as raw JSON gives the same text and the usage the server reports.
    from promptopt.backends.openai_backend import OpenAIBackend
    from promptopt.types import GenerationRequest, Message

    question = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    backend = OpenAIBackend(MODEL, base_url=llama_server)
    [completion] = backend.generate([GenerationRequest(messages=(Message("user", question),), max_tokens=24)])
    backend.close()
    raw = _post(
        f"{llama_server}/chat/completions",
        {
            "model": MODEL,
            "temperature": 0.0,
            "max_tokens": 24,
            "messages": [{"role": "user", "content": question}],
        },
    )
    assert completion.ok and completion.text == raw["choices"][0]["message"]["content"]
    assert completion.tokens_in == raw["usage"]["prompt_tokens"] > len(question.split())  # chat template too
    assert completion.tokens_out == raw["usage"]["completion_tokens"] > 0


def test_request_the_server_rejects_is_a_stored_failure_not_a_crash(
    llama_server: str, tmp_path: Path
) -> None:
    # A prompt longer than the server's context window: llama.cpp answers HTTP 400.
    too_long = "Read every word of this. " * (N_CTX // 2)
    summary = _eval(llama_server, tmp_path / "bad.db", "--instruction", too_long, limit=2, exit_code=2)
    assert summary["n"] == 2 and summary["n_failed"] == 2 and summary["retries"] == 0
    store = Store(f"sqlite:///{tmp_path / 'bad.db'}")
    try:
        rows = store.get_evaluations(summary["run_id"])
        assert store.get_run(summary["run_id"]).status == "finished"
    finally:
        store.close()
    assert len(rows) == 2
    for row in rows:
        assert row.score is None and row.answer is None
        assert row.error and "HTTP 400" in row.error, row.error
