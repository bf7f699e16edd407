"""Input files read as their user meant (a user's exploratory round): the column named is the one scored, a
pair's answer is never dropped for being unnamed, a malformed CSV row loses only itself, and a run that scored
nothing leaves an existing output file as it was.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

import lite_moderation as lm
from lite_moderation.cli import main
from lite_moderation.data import Columns


def _texts(path, **columns) -> list:
    errors: list = []
    records = lm.read_records(path, on_error="skip", errors=errors, columns=Columns(**columns) if columns else None)
    return [(r.line, r.pair) for r in records], [(e.line, e.message) for e in errors]


def _write_record(path, record: dict) -> None:
    """One record as a CSV row under its header, or as a JSONL line (by the path's suffix)."""
    if path.suffix == ".csv":
        path.write_text(",".join(record) + "\n" + ",".join(record.values()) + "\n")
    else:
        path.write_text(json.dumps(record) + "\n")


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
@pytest.mark.parametrize("record, columns, read", [
    ({"prompt": "the prompt cell", "comment": "the comment cell"}, {"text": "comment"}, "the comment cell"),
    ({"q": "a question", "response": "an answer"}, {"prompt": "q"}, ("a question", "an answer")),
], ids=["a named text column wins over a prompt column", "a named prompt keeps the default response column"])
def test_the_named_columns_are_read_alike_in_csv_and_jsonl(tmp_path, suffix, record, columns, read):
    path = tmp_path / f"in.{suffix}"
    _write_record(path, record)
    rows, errors = _texts(path, **columns)
    assert [pair for _, pair in rows] == [read] and not errors


def test_a_named_response_column_alone_reads_the_default_prompt_column(tmp_path, runner, tiny_model_dir):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"prompt": "a question", "answer": "an answer"}) + "\n")
    rows, _ = _texts(path, response="answer")
    assert [pair for _, pair in rows] == [("a question", "an answer")]
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "--response-column",
                                  "answer", "-q"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_an_unclosed_quote_loses_its_row_only(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,first row\n2,"a quote never closed\n3,third row\n4,fourth row\n')
    rows, errors = _texts(path)
    assert rows == [(2, "first row"), (4, "third row"), (5, "fourth row")]
    assert [line for line, _ in errors] == [3] and "never closed" in errors[0][1]


def test_a_tsv_cell_is_its_text_quotes_and_all_from_a_file_and_from_stdin(runner, tmp_path):
    """TSV has no quoting (a user test: a .tsv cell starting with a quoted word was refused by CSV's rules, "closing
    quote is followed by more than a delimiter"): every character between two tabs is the cell's text, quotes
    included, in a .tsv file and in a table sniffed on stdin. The same cells in a CSV file keep CSV's rules."""
    cells = ['"quoted" start', '"a quote never closed', 'ends in a quote"', '"a whole quoted cell"', 'said ""twice""']
    table = "id\ttext\n" + "".join(f"{i}\t{cell}\n" for i, cell in enumerate(cells, 1))
    path = tmp_path / "in.tsv"
    path.write_text(table)
    assert _texts(path) == ([(i, cell) for i, cell in enumerate(cells, 2)], [])
    for args, stdin in ((["-i", str(path)], None), (["-i", "-"], table)):
        result = runner.invoke(main, ["score", "--model", "fast", *args, "--format", "jsonl"], input=stdin)
        assert result.exit_code == 0, result.stderr
        assert [(row["line"], row["id"]) for row in map(json.loads, result.stdout.splitlines())] == \
            [(i, str(i - 1)) for i in range(2, 7)]
        assert "skipped: 0" in result.stderr, result.stderr
    as_csv = tmp_path / "in.csv"
    as_csv.write_text(f"id,text\n1,{cells[0]}\n")
    assert _texts(as_csv) == ([], [(2, "a quoted cell's closing quote (\") is followed by more than a delimiter")])


def test_a_quoted_cell_over_several_lines_is_still_one_row(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,"line one\nline two"\n2,after\n3,"last one\nends the file"')
    rows, errors = _texts(path)
    assert rows == [(2, "line one\nline two"), (4, "after"), (5, "last one\nends the file")] and not errors


def test_an_unclosed_quote_that_the_next_rows_quote_closes_loses_its_row_only(runner, tiny_model_dir, tmp_path):
    """csv's lenient mode read row 1's cell up to row 2's opening quote and on (`first\n2,second row"`): row 2
    vanished without a report (a user's exploratory round)."""
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,"first\n2,"second row"\n3,third\n')
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "--format", "jsonl"])
    assert result.exit_code == 0, result.stderr
    assert [(row["line"], row["id"]) for row in map(json.loads, result.stdout.splitlines())] == [(3, "2"), (4, "3")]
    assert f"skipped: {path}:2: a quote (\") opened here runs on to line 3" in result.stderr
    assert "rows in: 3, scored: 2, skipped: 1" in result.stderr


