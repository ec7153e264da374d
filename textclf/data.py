"""Loading labelled text: local files and folders, Hugging Face datasets, named presets and the bundled demo samples.

Everything ends up as a :class:`TextData`: train / validation (/ test) splits of plain texts and integer labels, the
label names and the task type. Bad data raises :class:`~textclf.errors.DataError` with a one-line message.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from textclf import hub
from textclf.errors import DataError

Task = Literal["single_label", "multi_label"]
TASKS: tuple[str, ...] = ("single_label", "multi_label")

SAMPLES_DIR = Path(__file__).parent / "samples"
SUPPORTED_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}
TEXT_COLUMN_CANDIDATES = ("text", "sentence", "sms", "content", "review", "document", "utterance", "comment",
                          "question", "body", "title")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "label_text", "category", "class", "target", "intent", "coarse_label",
                           "emotion", "sentiment", "tags", "y")
LABEL_DELIMITERS = ("|", ";")
HUB_PREFIX = "hub:"  # "hub:owner/name" is always a hub dataset id, never a local path (what the app passes on)
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95})?")
MAX_LABEL_CHARS = 200  # a longer "label" is nearly always a text column picked as the label column
MAX_PARQUET_EXPANSION = 50  # a parquet file may unpack to this many times its size (a 5 MB upload: 250 MB)
PARQUET_ALLOWANCE = 64 << 20  # ...and to this much whatever its size


@dataclass(frozen=True)
class Preset:
    """A named dataset: its hub id and columns online, its folder name under ``$TEXTCLF_DATA_DIR`` offline."""

    hub_id: str
    text_column: str
    label_column: str
    local_names: tuple[str, ...]
    hub_config: str | None = None
    task: Task = "single_label"


PRESETS: dict[str, Preset] = {
    "sst2": Preset("stanfordnlp/sst2", "sentence", "label", ("sst2",)),
    "trec": Preset("CogComp/trec", "text", "coarse_label", ("trec", "trec6")),
    "emotion": Preset("dair-ai/emotion", "text", "label", ("emotion",)),
    "ag_news": Preset("fancyzhx/ag_news", "text", "label", ("ag_news",)),
    "banking77": Preset("PolyAI/banking77", "text", "label", ("banking77",)),
    "sms_spam": Preset("ucirvine/sms_spam", "sms", "label", ("sms_spam",)),
    "go_emotions": Preset("google-research-datasets/go_emotions", "text", "labels", ("go_emotions", "goemotions"),
                          hub_config="simplified", task="multi_label"),
}
SAMPLES: dict[str, Path] = {"demo": SAMPLES_DIR / "demo", "demo-multilabel": SAMPLES_DIR / "demo_multilabel",
                            "demo-banking": SAMPLES_DIR / "demo_banking"}  # eight BANKING77 card intents, CC BY 4.0


@dataclass
class Split:
    """One split: texts and labels (an int per text, or a sorted list of ints for multi-label)."""

    texts: list[str]
    labels: list[Any]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TextData:
    """A labelled dataset ready for training."""

    train: Split
    validation: Split
    test: Split | None
    label_names: list[str]
    task: Task
    source: str
    text_column: str
    label_column: str
    validation_from_train: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: sizes, task, label names and anything noticed while loading."""
        return {
            "source": self.source,
            "task": self.task,
            "text_column": self.text_column,
            "label_column": self.label_column,
            "label_names": self.label_names,
            "sizes": {"train": len(self.train), "validation": len(self.validation),
                      "test": len(self.test) if self.test is not None else 0},
            "validation_from_train": self.validation_from_train,
            "notes": self.notes,
        }


def data_dir() -> Path | None:
    """The folder of offline preset data (``$TEXTCLF_DATA_DIR``), if set."""
    value = os.environ.get("TEXTCLF_DATA_DIR")
    return Path(value).expanduser() if value else None


