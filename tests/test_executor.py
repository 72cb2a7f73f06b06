from __future__ import annotations

import pytest

from promptopt.backends import CachingBackend, FakeBackend, RetryingBackend
from promptopt.errors import ConfigError, TaskError
from promptopt.evaluation import make_candidate
from promptopt.executor import Executor, majority_vote
from promptopt.prompt import render_messages, render_text
from promptopt.store import Store
from promptopt.tasks import get_task
from promptopt.types import Candidate, Completion, GenerationRequest, Message


@pytest.fixture(scope="module")
def task():  # type: ignore[no-untyped-def]
    return get_task("gsm-symbolic")


def answer_with(mapping: dict[int, str]):  # type: ignore[no-untyped-def]
    """A responder that answers by sample index."""

    def respond(request: GenerationRequest) -> str:
        return mapping[request.sample_index]

    return respond


def test_candidate_hash_is_stable_and_content_based() -> None:
    a = Candidate(instruction="Solve.", demo_ids=("x", "y"), cot_mode="few_shot")
    b = Candidate.from_dict(a.to_dict() | {"demo_ids": ["x", "y"]})
    assert a == b and a.hash == b.hash and len(a.hash) == 16
    assert Candidate(instruction="Solve!").hash != Candidate(instruction="Solve.").hash
    # a known value: the hash must not change between versions, it is the identity in the store
    assert Candidate().hash == Candidate().hash
    with pytest.raises(ConfigError):
        Candidate(cot_mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Candidate.from_dict({"instruction": "x", "colour": "red"})


def test_rendering_puts_shared_prefix_first(task) -> None:  # type: ignore[no-untyped-def]
    candidate = make_candidate(task, instruction="Be exact.", cot="Let's think step by step.", shots=2)
    assert candidate.cot_mode == "few_shot" and len(candidate.demo_ids) == 2
    first, second = task.examples("test", limit=2)
    m1, m2 = render_messages(candidate, task, first), render_messages(candidate, task, second)
    assert m1[0] == Message("system", "Be exact.")
    assert m1[:-1] == m2[:-1]  # everything but the question is shared
    assert [m.role for m in m1] == ["system", "user", "assistant", "user", "assistant", "user"]
    demo = task.demo(candidate.demo_ids[0])
    assert (
        demo.solution and demo.solution in m1[2].content and f"The answer is {demo.target}." in m1[2].content
    )
    assert first.inputs["question"] in m1[-1].content
    text = render_text(candidate, task, first)
    assert text.startswith("Be exact.") and text.endswith("Answer:")


def test_zero_shot_cot_appends_trigger(task) -> None:  # type: ignore[no-untyped-def]
    candidate = make_candidate(task, cot="Let's think step by step.")
    assert candidate.cot_mode == "zero_shot"
    messages = render_messages(candidate, task, task.examples("test", limit=1)[0])
    assert messages[-1].content.endswith("Let's think step by step.")


def test_unknown_demo_id(task) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TaskError, match="not in the demo pool"):
        make_candidate(task, demo_ids=["test-00001"])


def test_majority_vote_ties_go_to_first_seen() -> None:
    assert majority_vote(["3", "4", "4", None]) == "4"
    assert majority_vote(["5", "3", "3", "5"]) == "5"
    assert majority_vote([None, None]) is None


def test_self_consistency_votes_over_samples(task) -> None:  # type: ignore[no-untyped-def]
    example = task.examples("test", limit=1)[0]
    gold = task.target(example)
    backend = FakeBackend(answer_with({0: "The answer is 1.", 1: f"The answer is {gold}.", 2: f"so {gold}"}))
    candidate = make_candidate(task, samples=3)
    [result] = Executor(task, backend).evaluate(candidate, [example], "test")
    assert candidate.temperature == 0.7
    assert [r.sample_index for r in backend.history] == [0, 1, 2]
    assert result.answer == gold and result.score == 1.0
    assert [s.score for s in result.samples] == [0.0, 1.0, 1.0]


def test_failed_samples_are_failures_not_wrong_answers(task) -> None:  # type: ignore[no-untyped-def]
    examples = task.examples("test", limit=2)
    backend = FakeBackend()
    backend.enqueue(Completion(text="", error="HTTP 500"), "The answer is 3.")
    results = Executor(task, backend).evaluate(make_candidate(task), examples, "test")
    assert results[0].score is None and results[0].error == "HTTP 500"
    assert results[1].score is not None


