"""Export a found prompt to production, and load it back: ``promptopt.load(path)``.

An export is the complete prompt *as it was scored*: the system instruction, the task's
user template, every demo written out in full (with the worked solution it is shown
with: a bootstrapped demo's own, and ``prompt.own_solutions`` lists which those are), the
chain-of-thought trigger, the
answer-format line, the answer-extraction rule, the sampling parameters and the model,
plus provenance (dev/test scores with 95% intervals, task and dataset hash, run id,
promptopt version, date). It never holds a secret: no backend configuration is copied,
only the model name (with any URL password masked).

Formats (``export(store, ref, fmt, path)``):

- ``yaml`` / ``json`` — the export document; ``promptopt.load`` reads either;
- ``openai`` — the Chat Completions request body a production service sends, with
  ``{field}`` placeholders in the last user message (substitute them by plain string
  replacement in that message only; demos are never substituted);
- ``jinja`` — a Jinja2 template with the input fields as variables that renders to the
  JSON list of chat messages;
- ``dspy`` — a DSPy program state (``dspy.ChainOfThought`` with chain of thought, else
  ``dspy.Predict``) that ``program.load(path)`` reads. DSPy formats prompts its own way,
  so this carries the instruction and demos over; it is not byte-identical to promptopt's
  messages.

Parity by construction: a loaded prompt renders, generates and extracts through the very
same code as the search (:func:`promptopt.prompt.render_messages` and the
:class:`~promptopt.executor.Executor` over a :class:`PromptTask` built from the file), so
``loaded.evaluate(split="dev")`` with the cache on reproduces the stored dev score.
"""

from promptopt.export.document import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    FORMATS,
    ExportResult,
    build_document,
)
from promptopt.export.formats import export, render_format
from promptopt.export.loaded import (
    LoadedPrompt,
    PromptAnswer,
    PromptEditedWarning,
    PromptTask,
    load,
    load_document,
)
from promptopt.prompt import placeholder_messages

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "FORMATS",
    "ExportResult",
    "LoadedPrompt",
    "PromptAnswer",
    "PromptEditedWarning",
    "PromptTask",
    "build_document",
    "export",
    "load",
    "load_document",
    "placeholder_messages",
    "render_format",
]
