"""Tests for lite_moderation.data: formats, validation errors with file/line/field, and the real split."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lite_moderation.cli import main
from lite_moderation.data import Columns, DataError, Dataset, Record, load_dataset, read_records, sha256_file
from lite_moderation.taxonomy import CATEGORIES, LABELS

SHARED = Path(__file__).parent.parent.parent / "shared" / "data"
SELF_HARM = "self_harm"
VIOLENCE = "violence,aiding_and_abetting,incitement"


def record(prompt: str = "how do I bake bread?", response: str | None = "Mix flour and water.",
           flagged: tuple[str, ...] = (), is_safe: bool | None = None, **extra: object) -> dict:
    """A valid BeaverTails-style record; ``flagged`` lists the true categories."""
    obj: dict = {"prompt": prompt}
    if response is not None:
        obj["response"] = response
    obj["category"] = {key: key in flagged for key in CATEGORIES}
    obj["is_safe"] = not flagged if is_safe is None else is_safe
    obj.update(extra)
    return obj


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows are dicts (dumped as JSON), str (written as-is) or bytes (written raw)."""
    with open(path, "wb") as fh:
        for row in rows:
            if isinstance(row, bytes):
                fh.write(row + b"\n")
            elif isinstance(row, str):
                fh.write(row.encode() + b"\n")
            else:
                fh.write(json.dumps(row).encode() + b"\n")
    return path


def one_error(path: Path, **kwargs: object) -> DataError:
    """Read in fail mode and return the DataError raised."""
    with pytest.raises(DataError) as info:
        list(read_records(path, **kwargs))
    return info.value


# ------------------------------------------------------------------------------------------ text checks


def test_empty_string_text(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "fine"}, {"text": ""}])
    err = one_error(path)
    assert (err.line, err.field, err.message) == (2, "text", "text is empty")
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": ""}])
    assert one_error(path).field == "prompt"


