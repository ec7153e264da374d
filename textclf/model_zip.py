"""A kept model as one zip file to download: the PyTorch folder as it is, or its ONNX export (fp32 or int8), which is
made only when it passes the parity gate on the study's validation split (:func:`textclf.onnx_export.export_onnx`)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textclf.errors import TextclfError

# What the download offers: a format's key -> (what a person reads, the quantisation export_onnx applies).
FORMATS: dict[str, tuple[str, str | None]] = {
    "pytorch": ("PyTorch (safetensors)", None),
    "onnx": ("ONNX Runtime, fp32", None),
    "onnx-int8": ("ONNX Runtime, int8 weights", "int8"),
}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise TextclfError(f"download format must be one of {', '.join(FORMATS)}, got {str(fmt)[:40]!r}")
    return fmt


def zip_folder(folder: Path, out: Path, top: str) -> Path:
    """``folder``'s files (not the hidden ones) in a zip at ``out``, under one top folder ``top``. Written beside
    ``out`` and renamed, so a download never serves half a zip."""
    part = out.with_name(f".{out.name}.part")
    # Weights barely compress: storing them keeps a 440 MB model's zip seconds, not minutes, of work.
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                zf.write(path, f"{top}/{path.name}")
    part.replace(out)
    return out


class ModelZips:
    """Zips of kept models in one folder textclf made (``workdir``; default: a new temporary folder, made on the
    first download), one per model, format and version of the model, made once and then served again; one is made
    at a time (an ONNX export takes a core for a while)."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir
        self._lock = threading.Lock()

    def get(self, folder: Path, fmt: str, validation: Callable[[str | None], Any]) -> Path:
        """The zip of the model at ``folder`` in ``fmt``; ``validation(study)`` gives the split the ONNX gate scores
        on, given the name of the study that kept the model (called only for an ONNX format that is not made yet)."""
        from textclf.export import META_FILE, ModelInfo
        from textclf.storage import safe_name

        check_format(fmt)
        info = ModelInfo.load(folder)
        name = f"{info.study or folder.parent.name}-{folder.name}" + ("" if fmt == "pytorch" else f"-{fmt}")
        top = safe_name(name, "model")[:120]
        version = int((folder / META_FILE).stat().st_mtime)
        with self._lock:
            if self.workdir is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="textclf-downloads-"))
            out = self.workdir / f"{top}-{version}.zip"
            if out.is_file():
                return out
            self.workdir.mkdir(parents=True, exist_ok=True)
            if fmt == "pytorch":
                return zip_folder(folder, out, top)
            from textclf.onnx_export import export_onnx

            split = validation(info.study)
            export = self.workdir / f".{top}-{version}.onnx"
            export_onnx(folder, export, split.texts, split.labels, quantize=FORMATS[fmt][1], force=True)
            try:
                return zip_folder(export, out, top)
            finally:
                shutil.rmtree(export)  # made just above, inside the folder this object made