# --------------------------------------------------------------------------------------------------------- reading
def _check_readable(path: Path) -> None:
    """Fail early, in plain words, on files that the format parsers would choke on with a traceback."""
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: expected a header row and at least one labelled row; fill it or pick another file")
    if path.suffix.lower() == ".parquet":
        _check_parquet(path)
        return
    head = path.read_bytes()[: 1 << 20]
    if b"\x00" in head:
        raise DataError(f"{path} looks like a binary file (it contains NUL bytes): expected UTF-8 text in "
                        f"{path.suffix} format; export your data as CSV, TSV, JSON Lines or Parquet")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the 1 MiB window is fine; anything earlier is a real encoding problem.
        if exc.start < len(head) - 4:
            raise DataError(f"{path} is not UTF-8 text: undecodable byte 0x{head[exc.start]:02x} at offset {exc.start}; "
                            "re-save the file with UTF-8 encoding") from None
    if not head.strip():
        raise DataError(f"{path} holds only white space: expected labelled rows; fill it or pick another file")
    if path.suffix.lower() in (".csv", ".tsv") and len(head) < (1 << 20) and not head.strip().count(b"\n"):
        raise DataError(f"{path} has a header but no rows: expected at least one labelled row under the header")


def _check_parquet(path: Path) -> None:
    """Refuse a parquet file that would unpack to far more than its size (a few MB of repeated values can expand to
    gigabytes in memory) before anything reads its columns; only its footer is read here."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:  # pyarrow raises several types for files that are not parquet
        raise DataError(f"could not read {path.name} as parquet: {str(exc).splitlines()[0] if str(exc) else exc}; "
                        "check the file's format") from None
    unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    allowed = max(MAX_PARQUET_EXPANSION * path.stat().st_size, PARQUET_ALLOWANCE)
    if unpacked > allowed:
        raise DataError(f"{path.name} unpacks to {unpacked / 1e6:,.0f} MB of data, more than "
                        f"{MAX_PARQUET_EXPANSION}x its size; expected a plain table of texts and labels: "
                        "save a smaller or less repetitive file")


def _columns_object(path: Path) -> dict[str, list[Any]] | None:
    """A .json file holding one object of columns ({"text": [...], "label": [...]}): its columns; else None.
    datasets would read such a file as a single row."""
    import json

    if path.suffix.lower() != ".json":
        return None
    with open(path, encoding="utf-8-sig") as fh:
        first = fh.read(1 << 16).lstrip()[:1]
        if first != "{":
            return None
        fh.seek(0)
        try:
            obj = json.load(fh)
        except ValueError:
            return None  # JSON Lines, or broken: datasets says which
        except RecursionError:
            raise DataError(f"{path.name} is nested too deeply to be a table: expected rows of a text and a label "
                            "(JSON Lines) or one object of columns") from None
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, list) for v in obj.values()):
        return None
    lengths = {k: len(v) for k, v in obj.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{path.name} holds one object of columns of different lengths ({lengths}); "
                        "give every column one value per row")
    return obj


def _read_file(path: Path) -> Any:
    """Read one local file into a ``datasets.Dataset``."""
    import datasets

    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"{path}: unsupported format {suffix or '(no extension)'!r}; expected one of "
                        f"{', '.join(SUPPORTED_SUFFIXES)}; convert the file or rename it with the right extension")
    _check_readable(path)
    columns = _columns_object(path)
    if columns is not None:
        return datasets.Dataset.from_dict(columns)
    builder = SUPPORTED_SUFFIXES[suffix]
    kwargs: dict[str, Any] = {}
    if builder == "csv":
        # utf-8-sig strips a byte-order mark, which would otherwise end up in the first column's name.
        kwargs = {"encoding": "utf-8-sig", "sep": "\t" if suffix == ".tsv" else ","}
    try:
        ds = datasets.load_dataset(builder, data_files={"train": str(path)}, split="train", **kwargs)
    except Exception as exc:  # the parsers raise many types; say which file failed and why, in one line
        cause = exc.__cause__ or exc
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise DataError(f"could not read {path} as {suffix[1:]}: {reason}; check the file's format") from exc
    # pandas renames a repeated header "label" to "label.1"; a silent rename would train on the wrong column.
    dupes = [c[:-2] for c in ds.column_names if c.endswith(".1") and c[:-2] in ds.column_names]
    if dupes:
        raise DataError(f"{path} has duplicate column names ({', '.join(dupes)}); give every column a unique header")
    return ds


def _find_split_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            matches = sorted(p for p in folder.iterdir() if p.stem.lower() == alias and p.suffix.lower() in SUPPORTED_SUFFIXES)
            if matches:
                found[split] = matches[0]
                break
    if "train" not in found:
        listing = ", ".join(sorted(p.name for p in folder.iterdir())[:20]) or "nothing"
        raise DataError(f"{folder} has no train file: expected train.csv/.tsv/.json/.jsonl/.parquet "
                        f"(plus optional validation and test files), found {listing}")
    return found


def _read_local(path: Path) -> dict[str, Any]:
    if path.is_dir():
        return {split: _read_file(p) for split, p in _find_split_files(path).items()}
    return {"train": _read_file(path)}


def check_hub_id(hub_id: str) -> str:
    """``hub_id`` if it has the shape of a Hugging Face dataset id ('name' or 'owner/name'), else a DataError."""
    if not HUB_ID_RE.fullmatch(hub_id) or ".." in hub_id:
        raise DataError(f"{hub_id[:100]!r} is not a Hugging Face dataset id: expected 'name' or 'owner/name' "
                        "(letters, digits, '_', '-', '.'); check the id on the hub")
    return hub_id


def hub_dataset_mb(hub_id: str, timeout: float = 10.0) -> float | None:
    """The size of a hub dataset's files in MB (all of its configs), or None when the hub cannot say (offline, an
    unknown id: loading it then gives the real error)."""
    if hub.offline():
        return None
    from huggingface_hub import HfApi

    hub.bound_requests()
    try:
        info = HfApi().dataset_info(hub_id, files_metadata=True, timeout=timeout)
    except Exception:  # network errors, unknown or gated repos: the loader reports those in its own words
        return None
    return sum(s.size or 0 for s in info.siblings or []) / 1e6


def _read_hub(hub_id: str, config: str | None, local_hint: bool = True, offline_hint: str | None = None
              ) -> dict[str, Any]:
    """A hub dataset's splits; offline (``HF_HUB_OFFLINE=1``), the copy a previous load left in the cache."""
    import datasets

    if not local_hint and (Path(hub_id).exists() or Path(f"{hub_id}.py").exists()):
        # datasets.load_dataset reads an id that names a local path as that path: a hub id must never do that.
        raise DataError(f"{hub_id!r} is refused as a dataset id here: it also names a path on this server; "
                        "give the dataset's full hub id, owner/name")
    if hub.offline():
        try:
            return dict(datasets.load_dataset(hub_id, config).items())
        except Exception:  # not in the cache: say what to do instead
            pass
        if offline_hint:
            raise DataError(offline_hint) from None
        if not local_hint:
            raise DataError(f"dataset {hub_id!r} would come from the Hugging Face Hub, which is off here "
                            f"(HF_HUB_OFFLINE=1) and it is not in the cache; pick a preset "
                            f"({', '.join([*SAMPLES, *PRESETS])}) or upload a file") from None
        raise DataError(f"{hub_id!r} is not a local file or folder, nor a preset ({', '.join([*SAMPLES, *PRESETS])}), "
                        "and the Hugging Face Hub is off (HF_HUB_OFFLINE=1); pass an existing path or a preset") from None
    try:
        hub.probe(hub_id, repo_type="dataset")  # a hub that does not answer, or no such dataset: one line, at once
    except hub.HubMissing as exc:
        raise DataError(str(exc)) from None
    except hub.HubUnreachable as exc:
        raise DataError(f"{exc}; with HF_HUB_OFFLINE=1 a copy already in the cache is used") from None
    try:
        dd = datasets.load_dataset(hub_id, config)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"could not load dataset {hub_id!r} from the Hugging Face Hub: {reason}; "
                        "check the id and your network, or pass a local file") from exc
    return dict(dd.items())