def test_two_stage_extraction_asks_a_follow_up(task) -> None:  # type: ignore[no-untyped-def]
    example = task.examples("test", limit=1)[0]
    gold = task.target(example)
    backend = FakeBackend()
    backend.enqueue("First 2 apples, then 7 pears, and more reasoning", gold)
    candidate = make_candidate(task, cot="Let's think step by step.", two_stage=True)
    [result] = Executor(task, backend).evaluate(candidate, [example], "test")
    assert len(backend.history) == 2
    follow_up = backend.history[1].messages
    assert follow_up[-2].role == "assistant" and follow_up[-1].content == task.spec.answer_prompt
    assert result.answer == gold and result.score == 1.0


def test_rescue_asks_only_the_outputs_without_an_answer(task) -> None:  # type: ignore[no-untyped-def]
    """Issue #27: a reasoning cut off at the token limit holds no answer; ``rescue`` asks
    for it (Kojima's second stage) and keeps it counted as cut off; an output that states
    its answer costs no second call."""
    first, second = task.examples("test", limit=2)
    gold1, gold2 = task.target(first), task.target(second)
    cut_off = Completion(text="First 2 apples, then 7 pears, and then we add", finish_reason="length")

    plain = FakeBackend()
    plain.enqueue(f"So the answer is {gold1}.", cut_off)
    candidate = make_candidate(task, cot="Let's think step by step.")
    results = Executor(task, plain).evaluate(candidate, [first, second], "test")
    assert [r.answer for r in results] == [gold1, None]  # without rescue: no answer found

    backend = FakeBackend()
    backend.enqueue(f"So the answer is {gold1}.", cut_off, gold2)
    rescued = make_candidate(task, cot="Let's think step by step.", rescue=True)
    assert rescued.hash != candidate.hash and "rescue" not in candidate.to_dict()
    results = Executor(task, backend).evaluate(rescued, [first, second], "test")
    assert len(backend.history) == 3  # one follow-up, for the cut-off output only
    follow_up = backend.history[2].messages
    assert follow_up[-2] == Message("assistant", cut_off.text)
    assert follow_up[-1].content == task.spec.answer_prompt
    assert [r.answer for r in results] == [gold1, gold2] and [r.score for r in results] == [1.0, 1.0]
    assert results[1].samples[0].finish_reason == "length"  # still counted as cut off
    assert results[1].samples[0].raw_output.endswith(f"{task.spec.answer_prompt} {gold2}")


def test_rescue_counts_in_the_estimate_and_refuses_calibration() -> None:
    from promptopt.bias.costs import calls_per_example, candidate_calls

    assert calls_per_example(samples=3, rescue=True) == 6 and calls_per_example(samples=3) == 3
    assert candidate_calls(Candidate(cot_mode="zero_shot", rescue=True)) == 2
    with pytest.raises(ConfigError, match="rescue"):
        Candidate(calibration="batch", rescue=True)


def test_rescue_with_two_stage_is_the_two_stage_candidate() -> None:
    """two_stage already asks every output, so rescue adds nothing: one candidate, one hash
    (a search space that varies both does not evaluate the same prompt twice)."""
    both = Candidate(cot_mode="zero_shot", two_stage=True, rescue=True)
    assert both == Candidate(cot_mode="zero_shot", two_stage=True)
    assert both.hash == Candidate(cot_mode="zero_shot", two_stage=True).hash and not both.rescue


def test_batches_respect_batch_size_and_callback(task) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []

    class Counting(FakeBackend):
        def generate(self, requests):  # type: ignore[no-untyped-def]
            calls.append(len(requests))
            return super().generate(requests)

    seen: list[int] = []
    Executor(task, Counting(), batch_size=4).evaluate(
        make_candidate(task, samples=2),
        task.examples("test", limit=5),
        "test",
        on_batch=lambda b: seen.append(len(b)),
    )
    assert calls == [4, 4, 2] and seen == [2, 2, 1]


def test_cache_answers_repeats_without_calling_the_model(db_url: str) -> None:
    store = Store(db_url)
    inner = FakeBackend()
    cached = CachingBackend(inner, store)
    request = GenerationRequest(messages=(Message("user", "hi"),))
    other = GenerationRequest(messages=(Message("user", "hi"),), sample_index=1)
    first = cached.generate([request, request, other])
    assert len(inner.history) == 2  # duplicates within a batch generated once
    second = cached.generate([request, other])
    assert len(inner.history) == 2 and all(c.cached for c in second)
    assert [c.text for c in second] == [first[0].text, first[2].text]
    assert cached.hits == 2 and cached.misses == 3
    store.close()


