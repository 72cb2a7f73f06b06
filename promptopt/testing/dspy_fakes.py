"""A scripted model for the DSPy tests: it speaks DSPy's ChatAdapter format (and
promptopt's own), so DSPy's optimizers can run end to end on the fake backend.

- A task prompt ("What is A plus B?"): the sum, except that a sum that is a multiple of 3
  comes out one too high unless the prompt shows demos or asks to add "carefully" — so
  both the demo sets and the instructions DSPy finds can matter.
- Any other DSPy prompt (COPRO's and MIPROv2's instruction proposers, MIPROv2's dataset
  and program summaries, GEPA's reflection, which DSPy asks in JSON): every output field
  the prompt asks for (read from the ChatAdapter's "Your output fields are:" list) gets a short text. A proposed instruction
  is picked from :data:`INSTRUCTIONS` by a hash of the prompt and the sample index, so
  the proposals differ from each other, deterministically.

Imported by the scripts that ``tests/test_dspy_interop.py`` runs in the dspy venv.
"""

from __future__ import annotations

import json
import re
import zlib

from promptopt.backends import FakeBackend
from promptopt.types import GenerationRequest

INSTRUCTIONS = (
    "Add the two numbers carefully.",
    "Compute the sum of the numbers in the question.",
    "Read the question and add the numbers carefully, then state the total.",
    "Give the total.",
    "Work out the sum step by step.",
)
_FIELDS = re.compile(r"Your output fields are:\n(.*?)\nAll interactions", re.DOTALL)
_FIELD = re.compile(r"^\d+\. `(\w+)`", re.MULTILINE)
_JSON_ASKED = "Outputs will be a JSON object"
_QUESTION = re.compile(r"What is (\d+) plus (\d+)")


def output_fields(request: GenerationRequest) -> list[str]:
    """The output fields a DSPy ChatAdapter prompt asks for ([] for a promptopt prompt)."""
    system = request.messages[0].content if request.messages else ""
    found = _FIELDS.search(system)
    return _FIELD.findall(found[1]) if found else []


def answer(request: GenerationRequest) -> int | None:
    found = _QUESTION.search(request.messages[-1].content)
    if not found:
        return None
    total = int(found[1]) + int(found[2])
    helped = len(request.messages) > 2 or any("carefully" in m.content for m in request.messages)
    return total if (total % 3 or helped) else total + 1


def field_text(name: str, request: GenerationRequest) -> str:
    if name in ("proposed_instruction", "instruction", "new_instruction"):
        key = zlib.crc32(request.messages[-1].content.encode()) + request.sample_index
        return INSTRUCTIONS[key % len(INSTRUCTIONS)]
    if name == "proposed_prefix_for_output_field":
        return "Answer:"
    return f"The {name.replace('_', ' ')}: questions that add two small numbers."


def respond(request: GenerationRequest) -> str:
    fields = output_fields(request)
    value = answer(request)
    if not fields:  # promptopt's own prompt
        return f"Adding. The answer is {value if value is not None else 0}."
    texts = {}
    for name in fields:
        if name == "answer":
            texts[name] = str(value if value is not None else 0)
        elif name == "reasoning":
            texts[name] = "Add them."
        else:
            texts[name] = field_text(name, request)
    if any(_JSON_ASKED in m.content for m in request.messages):  # DSPy's JSONAdapter (GEPA's proposer)
        return json.dumps(texts)
    parts = [f"[[ ## {name} ## ]]\n{text}" for name, text in texts.items()]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


def fake_model() -> FakeBackend:
    return FakeBackend(respond)