def _resolve_source(source: str, text_column: str | None, label_column: str | None, task: Task | None
                    ) -> tuple[dict[str, Any], str | None, str | None, Task | None]:
    if source.startswith(HUB_PREFIX):
        hub_id = check_hub_id(source.removeprefix(HUB_PREFIX).strip())
        return _read_hub(hub_id, None, local_hint=False), text_column, label_column, task
    if source in SAMPLES:
        return _read_local(SAMPLES[source]), text_column, label_column, task
    if source in PRESETS:
        preset = PRESETS[source]
        root = data_dir()
        local = next((root / n for n in preset.local_names if root and (root / n).is_dir()), None)
        if local is not None:
            return _read_local(local), text_column, label_column, task or preset.task
        where = f"$TEXTCLF_DATA_DIR ({root})" if root else "$TEXTCLF_DATA_DIR (not set)"
        missing = (f"preset {source!r} is not on disk: expected a folder {preset.local_names[0]}/ with "
                   f"train/validation files in {where}, and the hub is off; set TEXTCLF_DATA_DIR or go online")
        return (_read_hub(preset.hub_id, preset.hub_config, offline_hint=missing), text_column or preset.text_column,
                label_column or preset.label_column, task or preset.task)
    path = Path(source).expanduser()
    if path.exists():
        return _read_local(path), text_column, label_column, task
    if path.suffix.lower() in SUPPORTED_SUFFIXES or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise DataError(f"data file or folder {source!r} does not exist; give an existing path, a preset "
                        f"({', '.join([*SAMPLES, *PRESETS])}) or a Hugging Face dataset id")
    return _read_hub(source, None), text_column, label_column, task