def test_a_quoted_cell_followed_by_more_than_a_delimiter_is_one_bad_row_and_quoted_lines_still_read(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,"said ""hi""\n\nand left"\n2,"quoted" then more\n3,after\n')
    rows, errors = _texts(path)
    assert rows == [(2, 'said "hi"\n\nand left'), (6, "after")]
    assert errors == [(5, "a quoted cell's closing quote (\") is followed by more than a delimiter")]


def test_a_carriage_return_inside_an_unquoted_cell_is_one_bad_row(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,text\n1,hello\n2,stray\rcarriage return\n3,world\n")
    rows, errors = _texts(path)
    assert rows == [(2, "hello"), (4, "world")]
    assert errors == [(3, "not valid CSV: a carriage return (CR) inside an unquoted cell")]


@pytest.mark.parametrize("name, content, scored, reported", [
    ("in.txt", "hello\n\n   \n\t\nworld\n", [1, 5], ["2: blank lines: no record on them (lines 2-4, 3 lines)"]),
    ("in.jsonl", '{"text": "hello"}\n\n{"text": "world"}\n \n', [1, 3], ["2: blank line", "4: blank line"]),
    ("in.csv", "id,text\n1,\n3,hello\n,\n\n", [3], ["2: field 'text': text is empty",
                                                     "4: field 'text': text is empty", "5: blank line"]),
], ids=["text", "jsonl", "csv"])
def test_blank_lines_and_empty_rows_are_reported_with_their_line_in_every_format(runner, tiny_model_dir, tmp_path,
                                                                                name, content, scored, reported):
    """Whitespace lines in text input and "," rows in CSV were neither scored nor reported (a user's exploratory
    round); every line is a row, but the newline that ends the file starts none."""
    path = tmp_path / name
    path.write_text(content)
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "-q"])
    assert result.exit_code == 0, result.stderr
    assert [row["line"] for row in map(json.loads, result.stdout.splitlines())] == scored
    skipped = [line.removeprefix(f"skipped: {path}:") for line in result.stderr.splitlines()
               if line.startswith("skipped: ")]
    assert [line[:len(want)] for line, want in zip(skipped, reported)] == reported and len(skipped) == len(reported)
    rows_in = content.count("\n") - (name == "in.csv")
    assert f"rows in: {rows_in}, scored: {len(scored)}, skipped: {rows_in - len(scored)}," in result.stderr


def test_a_file_of_blank_lines_has_no_records_and_a_blank_line_fails_a_training_run_at_its_line(runner, tmp_path):
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n \n\n")
    with pytest.raises(lm.DataError, match="file has no records. Apart from 3 blank lines, it holds none"):
        _texts(blank)
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "hi", "response": "hello", "is_safe": true}\n\n')
    result = runner.invoke(main, ["cv", "--data", str(data), "--folds", "2", "-q"])
    assert result.exit_code == 2 and f"{data}:2: blank line: no record on it" in result.stderr


@pytest.mark.parametrize("suffix", ["csv", "txt", "jsonl"])
def test_a_utf16_file_is_named_as_such(tmp_path, suffix):
    path = tmp_path / f"in.{suffix}"
    path.write_bytes("text\nhello\n".encode("utf-16"))
    with pytest.raises(lm.DataError, match="UTF-16.*iconv"):
        _texts(path)


def test_a_surrogate_id_is_one_bad_row_not_a_crashed_run(runner, tiny_model_dir, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "\\ud800x", "text": "garden"}\n{"id": "ok", "text": "river"}\n')
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "--format", "csv", "-q"])
    assert result.exit_code == 0, result.stderr
    assert [row.split(",")[:2] for row in result.stdout.splitlines()[1:]] == [["2", "ok"]]
    assert "in.jsonl:1: field 'id': contains an unpaired surrogate" in result.stderr


def test_a_run_that_scores_nothing_keeps_the_existing_output(runner, tiny_model_dir, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("1\n[2]\n")
    out = tmp_path / "out.jsonl"
    out.write_text("results of yesterday\n")
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "-o", str(out), "-q"])
    assert result.exit_code == 2 and "no row could be scored" in result.stderr
    assert "--on-error skip" not in result.stderr.splitlines()[-1]  # already skipping: not the advice
    assert out.read_text() == "results of yesterday\n"
    with pytest.raises(lm.scoring.NothingScoredError) as raised:
        lm.scoring.score_file(lm.load_scorer(tiny_model_dir), path, out)
    assert [e.line for e in raised.value.summary.errors] == [1, 2]
    assert out.read_text() == "results of yesterday\n"


