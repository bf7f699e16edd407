"""A new user's first hour (#19): no silent no-ops. A run that scores nothing fails and says why, stdin is read
whatever its format, an output suffix we cannot write is refused, and input ids come back in the output.
Texts are harmless made-up sentences."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest


def _score(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lite_moderation", "score", "--model", "fast", *args],
                          input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=300,
                          check=False)


def test_a_file_whose_rows_have_no_usable_field_fails_naming_the_fields_found(tmp_path):
    path = tmp_path / "wrongkey.jsonl"
    path.write_text('{"message": "a note about tea"}\n{"message": "a walk in the park"}\n', encoding="utf-8")
    proc = _score("-i", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert "no row could be scored" in last and "'message'" in last and "--text-column" in last
    fixed = _score("-i", str(path), "--text-column", "message")
    assert fixed.returncode == 0 and len(fixed.stdout.splitlines()) == 2


@pytest.mark.parametrize("delimiter", [",", "\t"], ids=["csv", "tsv"])
def test_csv_and_tsv_on_stdin_are_read_as_tables_not_as_lines_of_text(delimiter):
    table = io.StringIO()
    writer = csv.writer(table, delimiter=delimiter, lineterminator="\n")
    writer.writerows([["id", "prompt", "response"], ["a1", "what tea is good", "green tea, mostly"],
                      ["a2", "a walk?", "yes, a short one"]])
    proc = _score("-i", "-", stdin=table.getvalue())
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["line"], r["id"]) for r in rows] == [(2, "a1"), (3, "a2")]  # the header is not scored


def test_plain_text_lines_with_commas_stay_text():
    proc = _score("-i", "-", stdin="hello, world\nsee you, later\n")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2


def test_piped_text_and_a_dash_read_stdin():
    piped = _score(stdin="a note about tea\n")
    dash = _score("-", stdin="a note about tea\n")
    assert piped.returncode == dash.returncode == 0
    assert piped.stdout == dash.stdout and json.loads(piped.stdout)["line"] == 1
    argument = _score("a note about tea", "--format", "jsonl")
    assert json.loads(argument.stdout)["unsafe_score"] == json.loads(piped.stdout)["unsafe_score"]


def test_an_output_suffix_that_cannot_be_written_is_refused(tmp_path):
    proc = _score("a note about tea", "-o", str(tmp_path / "out.parquet"))
    assert proc.returncode == 2 and "unknown output suffix '.parquet'" in proc.stderr
    assert not (tmp_path / "out.parquet").exists()
    assert _score("a note about tea", "-o", str(tmp_path / "out.dat"), "--format", "jsonl").returncode == 0


def test_an_id_first_seen_after_rows_without_one_still_comes_back(tmp_path):
    records = tmp_path / "in.jsonl"
    records.write_text('{"text": "a note about tea"}\n{"id": "b", "text": "a walk"}\n{"id": 3, "text": "soup"}\n',
                       encoding="utf-8")
    table = _score("-i", str(records), "--format", "csv").stdout.splitlines()
    assert table[0].startswith("line,id,flagged")  # the column is there although the first row has no id
    assert [row.split(",")[:2] for row in table[1:]] == [["1", ""], ["2", "b"], ["3", "3"]]
    rows = [json.loads(line) for line in _score("-i", str(records)).stdout.splitlines()]
    assert "id" not in rows[0] and [r.get("id") for r in rows] == [None, "b", 3]


def test_ids_come_back_in_every_output_row(tmp_path):
    records = tmp_path / "in.jsonl"
    records.write_text('{"id": 7, "text": "a note about tea"}\n{"key": "k2", "id": "b", "text": "a walk"}\n',
                       encoding="utf-8")
    rows = [json.loads(line) for line in _score("-i", str(records)).stdout.splitlines()]
    assert [r["id"] for r in rows] == [7, "b"] and list(rows[0])[:3] == ["line", "id", "flagged"]
    table = _score("-i", str(records), "--format", "csv").stdout.splitlines()
    assert table[0].startswith("line,id,flagged") and table[1].startswith("1,7,")
    keyed = _score("-i", str(records), "--id-column", "key")
    assert keyed.returncode == 0 and "'key'" in keyed.stderr and "line 1" not in keyed.stdout  # row 1 has no key
    assert [json.loads(line)["id"] for line in keyed.stdout.splitlines()] == ["k2"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": {"nested": 1}, "text": "a note"}\n{"id": 2, "text": "a walk"}\n', encoding="utf-8")
    proc = _score("-i", str(bad))
    assert proc.returncode == 0 and "bad.jsonl:1: field 'id'" in proc.stderr
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == [2]


def test_a_taken_port_is_named_with_what_to_do():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "lite_moderation", "serve", "--port", str(port)],
                              capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and f"127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr


def test_commands_are_one_family():
    """-i/--data, -o, -q where they make sense; serve's help names the page and /v1/explain; a missing model lists
    the documented shipped models only."""
    import click
    from click.testing import CliRunner

    from lite_moderation.cli import main

    runner = CliRunner()
    for command in ("train", "cv", "evaluate", "compare"):
        assert "-i, --data, --input" in runner.invoke(main, [command, "--help"]).output, command
    for command in ("score", "explain", "train", "cv", "evaluate", "compare", "serve"):
        assert "-q, --quiet" in runner.invoke(main, [command, "--help"]).output, command
    assert "-o, --output" in runner.invoke(main, ["train", "--help"]).output
    serve_help = " ".join(runner.invoke(main, ["serve", "--help"]).output.split())
    assert "/v1/explain" in serve_help and "page at /" in serve_help
    missing = runner.invoke(main, ["score", "--model", "no-such-model", "x"])
    assert "default, fast, beavertails" in missing.stderr and "accurate" not in missing.stderr
    for name, command in main.commands.items():  # every option says what it does
        undocumented = [p.opts[0] for p in command.params if isinstance(p, click.Option) and not p.help]
        assert not undocumented, (name, undocumented)
    for command in ("score", "evaluate", "serve", "explain"):  # the --threshold help fits the command
        assert "fold" not in main.commands[command].params[[p.name for p in main.commands[command].params]
                                                          .index("threshold")].help, command


def test_serve_quiet_logs_no_request_lines():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import signal

    from test_server import ServeProcess, moderate

    server = ServeProcess("--model", "fast", "--threads", "1", "-q")
    try:
        assert moderate(server.port, {"input": ["a note about tea"]})["results"]
    finally:
        assert server.stop(signal.SIGTERM) == 0
    log = "".join(server.seen)
    assert "serving" in log and "/v1/explain" in log and "stopped" in log
    assert "POST /v1/moderations 200" not in log
