"""The task registry: tasks are data (YAML files), found lazily by name.

Where tasks come from, in order:

1. built-in YAML files shipped in the package (``promptopt/tasks/builtin``);
2. YAML files in the folders of ``$PROMPTOPT_TASK_PATH`` (``:``-separated) and ``./tasks``;
3. a path to a YAML file given as the task name.

A file may ``include:`` another (relative path or built-in file name) and override its
fields. A file with ``family: {param: NAME, values: [...]}`` defines one task per value,
with ``{NAME}`` substituted in its strings (this is how ``bbh:<subtask>`` works). With
``discover: "bbh/{NAME}.json"`` the family also lists every value whose file is in the
data folder (``$PROMPTOPT_DATA_DIR`` or ``--data-dir``), and a misspelled value gets the
closest names found there.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from promptopt.errors import PromptOptError, TaskError
from promptopt.tasks.task import Task, TaskSpec

BUILTIN_DIR = Path(__file__).parent / "builtin"
TASK_PATH_ENV = "PROMPTOPT_TASK_PATH"

__all__ = [
    "Task",
    "TaskSpec",
    "TaskInfo",
    "get_task",
    "list_tasks",
    "load_recorded_task",
    "load_task_file",
    "task_reference",
]


@dataclass(frozen=True)
class TaskInfo:
    name: str
    description: str
    origin: str  # "builtin" or the file path
    path: Path
    family_value: str | None = None


def read_yaml(path: Path) -> Mapping[str, Any]:
    """Parse a YAML mapping; a syntax error names the file, line and column."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        position = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise TaskError(f"{path}{position}: invalid YAML ({exc.problem})") from None
    except yaml.YAMLError as exc:
        raise TaskError(f"{path}: invalid YAML ({exc})") from None
    except OSError as exc:
        raise TaskError(f"{path}: cannot read task file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise TaskError(
            f"{path}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    if not isinstance(data, Mapping):
        raise TaskError(f"{path}: a task file must be a YAML mapping of fields, got {type(data).__name__}")
    return data


def _resolve_includes(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise TaskError(f"{path}: include cycle ({' -> '.join(str(p) for p in (*seen, path))})")
    data = dict(read_yaml(path))
    include = data.pop("include", None)
    if include is None:
        return data
    base_path = path.parent / str(include)
    if not base_path.is_file():
        base_path = BUILTIN_DIR / str(include)
    if not base_path.is_file():
        raise TaskError(f"{path}: included file {include!r} not found next to it or among the built-in tasks")
    base = _resolve_includes(base_path, (*seen, path))
    return _merge(base, data)


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _substitute(value: Any, param: str, replacement: str) -> Any:
    if isinstance(value, str):
        return value.replace("{" + param + "}", replacement)
    if isinstance(value, list):
        return [_substitute(v, param, replacement) for v in value]
    if isinstance(value, Mapping):
        return {k: _substitute(v, param, replacement) for k, v in value.items()}
    return value


def _family(data: Mapping[str, Any], path: Path) -> tuple[str, list[str]] | None:
    family = data.get("family")
    if family is None:
        return None
    if not isinstance(family, Mapping) or "param" not in family or not isinstance(family.get("values"), list):
        raise TaskError(f"{path}: 'family' must be a mapping {{param: NAME, values: [...]}}")
    return str(family["param"]), [str(v) for v in family["values"]]


def _discovered(data: Mapping[str, Any], data_dir: str | Path | None) -> list[str]:
    """The family values whose data files are in the data folder (``family.discover``)."""
    family = data.get("family")
    if not isinstance(family, Mapping):
        return []
    pattern = family.get("discover")
    if not pattern:
        return []
    from promptopt.errors import DataError
    from promptopt.tasks.loaders import resolve_data_dir

    try:
        folder = resolve_data_dir(data_dir)
    except DataError:
        return []
    if folder is None:
        return []
    placeholder = "{" + str(family["param"]) + "}"
    head, _, tail = str(pattern).partition(placeholder)
    found = []
    for path in sorted(folder.glob(head + "*" + tail)):
        relative = path.relative_to(folder).as_posix()
        if relative.startswith(head) and relative.endswith(tail) and len(relative) > len(head) + len(tail):
            found.append(relative[len(head) : len(relative) - len(tail)])
    return found


def _search_dirs() -> list[Path]:
    dirs = [BUILTIN_DIR]
    for entry in os.environ.get(TASK_PATH_ENV, "").split(os.pathsep):
        if entry:
            dirs.append(Path(entry).expanduser())
    local = Path.cwd() / "tasks"
    if local.is_dir():
        dirs.append(local)
    return dirs


_log = logging.getLogger(__name__)
_warned: set[str] = set()


def _broken_task(path: Path, exc: TaskError, broken: dict[str, TaskError]) -> None:
    """A task file that cannot be read is that task's problem only: a warning (once per
    file and process), and the error again when that task is asked for by name."""
    broken[path.stem] = exc
    if str(path) not in _warned:
        _warned.add(str(path))
        _log.warning("warning: skipping task file %s", exc.message)


def _put(infos: dict[str, TaskInfo], info: TaskInfo) -> None:
    """A later folder of the task path wins a name; saying so (once per file and process),
    since a ./tasks file named like a built-in task hides it."""
    previous = infos.get(info.name)
    if previous is not None and previous.path != info.path and f"{info.name}@{info.path}" not in _warned:
        _warned.add(f"{info.name}@{info.path}")
        where = "promptopt's built-in one" if previous.origin == "builtin" else f"the one in {previous.path}"
        _log.warning("warning: task %r in %s replaces %s", info.name, info.path, where)
    infos[info.name] = info


def list_tasks(data_dir: str | Path | None = None) -> list[TaskInfo]:
    """Every task that can be named, without loading any data (a family lists the values
    whose files are in ``data_dir``, default ``$PROMPTOPT_DATA_DIR``, too). Files starting
    with ``_`` are includes only, not tasks. A broken file is skipped with a warning."""
    return _scan(data_dir)[0]


def _scan(data_dir: str | Path | None = None) -> tuple[list[TaskInfo], dict[str, TaskError]]:
    infos: dict[str, TaskInfo] = {}
    broken: dict[str, TaskError] = {}
    for directory in _search_dirs():
        if not directory.is_dir():
            continue
        origin = "builtin" if directory == BUILTIN_DIR else str(directory)
        for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
            if path.name.startswith("_"):
                continue
            try:
                data = _resolve_includes(path)
                family = _family(data, path)
            except TaskError as exc:
                _broken_task(path, exc, broken)
                continue
            name = str(data.get("name", path.stem))
            description = str(data.get("description", "")).strip().splitlines()[0:1]
            if family:
                param, values = family
                values = list(dict.fromkeys([*values, *_discovered(data, data_dir)]))
                for value in values:
                    task_name = name.replace("{" + param + "}", value)
                    _put(infos, TaskInfo(
                        task_name,
                        _substitute(description[0], param, value) if description else "",
                        origin,
                        path,
                        value,
                    ))  # fmt: skip
            else:
                _put(infos, TaskInfo(name, description[0] if description else "", origin, path))
    return sorted(infos.values(), key=lambda info: (info.origin != "builtin", info.name)), broken


def load_task_file(
    path: str | Path, data_dir: str | Path | None = None, *, family_value: str | None = None
) -> Task:
    """Load a task from its YAML file."""
    path = Path(path)
    data = _resolve_includes(path)
    family = _family(data, path)
    if family:
        param, values = family
        if family_value is None:
            raise TaskError(
                f"{path}: this file defines a family of tasks; name one of them ({', '.join(values[:5])}, …)"
            )
        data = _substitute({k: v for k, v in data.items() if k != "family"}, param, family_value)
    else:
        data.pop("family", None)
    origin = "builtin" if path.parent == BUILTIN_DIR else str(path)
    if path.parent != BUILTIN_DIR and isinstance(data.get("source"), Mapping):
        data["source"] = {**data["source"], "base_dir": str(path.parent)}
    spec = TaskSpec.from_mapping(data, where=str(path), origin=origin)
    return Task(spec, data_dir)


def task_reference(task: Task) -> dict[str, Any]:
    """What reloads ``task`` from any working directory, recorded with each run: the
    absolute path of its file (none for a built-in task) and the absolute data directory
    it was loaded from (``--data-dir``, else $PROMPTOPT_DATA_DIR; none for the hub); for a
    task built in Python, ``task_source: python`` (only the caller has its data)."""
    from promptopt.tasks.loaders import resolve_data_dir

    reference: dict[str, Any] = {"task_file": None, "data_dir": None}
    if task.spec.origin == "python":  # Task.from_records: no file or name reloads it
        reference["task_source"] = "python"
    elif task.spec.origin != "builtin" and Path(task.spec.origin).is_file():
        reference["task_file"] = str(Path(task.spec.origin).resolve())
    try:
        directory = resolve_data_dir(getattr(task, "_data_dir_arg", None))
    except PromptOptError:
        directory = None
    if directory is not None:
        reference["data_dir"] = str(directory.resolve())
    return reference


def load_recorded_task(
    config: Mapping[str, Any], name: str, data_dir: str | Path | None = None, dataset_hash: str | None = None
) -> Task:
    """The task a run recorded (``config`` as stored, ``name`` its task name), from any
    working directory: its file's absolute path first, then the name or path it was given.
    ``data_dir`` overrides the recorded data directory; with ``dataset_hash`` (the run's)
    data that is not the run's is a DataError."""
    from promptopt.errors import DataError

    if config.get("task_source") == "python":
        raise TaskError(
            f"task {name!r} was built in Python (Task.from_records): no name or file reloads its data",
            hint="from Python, pass the task, e.g. promptopt.export.export(db, RUN, 'yaml', path, task=task) "
            "or promptopt.optimize(task, resume=RUN)",
        )
    directory = data_dir or config.get("data_dir")
    if (
        not data_dir
        and isinstance(directory, str)
        and Path(directory).is_absolute()
        and not Path(directory).is_dir()
    ):
        raise DataError(
            f"task {name}: the run's data directory {directory} is not there any more",
            hint="pass --data-dir with where the run's data is now (from Python, the task loaded from "
            "there: task=promptopt.get_task(NAME, DIR))",
        )
    given = config.get("task")
    if not isinstance(given, str):
        given = name
    task: Task | None = None
    task_file = config.get("task_file")
    if isinstance(task_file, str) and Path(task_file).is_file():
        try:
            task = load_task_file(task_file, directory)
        except TaskError:  # a family file: its member is found by name
            task = None
    if task is None:
        task = get_task(given, directory)
    if dataset_hash and task.dataset_hash != dataset_hash:
        where = f"the data directory {directory}" if directory else "the task's data source"
        raise DataError(
            f"task {task.name}: the data in {where} is not the data the run used "
            f"(dataset hash {task.dataset_hash}, the run's {dataset_hash})",
            hint="pass --data-dir with the data the run was made with",
        )
    return task


def get_task(name: str, data_dir: str | Path | None = None) -> Task:
    """A task by registry name (``gsm8k``, ``bbh:object_counting``) or YAML file path.
    An unknown name raises TaskError with the closest known names."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise TaskError(f"task file {path} not found")
        return load_task_file(path, data_dir)
    infos, broken = _scan(data_dir)
    tasks = {info.name: info for info in infos}
    info = tasks.get(name)
    if info is None and name in broken:  # the file named like the task is the broken one
        raise broken[name]
    if info is None:
        family_prefix, _, value = name.partition(":")
        generic = next(
            (i for i in tasks.values() if i.family_value and i.name.startswith(family_prefix + ":")), None
        )
        if generic is not None and value:
            found = _discovered(_resolve_includes(generic.path), data_dir)
            if found and value not in found:
                close = difflib.get_close_matches(value, found, n=3, cutoff=0.5)
                raise TaskError(
                    f"unknown task {name!r}: no {value!r} data in the data folder",
                    hint=f"did you mean {' or '.join(f'{family_prefix}:{c}' for c in close)}?"
                    if close
                    else f"`promptopt tasks` lists the {family_prefix}: tasks found",
                )
            # any subtask of a family works by name (e.g. other BBH tasks, online).
            return load_task_file(generic.path, data_dir, family_value=value)
        close = difflib.get_close_matches(name, list(tasks), n=3, cutoff=0.5)
        hint = (
            f"did you mean {' or '.join(close)}?"
            if close
            else "run `promptopt tasks` to list the known tasks"
        )
        raise TaskError(f"unknown task {name!r}", hint=hint)
    return load_task_file(info.path, data_dir, family_value=info.family_value)
