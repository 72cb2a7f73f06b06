"""Proposals for a task without an instruction (issue #27, point 5): APE's induction from
five input-output pairs, never a rewrite of an empty string; proposals that speak of "the
instruction" instead of the task are dropped."""

from __future__ import annotations

import json
from pathlib import Path

from promptopt.backends.fake import FakeBackend
from promptopt.proposers import Proposer
from promptopt.tasks import get_task
from promptopt.types import GenerationRequest


def _task(tmp_path: Path, word: str = "argument") -> object:
    (tmp_path / "bbh").mkdir()
    rows = [
        {"input": f"Is {word} {i} valid or invalid?", "target": ["valid", "invalid"][i % 2]}
        for i in range(80)
    ]
    (tmp_path / "bbh" / "formal_fallacies.json").write_text(json.dumps({"examples": rows}), encoding="utf-8")
    return get_task("bbh:formal_fallacies", tmp_path)


def model(request: GenerationRequest) -> str:
    prompt = request.messages[-1].content
    if prompt.startswith("Rewrite the following instruction"):
        return "Write the instruction in different words."
    if prompt.startswith("A teacher gave"):
        return ["Decide whether the argument is deductively valid.",
                "Rephrase the instruction so that it is clearer.",
                "Say if the conclusion follows from the premises."][request.sample_index % 3]  # fmt: skip
    return "Improve the prompt."


def test_an_empty_instruction_is_induced_not_rewritten(tmp_path: Path) -> None:
    backend = FakeBackend(model)
    proposer = Proposer(backend, _task(tmp_path))
    proposals = proposer.paraphrase("", 2)
    assert proposals == [
        "Decide whether the argument is deductively valid.",
        "Say if the conclusion follows from the premises.",
    ]
    asked = backend.history[0].messages[-1].content
    assert asked.startswith("A teacher gave") and asked.count("Input: ") == 5
    assert proposer.meta_rejected == 1
    # OPRO with only the empty seed in its history: induction too
    assert proposer.from_history([("", 0.5)], 1) and "Improve the prompt." not in proposer.from_history(
        [("", 0.5)], 1
    )


def test_a_real_instruction_is_still_paraphrased(tmp_path: Path) -> None:
    backend = FakeBackend(lambda r: "Tell whether the argument is valid given its premises.")
    proposer = Proposer(backend, _task(tmp_path))
    assert proposer.paraphrase("Decide whether the argument is valid.", 1) == [
        "Tell whether the argument is valid given its premises."
    ]
    assert backend.history[0].messages[-1].content.startswith("Rewrite the following instruction")


def test_instructions_may_be_the_topic(tmp_path: Path) -> None:
    backend = FakeBackend(lambda r: "Follow the instructions and say whether you return to the start.")
    proposer = Proposer(backend, _task(tmp_path, word="the instructions"))
    assert proposer.from_demos(1) == ["Follow the instructions and say whether you return to the start."]