# --------------------------------------------------------------------------------------------------------- columns
def _pick_column(columns: list[str], explicit: str | None, candidates: tuple[str, ...], what: str, flag: str) -> str:
    if explicit is not None:
        if explicit not in columns:
            raise DataError(f"{what} column {explicit!r} not found; the data has columns {columns}; pass one of them with {flag}")
        return explicit
    lowered = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    raise DataError(f"no {what} column found: expected one named like {', '.join(candidates[:5])}…, "
                    f"found columns {columns}; name it with {flag}")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _split_labels(value: Any, delimiter: str | None) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [v for v in value if not _is_missing(v)]
    if _is_missing(value):
        return []
    if isinstance(value, str) and delimiter:
        return [part.strip() for part in value.split(delimiter) if part.strip()]
    return [value]


def _detect_task(raw_labels: list[Any], forced: Task | None) -> tuple[Task, str | None]:
    """Multi-label when labels are lists or delimiter-separated strings; returns the task and the delimiter."""
    if forced is not None and forced not in TASKS:
        raise DataError(f"task must be one of {TASKS}, got {forced!r}")
    if any(isinstance(v, (list, tuple)) for v in raw_labels):
        if forced == "single_label":
            raise DataError("the label column holds lists (multi-label) but task single_label was forced; "
                            "drop the task override or use one label per row")
        return "multi_label", None
    if forced == "single_label":
        return "single_label", None
    strings = [v for v in raw_labels if isinstance(v, str)]
    for delim in LABEL_DELIMITERS:
        if any(delim in s for s in strings):
            return "multi_label", delim
    return forced or "single_label", None


def _label_sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


@dataclass
class _Rows:
    texts: list[str]
    labels: list[list[Any]]  # raw label values per row, already split for multi-label


def _rows(ds: Any, text_col: str, label_col: str, delimiter: str | None, split: str, notes: list[str],
          class_names: list[str] | None) -> _Rows:
    columns = ds.select_columns([text_col, label_col]).to_dict()  # plain lists: iterating datasets' Column is ~50x slower
    texts, labels = columns[text_col], columns[label_col]
    out = _Rows([], [])
    dropped_text = dropped_label = 0
    for text, label in zip(texts, labels, strict=True):
        if _is_missing(text):
            dropped_text += 1
            continue
        values = _split_labels(label, delimiter)
        if class_names is not None:  # integer class ids of a hub ClassLabel: -1 means unlabelled
            values = [class_names[v] for v in values if isinstance(v, int) and v >= 0]
        if not values and delimiter is None and not isinstance(label, (list, tuple)):
            dropped_label += 1
            continue
        out.texts.append(str(text))
        out.labels.append(values)
    if dropped_text:
        notes.append(f"{split}: dropped {dropped_text} row(s) with an empty or missing text")
    if dropped_label:
        notes.append(f"{split}: dropped {dropped_label} row(s) with a missing label")
    return out


def _class_names(ds: Any, label_col: str) -> list[str] | None:
    feature = ds.features.get(label_col)
    inner = getattr(feature, "feature", feature)  # List(ClassLabel) for multi-label hub datasets
    names = getattr(inner, "names", None)
    return list(names) if names else None


