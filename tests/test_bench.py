"""`bench`: the guard-benchmark table. The real CLI (click's runner) on GuardReasoner's real files where they are
shared, on small files in their format made here (every parse error among them), and the download path against
an HTTP server on 127.0.0.1."""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import http.server
import io
import json
import re
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import SHARED_DATA

from lite_moderation.bench import PUBLISHED, SOURCES
from lite_moderation.cli import main
from lite_moderation.guard_suite import GUARD_MANIFEST, GUARD_SUITE

GUARD_DIR = SHARED_DATA.parent / "reference" / "guard_suite"
needs_guard_files = pytest.mark.skipif(not (GUARD_DIR / "manifest.json").is_file(),
                                       reason=f"GuardReasoner's suite files are not at {GUARD_DIR}")
LOCAL_SETS = {"xstest-response-harmful": "0_6_xstest_response_harmful.json", "saferlhf": "0_9_safe_rlhf.json",
              "beavertails-30k-test": "0_A_beaver_tails.json"}
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESPONSE_LABEL = "Answers: \nRequest: None\nCompletion: None\nResponse: {}\n"


def _assert_clean_failure(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output and not result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def _own_conversion(path: Path) -> list[dict]:
    """The test's own reading of GuardReasoner's format (independent of the package's parser)."""
    records = []
    for obj in json.loads(path.read_text(encoding="utf-8")):
        body = obj["input"].removeprefix("Human user:\n").removesuffix("\n\n")
        prompt, _, response = body.partition("\n\nAI assistant:\n")
        harmful = re.search(r"\bharmful\b", obj["output"].split("Response:")[-1]) is not None
        records.append({"prompt": prompt, **({} if response == "None" else {"response": response}),
                        "is_safe": not harmful})
    return records


# ------------------------------------------------------------------------------------------ the real files


@needs_guard_files
def test_the_packaged_pins_are_the_shared_manifests() -> None:
    shared = json.loads((GUARD_DIR / "manifest.json").read_text())
    assert (GUARD_SUITE.repository, GUARD_SUITE.commit) == (shared["repository"], shared["commit"])
    assert GUARD_SUITE.raw_url == shared["raw_url"]
    keys = ("task", "file", "rows", "harmful", "unharmful", "sha256")
    packaged = {f["name"]: tuple(f[k] for k in keys) for f in GUARD_MANIFEST["files"]}
    assert packaged == {f["name"]: tuple(f[k] for k in keys) for f in shared["files"]}


@needs_guard_files
def test_bench_reproduces_evaluate_exactly_on_the_real_files(runner, tmp_path) -> None:
    """Per set: bench's F1/AUPRC/AUROC and intervals are evaluate's on the same rows converted by the test;
    the rows and predictions it writes are what compare reads, and compare agrees."""
    out = tmp_path / "bench.json"
    result = runner.invoke(main, ["bench", "--data-dir", str(GUARD_DIR), "--model", "fast", "--format", "json",
                                  "-o", str(out), "--bootstrap", "100", "--predictions", str(tmp_path / "pred"), "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert {r["set"] for r in summary["results"]} == set(LOCAL_SETS)
    for name, file in LOCAL_SETS.items():
        ours = next(r for r in summary["results"] if r["set"] == name)
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in _own_conversion(GUARD_DIR / file)))
        written = [json.loads(line) for line in (tmp_path / "pred" / f"{name}.jsonl").read_text().splitlines()]
        assert written == [json.loads(line) for line in data.read_text().splitlines()]
        metrics_path = tmp_path / f"{name}.metrics.json"
        evaluated = runner.invoke(main, ["evaluate", "--data", str(data), "--model", "fast", "--json",
                                         str(metrics_path), "--bootstrap", "100"])
        assert evaluated.exit_code == 0, evaluated.output
        reference = json.loads(metrics_path.read_text())
        assert reference["n"] == ours["n"]
        for metric in ("f1", "auprc", "auroc"):
            assert ours["metrics"][metric] == reference["unsafe"][metric], (name, metric)
            assert ours["ci"][metric] == reference["unsafe"]["ci"][metric], (name, metric)
        compared = runner.invoke(main, ["compare", "--data", str(tmp_path / "pred" / f"{name}.jsonl"), "--system",
                                        f"fast={tmp_path / 'pred' / f'{name}.fast.jsonl'}", "--format", "json"])
        assert compared.exit_code == 0, compared.output
        entry = json.loads(compared.stdout)["systems"][0]
        assert entry["metrics"]["f1"] == pytest.approx(ours["metrics"]["f1"], abs=1e-12)


@needs_guard_files
def test_bench_predictions_are_scores_verdicts_on_the_rows_it_writes(runner, tmp_path) -> None:
    """bench --predictions wrote each head at its own cut-off (flagged rows naming no category, categories on
    unflagged rows); its files hold what score returns for the same rows."""
    result = runner.invoke(main, ["bench", "--data-dir", str(GUARD_DIR), "--model", "fast", "--set",
                                  "xstest-response-harmful", "--bootstrap", "20", "--format", "json",
                                  "--predictions", str(tmp_path / "pred"), "-q"])
    assert result.exit_code == 0, result.output
    scored = tmp_path / "scored.jsonl"
    result = runner.invoke(main, ["score", "--model", "fast", "-i", str(tmp_path / "pred" /
                                                                      "xstest-response-harmful.jsonl"),
                                  "-o", str(scored)])
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in
               (tmp_path / "pred" / "xstest-response-harmful.fast.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in scored.read_text().splitlines()]
    assert len(written) == len(expected) == 446
    differ = [w["row"] for w, s in zip(written, expected)
              if (w["line"], w["flagged"], w["categories"], w["scores"])
              != (s["line"], s["flagged"], [c for c, on in s["categories"].items() if on],
                  {**s["category_scores"], "unsafe": s["unsafe_score"]})]
    assert not differ, f"{len(differ)} of {len(expected)} rows differ from score's verdict (first {differ[:5]})"


@needs_guard_files
def test_the_leak_check_marks_the_sets_a_model_was_trained_on(runner) -> None:
    result = runner.invoke(main, ["bench", "--data-dir", str(GUARD_DIR), "--model", "beavertails", "--set",
                                  "beavertails-30k-test", "--set", "xstest-response-harmful", "--bootstrap", "20",
                                  "--format", "json", "-q"])
    assert result.exit_code == 0, result.output
    seen = {r["set"]: r["seen_prompts"] for r in json.loads(result.stdout)["results"]}
    assert seen["beavertails-30k-test"] > 2000 and seen["xstest-response-harmful"] == 0


@pytest.fixture(scope="module")
def xstest_summary(tmp_path_factory) -> Path:
    """bench's JSON on the real XSTest file alone, to render in every format."""
    if not (GUARD_DIR / "manifest.json").is_file():
        pytest.skip(f"GuardReasoner's suite files are not at {GUARD_DIR}")
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("bench") / "xstest.json"
    result = CliRunner().invoke(main, ["bench", "--data-dir", str(GUARD_DIR), "--model", "fast", "--set",
                                       "xstest-response-harmful", "--bootstrap", "50", "--format", "json", "-o",
                                       str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


def _tables(summary_path: Path, fmt: str) -> str:
    from lite_moderation.bench import bench_tables
    from lite_moderation.tables import render_all

    return render_all(bench_tables(json.loads(summary_path.read_text())), fmt)


def test_the_table_renders_in_every_format_with_the_published_rows_and_their_sources(xstest_summary) -> None:
    summary = json.loads(xstest_summary.read_text())
    published = {p["system"]: p for p in summary["published"]}
    assert set(published) == {system for system, _, _ in PUBLISHED}  # every one reports XSTest-r
    assert published["WildGuard 7B"]["second_hand"] and not published["GuardReasoner 8B"]["second_hand"]
    assert published["GuardReasoner 8B"]["f1_percent"] == {"xstest-response-harmful": 94.34}
    assert published["GuardReasoner 8B"]["wavg_percent"] == {"response": pytest.approx(94.34)}
    text = _tables(xstest_summary, "text")
    for fragment in ("lite-moderation fast", "XSTest-r", "Wavg-r", "second-hand", "arXiv 2501.18492",
                     "Prompt sets are scored once", "Sources: Liu et al."):
        assert fragment in text, fragment
    markdown = _tables(xstest_summary, "markdown")
    assert "| system | XSTest-r | Wavg-r | source |" in markdown and "|---|---:|---:|---:|" in markdown
    rows = list(csv.reader(io.StringIO(_tables(xstest_summary, "csv").split("\n\n")[0])))
    assert rows[0] == ["system", "XSTest-r", "Wavg-r", "source"]
    by_system = {row[0]: row for row in rows[1:]}
    assert by_system["GuardReasoner 8B"][1:] == ["94.34", "94.3", SOURCES["guardreasoner"].label]
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", by_system["lite-moderation fast"][1])


def test_latex_is_booktabs_with_every_special_character_escaped(xstest_summary) -> None:
    latex = _tables(xstest_summary, "latex")
    assert latex.count(r"\begin{table}") == 2 and latex.count(r"\end{table}") == 2
    for command in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert latex.count(command) == 2
    assert r"F1 (\%)" in latex
    unescaped = re.compile(r"(?<!\\)[%_#$]")
    for line in latex.splitlines():
        assert not unescaped.search(line), line
    bodies = re.findall(r"\\begin\{tabular\}\{(lr+)\}(.*?)\\end\{tabular\}", latex.replace("\n", " "))
    assert len(bodies) == 2
    for spec, body in bodies:
        for row in body.split(r"\\")[:-1]:
            row = re.sub(r"\\(toprule|midrule|bottomrule)", "", row)
            assert len(re.findall(r"(?<!\\)&", row)) == len(spec) - 1, row


# ------------------------------------------------------------------------------------------ files made here

def _record(prompt: str, response: str | None, label: str) -> dict:
    return {"instruction": "classify", "input": f"Human user:\n{prompt}\n\nAI assistant:\n{response or 'None'}\n\n",
            "output": label}


def _prompt_set(n: int) -> list[dict]:
    """Single messages: 'marker' prompts harmful, the others not; plain labels as GuardReasoner's prompt files."""
    return [_record(f"tell me about the garden number {i} {'marker' if i % 3 == 0 else 'please'}", None,
                    "harmful" if i % 3 == 0 else "unharmful") for i in range(n)]


def _response_set(n: int, offset: int) -> list[dict]:
    """Pairs, labelled in an Answers block as GuardReasoner's response files."""
    return [_record(f"question {i + offset} about the river", f"an answer about music {i} "
                    f"{'marker' if i % 2 else 'calm'}", RESPONSE_LABEL.format("harmful" if i % 2 else "unharmful"))
            for i in range(n)]


def _is_harmful(record: object, task: str) -> bool:
    output = record.get("output") if isinstance(record, dict) else None
    if not isinstance(output, str):
        return False
    return output == "harmful" or f"{'Request' if task == 'prompt' else 'Response'}: harmful" in output


def _write_suite(directory: Path, sets: dict[str, tuple[str, list[dict]]], raw_url: str = "http://127.0.0.1:9/{commit}/{file}",
                 write_files: bool = True) -> Path:
    """Writes each set's file (unless ``write_files`` is false) and a manifest pinning them; returns the manifest."""
    files = []
    for name, (task, records) in sets.items():
        body = json.dumps(records, indent=1).encode()
        if write_files:
            (directory / f"{name}.json").write_bytes(body)
        harmful = sum(_is_harmful(r, task) for r in records)
        files.append({"name": name, "task": task, "file": f"data/{name}.json", "rows": len(records),
                      "harmful": harmful, "unharmful": len(records) - harmful,
                      "sha256": hashlib.sha256(body).hexdigest()})
    manifest = directory / "manifest.json"
    manifest.write_text(json.dumps({"name": "made", "repository": "someone/suite", "commit": COMMIT,
                                    "raw_url": raw_url, "files": files}))
    return manifest


def test_prompt_sets_are_scored_once_and_wavg_weighs_the_sets_by_rows(runner, tmp_path) -> None:
    manifest = _write_suite(tmp_path, {"prompts": ("prompt", _prompt_set(30)),
                                       "small": ("response", _response_set(20, 0)),
                                       "large": ("response", _response_set(60, 100))})
    out = tmp_path / "bench.json"
    result = runner.invoke(main, ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast",
                                  "--model", "beavertails", "--format", "json", "-o", str(out), "--bootstrap", "50",
                                  "--predictions", str(tmp_path / "pred"), "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert len(summary["results"]) == 3 * 2  # one row per (set, model): no prompt-as-text second pass
    assert "scored once" in summary["single_messages"]
    f1 = {(r["set"], r["model"]): r["metrics"]["f1"] for r in summary["results"]}
    for model in ("fast", "beavertails"):
        wavg = summary["wavg"][model]
        assert wavg["prompt"]["f1"] == pytest.approx(f1["prompts", model], abs=1e-12)
        expected = (20 * f1["small", model] + 60 * f1["large", model]) / 80
        assert wavg["response"]["f1"] == pytest.approx(expected, abs=1e-12)
        low, high = wavg["response"]["ci"]
        assert 0 <= low <= high <= 1
    assert summary["published"] == []  # another suite's sets: no published row applies
    prompt_rows = [json.loads(line) for line in (tmp_path / "pred" / "prompts.jsonl").read_text().splitlines()]
    assert len(prompt_rows) == 30 and all("response" not in r for r in prompt_rows)
    assert sum(not r["is_safe"] for r in prompt_rows) == 10
    predictions = (tmp_path / "pred" / "large.beavertails.jsonl").read_text().splitlines()
    assert len(predictions) == 60 and json.loads(predictions[0])["row"] == 0


def test_a_made_file_named_like_a_pinned_set_gets_no_published_row(runner, tmp_path) -> None:
    manifest = _write_suite(tmp_path, {"saferlhf": ("response", _response_set(20, 0))})
    result = runner.invoke(main, ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast",
                                  "--format", "json", "--bootstrap", "20", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["published"] == []


def test_the_output_suffix_decides_the_format_as_for_score(runner, tmp_path) -> None:
    """`bench -o b.json` wrote the plain-text tables; a --format the suffix contradicts is refused, before any
    work."""
    manifest = _write_suite(tmp_path, {"saferlhf": ("response", _response_set(20, 0))})
    args = ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast", "--bootstrap", "20",
            "-q"]
    result = runner.invoke(main, [*args, "-o", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b.json").read_text())["published"] == []
    _assert_clean_failure(runner.invoke(main, [*args, "-o", str(tmp_path / "b.csv"), "--format", "json"]),
                          "b.csv: the suffix says csv but --format is json")
    assert not (tmp_path / "b.csv").exists()


#: One bad record of each kind, with the field and the words its error names.
BAD_RECORDS = [
    ({"input": "no markers at all", "output": "harmful"}, "input", "does not start with"),
    ({"input": "Human user:\nhello there\n\nassistant said: hi\n\n", "output": "harmful"}, "input",
     "no 'AI assistant:' marker"),
    (_record("a question", "an answer", "maybe"), "output", "unknown label 'maybe'"),
    (_record("a question", "an answer", RESPONSE_LABEL.format("None")), "output", "unknown label"),
    ({"input": "Human user:\nq\n\nAI assistant:\na\n\n"}, "output", "missing"),
    ({"input": 7, "output": "harmful"}, "input", "expected a string"),
    (["not", "an", "object"], None, "expected an object"),
    (_record("a question", None, "harmful"), "input", "has no response"),
    (_record(" ", "\t", "harmful"), "input", "nothing to score"),
]


def test_every_bad_record_is_named_and_nothing_is_scored(runner, tmp_path) -> None:
    good = _response_set(4, 0)
    records = [good[0], *(bad for bad, _, _ in BAD_RECORDS), good[1]]
    manifest = _write_suite(tmp_path, {"broken": ("response", records)})
    data = tmp_path / "broken.json"
    result = runner.invoke(main, ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast",
                                  "-q"])
    _assert_clean_failure(result, f"{len(BAD_RECORDS)} records of the suite's files could not be read")
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == len(BAD_RECORDS)  # one error per bad record, none for the good ones
    starts = [n for n, text in enumerate(data.read_text().splitlines(), 1) if text in (" {", " [")]
    assert len(starts) == len(records)  # where each element opens: what the errors must point at
    for position, ((_, field, words), line) in enumerate(zip(BAD_RECORDS, lines), start=2):
        assert line.startswith(f"error: {data}: element {position} (line {starts[position - 1]}): "), line
        assert (f"field '{field}'" in line) if field else "field '" not in line, line
        assert words in line, line


def test_a_prompt_set_record_with_a_response_is_refused_and_answers_blocks_are_read(runner, tmp_path) -> None:
    records = _prompt_set(6)
    records[1] = _record("a question", None, "Answers: \nRequest: harmful\nCompletion: None\nResponse: None\n")
    records[2] = _record("a question", "an answer", "unharmful")
    manifest = _write_suite(tmp_path, {"prompts": ("prompt", records)})
    result = runner.invoke(main, ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast",
                                  "-q"])
    start = [n for n, text in enumerate((tmp_path / "prompts.json").read_text().splitlines(), 1) if text == " {"][2]
    _assert_clean_failure(result, f"{tmp_path / 'prompts.json'}: element 3 (line {start}): field 'input': a prompt "
                                  "set's record holds a response", "1 records")
    assert "element 2" not in result.stderr  # the Answers block's Request label was read


def test_a_file_whose_counts_are_not_the_manifests_is_refused(runner, tmp_path) -> None:
    manifest = _write_suite(tmp_path, {"prompts": ("prompt", _prompt_set(9))})
    pins = json.loads(manifest.read_text())
    pins["files"][0].update(rows=10, unharmful=7)
    manifest.write_text(json.dumps(pins))
    result = runner.invoke(main, ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast"])
    _assert_clean_failure(result, "9 records (3 harmful), but the manifest says 10 (3 harmful)")


@pytest.mark.parametrize("body, words", [(b"[{\"input\": ", "not valid JSON"), (b"{}", "non-empty JSON list"),
                                         (b"\xff\xfe[]", "not valid UTF-8")])
def test_a_file_that_is_not_a_json_list_is_refused(runner, tmp_path, body, words) -> None:
    manifest = _write_suite(tmp_path, {"prompts": ("prompt", _prompt_set(3))})
    pins = json.loads(manifest.read_text())
    pins["files"][0]["sha256"] = hashlib.sha256(body).hexdigest()
    manifest.write_text(json.dumps(pins))
    (tmp_path / "prompts.json").write_bytes(body)
    result = runner.invoke(main, ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast"])
    _assert_clean_failure(result, str(tmp_path / "prompts.json"), words)


def test_a_latin1_set_file_is_told_where_and_how_to_convert_it(runner, tmp_path) -> None:
    """A user test: a Latin-1 set file got `prompts.json: not valid UTF-8 (byte offset N)` (N into the file) and GuardReasoner's record
    format as its hint; now the data files' advice (by the same function), with the line the byte is on."""
    manifest = _write_suite(tmp_path, {"prompts": ("prompt", _prompt_set(3))})
    body = (tmp_path / "prompts.json").read_bytes().replace(b"garden number 1", b"caf\xe9 number 1")
    lines = body.split(b"\n")
    line, offset = next((n, text.index(b"\xe9")) for n, text in enumerate(lines, 1) if b"\xe9" in text)
    pins = json.loads(manifest.read_text())
    pins["files"][0]["sha256"] = hashlib.sha256(body).hexdigest()
    manifest.write_text(json.dumps(pins))
    (tmp_path / "prompts.json").write_bytes(body)
    result = runner.invoke(main, ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast"])
    _assert_clean_failure(result, f"{tmp_path / 'prompts.json'}:{line}: not valid UTF-8 (byte offset {offset})",
                          "must be UTF-8", "iconv -f latin1 -t utf-8 FILE > NEW")
    assert "GuardReasoner's format" not in result.stderr


def test_a_compressed_set_file_is_read_as_data_files_are(runner, tmp_path) -> None:
    """A pinned .json.gz was read as text, "not valid UTF-8 (byte offset 1)", and so was a .bz2 one: the sets are
    opened as data files are, .gz and .xz read, another compression named with how to decompress it."""
    manifest = _write_suite(tmp_path, {"prompts": ("prompt", _prompt_set(9))})
    args = ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast", "--format", "json",
            "--bootstrap", "20", "-q"]
    expected = runner.invoke(main, args)
    assert expected.exit_code == 0, expected.output
    body = (tmp_path / "prompts.json").read_bytes()
    pins = json.loads(manifest.read_text())
    for suffix, compress in ((".gz", gzip.compress), (".bz2", bz2.compress)):
        data = compress(body)
        (tmp_path / f"prompts.json{suffix}").write_bytes(data)
        pins["files"][0].update(file=f"data/prompts.json{suffix}", sha256=hashlib.sha256(data).hexdigest())
        manifest.write_text(json.dumps(pins))
        result = runner.invoke(main, args)
        if suffix == ".gz":
            assert result.exit_code == 0, result.output
            assert json.loads(result.stdout)["results"] == json.loads(expected.stdout)["results"]
        else:
            _assert_clean_failure(result, f"{tmp_path / 'prompts.json.bz2'}: the file is bzip2-compressed",
                                  "bunzip2 -k")
            assert "UTF-8" not in result.stderr and "not valid JSON" not in result.stderr


def test_predictions_never_replace_an_input_file(runner, tmp_path) -> None:
    manifest = _write_suite(tmp_path, {"pairs": ("response", _response_set(8, 0))})
    (tmp_path / "pairs.json").rename(tmp_path / "pairs.jsonl")  # an input named as the set's predictions file
    pins = json.loads(manifest.read_text())
    pins["files"][0]["file"] = "data/pairs.jsonl"
    manifest.write_text(json.dumps(pins))
    before = (tmp_path / "pairs.jsonl").read_bytes()
    result = runner.invoke(main, ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast",
                                  "--predictions", str(tmp_path), "-q"])
    _assert_clean_failure(result, "would replace an input file")
    assert (tmp_path / "pairs.jsonl").read_bytes() == before


def test_a_local_file_that_is_not_the_pinned_bytes_is_refused(runner, tmp_path) -> None:
    (tmp_path / "0_6_xstest_response_harmful.json").write_text(json.dumps(_response_set(10, 0)))
    result = runner.invoke(main, ["bench", "--data-dir", str(tmp_path), "--set", "xstest-response-harmful",
                                  "--model", "fast"])
    _assert_clean_failure(result, "is not the pinned c374802e", "another version of XSTest-r, refused",
                          "https://raw.githubusercontent.com/yueliu1999/GuardReasoner/bb7e686d")


def test_every_missing_file_is_named_with_where_to_get_it(runner, tmp_path) -> None:
    manifest = _write_suite(tmp_path, {"here": ("prompt", _prompt_set(12)), "gone": ("response", _response_set(8, 0))})
    (tmp_path / "gone.json").unlink()
    result = runner.invoke(main, ["bench", "--suite", str(manifest), "--data-dir", str(tmp_path), "--model", "fast",
                                  "--bootstrap", "20", "-q"])
    assert result.exit_code == 0, result.output
    assert f"not available: gone (gone.json is not in {tmp_path}); get it from http://127.0.0.1:9/{COMMIT}/" \
           "data/gone.json" in result.stderr
    assert "Not scored here (file not available): gone (http://127.0.0.1:9/" in result.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(main, ["bench", "--data-dir", str(empty), "--model", "fast"])
    _assert_clean_failure(result, "none of the suite's files is in", "0_8_toxic_chat.json")
    assert result.stderr.count("not available: ") == len(GUARD_SUITE.files)


@pytest.mark.parametrize("change, words", [
    ({"commit": "main"}, "full 40-hex commit"),
    ({"raw_url": "file:///etc/{file}"}, "must be an http(s) URL"),
    ({"files": [{"name": "../up", "task": "prompt", "file": "a.json", "rows": 1, "harmful": 1, "unharmful": 0,
                 "sha256": "0" * 64}]}, "it names files"),
    ({"files": [{"name": "up", "task": "prompt", "file": "../a.json", "rows": 1, "harmful": 1, "unharmful": 0,
                 "sha256": "0" * 64}]}, "relative path inside the repository"),
    ({"files": [{"name": "x", "task": "refusal", "file": "a.json", "rows": 1, "harmful": 1, "unharmful": 0,
                 "sha256": "0" * 64}]}, "task 'refusal'"),
    ({"files": [{"name": "x", "task": "prompt", "file": "a.json", "rows": 2, "harmful": 1, "unharmful": 0,
                 "sha256": "0" * 64}]}, "rows = harmful + unharmful"),
])
def test_a_manifest_that_could_escape_or_mislead_is_refused(runner, tmp_path, change, words) -> None:
    manifest = _write_suite(tmp_path, {"prompts": ("prompt", _prompt_set(3))})
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **change}))
    result = runner.invoke(main, ["bench", "--suite", str(manifest), "--model", "fast", "--cache-dir",
                                  str(tmp_path / "cache")])
    _assert_clean_failure(result, words)
    assert not (tmp_path / "cache").exists()


def test_an_unknown_set_or_suite_is_refused(runner, tmp_path) -> None:
    _assert_clean_failure(runner.invoke(main, ["bench", "--set", "nope", "--data-dir", str(tmp_path)]),
                          "--set nope: not in suite guard")
    _assert_clean_failure(runner.invoke(main, ["bench", "--suite", str(tmp_path / "none.json")]),
                          "neither a suite name (guard) nor a manifest file")


# ------------------------------------------------------------------------------------------ downloads


class _RawHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` by path with Range; ``cut`` paths send half their body under the full Content-Length."""

    files: ClassVar[dict[str, bytes]] = {}
    cut: ClassVar[set[str]] = set()
    seen: ClassVar[list[dict]] = []

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "range": self.headers.get("Range"),
                          "authorization": self.headers.get("Authorization")})
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body[start:len(body) // 2] if self.path in self.cut else body[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def raw_server(tmp_path):
    """A server on 127.0.0.1 in the layout of the suite's raw_url, with a made suite whose files it serves."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RawHandler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    made = tmp_path / "made"
    made.mkdir()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    manifest = _write_suite(made, {"prompts": ("prompt", _prompt_set(12)), "pairs": ("response", _response_set(10, 0))},
                            raw_url=url + "/{commit}/{file}")
    _RawHandler.files = {f"/{COMMIT}/data/{name}.json": (made / f"{name}.json").read_bytes()
                         for name in ("prompts", "pairs")}
    _RawHandler.cut, _RawHandler.seen = set(), []
    yield manifest
    server.shutdown()
    server.server_close()


def _cached(cache: Path, name: str) -> Path:
    return cache / "guard-suite" / "someone" / "suite" / COMMIT / "data" / f"{name}.json"


def test_files_are_downloaded_once_into_the_cache_without_credentials(runner, raw_server, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_for_the_hub_only")
    cache = tmp_path / "cache"
    args = ["bench", "--suite", str(raw_server), "--cache-dir", str(cache), "--model", "fast", "--bootstrap", "20",
            "--format", "json", "-q"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert {r["set"] for r in json.loads(result.stdout)["results"]} == {"prompts", "pairs"}
    for name in ("prompts", "pairs"):
        assert _cached(cache, name).read_bytes() == _RawHandler.files[f"/{COMMIT}/data/{name}.json"]
    assert len(_RawHandler.seen) == 2 and all(r["authorization"] is None for r in _RawHandler.seen)
    assert runner.invoke(main, args).exit_code == 0
    assert len(_RawHandler.seen) == 2  # cached: no new request
    _cached(cache, "pairs").write_bytes(b"[]")  # a cached copy changed since: refused, not trusted
    _assert_clean_failure(runner.invoke(main, args), "is not the pinned", "a cached copy: delete it and run again")


def test_a_download_with_the_wrong_sha256_is_refused_and_not_kept(runner, raw_server, tmp_path):
    _RawHandler.files[f"/{COMMIT}/data/pairs.json"] = b"[]"
    cache = tmp_path / "cache"
    result = runner.invoke(main, ["bench", "--suite", str(raw_server), "--cache-dir", str(cache), "--model", "fast",
                                  "-q"])
    _assert_clean_failure(result, "pairs (pairs): ", "does not match the expected", "--data-dir DIR")
    assert not list(_cached(cache, "pairs").parent.glob("pairs.json*"))


def test_a_truncated_download_is_not_used_and_resumes_on_the_next_run(runner, raw_server, tmp_path):
    _RawHandler.cut = {f"/{COMMIT}/data/prompts.json"}
    cache = tmp_path / "cache"
    args = ["bench", "--suite", str(raw_server), "--cache-dir", str(cache), "--model", "fast", "--bootstrap", "20",
            "-q"]
    _assert_clean_failure(runner.invoke(main, args), "the connection ended after", "run the same command again")
    part = _cached(cache, "prompts").with_name("prompts.json.part")
    assert not _cached(cache, "prompts").exists()
    offset = part.stat().st_size
    assert offset == len(_RawHandler.files[f"/{COMMIT}/data/prompts.json"]) // 2
    _RawHandler.cut = set()
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    resumed = [r for r in _RawHandler.seen if r["path"].endswith("/prompts.json")]
    assert [r["range"] for r in resumed] == [None, f"bytes={offset}-"]
    assert _cached(cache, "prompts").read_bytes() == _RawHandler.files[f"/{COMMIT}/data/prompts.json"]


def test_a_file_missing_on_the_server_is_named_with_the_offline_way(runner, raw_server, tmp_path):
    del _RawHandler.files[f"/{COMMIT}/data/pairs.json"]
    result = runner.invoke(main, ["bench", "--suite", str(raw_server), "--cache-dir", str(tmp_path / "cache"),
                                  "--model", "fast", "-q"])
    _assert_clean_failure(result, "pairs (pairs): ", "HTTP 404", "--data-dir DIR (as pairs.json)")