def test_whitespace_only_text(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": " \t\u3000 "}])
    err = one_error(path)
    assert (err.line, err.field, err.message) == (1, "prompt", "text is empty")


def test_pair_with_empty_response_is_allowed_but_both_empty_is_not(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [record(response=""), record(prompt=" ", response="")])
    errors: list[DataError] = []
    records = list(read_records(path, on_error="skip", errors=errors))
    assert [r.pair for r in records] == [("how do I bake bread?", "")]
    assert [(e.line, e.field) for e in errors] == [(2, "prompt")]


def test_one_megabyte_record(tmp_path):
    big = "word " * 200_000 + "end"
    path = write_jsonl(tmp_path / "big.jsonl", [record(response=big), record()])
    records = list(read_records(path))
    assert len(records) == 2 and records[0].response == big
    csv_path = tmp_path / "big.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["prompt", "response"], ["q", big]])
    [row] = read_records(csv_path)
    assert row.response == big and row.line == 2


# ----------------------------------------------------------------------------------------- bad records


def test_non_utf8_bytes_skip_and_fail(tmp_path):
    good = json.dumps(record()).encode()
    bad = b'{"prompt": "caf\xe9", "response": "ok"}'
    path = write_jsonl(tmp_path / "d.jsonl", [good, bad, good])
    errors: list[DataError] = []
    records = list(read_records(path, on_error="skip", errors=errors))
    assert [r.line for r in records] == [1, 3]
    [err] = errors
    assert (err.line, err.field) == (2, None)
    assert err.message == "not valid UTF-8 (byte offset 15)"
    err = one_error(path)
    assert err.line == 2 and "not valid UTF-8" in str(err)


def test_non_utf8_in_csv_and_text(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_bytes(b"prompt,response\nq1,a1\nq2,\xff\xfe\nq3,a3\n")
    errors: list[DataError] = []
    assert [r.line for r in read_records(csv_path, on_error="skip", errors=errors)] == [2, 4]
    assert [e.line for e in errors] == [3]
    txt = tmp_path / "d.txt"
    txt.write_bytes(b"first\n\xc3\n")
    assert one_error(txt).line == 2


@pytest.mark.parametrize(("name", "content"), [
    ("in.txt", b"a note\ncaf\xe9 au lait\n"),
    ("in.jsonl", b'{"text": "a note"}\n{"text": "caf\xe9 au lait"}\n'),
    ("in.csv", b"id,text\n1,caf\xe9 au lait\n"),
    ("in.json", b'[{"text": "caf\xe9 au lait"}]'),
], ids=["text", "jsonl", "csv", "json"])
def test_a_latin1_file_is_told_to_be_utf8_and_how_to_convert_it(runner, tmp_path, name, content):
    """A user test: Latin-1 input got `not valid UTF-8 (byte offset N)` and no advice (UTF-16 got a hint)."""
    path = tmp_path / name
    path.write_bytes(content)
    for on_error in ("fail", "skip"):
        result = runner.invoke(main, ["score", "--model", "fast", "-i", str(path), "--on-error", on_error])
        a_row_is_good = on_error == "skip" and name in ("in.txt", "in.jsonl")
        assert result.exit_code == (0 if a_row_is_good else 2), result.stderr
        assert "not valid UTF-8 (byte offset" in result.stderr
        assert "must be UTF-8" in result.stderr and "iconv -f latin1 -t utf-8" in result.stderr, result.stderr


def test_a_json_file_that_is_not_utf8_names_the_line_of_the_byte(runner, tmp_path):
    """A .json file is read whole; its error gave the byte's offset into the file, `in.json: not valid UTF-8 (byte
    offset 35)`: now the line, and the offset in it, as every line reader says (one function)."""
    path = tmp_path / "in.json"
    path.write_bytes(b'[{"text": "a note"},\n {"text": "caf\xe9"}]')
    result = runner.invoke(main, ["score", "--model", "fast", "-i", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:2: not valid UTF-8 (byte offset 14)" in result.stderr and "iconv -f latin1" in result.stderr


def test_the_encoding_advice_is_given_once_per_file(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"caf\xe9\nna\xefve\nfine\n")
    errors: list[DataError] = []
    assert [r.line for r in read_records(path, on_error="skip", errors=errors)] == [3]
    assert ["iconv" in (e.hint or "") for e in errors] == [True, False]


def _zip_bytes(text: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("in.jsonl", text)
    return buffer.getvalue()


def _zstd_bytes(text: bytes) -> bytes:
    """One zstd frame holding ``text`` as a raw block (``zstd -d`` reads it; the standard library has no zstd)."""
    return b"\x28\xb5\x2f\xfd" + bytes([0x20, len(text)]) + ((len(text) << 3) | 1).to_bytes(3, "little") + text


@pytest.mark.parametrize(("kind", "suffix", "compress", "advice"), [
    ("bzip2", ".bz2", bz2.compress, "bunzip2 -k"),
    ("zip", ".zip", _zip_bytes, "unzip"),
    ("zstd", ".zst", _zstd_bytes, "zstd -d"),
])
def test_a_compression_the_reader_does_not_open_is_named_with_how_to_decompress(runner, tmp_path, kind, suffix,
                                                                                compress, advice):
    """A user test: a .bz2 file was read as text, `not valid UTF-8 (byte offset N)`. Told by its magic bytes, under
    any name and on stdin: which compression it is, which ones are read (.gz, .xz), and how to decompress it."""
    data = compress(b'{"text": "a note about tea"}\n')
    reports = []
    for name in (f"in.jsonl{suffix}", "in.jsonl"):
        path = tmp_path / name
        path.write_bytes(data)
        result = runner.invoke(main, ["score", "--model", "fast", "-i", str(path)])
        reports.append((result.exit_code, result.stderr))
    piped = subprocess.run([sys.executable, "-m", "lite_moderation", "score", "--model", "fast", "-i", "-"],
                           input=data, capture_output=True, timeout=300, check=False)  # a real stdin, as sniffed
    reports.append((piped.returncode, piped.stderr.decode()))
    for exit_code, stderr in reports:
        assert exit_code == 2 and "UTF-8" not in stderr, stderr
        assert f"{kind}-compressed" in stderr and ".gz" in stderr and ".xz" in stderr and advice in stderr, stderr


def test_bom_is_tolerated(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(record()).encode() + b"\n")
    assert len(list(read_records(path))) == 1
    csv_path = tmp_path / "d.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfprompt,response\nq,a\n")
    assert [r.pair for r in read_records(csv_path)] == [("q", "a")]


def test_jsonl_line_not_json_reports_right_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [record(), "", '{"prompt": "x",', record()])
    assert (one_error(path).line, one_error(path).message) == (2, "blank line: no record on it")
    errors: list[DataError] = []
    assert [r.line for r in read_records(path, on_error="skip", errors=errors)] == [1, 4]
    err = errors[1]
    assert (len(errors), err.line, err.field) == (2, 3, None)
    assert err.message.startswith("not valid JSON: ")
    assert str(err).startswith(f"{path}:3: not valid JSON")


def test_json_not_an_object(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ['["a", "b"]'])
    assert "expected a JSON object, got array" in one_error(path).message


def test_missing_prompt(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [record(), {"response": "only an answer"}])
    err = one_error(path)
    assert (err.line, err.field) == (2, "prompt") and "missing" in err.message


def test_prompt_not_a_string(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [record(prompt=12)])
    err = one_error(path)
    assert err.field == "prompt" and err.message == "expected a string, got number"


def test_category_missing_key(tmp_path):
    row = record()
    for key in CATEGORIES[:5]:
        del row["category"][key]
    err = one_error(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert err.field == "category"
    assert "missing keys 'animal_abuse', 'child_abuse', 'controversial_topics,politics' and 2 more" in err.message


def test_category_unknown_key(tmp_path):
    row = record()
    row["category"]["violence"] = True
    err = one_error(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert err.field == "category" and "unknown key 'violence'" in err.message


def test_category_value_not_boolean(tmp_path):
    row = record()
    row["category"][SELF_HARM] = 2
    err = one_error(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert err.field == "category" and f"'{SELF_HARM}': expected true/false (or 1/0, yes/no), got the number 2" \
        in err.message


def test_is_safe_not_boolean(tmp_path):
    err = one_error(write_jsonl(tmp_path / "data.jsonl", [record(), record(), record(is_safe="maybe")]))
    assert (err.line, err.field) == (3, "is_safe")
    assert str(err) == (f"{tmp_path / 'data.jsonl'}:3: field 'is_safe': expected true/false (or 1/0, yes/no), got "
                        "'maybe'. Fix the record or pass --on-error skip.")


def test_is_safe_inconsistent_with_categories(tmp_path):
    err = one_error(write_jsonl(tmp_path / "d.jsonl", [record(flagged=(SELF_HARM,), is_safe=True)]))
    assert err.field == "is_safe" and SELF_HARM in err.message


def test_skip_mode_accounts_for_every_record(tmp_path):
    rows = [record(), "nope", {"text": ""}, record(is_safe=3), record(), ""]
    errors: list[DataError] = []
    records = list(read_records(write_jsonl(tmp_path / "d.jsonl", rows), on_error="skip", errors=errors))
    assert [r.line for r in records] == [1, 5]
    assert [e.line for e in errors] == [2, 3, 4, 6]


def test_bad_options(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [record()])
    with pytest.raises(ValueError, match="on_error"):
        read_records(path, on_error="ignore")
    with pytest.raises(ValueError, match="errors list"):
        read_records(path, on_error="skip")
    with pytest.raises(ValueError, match="require"):
        read_records(path, require="everything")


def test_data_error_is_one_pickleable_line():
    err = DataError("d.jsonl", 12, "is_safe", "expected true/false,\ngot string", hint="Fix it.")
    assert "\n" not in str(err) and isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.line, copy.field, copy.hint, str(copy)) == ("d.jsonl", 12, "is_safe", "Fix it.", str(err))
    assert str(DataError("d.jsonl", message="file has no records")) == "d.jsonl: file has no records"


# --------------------------------------------------------------------------------------- file problems


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    err = one_error(empty, on_error="skip", errors=[])
    assert err.message == "file has no records" and err.line is None
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    assert one_error(blank).message == "file has no records"
    assert one_error(tmp_path / "nothing.jsonl").message == "no such file"


def test_json_that_is_not_a_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(record()))
    assert "expected a JSON list" in one_error(path).message


# ------------------------------------------------------------------------------------------------- CSV


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def test_csv_without_needed_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["question", "answer"], [["q", "a"]])
    err = one_error(path, on_error="skip", errors=[])
    assert (err.line, err.field) == (1, "prompt")
    assert "found columns: 'question', 'answer'" in err.message
    path = write_csv(tmp_path / "p.csv", ["prompt", "response"], [["q", "a"]])
    err = one_error(path, require="labels")
    assert (err.line, err.field) == (1, "is_safe")
    path = write_csv(tmp_path / "c.csv", ["prompt", *CATEGORIES[:-1]], [["q", *["0"] * 13]])
    err = one_error(path)
    assert err.field == "category" and repr(VIOLENCE) in err.message


def test_csv_happy_path(tmp_path):
    header = ["id", "prompt", "response", "is_safe", *CATEGORIES]
    flags = ["no"] * len(CATEGORIES)
    flagged = list(flags)
    flagged[CATEGORIES.index(SELF_HARM)] = "YES"
    rows = [["1", "q1", "a1", "True", *flags], ["2", "q2", "multi\nline", "0", *flagged], ["3", "q3", "a3", "", *flags]]
    records = list(read_records(write_csv(tmp_path / "d.csv", header, rows), require="labels"))
    assert [r.line for r in records] == [2, 3, 5]
    assert [r.is_safe for r in records] == [True, False, True]
    assert records[1].pair == ("q2", "multi\nline")
    assert records[1].categories[CATEGORIES.index(SELF_HARM)] and sum(records[1].categories) == 1


def test_a_prompt_without_response_is_a_prompt_alone_and_a_text_is_a_text_alone(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "where is the station"}, {"text": "where is the station"}])
    assert [r.pair for r in read_records(path)] == [("where is the station", ""), "where is the station"]
    csv_path = write_csv(tmp_path / "d.csv", ["prompt"], [["where is the station"]])
    assert [r.pair for r in read_records(csv_path)] == [("where is the station", "")]


def test_csv_category_json_column_and_text_column(tmp_path):
    cat = json.dumps({key: key == VIOLENCE for key in CATEGORIES})
    path = write_csv(tmp_path / "d.csv", ["prompt", "response", "category"], [["q", "a", cat]])
    [rec] = read_records(path, require="categories")
    assert rec.is_safe is False and rec.categories[-1]
    [rec] = read_records(write_csv(tmp_path / "t.csv", ["text"], [["hello there"]]))
    assert rec.pair == "hello there" and rec.line == 2


def test_csv_is_safe_not_boolean(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["prompt", "response", "is_safe"], [["q", "a", "true"], ["q", "a", "maybe"]])
    err = one_error(path)
    assert (err.line, err.field) == (3, "is_safe") and "'maybe'" in err.message


FLAGS = [(True, True), (1, True), (1.0, True), ("yes", True), ("TRUE", True), (" 1 ", True),
         (False, False), (0, False), (0.0, False), ("No", False), ("false", False), ("0", False)]


@pytest.mark.parametrize("suffix", ["jsonl", "json", "csv"])
@pytest.mark.parametrize("field", ["is_safe", SELF_HARM])
def test_a_label_flag_is_read_by_one_rule_in_every_format(tmp_path, suffix, field):
    """CSV read is_safe 1/0 and yes/no where JSONL refused the numbers 1 and 0 (pandas' to_json of an int label
    column) and "true" (a user's exploratory round); one rule now reads every label flag, categories too."""
    def labels(value: object) -> dict:
        return {"is_safe": value} if field == "is_safe" else {key: value if key == SELF_HARM else False
                                                               for key in CATEGORIES}
    path = tmp_path / f"d.{suffix}"
    if suffix == "csv":
        names = list(labels(True))
        write_csv(path, ["prompt", "response", *names], [[f"q{i}", "a", *map(str, labels(value).values())]
                                                          for i, (value, _) in enumerate(FLAGS)])
    else:
        rows = [{"prompt": f"q{i}", "response": "a", **({"category": labels(value)} if field != "is_safe"
                                                        else labels(value))} for i, (value, _) in enumerate(FLAGS)]
        path.write_text(json.dumps(rows) if suffix == "json" else "".join(json.dumps(row) + "\n" for row in rows))
    records = list(read_records(path, require="labels"))
    read = [r.is_safe if field == "is_safe" else r.categories[CATEGORIES.index(SELF_HARM)] for r in records]
    assert read == [flag for _, flag in FLAGS]


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
@pytest.mark.parametrize("value, shown", [("maybe", "'maybe'"), (2, "the number 2"), ("-1", "'-1'")])
def test_anything_else_as_is_safe_is_one_located_error_saying_the_rule(tmp_path, suffix, value, shown):
    path = tmp_path / f"d.{suffix}"
    if suffix == "csv":
        write_csv(path, ["prompt", "response", "is_safe"], [["q", "a", "1"], ["q", "a", str(value)]])
        shown = shown.replace("the number 2", "'2'")
    else:
        write_jsonl(path, [{"prompt": "q", "response": "a", "is_safe": 1}, {"prompt": "q", "response": "a",
                                                                          "is_safe": value}])
    err = one_error(path, require="labels")
    assert (err.line, err.field, err.message) == (2 + (suffix == "csv"), "is_safe",
                                                  f"expected true/false (or 1/0, yes/no), got {shown}")


def test_evaluate_reads_a_jsonl_file_labelled_1_and_0(runner, tiny_model_dir, tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [{"prompt": "tell me about the garden please", "response": "it is",
                                               "is_safe": i % 2} for i in range(4)])
    result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "-i", str(path), "--bootstrap", "0",
                                  "-q"])
    assert result.exit_code == 0, result.stderr
    assert "rows: 4" in result.stdout


