"""Writing models as standard ``save_pretrained`` folders with label maps, thresholds and a model card.

Folders are written under a temporary name and renamed into place, so a reader never sees a half-written model.
Nothing is replaced that is not a model folder textclf wrote: its ``textclf.json`` lists the files it wrote, and a
folder holding anything else (or no such list) is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from textclf.errors import TextclfError

META_FILE = "textclf.json"
PROBS_FILE = "validation_probs.npy"
MAX_PROBS = 4_000_000  # values (rows x labels, 16 MB as float32): beyond this the error browser goes without
FILES_KEY = "files"  # in textclf.json: every file textclf wrote into the folder
# What save_pretrained and the tokenizers write: model folders kept before textclf.json listed its files.
WRITTEN_NAMES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "added_tokens.json",
                 "generation_config.json", "chat_template.jinja", "README.md"}


@dataclass
class ModelInfo:
    """What a saved model needs besides its weights: labels, task, threshold and where its numbers come from."""

    label_names: list[str]
    task: str
    backbone: str
    threshold: float | list[float] | None = None  # multi-label: one global threshold or one per class
    metrics: dict[str, Any] = field(default_factory=dict)   # {"validation": {...}, "test": {...}}
    params: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    study: str | None = None
    trial: int | None = None
    metric: str | None = None  # the study's metric: what "best" means for this model (older folders: the task's default)
    max_length: int | None = None  # the tokens per text it was trained on (older folders: None, the predictor's 512)
    truncation: str = "head"  # how a longer text was cut in training, and is cut for predictions: head or head_tail
    # Single-label: the logits are divided by this before the softmax (temperature scaling, fitted on validation,
    # textclf.calibration); None: not scaled (multi-label models, older folders).
    temperature: float | None = None
    calibration: dict[str, float] = field(default_factory=dict)  # validation ECE before and after the temperature

    @classmethod
    def load(cls, folder: str | Path) -> ModelInfo:
        path = Path(folder) / META_FILE
        if not path.is_file():
            raise TextclfError(f"{folder} is not a textclf model folder: {META_FILE} is missing; "
                               "pass a folder written by 'python -m textclf export'")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            info = cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError) as exc:  # unreadable, not JSON, or not an object of these fields
            raise TextclfError(f"{Path(folder).name}: its {META_FILE} cannot be read ({type(exc).__name__}); "
                               "export the model again") from None
        if not isinstance(info.label_names, list) or not isinstance(info.metrics, dict):
            raise TextclfError(f"{Path(folder).name}: its {META_FILE} lacks label names or metrics; export the model again")
        return info


def _model_card(info: ModelInfo) -> str:
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [textclf, text-classification]",
        "---",
        "",
        f"# Text classifier fine-tuned from `{info.backbone}` with textclf",
        "",
        f"Task: {info.task.replace('_', '-')} classification over {len(info.label_names)} labels: "
        + ", ".join(f"`{n}`" for n in info.label_names) + ".",
    ]
    if isinstance(info.threshold, list):
        lines.append("A label is predicted when its sigmoid probability is at least its own threshold, chosen per "
                     "class on the validation split: " + ", ".join(f"`{n}` {t:.2f}" for n, t in
                                                                     zip(info.label_names, info.threshold, strict=True)) + ".")
    elif info.threshold is not None:
        lines.append(f"A label is predicted when its sigmoid probability is at least {info.threshold:.2f} "
                     "(chosen on the validation split).")
    if info.temperature:
        cal = info.calibration
        ece = (f" (expected calibration error on validation {cal['validation_ece']:.3f} before, "
               f"{cal['validation_ece_scaled']:.3f} after)") if "validation_ece" in cal else ""
        lines.append(f"textclf divides the logits by a temperature of {info.temperature:.4f} before the softmax, "
                     f"fitted on the validation split{ece}; it changes the confidence, not the labels. "
                     "`pipeline()` does not know it: see Use.")
    if info.study is not None:
        lines.append(f"\nBest trial of backbone `{info.backbone}` in study `{info.study}` (trial {info.trial}).")
    for split, values in info.metrics.items():
        shown = {k: v for k, v in values.items() if isinstance(v, (int, float))}
        if shown:
            lines += ["", f"## Metrics on the {split} split", "", "| metric | value |", "| --- | --- |"]
            lines += [f"| {k} | {v:.4f} |" for k, v in shown.items()]
    if info.params:
        lines += ["", "## Hyperparameters", "", "| name | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in info.params.items()]
    if info.data:
        lines += ["", "## Data", "", "```json", json.dumps(info.data, indent=2, default=str), "```"]
    lines += ["", "## Use", "", "```python", "from transformers import pipeline",
              'clf = pipeline("text-classification", model="PATH/TO/THIS/FOLDER")',
              'print(clf("your text here", top_k=None))', "```", ""]
    if info.temperature:
        lines += ["For the calibrated probabilities textclf reports, take the logits and scale them:", "",
                  "```python", "import numpy as np",
                  'scores = clf("your text here", top_k=None, function_to_apply="none")  # logits',
                  f"z = np.array([s['score'] for s in scores]) / {info.temperature:.6f}",
                  "p = np.exp(z - z.max()); p /= p.sum()  # in the order of scores' labels", "```", ""]
    return "\n".join(lines)


def validation_probs(folder: str | Path, rows: int, labels: int) -> np.ndarray | None:
    """The probabilities a kept model gave the validation split (before temperature scaling), or None where the
    folder has none or they do not fit a split of ``rows`` rows and ``labels`` labels (another data set's)."""
    path = Path(folder) / PROBS_FILE
    try:
        p = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return p if p.shape == (rows, labels) else None


def is_model_folder(folder: str | Path) -> bool:
    """True for a folder textclf wrote: its textclf.json lists every file in it, and nothing else is there."""
    folder = Path(folder)
    try:
        written = json.loads((folder / META_FILE).read_text(encoding="utf-8")).get(FILES_KEY)
        present = {p.name for p in folder.iterdir()}
    except (OSError, ValueError, AttributeError):
        return False
    if written is None:
        written = sorted(WRITTEN_NAMES)
    return isinstance(written, list) and present <= {*written, META_FILE} and all(
        (folder / name).is_file() and not (folder / name).is_symlink() for name in present)


def check_replaceable(out: Path, force: bool) -> None:
    """Refuse (TextclfError) to put a model at ``out`` unless nothing is there, an empty folder is, or (with
    ``force``) a model folder textclf wrote is."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise TextclfError(f"{out} exists and is not a folder; choose a new path for the model")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not is_model_folder(out):
        shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
        raise TextclfError(f"{out} already holds files that textclf did not write ({shown}); textclf never replaces "
                           "them: choose a new path for the model")
    if not force:
        raise TextclfError(f"{out} already holds a textclf model; choose a new path, or pass --force to replace it")


def _replace_dir(tmp: Path, out: Path, force: bool) -> None:
    """Move ``tmp`` to ``out``; an existing model folder at ``out`` is moved aside first and removed after."""
    check_replaceable(out, force)
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):  # nothing there yet (or another writer just moved it aside)
        os.replace(out, old)
    os.replace(tmp, out)
    if old.exists() and (is_model_folder(old) or not any(old.iterdir())):
        shutil.rmtree(old)


def _finish(folder: Path) -> None:
    """List the files written in textclf.json, and give them the folder's own permissions: some writers (safetensors
    through a temporary file) leave 0600, which a model exported to share must not keep."""
    meta = folder / META_FILE
    raw = json.loads(meta.read_text(encoding="utf-8"))
    raw[FILES_KEY] = sorted(p.name for p in folder.iterdir() if p.name != META_FILE)
    meta.write_text(json.dumps(raw, indent=2, default=str), encoding="utf-8")
    mode = folder.stat().st_mode & 0o777 & 0o666  # the umask's file mode, read off the folder made just now
    for path in folder.iterdir():
        path.chmod(mode)


def save_model(model: Any, tokenizer: Any, out: str | Path, info: ModelInfo, force: bool = True,
               validation_probs: Any = None) -> Path:
    """Write a ``save_pretrained`` folder (model, tokenizer, labels, thresholds, model card) atomically, with the
    model's probabilities on the validation split if given (what the error browser and the reliability diagram
    read; rows in split order, before temperature scaling). An older model folder at ``out`` is replaced when
    ``force``; anything else there is never touched (TextclfError)."""
    out = Path(out).expanduser().resolve()
    with written_in_one_rename(out, force) as tmp:
        if validation_probs is not None and np.size(validation_probs) <= MAX_PROBS:
            np.save(tmp / PROBS_FILE, np.asarray(validation_probs, dtype=np.float32), allow_pickle=False)
        model.config.id2label = dict(enumerate(info.label_names))
        model.config.label2id = {n: i for i, n in enumerate(info.label_names)}
        if info.threshold is not None:
            model.config.textclf_threshold = info.threshold  # extra config keys travel with config.json
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _record_padding_side(tmp, tokenizer.padding_side)
        (tmp / META_FILE).write_text(json.dumps(asdict(info), indent=2, default=str), encoding="utf-8")
        (tmp / "README.md").write_text(_model_card(info), encoding="utf-8")
    return out


@contextlib.contextmanager
def written_in_one_rename(out: Path, force: bool) -> Iterator[Path]:
    """An empty folder beside ``out`` to write a model folder into; when the block ends, its files are listed in
    textclf.json and it is renamed to ``out`` (replacing an older model folder there only with ``force``). If the
    block raises, the folder is deleted and ``out`` is as it was."""
    check_replaceable(out, force)
    tmp = _new_tmp(out)
    try:
        yield tmp
        _finish(tmp)
        _replace_dir(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _record_padding_side(folder: Path, side: str) -> None:
    """save_pretrained keeps only constructor arguments, so a padding side set afterwards (left for XLNet, which
    classifies from the last token) would be lost and the reloaded tokenizer would pad on the right: write it down."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    config["padding_side"] = side
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def copy_model(src: str | Path, out: str | Path, force: bool = False) -> Path:
    """Copy a saved model folder to ``out`` atomically (used by ``export``). ``out`` must not exist, be an empty
    folder, or (with ``force``) be a model folder textclf wrote."""
    src, out = Path(src), Path(out).expanduser().resolve()
    ModelInfo.load(src)
    if out == src.resolve() or src.resolve().is_relative_to(out):
        raise TextclfError(f"{out} is where the model is kept, or a folder above it; choose another path")
    try:
        with written_in_one_rename(out, force) as tmp:
            for path in src.iterdir():  # the model's own files only: a kept folder holds nothing else
                if path.is_file() and not path.name.startswith("."):
                    shutil.copy2(path, tmp / path.name)
    except OSError as exc:
        raise TextclfError(f"cannot write the model to {out}: {exc.strerror or exc}; choose a writable folder") from exc
    return out


def _new_tmp(out: Path) -> Path:
    """An empty folder beside ``out`` to write into, renamed into place when complete."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
    except OSError as exc:
        raise TextclfError(f"cannot write the model to {out}: {exc.strerror or exc}; choose a writable folder") from exc
    return tmp
