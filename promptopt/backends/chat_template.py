"""The chat template of a GGUF model, rendered the way transformers renders it, and the
tokens that end an assistant turn. Shared by the local engines that read GGUF metadata
themselves (llama.cpp, OpenVINO GenAI) and by the transformers engine's stop set."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["END_OF_TURN_TOKENS", "compile_template"]

END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "</s>")
"""Tokens that end an assistant turn in common chat templates; added to the EOS set when
the vocabulary has them (GGUF metadata often names only <|endoftext|> as EOS)."""


def compile_template(source: str) -> Any:
    """The chat template as transformers compiles it: a sandboxed jinja2 environment."""
    import json

    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **_: Any) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)

    def strftime_now(fmt: str) -> str:
        return time.strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)
