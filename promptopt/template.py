"""Plain field substitution for prompt templates.

Templates use ``{field}`` placeholders and ``{{`` / ``}}`` for literal braces. Unlike
``str.format`` there is no attribute or index access (``{x.__class__}`` is an error, not
code), so a template from a file or an LLM cannot reach into Python objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from promptopt.errors import TemplateError

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def placeholders(template: str, *, where: str = "template") -> list[str]:
    """The field names a template uses, in order of first use; a malformed template
    (unbalanced brace, a placeholder that is not a plain name) raises TemplateError."""
    names: list[str] = []
    for match in _TOKEN.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            raise TemplateError(
                f"{where}: unbalanced {token!r} at character {match.start()}; write '{token}{token}' for a literal brace"
            )
        name = match.group(1).strip()
        if not _NAME.match(name):
            raise TemplateError(
                f"{where}: placeholder {{{match.group(1)}}} is not a plain field name "
                "(only letters, digits and '_' are allowed; no attribute or index access)"
            )
        if name not in names:
            names.append(name)
    return names


def validate(
    template: str, fields: Iterable[str], *, where: str = "template", require_any: bool = True
) -> None:
    """Check that every placeholder names a known field and, with ``require_any``, that
    the template uses at least one of them (a template without its placeholder would
    send every question to the model as the same text)."""
    known = list(fields)
    used = placeholders(template, where=where)
    unknown = [name for name in used if name not in known]
    if unknown:
        raise TemplateError(
            f"{where}: unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
            f"the task's input fields are {', '.join('{' + n + '}' for n in known) or '(none)'}"
        )
    if require_any and known and not used:
        raise TemplateError(
            f"{where}: the template has no placeholder for the input; "
            f"it must contain at least one of {', '.join('{' + n + '}' for n in known)}"
        )


def render(template: str, values: Mapping[str, str], *, where: str = "template") -> str:
    """Substitute ``values`` into ``template``; a missing value raises TemplateError."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        if match.group(1) is None:
            raise TemplateError(f"{where}: unbalanced {token!r} at character {match.start()}")
        name = match.group(1).strip()
        if name not in values:
            raise TemplateError(f"{where}: no value for placeholder {{{name}}}")
        return str(values[name])

    return _TOKEN.sub(replace, template)
