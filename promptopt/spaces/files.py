"""Finding, reading and parsing space files: the search folders, names, ``extends``
chains, line numbers and :func:`parse_space`. See :mod:`promptopt.spaces`."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from promptopt.errors import ConfigError
from promptopt.spaces.checks import (
    _check_conditions,
    _dependency_order,
    _describe,
    _parse_dimension,
    _Problems,
)
from promptopt.spaces.model import _TOP_KEYS, SPACE_VERSION, Dimension, SearchSpace, SpaceError

# ----------------------------------------------------------------------------- loading


def builtin_dir() -> Path:
    return Path(str(resources.files("promptopt") / "search_spaces"))


def _search_dirs() -> list[Path]:
    dirs = [Path.cwd() / "search_spaces"]
    dirs += [Path(p) for p in os.environ.get("PROMPTOPT_SPACE_PATH", "").split(os.pathsep) if p]
    dirs.append(builtin_dir())
    return dirs


def _space_files() -> Iterator[Path]:
    """Every space file, user folders first, then the built-in ones (a name may recur)."""
    for folder in _search_dirs():
        if folder.is_dir():
            yield from sorted(folder.glob("*.yaml"))


def _is_path(ref: str) -> bool:
    """Whether ``ref`` names a file rather than a space."""
    return Path(ref).suffix in (".yaml", ".yml") or os.sep in ref


def list_spaces() -> dict[str, Path]:
    """Space names and their files: user folders first, then the built-in ones."""
    found: dict[str, Path] = {}
    for path in _space_files():
        found.setdefault(path.stem, path)
    return found


def space_file(ref: str) -> Path:
    """The file for ``ref``: a path to a YAML file, or a space name (see :func:`list_spaces`)."""
    path = Path(ref).expanduser()
    if _is_path(ref):
        if not path.is_file():
            raise ConfigError(f"search space file {ref!r} not found")
        return path
    known = list_spaces()
    if ref in known:
        return known[ref]
    close = difflib.get_close_matches(ref, list(known), n=2)
    hint = (
        f"did you mean {' or '.join(close)}?"
        if close
        else f"choose one of {', '.join(sorted(known))} or give a path"
    )
    raise ConfigError(f"unknown search space {ref!r}", hint=hint)


def load_space(ref: str | Path | Mapping[str, Any] | SearchSpace) -> SearchSpace:
    """A validated :class:`SearchSpace` from a name, a file, or an already parsed mapping
    (as stored with a run). Raises :class:`SpaceError` listing every problem."""
    if isinstance(ref, SearchSpace):
        return ref
    if isinstance(ref, Mapping):
        space, problems = parse_space(ref, source="<mapping>")
        if problems:
            raise SpaceError("<mapping>", problems)
        assert space is not None
        return space
    path = space_file(str(ref))
    space, problems = check_file(path)
    if problems:
        raise SpaceError(path.name, problems)
    assert space is not None
    return space


def check_file(path: Path) -> tuple[SearchSpace | None, list[str]]:
    """Parse and validate one file (and the spaces it ``extends``); returns the space (if
    valid) and every problem."""
    data, lines, problems = _read_space(path, ())
    if problems:
        return None, problems
    return parse_space(data, source=path.name, lines=lines)


def _read_space(path: Path, chain: tuple[Path, ...]) -> tuple[Any, dict[tuple[str, ...], int], list[str]]:
    """The YAML document of ``path`` with its ``extends`` resolved (recursively), the line
    of each path in it, and the problems found on the way (reading, YAML, inheritance).
    ``chain``: the files that extend this one, to catch a cycle."""
    label = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        return None, {}, [f"{label}: cannot read: {e.strerror or e}"]
    try:
        data = yaml.safe_load(text)
        lines = _line_map(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{label}:{mark.line + 1}" if mark is not None else label
        problem = getattr(e, "problem", None) or str(e)
        return None, {}, [f"{where}: not valid YAML: {problem}"]
    if isinstance(data, Mapping) and "extends" in data:
        return _inherit(data, lines, label, path, chain)
    return data, lines, []


def _parent_file(ref: str, path: Path | None, chain: tuple[Path, ...]) -> Path:
    """The file that ``extends: ref`` names, for the file ``path`` (None: a mapping). A
    path is relative to the extending file's folder; a name is looked up like
    ``--space NAME``, skipping the files of the chain, so that
    ``search_spaces/gsm8k.yaml`` may extend the built-in ``gsm8k``."""
    here = path.parent if path is not None else Path.cwd()
    seen = {p.resolve() for p in chain} | ({path.resolve()} if path is not None else set())
    if _is_path(ref):
        target = Path(ref).expanduser()
        target = target if target.is_absolute() else here / target
        if not target.is_file():
            raise ConfigError(f"search space file {str(target)!r} not found")
        return target
    files = list(_space_files())
    for candidate in files:
        if candidate.stem == ref and candidate.resolve() not in seen:
            return candidate
    close = difflib.get_close_matches(ref, sorted({f.stem for f in files} - {ref}), n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ConfigError(f"unknown search space {ref!r}{hint}")


def _inherit(
    data: Mapping[str, Any],
    lines: dict[tuple[str, ...], int],
    label: str,
    path: Path | None,
    chain: tuple[Path, ...],
) -> tuple[Any, dict[tuple[str, ...], int], list[str]]:
    """``data`` on top of the space it ``extends``: a dimension it lists replaces the
    inherited one of that name in place (``null`` removes it), new ones come after,
    and ``description`` is inherited unless given. ``name`` is never inherited (it
    defaults to the file's name), nor is ``order``."""
    problems = _Problems(label, lines)
    ref = data["extends"]
    if not isinstance(ref, str) or not ref.strip():
        problems.add(("extends",), f"expected the name or path of a search space, got {_describe(ref)}")
        return None, {}, problems.items
    try:
        parent_path = _parent_file(ref.strip(), path, chain)
    except ConfigError as e:
        problems.add(("extends",), e.message)
        return None, {}, problems.items
    trail = chain + ((path,) if path is not None else ())
    if parent_path.resolve() in {p.resolve() for p in trail}:
        names = " -> ".join(p.name for p in (*trail, parent_path))
        problems.add(("extends",), f"spaces extend each other in a cycle: {names}")
        return None, {}, problems.items
    parent, parent_lines, parent_problems = _read_space(parent_path, trail)
    if not parent_problems:
        parent_problems = parse_space(parent, source=parent_path.name, lines=parent_lines)[1]
    if parent_problems:
        problems.add(("extends",), f"the space it extends ({parent_path.name}) has problems:")
        return None, {}, problems.items + [f"  {p}" for p in parent_problems]
    own = data.get("dimensions", {})
    if not isinstance(own, Mapping):
        problems.add(
            ("dimensions",), f"expected a mapping of dimensions to add or replace, got {_describe(own)}"
        )
        return None, {}, problems.items
    dims = dict(parent["dimensions"])
    inherited = set(dims)
    for name, spec in own.items():
        if spec is not None:
            dims[name] = spec
            inherited.discard(name)
        elif name in dims:
            del dims[name]
        else:
            problems.add(
                ("dimensions", str(name)),
                f"null removes an inherited dimension, but {parent_path.name} has no dimension {name!r}",
            )
    if problems.items:
        return None, {}, problems.sorted()
    merged = {k: v for k, v in data.items() if k not in ("extends", "dimensions")}
    merged.setdefault("description", parent.get("description", ""))
    merged["dimensions"] = dims
    at = lines.get(("extends",), 1)
    merged_lines = dict(lines)
    for name in inherited:  # a problem in an inherited dimension points at ``extends``
        merged_lines[("dimensions", str(name))] = at
    return merged, merged_lines, []


def _line_map(text: str) -> dict[tuple[str, ...], int]:
    """Path of keys -> 1-based line of its value, from the YAML node tree."""
    out: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                out[path + (name,)] = key.start_mark.line + 1
                walk(value, path + (name,))
                out[path + (name,)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (str(i),))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return out


def parse_space(
    data: Any, *, source: str = "<mapping>", lines: Mapping[tuple[str, ...], int] | None = None
) -> tuple[SearchSpace | None, list[str]]:
    """Validate a parsed YAML document; returns the space (None if invalid) and all problems."""
    if isinstance(data, Mapping) and "extends" in data:  # a mapping; a file's is resolved on reading
        data, lines, inherited = _inherit(data, dict(lines or {}), source, None, ())
        if inherited:
            return None, inherited
    problems = _Problems(source, lines or {})
    if not isinstance(data, Mapping):
        problems.add((), f"expected a mapping with 'name' and 'dimensions', got {_describe(data)}")
        return None, problems.items
    for key in sorted(set(data) - _TOP_KEYS, key=str):
        close = difflib.get_close_matches(str(key), list(_TOP_KEYS), n=1)
        problems.add(
            (key,),
            "unknown key"
            + (
                f"; did you mean {close[0]!r}?"
                if close
                else f"; expected some of {', '.join(sorted(_TOP_KEYS))}"
            ),
        )
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        problems.add(("name",), f"expected a non-empty string, got {_describe(name)}")
    version = data.get("version", SPACE_VERSION)
    if version != SPACE_VERSION:
        problems.add(("version",), f"this promptopt reads space version {SPACE_VERSION}, got {version!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.add(("description",), f"expected a string, got {_describe(description)}")
    raw_dims = data.get("dimensions")
    if not isinstance(raw_dims, Mapping) or not raw_dims:
        problems.add(
            ("dimensions",), f"expected a non-empty mapping of dimensions, got {_describe(raw_dims)}"
        )
        return None, problems.items
    dims: dict[str, Dimension] = {}
    for dim_name, spec in raw_dims.items():
        dimension = _parse_dimension(str(dim_name), spec, problems)
        if dimension is not None:
            dims[dimension.name] = dimension
    _check_conditions(raw_dims, dims, problems)
    order = data.get("order")
    if order is not None:
        if not isinstance(order, list) or sorted(map(str, order)) != sorted(raw_dims):
            problems.add(("order",), "expected a list naming every dimension once")
        else:
            dims = {str(name): dims[str(name)] for name in order if str(name) in dims}
    if problems.items:
        return None, problems.sorted()
    ordered = _dependency_order(dims)
    return SearchSpace(str(name), tuple(ordered), str(description or ""), source), []
