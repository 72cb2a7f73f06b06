"""Export and `promptopt.load`: every format, parity with the search, bad files, no secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import promptopt
from promptopt.backends import FakeBackend
from promptopt.controller import SearchConfig, SearchResult, search
from promptopt.errors import ConfigError
from promptopt.evaluation import make_candidate
from promptopt.export import (
    EXPORT_VERSION,
    LoadedPrompt,
    PromptEditedWarning,
    build_document,
    export,
    load,
)
from promptopt.leaderboard import candidate_details, candidate_scores
from promptopt.prompt import render_messages
from promptopt.store import Store
from promptopt.tasks import Task, get_task
from promptopt.tasks.answer_format import answer_description
from promptopt.testing.search_fakes import skilled_backend
from promptopt.types import Candidate, GenerationRequest
from tests.test_leaderboard import TASK, results_cli, run_search

SECRET = "sk-test-DO-NOT-EXPORT-1234567890"


@pytest.fixture(scope="module")
def task() -> Task:
    return get_task(TASK)


@pytest.fixture(scope="module")
def searched(task: Task, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SearchResult]:
    db = f"sqlite:///{tmp_path_factory.mktemp('export') / 'export.db'}"
    return db, run_search(task, db)


@pytest.fixture()
def prompt_file(searched: tuple[str, SearchResult], tmp_path: Path) -> Path:
    db, result = searched
    path = tmp_path / "prompts" / "gsm.yaml"
    export(db, result.run_id, "yaml", path)
    return path


def wrong_everywhere() -> FakeBackend:
    """A model that is always wrong: any request not answered from the cache shows."""
    return FakeBackend(lambda request: "The answer is -987654.", model="fake")


def test_yaml_export_is_complete_and_loads_to_the_scored_prompt(
    searched: tuple[str, SearchResult], prompt_file: Path, task: Task
) -> None:
    db, result = searched
    data = yaml.safe_load(prompt_file.read_text())
    assert data["format_version"] == EXPORT_VERSION and data["model"] == "fake"
    assert data["prompt"]["system"] == result.winner.instruction
    assert data["prompt"]["user_template"] == task.spec.template
    assert data["prompt"]["cot_trigger"] == "Let's think." and data["prompt"]["answer_format"]
    assert [d["id"] for d in data["prompt"]["demos"]] == list(result.winner.demo_ids)
    demo = task.demo(result.winner.demo_ids[0])
    assert (
        data["prompt"]["demos"][0]["solution"] == demo.solution
        and data["prompt"]["demos"][0]["target"] == demo.target
    )
    assert data["extraction"]["extractor"] == "number" and data["sampling"]["samples"] == 1
    provenance = data["provenance"]
    assert provenance["run_id"] == result.run_id and provenance["promptopt_version"] == promptopt.__version__
    assert provenance["dev"]["n"] == 16 and len(provenance["dev"]["ci95"]) == 2
    assert provenance["test"]["accuracy"] == pytest.approx(result.test["winner"]["accuracy"])
    assert data["task"]["dataset_hash"] == task.dataset_hash and provenance["exported_at"]

    loaded = promptopt.export.load(prompt_file)
    assert isinstance(loaded, LoadedPrompt) and not loaded.edited
    assert loaded.candidate == result.winner and loaded.candidate.hash == result.winner.hash
    for example in task.examples("dev")[:5] + task.examples("test")[:5]:
        expected = [m.to_dict() for m in render_messages(result.winner, task, example)]
        assert loaded.messages(**example.inputs) == expected
    for text in ("Some reasoning. The answer is 1,234.", "#### 7", "\\boxed{12}", "nothing"):
        assert loaded.parse(text) == task.extract(text)


def test_parity_dev_score_reproduced_exactly_from_the_cache(
    searched: tuple[str, SearchResult], prompt_file: Path
) -> None:
    db, result = searched
    loaded = load(prompt_file)
    backend = wrong_everywhere()
    report = promptopt.evaluate(loaded.task.with_data(get_task(TASK)), loaded.candidate, backend, split="dev",
                                limit=16, db=db)  # fmt: skip
    with Store(db) as store:
        stored = candidate_scores(store, result.run_id, result.winner.hash)["dev"]
    assert stored is not None
    assert report.accuracy == stored.accuracy and report.n == stored.n_examples
    assert (report.ci_low, report.ci_high) == (stored.ci_low, stored.ci_high)
    assert backend.history == [] and report.calls == 0 and report.cache_hits == 16
    # The convenience method defaults to the dev size the stored score used.
    again = loaded.evaluate(backend=wrong_everywhere(), db=db)
    assert again.accuracy == stored.accuracy and again.n == 16 and again.calls == 0


def test_parity_through_the_cli_eval_prompt_file(
    searched: tuple[str, SearchResult], prompt_file: Path
) -> None:
    from promptopt.cli import cli

    runner = CliRunner()
    db, result = searched
    out = runner.invoke(cli, ["eval", "--prompt-file", str(prompt_file), "--task", TASK, "--split", "dev",
                              "--model", "fake", "--db", db, "--json", "--no-progress"])  # fmt: skip
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output[out.output.index("{") :])
    stored = load(prompt_file).provenance["dev"]
    assert summary["accuracy"] == stored["accuracy"] and summary["n"] == stored["n_examples"]
    assert summary["calls"] == 0 and summary["candidate"] == result.winner.hash


def test_json_export_loads_the_same(
    searched: tuple[str, SearchResult], prompt_file: Path, tmp_path: Path
) -> None:
    db, result = searched
    path = tmp_path / "p.json"
    export(db, result.winner.hash, "json", path)  # by candidate hash this time
    from_json, from_yaml = load(path), load(prompt_file)
    assert (
        from_json.candidate == from_yaml.candidate
        and from_json.document["fingerprint"] == from_yaml.document["fingerprint"]
    )
    assert from_json.messages(question="Q?") == from_yaml.messages(question="Q?")


def test_loading_another_formats_export_says_which_to_load(
    searched: tuple[str, SearchResult], tmp_path: Path
) -> None:
    db, result = searched
    for fmt, name in (("jinja", "p.jinja"), ("openai", "p.openai.json")):
        export(db, result.run_id, fmt, tmp_path / name)
        with pytest.raises(
            ConfigError, match=f"this is an? {fmt}.* export.*reads the yaml or json export"
        ) as info:
            load(tmp_path / name)
        assert "--format yaml" in (info.value.hint or "")


def test_openai_format_is_the_request_a_service_sends(
    searched: tuple[str, SearchResult], prompt_file: Path, tmp_path: Path
) -> None:
    db, result = searched
    path = tmp_path / "p.openai.json"
    export(db, result.run_id, "openai", path)
    data = json.loads(path.read_text())
    request = data["request"]
    assert set(request) == {"model", "messages", "temperature", "max_tokens"}
    assert (
        data["input_fields"] == ["question"]
        and data["placeholders"]["message"] == len(request["messages"]) - 1
    )
    question = 'What is {x}? "quoted" and {question} twice'
    filled = [dict(m) for m in request["messages"]]
    filled[-1]["content"] = filled[-1]["content"].replace("{question}", question)
    assert filled == load(prompt_file).messages(question=question)
    assert data["promptopt"]["provenance"]["run_id"] == result.run_id


def test_jinja_template_renders_the_same_messages(task: Task, tmp_path: Path) -> None:
    jinja2 = pytest.importorskip("jinja2")
    db = f"sqlite:///{tmp_path / 'j.db'}"
    nasty = 'Answer. {{ evil }} {% raw %} #} "quotes" \\ back-slash </script> ünïcödé'
    report = promptopt.evaluate(task, Candidate(instruction=nasty, cot_mode="zero_shot", cot_trigger="Think {{x}}.",
                                                answer_format=task.spec.answer_format), "fake", split="dev", limit=3,
                                db=db)  # fmt: skip
    export(db, report.run_id, "jinja", tmp_path / "p.jinja")
    export(db, report.run_id, "yaml", tmp_path / "p.yaml")
    template = jinja2.Environment(autoescape=False).from_string((tmp_path / "p.jinja").read_text())
    for question in ("How many {{ apples }}?", 'A <b>bold</b> "question"\nwith two lines'):
        assert json.loads(template.render(question=question)) == load(tmp_path / "p.yaml").messages(
            question=question
        )


def _dspy_python() -> str | None:
    try:
        import dspy  # noqa: F401

        return sys.executable
    except ImportError:
        return os.environ.get("PROMPTOPT_DSPY_PYTHON")


DSPY_CHECK = """
import json, sys
import dspy
path = sys.argv[1]
meta = json.load(open(path))["metadata"]["promptopt"]
program = getattr(dspy, meta["program"].split(".")[1])(meta["signature"])
program.load(path)
predict = program.predict if hasattr(program, "predict") else program
print(json.dumps({"instructions": predict.signature.instructions,
                  "fields": list(predict.signature.fields),
                  "answer": predict.signature.fields["answer"].json_schema_extra["desc"],
                  "demos": [dict(d) for d in predict.demos]}))