# ------------------------------------------------------------------------------------- other formats


def test_json_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([record(), {"text": "plain text"}, {"prompt": 5}]))
    errors: list[DataError] = []
    records = list(read_records(path, on_error="skip", errors=errors))
    assert [(r.line, r.pair) for r in records] == [(1, ("how do I bake bread?", "Mix flour and water.")),
                                                   (2, "plain text")]
    assert [(e.element, e.line, e.field) for e in errors] == [(3, 1, "prompt")]  # all on line 1


def test_a_json_arrays_bad_record_is_named_by_element_and_the_line_it_starts_on(tmp_path):
    """A .json error names the element and the line a user can open, not the element number as a line; the
    records' own ``line`` stays the element number, so output rows stay aligned however the file is laid out."""
    elements = [record(), {"text": "plain\ntext", "id": 7}, {"prompt": 5, "response": "r"}, {"text": "last"}]
    text = json.dumps(elements, indent=2)
    path = tmp_path / "d.json"
    path.write_text(text)
    starts = [n for n, line in enumerate(text.splitlines(), 1) if line == "  {"]
    assert len(starts) == 4 and starts[2] > 3
    errors: list[DataError] = []
    records = list(read_records(path, on_error="skip", errors=errors))
    assert [r.line for r in records] == [1, 2, 4] and [r.start_line for r in records] == [starts[0], starts[1], starts[3]]
    [error] = errors
    assert (error.element, error.line, error.field) == (3, starts[2], "prompt")
    assert str(error).startswith(f"{path}: element 3 (line {starts[2]}): field 'prompt': expected a string")
    with pytest.raises(DataError, match=rf"d\.json: element 3 \(line {starts[2]}\): field 'prompt'"):
        load_dataset(path, require="none")