def test_cache_never_stores_failures(db_url: str) -> None:
    store = Store(db_url)
    inner = FakeBackend()
    inner.enqueue(Completion(text="", error="boom", retryable=True))
    cached = CachingBackend(inner, store)
    request = GenerationRequest(messages=(Message("user", "x"),))
    assert not cached.generate([request])[0].ok
    assert cached.generate([request])[0].ok
    assert len(inner.history) == 2
    store.close()


def test_retry_is_bounded_and_honours_retry_after() -> None:
    sleeps: list[float] = []
    inner = FakeBackend()
    inner.enqueue(
        Completion(text="", error="429", retryable=True, retry_after=2.5),
        Completion(text="", error="bad request", retryable=False),
        Completion(text="", error="503", retryable=True),
    )
    backend = RetryingBackend(inner, max_attempts=3, base_delay=0.1, sleep=sleeps.append)
    requests = [GenerationRequest(messages=(Message("user", str(i)),)) for i in range(2)]
    results = backend.generate(requests)
    # request 0: 429 → 503 → ok (3 attempts); request 1: not retryable, kept as failure
    assert results[0].ok and not results[1].ok and results[1].error == "bad request"
    assert sleeps[0] == 2.5 and len(sleeps) == 2
    assert backend.sent == 4 and backend.retries == 2 and backend.faults_seen == 3


def test_retry_gives_up_after_max_attempts() -> None:
    inner = FakeBackend(lambda r: Completion(text="", error="503", retryable=True))
    backend = RetryingBackend(inner, max_attempts=3, sleep=lambda s: None)
    [result] = backend.generate([GenerationRequest(messages=(Message("user", "x"),))])
    assert not result.ok and len(inner.history) == 3


def test_retry_reports_a_success_at_once_and_a_failure_after_its_retries() -> None:
    inner = FakeBackend(latency_s=0.001)  # answers one at a time, each reported as it comes
    inner.enqueue("The answer is 1.", Completion(text="", error="503", retryable=True),
                  Completion(text="", error="bad request", retryable=False), "The answer is 2.")  # fmt: skip
    backend = RetryingBackend(inner, max_attempts=3, sleep=lambda s: None)
    requests = [GenerationRequest(messages=(Message("user", str(i)),)) for i in range(3)]
    reported: list[tuple[int, str, int]] = []  # (index, text or error, requests sent so far)
    results = backend.generate_each(
        requests,
        lambda done: reported.extend((i, c.text or c.error or "", len(inner.history)) for i, c in done),
    )
    # 0 succeeds first time and is reported while 1 and 2 are still to be sent; 1 succeeds
    # on its retry; 2 cannot be retried and is reported only at the end, as a failure.
    assert reported == [(0, "The answer is 1.", 1), (1, "The answer is 2.", 4), (2, "bad request", 4)]
    assert [c.ok for c in results] == [True, True, False]


def test_cache_stores_answers_as_the_backend_reports_them(db_url: str) -> None:
    store = Store(db_url)
    requests = [GenerationRequest(messages=(Message("user", str(i)),)) for i in range(5)]
    stored_when_answered: list[int] = []

    def respond(request: GenerationRequest) -> str:
        stored_when_answered.append(len(store.cache_get_many(keys)))
        return "The answer is 3."

    inner = FakeBackend(respond, latency_s=0.001)
    keys = [r.cache_key(inner.model_id) for r in requests]
    CachingBackend(RetryingBackend(inner), store).generate(requests)
    assert stored_when_answered == [0, 1, 2, 3, 4]  # each earlier answer already in the store
    assert len(store.cache_get_many(keys)) == 5
    # A subclass that overrides generate() still sees every request through the wrappers.
    calls: list[int] = []

    class Counting(FakeBackend):
        def generate(self, requests):  # type: ignore[no-untyped-def]
            calls.append(len(requests))
            return super().generate(requests)

    more = [GenerationRequest(messages=(Message("user", f"new {i}"),)) for i in range(3)]
    assert all(c.ok for c in CachingBackend(RetryingBackend(Counting()), store).generate(more))
    assert calls == [3]
    # ... and so does a generate() set on the instance (as tests patch one in)
    patched = FakeBackend(latency_s=0.001)
    plain = patched.generate
    patched.generate = lambda requests: (calls.append(len(requests)), plain(requests))[1]  # type: ignore[method-assign]
    latest = [GenerationRequest(messages=(Message("user", f"newer {i}"),)) for i in range(2)]
    assert all(c.ok for c in CachingBackend(RetryingBackend(patched), store).generate(latest))
    assert calls == [3, 2]
    store.close()