def test_a_run_that_scores_nothing_prints_the_csv_header_alone_and_writes_no_file(runner, tiny_model_dir, tmp_path):
    """Every row skipped: stdout gets the format's empty document (a CSV's header, as JSON gets []), so a CSV
    reader finds the columns; the run still fails (exit 2) and, like any failed run, writes no --output file."""
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text('{"id": "a", "text": "garden"}\n')
    bad.write_text("1\n[2]\n")
    scored = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(good), "--format", "csv", "-q"])
    assert scored.exit_code == 0, scored.stderr
    header = scored.stdout.splitlines()[0]
    assert header.startswith("line,id,flagged,unsafe_score,")
    nothing = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(bad), "--format", "csv", "-q"])
    assert nothing.exit_code == 2 and "no row could be scored" in nothing.stderr
    assert nothing.stdout == header + "\n"
    as_json = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(bad), "--format", "json", "-q"])
    assert as_json.exit_code == 2 and json.loads(as_json.stdout) == []
    out = tmp_path / "new.csv"
    to_file = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(bad), "-o", str(out), "-q"])
    assert to_file.exit_code == 2 and not out.exists()


def _score_stdin(tiny_model_dir, text: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lite_moderation", "score", "--model", str(tiny_model_dir),
                           "--format", "jsonl", "-q", *options], input=text, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_json_array_on_stdin_is_read_as_records_and_a_bracketed_text_line_stays_text(tiny_model_dir):
    records = json.dumps([{"text": "garden"}, {"text": "river"}], indent=2)
    done = _score_stdin(tiny_model_dir, records)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["line"] for line in done.stdout.splitlines()] == [1, 2]
    texts = _score_stdin(tiny_model_dir, "[URGENT] call me\n[1] second line\n")
    assert texts.returncode == 0 and len(texts.stdout.splitlines()) == 2


def test_a_one_column_table_on_stdin_is_a_table_when_its_column_is_named(tiny_model_dir):
    done = _score_stdin(tiny_model_dir, "comment\ngarden\nriver\n", "--text-column", "comment")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["line"] for line in done.stdout.splitlines()] == [2, 3]