@pytest.mark.parametrize(("suffix", "opener"), [(".jsonl.gz", gzip.open), (".jsonl.xz", lzma.open)])
def test_compressed_jsonl(tmp_path, suffix, opener):
    path = tmp_path / f"d{suffix}"
    with opener(path, "wb") as fh:
        fh.write(b"\n".join(json.dumps(record(flagged=(SELF_HARM,) * (i % 2))).encode() for i in range(5)))
    records = list(read_records(path))
    assert [r.line for r in records] == [1, 2, 3, 4, 5]
    assert [r.is_safe for r in records] == [True, False, True, False, True]


def test_truncated_gzip_is_a_file_error(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(json.dumps(record()).encode() for _ in range(50)))[:-30])
    assert "cannot read the file" in one_error(path, on_error="skip", errors=[]).message


def test_text_file(tmp_path):
    path = tmp_path / "d.txt"
    path.write_bytes(b"first text\r\n\n  second text  \nthird")
    errors: list[DataError] = []
    records = list(read_records(path, on_error="skip", errors=errors))
    assert [(r.line, r.pair) for r in records] == [(1, "first text"), (3, "  second text  "), (4, "third")]
    assert [(e.line, e.message) for e in errors] == [(2, "blank line: no record on it")]
    assert all(r.response is None and r.categories is None and r.is_safe is None for r in records)