def test_candidate_hash_ignores_unused_new_fields() -> None:
    plain = Candidate(instruction="Solve.", demo_ids=("a",))
    assert "similar_demos" not in plain.to_dict() and "demo_solutions" not in plain.to_dict()
    # a stored identity must not change when fields are added to Candidate
    assert plain.hash == "0fdfcbd4dd1ef46c"
    boot = Candidate(instruction="Solve.", demo_ids=("a",), demo_solutions={"a": "my own working"})
    assert boot.hash != plain.hash and boot.solution_for("a") == "my own working"
    assert Candidate.from_dict(boot.to_dict()) == boot


def test_bootstrapped_solution_replaces_the_datas(task) -> None:  # type: ignore[no-untyped-def]
    demo = task.examples("train", limit=1)[0]
    candidate = Candidate(
        cot_mode="few_shot", demo_ids=(demo.id,), demo_solutions={demo.id: "Model's own steps."}
    )
    messages = render_messages(candidate, task, task.examples("test", limit=1)[0])
    assert messages[0].content == task.render_input(demo)
    assert messages[1].content.startswith("Model's own steps.")
    assert demo.solution  # an empty solution: that demo shows its answer only (DSPy's labelled demos)
    labelled = Candidate(cot_mode="few_shot", demo_ids=(demo.id,), demo_solutions={demo.id: ""})
    messages = render_messages(labelled, task, task.examples("test", limit=1)[0])
    assert messages[1].content == f"The answer is {demo.target}."
    # a solution of whitespace only is no solution either: the answer alone, no lone trigger
    blank = Candidate(cot_mode="few_shot", cot_trigger="Let's think.", demo_ids=(demo.id,),
                      demo_solutions={demo.id: " \n "})  # fmt: skip
    messages = render_messages(blank, task, task.examples("test", limit=1)[0])
    assert messages[1].content == f"The answer is {demo.target}."


def test_demo_turns_show_the_answer_format_like_the_question(task) -> None:  # type: ignore[no-untyped-def]
    from promptopt.prompt import render_text

    demos = task.examples("train", limit=2)
    fmt = 'End your answer with "The answer is N."'
    candidate = Candidate(
        instruction="Solve.", cot_mode="few_shot", demo_ids=tuple(d.id for d in demos), answer_format=fmt
    )
    question = task.examples("test", limit=1)[0]
    messages = render_messages(candidate, task, question)
    users = [m.content for m in messages if m.role == "user"]
    assert users == [f"{task.render_input(d)}\n\n{fmt}" for d in [*demos, question]]
    text = render_text(candidate, task, question)
    assert text.count(fmt) == 3 and text.index(fmt) < text.index(task.render_input(demos[1]))


def test_one_racing_stage_shares_backend_calls_across_candidates(task) -> None:  # type: ignore[no-untyped-def]
    from promptopt.evaluator import SerialEvaluator

    calls: list[int] = []

    class Counting(FakeBackend):
        def generate(self, requests):  # type: ignore[no-untyped-def]
            calls.append(len(requests))
            return super().generate(requests)

    examples = task.examples("test", limit=3)
    staged = make_candidate(task, cot="Let's think step by step.", two_stage=True)
    plain = [make_candidate(task, instruction=f"Solve it ({i}).") for i in range(2)]
    jobs = [(c, examples) for c in (*plain, staged)]
    stored: list[int] = []
    together = SerialEvaluator(Executor(task, Counting(), batch_size=16), lambda b: stored.append(len(b)))
    results = together.evaluate_many([*jobs, (plain[0], examples[:2])], "test")
    # 9 first-stage requests in one call, then the staged candidate's 3 follow-ups
    assert calls == [9, 3] and stored == [9]
    alone = [Executor(task, FakeBackend()).evaluate(c, examples, "test") for c, _ in jobs]
    assert [[r.answer for r in rs] for rs in results[:3]] == [[r.answer for r in rs] for rs in alone]
    assert [r.example_id for r in results[3]] == [e.id for e in examples[:2]]


def test_a_call_budget_sizes_the_backend_calls(task) -> None:  # type: ignore[no-untyped-def]
    from promptopt.budget import Budget, BudgetedBackend, BudgetExceeded

    inner = FakeBackend()
    budgeted = BudgetedBackend(inner, Budget(max_calls=5))
    with pytest.raises(BudgetExceeded):
        Executor(task, budgeted, batch_size=16).evaluate(
            make_candidate(task), task.examples("test", limit=10), "test"
        )
    assert len(inner.history) == 5 and budgeted.spend.calls == 5  # not a whole batch of 10