"""


def test_dspy_state_loads_in_dspy(searched: tuple[str, SearchResult], task: Task, tmp_path: Path) -> None:
    python = _dspy_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail(
                "dspy is not installed (pip install 'promptopt[dspy]') and PROMPTOPT_DSPY_PYTHON is unset"
            )
        pytest.skip("dspy not installed; set PROMPTOPT_DSPY_PYTHON to a python that has it")
    db, result = searched
    path = tmp_path / "program.json"
    export(db, result.run_id, "dspy", path)
    out = subprocess.run([python, "-c", DSPY_CHECK, str(path)], capture_output=True, text=True, timeout=240,
                         env={**os.environ, "DSPY_CACHEDIR": str(tmp_path / "dspy-cache")})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["instructions"] == result.winner.instruction
    assert state["fields"] == ["question", "reasoning", "answer"]
    assert state["answer"] == "a number"  # the answer field says what an answer is
    demo = task.demo(result.winner.demo_ids[0])
    assert state["demos"][0]["question"] == demo.inputs["question"]
    assert state["demos"][0]["reasoning"] == demo.solution and state["demos"][0]["answer"] == demo.target
    with pytest.raises(ConfigError, match=r"\.json"):
        export(db, result.run_id, "dspy", tmp_path / "program.txt")


def test_the_dspy_export_says_what_an_answer_is(tmp_path: Path) -> None:
    """The answer-format line has no place in DSPy's layout; the answer field's description
    carries its answer set (yes or no as the data spells it, a label task's words), so the
    DSPy program is not left to guess the answer's form; free text keeps DSPy's own."""
    rows = [{"q": f"Is {i} even?", "a": "yes" if i % 2 == 0 else "no"} for i in range(8)]
    labels = [{"q": f"Argument {i}", "a": "valid" if i % 3 else "invalid"} for i in range(8)]
    free = [{"q": f"Name {i}", "a": f"a free answer, number {i}"} for i in range(8)]
    for data, extractor, expected in ((rows, "yesno", "yes or no"), (labels, "auto", "invalid or valid"),
                                      (free, "text", "${answer}")):  # fmt: skip
        task = Task.from_records(data, dev=data[:4], test=data[4:], input_fields=["q"], target_field="a",
                                 extractor=extractor)  # fmt: skip
        db = f"sqlite:///{tmp_path / (extractor + '.db')}"
        report = promptopt.evaluate(task, make_candidate(task), "fake", split="dev", limit=2, db=db)
        export(db, report.run_id, "dspy", tmp_path / f"{extractor}.json", task=task)
        fields = json.loads((tmp_path / f"{extractor}.json").read_text())["signature"]["fields"]
        assert fields[-1] == {"prefix": "Answer:", "description": expected}, extractor
        # the same from a loaded export, which has no data: the words the export carries
        export(db, report.run_id, "yaml", tmp_path / f"{extractor}.yaml", task=task)
        again = load(tmp_path / f"{extractor}.yaml")
        assert answer_description(again.task) == (None if expected == "${answer}" else expected), extractor


def test_run_uses_the_executor_with_self_consistency_and_two_stage(task: Task, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'sc.db'}"
    candidate = Candidate(instruction="Solve.", cot_mode="zero_shot", cot_trigger="Let's think step by step.",
                          answer_format=task.spec.answer_format, samples=3, temperature=0.7, two_stage=True)  # fmt: skip
    report = promptopt.evaluate(task, candidate, "fake", split="dev", limit=2, db=db)
    path = tmp_path / "sc.yaml"
    export(db, report.run_id, "yaml", path)
    loaded = load(path)
    assert loaded.candidate == candidate

    def respond(request: GenerationRequest) -> str:
        if request.messages[-1].content == task.spec.answer_prompt:  # second stage
            return ["7", "7", "9"][request.sample_index]
        return f"reasoning {request.sample_index}"

    backend = FakeBackend(respond)
    answer = loaded.run(backend=backend, question="What is 3 + 4?")
    assert answer.answer == "7" and Counter(answer.parsed) == Counter({"7": 2, "9": 1})
    assert len(backend.history) == 6  # 3 samples, each with its two-stage follow-up
    assert {r.temperature for r in backend.history[:3]} == {0.7}
    assert backend.history[0].messages == tuple(
        promptopt.Message(**m)
        for m in loaded.messages(question="What is 3 + 4?")  # type: ignore[arg-type]
    )
    with pytest.raises(ConfigError, match="missing input field"):
        loaded.messages()
    with pytest.raises(ConfigError, match="unknown input field"):
        loaded.messages(question="x", questoin="typo")


def test_an_exported_rescue_is_applied_by_run(task: Task, tmp_path: Path) -> None:
    """``rescue`` travels in the export and ``load(...).run()`` asks the follow-up only
    where the first reply holds no answer (issue #27)."""
    db = f"sqlite:///{tmp_path / 'rescue.db'}"
    candidate = Candidate(instruction="Solve.", cot_mode="zero_shot", cot_trigger="Let's think step by step.",
                          answer_format=task.spec.answer_format, rescue=True)  # fmt: skip
    report = promptopt.evaluate(task, candidate, "fake", split="dev", limit=2, db=db)
    path = tmp_path / "rescue.yaml"
    export(db, report.run_id, "yaml", path)
    assert yaml.safe_load(path.read_text())["sampling"]["rescue"] is True
    loaded = load(path)
    assert loaded.candidate == candidate and loaded.candidate.hash == candidate.hash
    broken = yaml.safe_load(path.read_text())
    broken["sampling"]["rescue"] = "false"
    with pytest.raises(ConfigError, match="sampling.rescue"):
        load(_write(tmp_path / "broken.yaml", broken))

    def respond(request: GenerationRequest) -> str:
        if request.messages[-1].content == task.spec.answer_prompt:
            return "7"
        return "So the answer is 5." if "2 + 3" in request.messages[-1].content else "Let me think about it"

    backend = FakeBackend(respond)
    assert loaded.run(backend=backend, question="What is 2 + 3?").answer == "5"
    assert len(backend.history) == 1
    assert loaded.run(backend=backend, question="What is 3 + 4?").answer == "7"
    assert len(backend.history) == 3


def _write(path: Path, data: dict) -> Path:  # type: ignore[type-arg]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_bad_files_name_the_field(prompt_file: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(prompt_file.read_text())
    broken = json.loads(json.dumps(data))
    del broken["prompt"]["system"]
    with pytest.raises(ConfigError, match=r"missing field 'prompt\.system'"):
        load(_write(tmp_path / "a.yaml", broken))
    broken = json.loads(json.dumps(data))
    del broken["prompt"]["demos"][0]["target"]
    with pytest.raises(ConfigError, match=r"prompt\.demos\[0\]\.target"):
        load(_write(tmp_path / "b.yaml", broken))
    broken = {**data, "format_version": EXPORT_VERSION + 1}
    with pytest.raises(ConfigError, match="format_version"):
        load(_write(tmp_path / "c.yaml", broken))
    broken = json.loads(json.dumps(data))
    broken["sampling"]["samples"] = "three"
    with pytest.raises(ConfigError, match=r"'sampling\.samples' must be int"):
        load(_write(tmp_path / "d.yaml", broken))
    broken = json.loads(json.dumps(data))
    broken["prompt"]["user_template"] = "Question: {qustion}"
    with pytest.raises(ConfigError, match="qustion"):
        load(_write(tmp_path / "e.yaml", broken))
    (tmp_path / "f.yaml").write_text("format: [unclosed\n")
    with pytest.raises(ConfigError, match=r"f\.yaml:\d+:\d+: invalid YAML"):
        load(tmp_path / "f.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")


def test_hand_edit_is_loaded_but_flagged(prompt_file: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(prompt_file.read_text())
    data["prompt"]["demos"][0]["solution"] = "A different worked solution."
    with pytest.warns(PromptEditedWarning):
        loaded = load(_write(tmp_path / "edited.yaml", data))
    assert loaded.edited and "A different worked solution." in loaded.messages(question="q")[2]["content"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not load(prompt_file).edited


def test_export_refuses_runs_without_a_finished_candidate(task: Task, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    config = SearchConfig.from_preset("light", task=TASK, model="fake", base=Candidate(instruction="Answer."),
                                      dev_size=8, test_size=8, n_proposals=2, rounds=0, race_start=4)  # fmt: skip
    backend = skilled_backend(task)
    calls = {"n": 0}
    inner = backend.generate

    def interrupt(requests):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return inner(requests)

    backend.generate = interrupt  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        search(config, backend=backend, db=db)
    with Store(db) as store:
        run_id = store.list_runs()[0].id
        assert store.get_run(run_id).status == "interrupted"
    with pytest.raises(ConfigError, match="no finished candidate") as info:
        export(db, run_id, "yaml", tmp_path / "x.yaml")
    assert info.value.hint and "--resume" in info.value.hint
    with pytest.raises(ConfigError, match="unknown export format"):
        export(db, run_id, "toml", tmp_path / "x.toml")
    out = CliRunner().invoke(results_cli(), ["export", run_id, "-o", str(tmp_path / "y.yaml"), "--db", db])
    assert out.exit_code == 2 and "no finished candidate" in out.output


def test_export_refuses_a_candidate_that_picks_demos_per_question(
    task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promptopt.similarity

    # the nearest demos without the embedding model: the export must refuse before any is picked
    monkeypatch.setattr(promptopt.similarity, "nearest_demos", lambda task, example, k: task.demo_pool()[:k])
    db = f"sqlite:///{tmp_path / 's.db'}"
    candidate = Candidate(instruction="Solve.", similar_demos=2, answer_format=task.spec.answer_format)
    report = promptopt.evaluate(task, candidate, "fake", split="dev", limit=2, db=db)
    with pytest.raises(ConfigError, match="picks its 2 demos per question") as info:
        export(db, report.run_id, "yaml", tmp_path / "s.yaml")
    assert info.value.hint and "fixed demos" in info.value.hint and not (tmp_path / "s.yaml").exists()


def test_no_secret_is_ever_exported(task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    db = f"sqlite:///{tmp_path / 's.db'}"
    with Store(db) as store:
        run_id = store.create_run(kind="eval", task=TASK, model="openai/gpt-test@user:" + SECRET + "@host",
                                  config={"api_key": SECRET, "base_url": f"https://u:{SECRET}@h/v1",
                                          "candidate": Candidate(instruction="Be brief.").to_dict()},
                                  dataset_hash=task.dataset_hash)  # fmt: skip
        candidate = Candidate(instruction="Be brief.")
        store.add_candidate(run_id, candidate)
        from promptopt.executor import Executor

        results = Executor(task, FakeBackend()).evaluate(candidate, task.examples("dev", 3), "dev")
        store.record_evaluations(run_id, results)
        store.finish_run(run_id, "finished", {"api_key": SECRET})
    for fmt in ("yaml", "json", "openai", "jinja", "dspy"):
        path = tmp_path / f"out-{fmt}.json"
        export(db, run_id, fmt, path)
        assert SECRET not in path.read_text(), fmt
    document = build_document(Store(db), run_id)
    assert "api_key" not in json.dumps(document)


def test_bootstrapped_and_answer_only_demos_are_exported_as_shown(task: Task, tmp_path: Path) -> None:
    """A candidate's own worked solutions (bootstrapped demos; "" for answer only) are the
    ones written out (yaml and dspy here), and the file loads back to the same candidate;
    an edited solution is what a loaded prompt then shows."""
    demos = task.examples("train", limit=3)
    assert all(d.solution for d in demos)
    candidate = Candidate(instruction="Solve.", demo_ids=tuple(d.id for d in demos), cot_mode="few_shot",
                          answer_format=task.spec.answer_format,
                          demo_solutions={demos[0].id: "My own working.", demos[2].id: ""})  # fmt: skip
    db = f"sqlite:///{tmp_path / 'b.db'}"
    report = promptopt.evaluate(task, candidate, "fake", split="dev", limit=2, db=db)
    export(db, report.run_id, "yaml", tmp_path / "p.yaml")
    export(db, report.run_id, "dspy", tmp_path / "p.json")
    document = yaml.safe_load((tmp_path / "p.yaml").read_text())
    assert [d["solution"] for d in document["prompt"]["demos"]] == ["My own working.", demos[1].solution, ""]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptEditedWarning)
        loaded = load(tmp_path / "p.yaml")
    assert loaded.candidate == candidate and not loaded.edited
    example = task.examples("dev", limit=1)[0]
    assert loaded.messages(**example.inputs) == [
        {"role": m.role, "content": m.content} for m in render_messages(candidate, task, example)
    ]
    dspy_demos = json.loads((tmp_path / "p.json").read_text())["predict"]["demos"]
    assert [d.get("reasoning") for d in dspy_demos] == ["My own working.", demos[1].solution, None]
    assert [d.get("augmented") for d in dspy_demos] == [True, True, None]  # DSPy's labelled demo
    assert document["prompt"]["own_solutions"] == [demos[0].id, demos[2].id]
    with Store(db) as store:  # `promptopt show` lists the demos with the same solutions
        details = candidate_details(store, report.run_id, candidate.hash, task=task)
    assert [d["solution"] for d in details.demos] == ["My own working.", demos[1].solution, ""]
    document["prompt"]["demos"][0]["solution"] = "Edited working."
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(document))
    with pytest.warns(PromptEditedWarning):
        edited = load(tmp_path / "edited.yaml")
    assert edited.messages(**example.inputs)[2]["content"].startswith("Edited working.")
    broken = dict(document, prompt={**document["prompt"], "own_solutions": ["nope"]})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(ConfigError, match=r"bad\.yaml: field 'prompt\.own_solutions' names demos not in"):
        load(tmp_path / "bad.yaml")


def test_a_tasks_own_demo_answer_is_exported_and_shown_by_the_loaded_prompt(tmp_path: Path) -> None:
    """A task YAML's ``demo_answer`` ("#### {answer}") travels in the export: the loaded
    prompt's demos end as the search's did (not with "The answer is X.")."""
    rows = [{"q": f"What is {i} + 1?", "a": str(i + 1)} for i in range(12)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "t.yaml").write_text(
        "name: t\nsource: {type: records, files: {train: a.jsonl, test: a.jsonl}, target_field: a}\n"
        "input_fields: [q]\ntemplate: '{q}'\nextractor: number\ndemo_answer: '#### {answer}'\ndev: {size: 2}\n"
    )
    own = get_task(str(tmp_path / "t.yaml"))
    demo = own.demo_pool()[0]
    candidate = Candidate(instruction="Add.", demo_ids=(demo.id,))
    db = f"sqlite:///{tmp_path / 'd.db'}"
    report = promptopt.evaluate(own, candidate, "fake", split="dev", limit=1, db=db)
    export(db, report.run_id, "yaml", tmp_path / "p.yaml")
    assert yaml.safe_load((tmp_path / "p.yaml").read_text())["prompt"]["demo_answer"] == "#### {answer}"
    loaded = load(tmp_path / "p.yaml")
    example = own.examples("dev", limit=1)[0]
    shown = loaded.messages(**example.inputs)
    assert shown[2]["content"] == f"#### {demo.target}"
    assert shown == [{"role": m.role, "content": m.content} for m in render_messages(candidate, own, example)]