# --------------------------------------------------------------------------------------------------------- splits
def _stratify_key(labels: list[Any], task: Task) -> list[Any] | None:
    keys = [lab if task == "single_label" else (lab[0] if lab else -1) for lab in labels]
    counts = Counter(keys)
    return keys if min(counts.values()) >= 2 and len(counts) > 1 else None


def _take(split: Split, idx: Any) -> Split:
    return Split([split.texts[i] for i in idx], [split.labels[i] for i in idx])


def stratified_split(split: Split, task: Task, size: int | float, seed: int) -> tuple[Split, Split]:
    """Split off ``size`` rows (a count or a fraction), stratified by label where every class has two rows, else a
    seeded random split."""
    kept, taken, _ = _split(split, task, size, seed)
    return kept, taken


def _split(split: Split, task: Task, size: int | float, seed: int) -> tuple[Split, Split, str | None]:
    """:func:`stratified_split`, and why it could not be stratified (None when it was)."""
    from sklearn.model_selection import train_test_split

    idx = list(range(len(split)))
    strat = _stratify_key(split.labels, task)
    n_take = size if isinstance(size, int) else max(1, round(size * len(idx)))
    why = "a class has a single row" if strat is None else None
    if strat is not None and n_take < len(set(strat)):
        strat, why = None, f"{n_take} rows are fewer than the {len(set(strat))} classes"
    try:
        keep, take = train_test_split(idx, test_size=n_take, random_state=seed, stratify=strat)
    except ValueError:  # a class too small for the requested stratified split
        keep, take = train_test_split(idx, test_size=n_take, random_state=seed)
        why = "a class has too few rows for a stratified split of this size"
    return _take(split, sorted(keep)), _take(split, sorted(take)), why


def _not_stratified(what: str, why: str | None, notes: list[str]) -> None:
    if why:
        notes.append(f"{what}: not stratified ({why}): a seeded random split instead")


# --------------------------------------------------------------------------------------------------------- public
def read_texts(path: str | Path, text_column: str | None = None) -> list[str]:
    """The texts of one unlabelled file (for batch prediction); missing texts become empty strings."""
    ds = _read_file(Path(path))
    col = _pick_column(list(ds.column_names), text_column, TEXT_COLUMN_CANDIDATES, "text", "a header named 'text'")
    return ["" if _is_missing(t) else str(t) for t in ds[col]]