def test_a_header_naming_a_read_column_twice_is_refused_and_a_named_column_wins(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,text,text\n1,first cell,second cell\n")
    with pytest.raises(lm.DataError, match=r"in.csv:1: the header names column 'text' 2 times \(columns 2, 3\)"):
        _texts(path)
    path.write_text("id,text,comment\n1,first cell,second cell\n")
    assert _texts(path, text="comment")[0] == [(2, "second cell")]


def test_a_missing_id_column_is_named_once_quoted(runner, tmp_path):
    """A user test: `--id-column nope` on a CSV without it said `missing column ''nope''` (quoted twice)."""
    path = tmp_path / "in.csv"
    path.write_text("id,text\n1,a note about tea\n")
    result = runner.invoke(main, ["score", "--model", "fast", "-i", str(path), "--id-column", "nope"])
    assert result.exit_code == 2
    assert f"{path}:1: field 'nope': missing column 'nope' (named as the id column); found columns: 'id', 'text'" \
        in result.stderr, result.stderr


@pytest.mark.parametrize("command, option", [
    (["score", "--model", "fast", "-i", "{path}", "--text-column", "Comment", "--id-column", "nope"], "--id-column"),
    (["score", "--model", "fast", "-i", "{path}", "--text-column", "nope"], "--text-column"),
    (["cv", "--folds", "2", "--data", "{path},group=nope", "--text-column", "Comment", "--label-columns", "toxic"],
     "group= of --data"),
    (["train", "--data", "{path}", "--text-column", "Comment", "--label-column", "nope", "--output", "{dir}/m"],
     "--label-column"),
    (["train", "--data", "{path}", "--text-column", "Comment", "--label-columns", "nope,other", "--output",
      "{dir}/m"], "--label-columns"),
], ids=["id", "text", "group", "class", "labels"])
def test_a_missing_named_column_is_told_by_the_option_that_named_it(runner, tmp_path, command, option):
    """A user test: `--id-column nope` (or group=nope, a text or label column) on a CSV with a header ended with
    "The first row must be a header: prompt,response[,...]", which does not fit: the file has a header, without the
    column named. The hint names the option and the columns the header has."""
    path = tmp_path / "in.csv"
    path.write_text("ID,Comment,toxic\n1,a note about tea,0\n2,a walk in the park,1\n")
    result = runner.invoke(main, [arg.format(path=path, dir=tmp_path) for arg in command])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{path}:1: field 'nope': missing column 'nope'" in result.stderr, result.stderr
    assert "found columns: 'ID', 'Comment', 'toxic'" in result.stderr
    assert "first row must be a header" not in result.stderr
    assert f"{option} names" in result.stderr and "as spelled there (case included)" in result.stderr
    without_a_text_column = runner.invoke(main, ["score", "--model", "fast", "-i", str(path)])  # not named: a header
    assert "The first row must be a header: prompt,response" in without_a_text_column.stderr


def test_a_missing_prompt_column_is_the_one_named_missing(runner, tmp_path):
    """A user test: `--prompt-column nope` on a CSV with a response column said `missing column 'nope', 'response'`:
    the response column was there (and is not needed: a prompt alone is read)."""
    path = tmp_path / "in.csv"
    path.write_text("question,response\na question about tea,an answer about tea\n")
    result = runner.invoke(main, ["score", "--model", "fast", "-i", str(path), "--prompt-column", "nope"])
    assert result.exit_code == 2, result.output
    assert f"{path}:1: field 'nope': missing column 'nope' (named as the text column); found columns: 'question', " \
           "'response'" in result.stderr, result.stderr


def test_a_null_or_empty_id_is_no_id_in_jsonl_as_in_csv(runner, tmp_path):
    """A user test: `{"id": null}` rejected its row, while an empty CSV id cell was read (as the id ""). Either is a
    row without an id, in both formats: scored, its output row without an "id" (an empty id cell in CSV output)."""
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"id": null, "text": "a note about tea"}\n{"id": "", "text": "a walk in the park"}\n'
                     '{"id": 3, "text": "a cup of coffee"}\n')
    table = tmp_path / "in.csv"
    table.write_text("id,text\n,a note about tea\n\"\",a walk in the park\n3,a cup of coffee\n")
    for path, first, id_3, options in ((jsonl, 1, 3, []), (table, 2, "3", []), (jsonl, 1, 3, ["--id-column", "id"])):
        result = runner.invoke(main, ["score", "--model", "fast", "-i", str(path), "--format", "jsonl", *options])
        assert result.exit_code == 0 and "skipped: 0" in result.stderr, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [(row["line"], row.get("id", "no id")) for row in rows] == \
            [(first, "no id"), (first + 1, "no id"), (first + 2, id_3)]
        assert [r.id for r in lm.read_records(path, columns=Columns(id=options[1]) if options else None)] == \
            [None, None, id_3]


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "tsv"])
def test_an_id_of_whitespace_alone_is_no_id_and_other_ids_keep_their_spaces(runner, tmp_path, suffix):
    """A user test: `{"id": " "}` and a CSV cell of spaces were kept as ids, while null and an empty cell are no id:
    a CSV output row then showed a cell of spaces no one could tell from a gap. Whitespace alone is no id, as an
    empty cell is (and as it is for a label or a class); an id with other characters is kept as it is."""
    path = tmp_path / f"in.{suffix}"
    ids = [" ", "\t ", " a7 ", "b 8"]
    texts = ["a note about tea", "a walk in the park", "a cup of coffee", "the garden"]
    if suffix == "jsonl":
        path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts)))
    else:
        sep = "," if suffix == "csv" else "\t"
        ids[1] = "  "  # a TSV cell cannot hold a tab
        path.write_text(f"id{sep}text\n" + "".join(f"{i}{sep}{t}\n" for i, t in zip(ids, texts)))
    for options in ([], ["--id-column", "id"]):
        result = runner.invoke(main, ["score", "--model", "fast", "-i", str(path), "--format", "jsonl", *options])
        assert result.exit_code == 0 and "skipped: 0" in result.stderr, result.stderr
        assert [json.loads(line).get("id", "no id") for line in result.stdout.splitlines()] == \
            ["no id", "no id", " a7 ", "b 8"]
    out = tmp_path / "out.csv"
    result = runner.invoke(main, ["score", "--model", "fast", "-i", str(path), "--output", str(out)])
    assert result.exit_code == 0, result.stderr
    with open(out, newline="", encoding="utf-8") as fh:
        assert [row["id"] for row in csv.DictReader(fh)] == ["", "", " a7 ", "b 8"]
