"""Loading data: formats, column and task detection, splits, and one clear error per kind of bad data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from textclf.data import load_data
from textclf.errors import DataError


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def csv_rows(n: int = 20, labels: tuple[str, ...] = ("pos", "neg")) -> str:
    return "text,label\n" + "".join(f"sentence number {i},{labels[i % len(labels)]}\n" for i in range(n))


def test_bundled_samples_load_offline() -> None:
    single = load_data("demo")
    assert single.task == "single_label"
    assert single.label_names == ["complaint", "praise", "question"]
    assert (len(single.train), len(single.validation), len(single.test or [])) == (240, 60, 60)
    multi = load_data("demo-multilabel")
    assert multi.task == "multi_label"
    assert multi.label_names == ["delivery", "price", "quality", "service"]
    assert all(isinstance(labs, list) for labs in multi.train.labels)
    assert any(len(labs) > 1 for labs in multi.train.labels)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_every_supported_format(tmp_path: Path, suffix: str) -> None:
    import pandas as pd

    df = pd.DataFrame({"sentence": [f"text {i}" for i in range(30)], "category": ["a", "b", "c"] * 10})
    path = tmp_path / f"d{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        df.to_csv(path, index=False, sep="\t")
    elif suffix == ".json" or suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    data = load_data(str(path))
    assert (data.text_column, data.label_column) == ("sentence", "category")
    assert data.label_names == ["a", "b", "c"]
    assert len(data.train) + len(data.validation) == 30
    assert data.validation_from_train


def test_carved_validation_is_stratified_and_seeded(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", csv_rows(100, ("a", "b", "c", "d")))
    first, again = load_data(str(path), seed=3), load_data(str(path), seed=3)
    assert first.validation.texts == again.validation.texts
    assert Counter(first.validation.labels) == {0: 3, 1: 3, 2: 2, 3: 2} or set(Counter(first.validation.labels).values()) <= {2, 3}
    assert load_data(str(path), seed=4).validation.texts != first.validation.texts


def test_max_train_samples_is_a_stratified_subsample(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", csv_rows(200, ("a", "b")))
    data = load_data(str(path), max_train_samples=40)
    assert len(data.train) == 40
    assert Counter(data.train.labels) == {0: 20, 1: 20}
    assert any("subsample" in n for n in data.notes)


def test_a_split_that_cannot_be_stratified_says_so(tmp_path: Path) -> None:
    rows = "text,label\n" + "".join(f"t{i},{'rare' if i == 0 else 'common'}\n" for i in range(30))  # one 'rare' row
    data = load_data(str(write(tmp_path / "d.csv", rows)))
    assert any(n.startswith("validation: not stratified (a class has a single row)") for n in data.notes)
    assert any("carved 3 rows (10%) from train, at random" in n for n in data.notes)
    stratified = load_data(str(write(tmp_path / "e.csv", csv_rows(100, ("a", "b")))))
    assert not any("not stratified" in n for n in stratified.notes)


def test_integer_labels_and_explicit_columns(tmp_path: Path) -> None:
    rows = "id,body,y\n" + "".join(f"{i},text {i},{i % 3}\n" for i in range(30))
    data = load_data(str(write(tmp_path / "d.csv", rows)), text_column="body", label_column="y")
    assert data.label_names == ["0", "1", "2"]


def test_delimited_string_labels_are_multi_label(tmp_path: Path) -> None:
    rows = "text,tags\n" + "".join(f"t {i},{'a|b' if i % 2 else 'c'}\n" for i in range(30))
    data = load_data(str(write(tmp_path / "d.csv", rows)))
    assert data.task == "multi_label"
    assert data.label_names == ["a", "b", "c"]
    forced = load_data(str(write(tmp_path / "d.csv", rows)), task="single_label")
    assert forced.label_names == ["a|b", "c"]


def test_folder_with_splits_and_bom(tmp_path: Path) -> None:
    write(tmp_path / "train.csv", b"\xef\xbb\xbf" + csv_rows(20).encode())
    write(tmp_path / "dev.csv", csv_rows(6))
    data = load_data(str(tmp_path))
    assert data.text_column == "text"  # the BOM did not stick to the first header
    assert len(data.validation) == 6 and not data.validation_from_train


def test_empty_texts_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = csv_rows(20) + ',pos\n"   ",neg\n'
    data = load_data(str(write(tmp_path / "d.csv", rows)))
    assert len(data.train) + len(data.validation) == 20
    assert any("dropped 2 row(s) with an empty or missing text" in n for n in data.notes)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"missing.csv": None}, "does not exist"),
        ({"d.xlsx": "text,label\n"}, "unsupported format '.xlsx'"),
        ({"d.csv": ""}, "is empty"),
        ({"d.csv": "text,label\n"}, "header but no rows"),
        ({"d.csv": "words,stars\nhello,1\n"}, "no text column found"),
        ({"d.csv": "text,other\nhello,1\n"}, "no label column found"),
        ({"d.csv": csv_rows(10, ("only",))}, "only one class"),
        ({"d.csv": b"text,label\nhello \xff\xfe world,pos\n"}, "not UTF-8"),
        ({"d.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00"}, "binary"),
        ({"d.csv": "text,label,label\nhello,a,b\nworld,b,a\n"}, "duplicate column names"),
        ({"train.csv": csv_rows(10), "validation.csv": "text,label\nx,pos\ny,zzz\n"}, "labels ['zzz'] do not occur in train"),
        ({"d.csv": "text;label\nhello;a\nworld;b\n"}, "looks ';'-separated"),
    ],
    ids=["missing", "format", "empty-file", "header-only", "no-text-col", "no-label-col", "one-class", "non-utf8",
         "binary", "dup-columns", "unseen-val-label", "wrong-delimiter"],
)
def test_bad_data_gets_one_clear_line(tmp_path: Path, files: dict[str, str | bytes | None], message: str) -> None:
    for name, content in files.items():
        if content is not None:
            write(tmp_path / name, content)
    target = tmp_path if len(files) > 1 else tmp_path / next(iter(files))
    with pytest.raises(DataError) as err:
        load_data(str(target))
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_column_errors_list_the_columns_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"found columns \['words', 'stars'\]"):
        load_data(str(write(tmp_path / "d.csv", "words,stars\nhello,1\n")))


def test_preset_offline_without_data_dir_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEXTCLF_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="TEXTCLF_DATA_DIR"):
        load_data("sst2")


def test_preset_reads_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "trec6" / "train.csv", csv_rows(20, ("HUM", "LOC")))
    write(tmp_path / "trec6" / "validation.csv", csv_rows(4, ("HUM", "LOC")))
    monkeypatch.setenv("TEXTCLF_DATA_DIR", str(tmp_path))
    assert load_data("trec").label_names == ["HUM", "LOC"]


def test_multi_label_jsonl_rows_without_labels_are_kept_as_negatives(tmp_path: Path) -> None:
    lines = [json.dumps({"text": f"t{i}", "labels": ["a"] if i % 3 else []}) for i in range(30)]
    data = load_data(str(write(tmp_path / "d.jsonl", "\n".join(lines))))
    assert data.task == "multi_label"
    assert any("no label" in n for n in data.notes)


def test_hub_id_offline_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="Hugging Face Hub is off"):
        load_data("someone/some-dataset")