def test_auto_detection_unknown_suffix(tmp_path):
    jsonl = write_jsonl(tmp_path / "d.data", ["", record()])
    [rec] = read_records(jsonl, on_error="skip", errors=[])
    assert rec.line == 2 and rec.is_safe is True
    text = tmp_path / "t.data"
    text.write_text("\n[not json]\n")
    assert [r.pair for r in read_records(text, on_error="skip", errors=[])] == ["[not json]"]
    assert [r.pair for r in read_records(jsonl, fmt="text", on_error="skip", errors=[])] == [json.dumps(record())]


@pytest.mark.parametrize("compress", [False, True])
def test_stdin_auto_detection(monkeypatch, compress):
    data = json.dumps(record()).encode() + b"\n"
    data = gzip.compress(data) if compress else data
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    [rec] = read_records("-")
    assert rec.pair == ("how do I bake bread?", "Mix flour and water.")


# ----------------------------------------------------------------------------------- labels, Dataset


def test_require_labels_derives_is_safe_from_categories(tmp_path):
    rows = [record(), record(flagged=(VIOLENCE,)), record()]
    for row in rows:
        del row["is_safe"]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert [r.is_safe for r in read_records(path)] == [None, None, None]
    assert [r.is_safe for r in read_records(path, require="labels")] == [True, False, True]
    unlabelled = write_jsonl(tmp_path / "u.jsonl", [{"prompt": "q", "response": "a"}])
    err = one_error(unlabelled, require="labels")
    assert err.field == "is_safe" and err.hint
    assert one_error(unlabelled, require="categories").field == "category"