def load_data(
    source: str,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    task: Task | None = None,
    validation_fraction: float = 0.1,
    max_train_samples: int | None = None,
    seed: int = 42,
) -> TextData:
    """Load ``source`` (a file, a folder of split files, a preset, a bundled sample or a hub dataset id).

    The validation split is the given one, else a stratified ``validation_fraction`` of train carved with ``seed``.
    ``max_train_samples`` keeps a stratified subsample of train for quick studies.
    """
    if not 0 < validation_fraction < 1:
        raise DataError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    if max_train_samples is not None and max_train_samples < 2:
        raise DataError(f"max_train_samples must be at least 2, got {max_train_samples}")
    task_given = task
    splits, text_column, label_column, task = _resolve_source(source, text_column, label_column, task)
    if "train" not in splits:
        raise DataError(f"{source!r} has no train split (found {sorted(splits)}); provide a train split")
    train_ds = splits["train"]
    if len(train_ds) == 0:
        raise DataError(f"{source!r}: the train split has a header but no rows; add labelled rows")
    columns = list(train_ds.column_names)
    if len(columns) == 1:
        delim = next((d for d in (";", "\t", "|", ",") if d in columns[0]), None)
        hint = (f"it looks {'tab' if delim == chr(9) else repr(delim)}-separated; save it comma-separated as .csv "
                "(or tab-separated as .tsv)") if delim else "add a label column"
        raise DataError(f"{source!r}: found a single column {columns[0]!r}, expected a text and a label column; {hint}")
    text_col = _pick_column(columns, text_column, TEXT_COLUMN_CANDIDATES, "text", "--text-column")
    label_col = _pick_column([c for c in columns if c != text_col], label_column, LABEL_COLUMN_CANDIDATES, "label",
                             "--label-column")
    class_names = _class_names(train_ds, label_col)
    task, delimiter = _detect_task(train_ds[label_col][:1000], task)
    if task == "multi_label" and delimiter is None and not any(isinstance(v, (list, tuple)) for v in train_ds[label_col][:1000]):
        delimiter = "|"  # multi-label forced on plain strings: accept "a|b"

    notes: list[str] = []
    if delimiter is not None and task_given is None:
        notes.append(f"labels: some labels in column {label_col!r} contain {delimiter!r}, so the data was read as "
                     f"multi-label, each label split on {delimiter!r}; if {delimiter!r} is part of your label names, "
                     "set the task to single_label (--task single_label)")
    rows = {name: _rows(ds, text_col, label_col, delimiter, name, notes, class_names)
            for name, ds in splits.items() if name in SPLIT_ALIASES}
    for name, ds in splits.items():
        if name in rows and name != "train" and not rows[name].texts and len(ds):
            notes.append(f"{name}: no labelled rows, ignored")
    if not rows["train"].texts:
        raise DataError(f"{source!r}: no usable training rows (all {len(train_ds)} rows lack a text or a label); "
                        f"check columns {text_col!r} and {label_col!r}")

    seen = {v for labs in rows["train"].labels for v in labs}
    label_values = sorted(seen, key=_label_sort_key)
    if task == "single_label" and len(label_values) < 2:
        raise DataError(f"{source!r}: only one class ({label_values[0]!r}) in column {label_col!r}; "
                        "a classifier needs at least two classes")
    if task == "multi_label" and not label_values:
        raise DataError(f"{source!r}: no row has a label in column {label_col!r}; add labels")
    index = {v: i for i, v in enumerate(label_values)}
    label_names = [str(v) for v in label_values]
    longest = max(label_names, key=len)
    if len(longest) > MAX_LABEL_CHARS:
        raise DataError(f"{source!r}: a label in column {label_col!r} has {len(longest):,} characters, at most "
                        f"{MAX_LABEL_CHARS} are allowed; is {label_col!r} really the label column? "
                        "name the right one (--label-column)")
    if len(set(label_names)) != len(label_names):
        raise DataError(f"{source!r}: labels {label_values} collide once written as text; use distinct label names")
    empty_multi = sum(1 for labs in rows["train"].labels if not labs)
    if task == "multi_label" and empty_multi:
        notes.append(f"train: {empty_multi} row(s) have no label; kept as negatives for every class")

    def encode(name: str) -> Split | None:
        if name not in rows or not rows[name].texts:
            return None
        r = rows[name]
        unseen = sorted({v for labs in r.labels for v in labs if v not in index}, key=_label_sort_key)
        if unseen:
            raise DataError(f"{name} labels {[str(u) for u in unseen][:10]} do not occur in train "
                            f"(train has {label_names[:10]}{'…' if len(label_names) > 10 else ''}); "
                            "fix the label names or add such rows to train")
        if task == "single_label":
            return Split(r.texts, [index[labs[0]] for labs in r.labels])
        return Split(r.texts, [sorted(index[v] for v in labs) for labs in r.labels])

    train = encode("train")
    assert train is not None  # checked above: train has rows
    validation = encode("validation")
    test = encode("test")
    carved = validation is None
    if carved:
        if len(train) < 4:
            raise DataError(f"{source!r}: {len(train)} training rows are too few to carve a validation split; "
                            "add rows or a validation file")
        train, validation, why = _split(train, task, validation_fraction, seed)
        _not_stratified("validation", why, notes)
        how = "at random" if why else "stratified"
        notes.append(f"validation: no validation split given; carved {len(validation)} rows "
                     f"({validation_fraction:.0%}) from train, {how}, seed {seed}")
    assert validation is not None
    if max_train_samples is not None and max_train_samples < len(train):
        n_before = len(train)
        _, train, why = _split(train, task, max_train_samples, seed)
        _not_stratified("train", why, notes)
        how = "random" if why else "stratified"
        notes.append(f"train: {how} subsample of {len(train)} of {n_before} rows (seed {seed})")
    if task == "single_label" and len(set(train.labels)) < 2:
        raise DataError(f"{source!r}: the training rows left hold one class only; use more rows")
    return TextData(train=train, validation=validation, test=test, label_names=label_names, task=task,
                    source=source, text_column=text_col, label_column=label_col, validation_from_train=carved,
                    notes=notes)
