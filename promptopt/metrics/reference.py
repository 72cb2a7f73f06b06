"""Metrics written by the user: ``module:function`` and ``path/to/file.py:function``.

Loading a metric from a reference *imports and runs* that module's or file's code, like
``python file.py`` would. promptopt stores the reference with a run but never imports it
from the store on its own: resuming a run whose metric is user code needs the user to
name the metric again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptopt.errors import MetricError


def looks_like_reference(text: str) -> bool:
    """``module:function`` or ``file.py:function`` (a built-in name has no colon)."""
    module, sep, attribute = text.rpartition(":")
    return bool(sep and module and attribute) and not text.startswith(("http:", "https:"))


def load_reference(reference: str) -> Callable[..., Any]:
    """The callable a reference names; MetricError (one line) when it cannot be loaded."""
    target, _, attribute = reference.rpartition(":")
    if not target or not attribute:
        raise MetricError(
            f"metric reference {reference!r} must be module:function or path/to/file.py:function"
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _load_file(Path(target).expanduser(), reference)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise MetricError(f"cannot import module {target!r} of metric {reference}: {exc}") from None
        except Exception as exc:
            raise MetricError(f"importing module {target!r} of metric {reference} raised "
                              f"{type(exc).__name__}: {exc}") from None  # fmt: skip
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
            import difflib

            close = difflib.get_close_matches(part, names, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise MetricError(f"metric {reference}: {target} has no attribute {part!r}{hint}")
        value = getattr(value, part)
    if not callable(value):
        raise MetricError(f"metric {reference}: {attribute} is a {type(value).__name__}, not a function")
    return value


def _load_file(path: Path, reference: str) -> Any:
    if not path.is_file():
        raise MetricError(f"metric {reference}: file {path} not found")
    resolved = path.resolve()
    name = "promptopt_user_metric_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise MetricError(f"metric {reference}: cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that pickling and dataclasses in the file work
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise MetricError(f"metric {reference}: running {path} raised {type(exc).__name__}: {exc}") from None
    return module


def reference_of(fn: Callable[..., Any]) -> tuple[str | None, str]:
    """``(reference, why_not)``: the reference that imports ``fn`` again, or None with the
    reason it cannot (a lambda, a closure, a method, a callable object)."""
    qualname = getattr(fn, "__qualname__", None)
    module_name = getattr(fn, "__module__", None)
    if not inspect.isfunction(fn) or not qualname or not module_name:
        return None, f"{type(fn).__name__} objects cannot be imported again by name"
    if "<lambda>" in qualname:
        return None, "it is a lambda"
    if "<locals>" in qualname:
        return None, "it is defined inside another function (a closure)"
    if module_name == "__main__" or module_name.startswith("promptopt_user_metric_"):
        file = getattr(sys.modules.get(module_name), "__file__", None)
        if not file:
            return None, "it is defined in an interactive session, not in a file"
        reference = f"{Path(file).resolve()}:{qualname}"
    else:
        reference = f"{module_name}:{qualname}"
    try:
        found = load_reference(reference) if module_name != "__main__" else fn
    except MetricError as exc:
        return None, exc.message
    if found is not fn and getattr(found, "__code__", None) is not getattr(fn, "__code__", None):
        return None, f"{reference} names another object"
    return reference, ""