def test_dataset_y_shape(tmp_path):
    rows = [record(), record(flagged=(SELF_HARM, VIOLENCE)), record(prompt="other prompt")]
    ds = load_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    assert isinstance(ds, Dataset) and len(ds) == 3
    assert ds.y.shape == (3, len(LABELS)) and ds.y.dtype == bool
    assert ds.y[1].tolist() == [key in (SELF_HARM, VIOLENCE) for key in CATEGORIES] + [True]
    assert ds.unsafe.tolist() == [False, True, False]
    assert ds.lines == [1, 2, 3] and ds.prompts[2] == "other prompt"
    binary = load_dataset(write_jsonl(tmp_path / "b.jsonl", [{"prompt": "q", "response": "a", "is_safe": False}]))
    assert binary.categories is None and binary.unsafe.tolist() == [True]
    assert binary.labels.categories == () and binary.y.tolist() == [[True]]  # is_safe alone: a binary target


def test_load_dataset_with_no_valid_records(tmp_path):
    errors: list[DataError] = []
    with pytest.raises(DataError, match="no valid records"):
        load_dataset(write_jsonl(tmp_path / "d.jsonl", ["bad"]), on_error="skip", errors=errors)
    assert len(errors) == 1


def test_record_pair():
    assert Record("q", "a", None, None, 1).pair == ("q", "a")
    assert Record("q", None, None, None, 1).pair == "q"


# --------------------------------------------------------------------------------------- real data


def test_real_beavertails_30k_test():
    path = SHARED / "beavertails" / "30k_test.jsonl"
    assert sha256_file(path) == "ebc81efa924ce4faf34c984d37c16f942f19825b65e0668ccda4a884fd092b63"
    ds = load_dataset(path, require="categories")
    assert len(ds) == 3021
    assert int(ds.unsafe.sum()) == 1733
    assert len(set(ds.prompts)) == 2526
    counts = dict(zip(CATEGORIES, ds.categories.sum(axis=0).tolist()))
    assert counts[VIOLENCE] == 724 and counts[SELF_HARM] == 19
    assert np.array_equal(ds.unsafe, ds.categories.any(axis=1))
    assert ds.y.shape == (3021, 15)


@pytest.mark.parametrize(("first_line", "fmt"), [
    (b"text, what a lovely day\n", "text"),        # a sentence after a comma is no column name
    (b"prompt,\tand then some words\n", "text"),
    (b"text,author,date\n", "csv"),
    (b"id\tprompt\tresponse\tis_safe\n", "tsv"),
    (b'"text","Unnamed:0",""\n', "csv"),            # quoted names, an unnamed index column
    (b"user message,stars\n", "text"),             # a name with a space is read only when named (next test)
])
def test_stdin_header_sniffing_spares_sentences(monkeypatch, first_line, fmt):
    data = first_line + b"hello there\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    errors = []
    records = list(read_records("-", on_error="skip", errors=errors))
    if fmt == "text":  # every line is a text: nothing consumed as a header, nothing lost
        assert [r.pair for r in records] == [first_line.decode().rstrip("\n"), "hello there"] and not errors
    else:  # a header: the next line is a row of it (here one field short, reported with its line)
        assert not records and [e.line for e in errors] == [2]


def test_stdin_header_with_a_named_spaced_column(monkeypatch):
    data = b"user message,stars\nhello there,5\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    [record] = read_records("-", columns=Columns(text="user message"))
    assert record.pair == "hello there" and record.line == 2
