"""The real CLI, driven through click's runner (and a subprocess where stdin/exit codes matter)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from conftest import BEAVERTAILS_TEST, SAFERLHF, synthetic_records, write_jsonl

import lite_moderation as lm
from lite_moderation.cli import main
from lite_moderation.persistence import SHIPPED_MODELS
from lite_moderation.taxonomy import CATEGORIES, short_name

RESULT_KEYS = {"flagged", "unsafe_score", "categories", "category_scores"}


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _assert_clean_failure(result, *fragments: str) -> None:
    """Exit code 2, one readable message naming the problem, and no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# ------------------------------------------------------------------------------------------ score


def test_score_text_on_shipped_model_prints_verdict_and_all_categories(runner):
    result = runner.invoke(main, ["score", "--format", "table", "a text about gardening"])
    assert result.exit_code == 0, result.output
    assert "verdict:" in result.stdout
    assert "unsafe score" in result.stdout
    assert "violence" in result.stdout and "self_harm" in result.stdout


def test_score_detail_calls_a_category_below_its_cut_off_the_nearest_not_flagged(runner):
    """A flagged item names at least one category: those at their cut-off, else the nearest one. The one-item
    report said "yes" in its flag column of that nearest one too, beside a score below the cut-off it shows.
    --threshold 0.001 flags a harmless note whose categories all stay below their cut-offs."""
    args = ["score", "--threshold", "0.001", "I love this recipe, thanks for sharing it with me"]
    result = runner.invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    [verdict] = json.loads(result.stdout)
    named = [c for c, on in verdict["categories"].items() if on]
    assert verdict["flagged"] and len(named) == 1  # the case: flagged, one category named ...
    result = runner.invoke(main, [*args, "--format", "table"])
    assert result.exit_code == 0, result.output
    rows = {line[:34].strip(): line[34:].split(maxsplit=2) for line in result.stdout.splitlines()
            if line[:34].strip() in map(short_name, CATEGORIES)}
    assert len(rows) == len(CATEGORIES)
    score, cut_off, *state = rows[short_name(named[0])]
    assert float(score) < float(cut_off)  # ... below its cut-off, as the report shows it
    assert state == ["nearest: named, below its cut-off"]
    assert [c for c, (_, _, *mark) in rows.items() if mark] == [short_name(named[0])]


def test_score_pair_json_has_the_documented_shape(runner):
    result = runner.invoke(main, ["score", "--prompt", "what is a cat", "--response", "a small animal",
                                  "--format", "json"])
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.stdout)
    assert set(item) == RESULT_KEYS
    assert set(item["categories"]) == set(CATEGORIES) == set(item["category_scores"])
    assert 0.0 <= item["unsafe_score"] <= 1.0


def test_score_a_prompt_alone_and_a_response_alone(runner):
    from lite_moderation import load_scorer

    scorer = load_scorer()
    for args, item in ((["--prompt", "what is a cat"], ("what is a cat", "")),
                       (["--response", "a small animal"], ("", "a small animal"))):
        result = runner.invoke(main, ["score", *args, "--format", "json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)[0]["unsafe_score"] == pytest.approx(
            scorer.moderate([item])[0]["unsafe_score"])
    result = runner.invoke(main, ["score", "text", "--prompt", "what is a cat"])
    assert result.exit_code == 2 and "exactly one of" in result.output


def test_score_several_texts_keeps_input_order(runner, tiny_model_dir):
    texts = ["marker3 marker3 river", "kitchen music", "marker5 garden"]
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "--format", "jsonl", *texts])
    assert result.exit_code == 0, result.output
    rows = _jsonl(result.stdout)
    assert len(rows) == 3
    assert rows[0]["categories"][CATEGORIES[3]] and rows[2]["categories"][CATEGORIES[5]]
    assert rows[1]["unsafe_score"] < min(rows[0]["unsafe_score"], rows[2]["unsafe_score"])


@pytest.mark.parametrize("text", ["", "   \t\n "])
def test_score_empty_or_blank_text_is_a_clean_error(runner, text):
    result = runner.invoke(main, ["score", text])
    _assert_clean_failure(result, "empty")


def test_score_one_megabyte_text(runner):
    text = ("lorem ipsum dolor sit amet " * 40000)[:1_000_000]
    result = runner.invoke(main, ["score", "--format", "json", text])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 1


def test_score_file_skips_and_reports_bad_lines_one_row_per_good_line(runner, tiny_model_dir, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b'{"prompt": "q1", "response": "marker1 river"}\n'
        b"this is not json\n"
        b'{"response": "no prompt here"}\n'
        b'{"text": "marker2 kitchen"}\n'
        b'{"prompt": "q3", "response": "bad \xff\xfe bytes"}\n'
        b'{"prompt": "q4", "response": "music"}\n'
    )
    out = tmp_path / "out.jsonl"
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "--input", str(path),
                                  "--output", str(out), "--format", "jsonl", "-q"])
    assert result.exit_code == 0, result.output
    rows = _jsonl(out.read_text())
    assert [r["line"] for r in rows] == [1, 4, 6]
    for bad_line in (2, 3, 5):
        assert f"in.jsonl:{bad_line}:" in result.stderr
    assert "rows in: 6, scored: 3, skipped: 3" in result.stderr


def test_score_file_fail_mode_stops_with_line_number_and_writes_nothing(runner, tiny_model_dir, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "q", "response": "r"}\n{"text": "t"}\n{"prompt": 3, "response": "r"}\n')
    out = tmp_path / "out.jsonl"
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "--input", str(path),
                                  "--output", str(out), "--on-error", "fail"])
    _assert_clean_failure(result, "in.jsonl:3:", "prompt")
    assert not out.exists()


def test_a_json_arrays_bad_record_is_reported_by_element_and_real_line(runner, tiny_model_dir, tmp_path):
    """A pretty-printed .json array: the skipped record is named by its element and the line it starts on (the
    element number alone read as a line pointed at the wrong place); output rows keep the element numbers."""
    path = tmp_path / "in.json"
    path.write_text(json.dumps([{"text": "garden"}, {"prompt": "q", "response": 3}, {"text": "river"}], indent=2))
    start = path.read_text().splitlines().index("  {", 4) + 1  # the second element's opening brace
    assert start == 5
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "-q"])
    assert result.exit_code == 0, result.output
    assert [row["line"] for row in _jsonl(result.stdout)] == [1, 3]
    assert f"skipped: {path}: element 2 (line 5): field 'response': expected a string" in result.stderr
    failed = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "--on-error", "fail"])
    _assert_clean_failure(failed, f"{path}: element 2 (line 5): field 'response'")


def test_score_file_with_jobs_matches_one_process(runner, tmp_path):
    lines = BEAVERTAILS_TEST.read_text(encoding="utf-8").splitlines()[:300]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outputs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}.jsonl"
        result = runner.invoke(main, ["score", "-i", str(source), "-o", str(out), "--jobs", jobs, "-q"])
        assert result.exit_code == 0, result.output
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 300


def test_score_csv_output_and_fail_on_flagged(runner, tiny_model_dir, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "response": "marker0 marker0 marker0"},
                                               {"prompt": "q", "response": "garden river"}])
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "--format", "csv",
                                  "--fail-on-flagged", "-q"])
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["line"] for r in rows] == ["1", "2"]
    assert rows[0]["flagged"] == "1" and rows[1]["flagged"] == "0"
    assert {short_name(c) for c in CATEGORIES} <= set(rows[0])  # CSV columns: short names, no commas


def test_score_threshold_override_changes_the_verdict(runner, tiny_model_dir):
    args = ["score", "--model", str(tiny_model_dir), "--format", "jsonl", "garden river"]
    low = _jsonl(runner.invoke(main, [*args, "--threshold", "0"]).stdout)
    high = _jsonl(runner.invoke(main, [*args, "--threshold", "1"]).stdout)
    assert low[0]["flagged"] and not high[0]["flagged"]


def test_score_stdin_plain_text_lines_via_subprocess(tiny_model_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "lite_moderation", "score", "--model", str(tiny_model_dir), "--input", "-",
         "--format", "jsonl"],
        input="garden river\n\nmarker4 kitchen\n", capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = _jsonl(proc.stdout)
    assert [r["line"] for r in rows] == [1, 3]
    assert rows[1]["categories"][CATEGORIES[4]]
    assert "Traceback" not in proc.stderr


def test_score_needs_exactly_one_input_source(runner):
    result = runner.invoke(main, ["score", "some text", "--input", "x.jsonl"])
    assert result.exit_code == 2
    assert "exactly one" in result.stderr


# ------------------------------------------------------------------------------------------ train / evaluate / cv


@pytest.mark.parametrize("command", ["train", "cv"])
@pytest.mark.parametrize("options, named", [
    (["--word-ngrams", "none", "--char-ngrams", "none"], ["--word-ngrams none", "--char-ngrams none"]),
    (["--preset", "fast", "--word-ngrams", "none"], ["--word-ngrams none", "--preset fast", "--char-ngrams"]),
], ids=["both off", "fast without words"])
def test_turning_off_every_feature_names_the_options_to_change(runner, tiny_data, tmp_path, command, options, named):
    """A user test: `--word-ngrams none --char-ngrams none` said `QAVectorizer needs at least one word or char field`,
    naming a class of the library, not the options the user gave."""
    output = ["--output", str(tmp_path / "m")] if command == "train" else []
    result = runner.invoke(main, [command, "--data", str(tiny_data), *output, *options])
    _assert_clean_failure(result, *named)
    assert "QAVectorizer" not in result.stderr and not (tmp_path / "m").exists()


def test_train_then_evaluate_writes_exact_metrics_shape(runner, tiny_data, tiny_eval_data, tmp_path):
    model_dir = tmp_path / "model"
    result = runner.invoke(main, ["train", "--data", str(tiny_data), "--output", str(model_dir),
                                  "--char-ngrams", "none", "--min-df", "1", "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "metrics.json"
    result = runner.invoke(main, ["evaluate", "--model", str(model_dir), "--data", str(tiny_eval_data),
                                  "--json", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"n", "unsafe", "categories", "reported_categories", "bootstrap"}
    assert set(metrics["unsafe"]) == {"f1", "precision", "recall", "fpr", "accuracy", "auprc", "auroc", "ci"}
    assert set(metrics["unsafe"]["ci"]) == set(metrics["unsafe"]) - {"ci"}
    for part, fields in (("categories", {"f1", "precision", "recall", "auprc", "support"}),
                         ("reported_categories", {"f1", "precision", "recall", "support"})):
        assert set(metrics[part]) == {"macro_f1", "micro_f1", "per_category", "ci"}
        assert set(metrics[part]["ci"]) == {"macro_f1"}
        assert set(metrics[part]["per_category"]) == set(CATEGORIES)
        for per in metrics[part]["per_category"].values():
            assert set(per) == fields
    assert metrics["n"] == 90
    assert metrics["unsafe"]["auroc"] > 0.9  # the markers make this synthetic task easy
    assert "0 of" in result.stderr and "WARNING" not in result.stderr


@pytest.mark.parametrize("command", ["evaluate", "cv"])
@pytest.mark.parametrize("outputs, message", [
    (["--json", "{d}/x.json", "--predictions", "{d}/./x.json"], "--predictions {d}/x.json: is also given as --json"),
    (["--json", "-", "--predictions", "-"], "--json - and --predictions - would both write to stdout"),
    (["--predictions", "-"], "--predictions - and the metrics table would both write to stdout"),
], ids=["one file", "both on stdout", "predictions beside the table"])
def test_two_outputs_on_one_path_are_refused_before_any_work(runner, tmp_path, command, outputs, message):
    """evaluate --json x --predictions x kept the metrics alone, the predictions silently lost (a user's round)."""
    d = str(tmp_path)
    result = runner.invoke(main, [command, "--data", str(tmp_path / "not-read-yet.jsonl"), "-q",
                                  *(o.format(d=d) for o in outputs)])
    _assert_clean_failure(result, message.format(d=d), "give each output")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["evaluate", "cv"])
@pytest.mark.parametrize("outputs, message", [
    (["--json", "{d}/m.csv"], "--json {d}/m.csv: the suffix says csv, but --json writes json only; give it a .json name"),
    (["--json", "{d}/m.jsonl"], "--json {d}/m.jsonl: the suffix says jsonl, but --json writes json only"),
    (["--predictions", "{d}/p.csv"], ("--predictions {d}/p.csv: the suffix says csv, but --predictions writes jsonl "
                                      "only; give it a .jsonl name")),
    (["--predictions", "{d}/p.json"], "--predictions {d}/p.json: the suffix says json, but --predictions writes jsonl"),
], ids=["json as csv", "json as jsonl", "predictions as csv", "predictions as json"])
def test_an_output_of_one_format_named_as_another_is_refused_before_any_work(runner, tmp_path, command, outputs,
                                                                            message):
    """evaluate --json m.csv and --predictions p.csv wrote JSON and JSONL under a .csv name."""
    d = str(tmp_path)
    result = runner.invoke(main, [command, "--data", str(tmp_path / "not-read-yet.jsonl"), "-q",
                                  *(o.format(d=d) for o in outputs)])
    _assert_clean_failure(result, message.format(d=d))
    assert list(tmp_path.iterdir()) == []


def test_metrics_and_predictions_under_names_that_say_their_format_or_none(runner, tiny_model_dir, tiny_eval_data,
                                                                          tmp_path):
    """The refusal is of a name that says another format only: .json.gz, .ndjson and names without a suffix are
    written."""
    metrics, predictions = tmp_path / "m.json.gz", tmp_path / "p.ndjson"
    result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--data", str(tiny_eval_data),
                                  "--bootstrap", "0", "--json", str(metrics), "--predictions", str(predictions)])
    assert result.exit_code == 0, result.output
    assert json.loads(gzip.decompress(metrics.read_bytes()))["n"] == 90 and len(_jsonl(predictions.read_text())) == 90
    result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--data", str(tiny_eval_data),
                                  "--bootstrap", "0", "--json", str(tmp_path / "metrics")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "metrics").read_text())["n"] == 90


def test_stdout_redirected_to_an_output_file_is_refused(tiny_model_dir, tiny_eval_data, tmp_path):
    """evaluate --json m.json > m.json: the table printed to stdout would go to the file --json then replaces."""
    out = tmp_path / "m.json"
    with open(out, "w") as stdout:
        proc = subprocess.run([sys.executable, "-m", "lite_moderation", "evaluate", "--model", str(tiny_model_dir),
                               "--data", str(tiny_eval_data), "--json", str(out), "--bootstrap", "0", "-q"],
                              stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"stdout is the file given as --json {out}" in proc.stderr and out.read_text() == ""


def test_evaluate_warns_loudly_when_prompts_were_seen_in_training(runner, tiny_model_dir, tiny_data):
    result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--data", str(tiny_data)])
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.stderr and "seen in training" in result.stderr


def test_evaluate_binary_only_data_omits_categories(runner, tmp_path):
    out = tmp_path / "m.json"
    result = runner.invoke(main, ["evaluate", "--data", str(SAFERLHF), "--json", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"n", "unsafe", "bootstrap"} and metrics["n"] == 2000
    assert 0.5 < metrics["unsafe"]["auroc"] <= 1.0


def test_cv_json_on_synthetic_data(runner, tiny_data, tmp_path):
    out = tmp_path / "cv.json"
    result = runner.invoke(main, ["cv", "--data", str(tiny_data), "--folds", "3", "--seed", "0",
                                  "--char-ngrams", "none", "--min-df", "1", "--json", str(out), "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 240 and metrics["unsafe"]["auroc"] > 0.9
    assert "macro-F1" in result.stdout


def test_train_fails_cleanly_on_unlabelled_data(runner, tmp_path):
    path = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "q", "response": "r"}] * 5)
    result = runner.invoke(main, ["train", "--data", str(path), "--output", str(tmp_path / "m")])
    _assert_clean_failure(result, "plain.jsonl:1:")


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("", ("no records",)),
        ('{"prompt": "q", "response": "r", "category": {"animal_abuse": false}, "is_safe": true}\n',
         ("jsonl:1:", "category")),
        ('{"prompt": "q", "response": "r", "category": {"not_a_category": true}, "is_safe": false}\n',
         ("jsonl:1:", "not_a_category")),
        ('{"prompt": "q", "response": "r", "is_safe": "maybe"}\n', ("jsonl:1:", "is_safe")),
    ],
    ids=["empty-file", "category-missing-key", "category-unknown-key", "is-safe-not-boolean"],
)
def test_evaluate_bad_data_files_fail_cleanly(runner, tiny_model_dir, tmp_path, content, fragments):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--data", str(path)])
    _assert_clean_failure(result, *fragments)


def test_evaluate_csv_without_needed_columns_fails_cleanly(runner, tiny_model_dir, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("question,answer\nq,r\n")
    result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--data", str(path)])
    _assert_clean_failure(result, "bad.csv:1:", "prompt")


def test_evaluate_csv_with_labels(runner, tiny_model_dir, tmp_path):
    records = synthetic_records(30, seed=5)
    path = tmp_path / "labelled.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "response", "is_safe"])
        for r in records:
            writer.writerow([r["prompt"], r["response"], str(r["is_safe"]).lower()])
    result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--data", str(path), "--json", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 30


# ------------------------------------------------------------------------------------------ info / models


def test_info_json_is_the_model_card(runner):
    result = runner.invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    for key in ("training_data", "recipe", "labels", "thresholds", "metrics", "license", "format_version",
                "path", "size_bytes"):
        assert key in card
    assert card["operating_points"]["default"] == card["thresholds"]["unsafe"]
    assert card["operating_points"]["strict"] > card["operating_points"]["default"]
    assert card["training_data"]["sha256"] == "ebc81efa924ce4faf34c984d37c16f942f19825b65e0668ccda4a884fd092b63"
    assert "CC BY-NC 4.0" in card["license"]
    assert card["size_bytes"] == sum(f.stat().st_size for f in Path(card["path"]).iterdir())


def test_info_text(runner, tiny_model_dir):
    result = runner.invoke(main, ["info", "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "tiny_train.jsonl" in result.stdout and "thresholds:" in result.stdout
    assert "unsafe operating points (--threshold NAME): default " in result.stdout and ", strict " in result.stdout


def test_info_on_a_model_saved_from_python_says_what_is_not_recorded(runner, tmp_path, tiny_model_dir):
    """docs/python.md's `lm.save(est, "my-model")` saves no card: info printed "trained on: None (None rows, None
    prompts, sha256 None)" and empty recipe and license lines."""
    target = lm.save(lm.load(tiny_model_dir), tmp_path / "my-model")
    result = runner.invoke(main, ["info", "--model", str(target)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "None" not in result.stdout and not [line for line in lines if line.rstrip().endswith(":")]
    assert lines[1] == "training data: not recorded (no model card: saved from Python without the card lm.train returns)"
    assert lines[2] == "recipe: not recorded (the estimator's parameters: info --json, under params)"
    assert "license: not recorded (check the training data's terms)" in lines


def test_info_on_a_model_trained_from_stdin_names_stdin_and_no_sha256(tmp_path, tiny_data):
    out = tmp_path / "m"
    with open(tiny_data, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "lite_moderation", "train", "--data", "-", "--output", str(out),
                               "--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "0", "-q"],
                              stdin=stdin, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    info = subprocess.run([sys.executable, "-m", "lite_moderation", "info", "--model", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert info.returncode == 0, info.stderr
    assert info.stdout.splitlines()[1] == "trained on: stdin (240 rows, 12 prompts, not hashed)"
    assert "None" not in info.stdout


def _license_line(out: Path) -> str:
    info = subprocess.run([sys.executable, "-m", "lite_moderation", "info", "--model", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert info.returncode == 0, info.stderr
    return next(line for line in info.stdout.splitlines() if line.startswith("license: "))


def test_a_model_of_own_data_in_beavertails_format_carries_that_data_s_license(tmp_path):
    """A user's own rows in BeaverTails' schema, each with "license": "CC0-1.0": `info` printed "license: Trained on
    BeaverTails (PKU-Alignment), licensed CC BY-NC 4.0 ... non-commercial use": the statement was chosen from the
    label set alone. It follows the first source's recorded license: BeaverTails' terms only for BeaverTails' data."""
    data = write_jsonl(tmp_path / "mybt.jsonl", [{**r, "license": "CC0-1.0"} for r in synthetic_records(300, seed=3)])
    out = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-m", "lite_moderation", "train", "--data", str(data), "--preset", "fast",
                           "--threshold-folds", "2", "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    line = _license_line(out)
    assert "BeaverTails" not in line and "non-commercial" not in line
    assert line == ("license: Trained on: mybt.jsonl (CC0-1.0). The model is derived from that data and follows its "
                    "terms. The lite-moderation code is MIT-licensed.")
    # the same rows with no license recorded: said unknown, not BeaverTails'; from stdin: named stdin, not "-"
    bare = write_jsonl(tmp_path / "bare.jsonl", synthetic_records(300, seed=3))
    for source, stdin, name in ((str(bare), None, "bare.jsonl"), ("-", bare, "stdin")):
        with open(stdin or os.devnull, "rb") as fh:
            proc = subprocess.run([sys.executable, "-m", "lite_moderation", "train", "--data", source, "--preset",
                                   "fast", "--threshold-folds", "0", "-o", str(out), "--overwrite", "-q"],
                                  stdin=fh, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        assert _license_line(out) == (f"license: Trained on: {name} (license unknown: check the source). The model is "
                                      "derived from that data and follows its terms. The lite-moderation code is "
                                      "MIT-licensed.")
        note = json.loads((out / "model.json").read_text())["card"]["notes"][0]
        assert note.startswith(f"Trained on {name} (every row)")


def test_a_model_of_beavertails_data_carries_beavertails_terms():
    """The shipped BeaverTails files are recognised by sha256 (their rows carry no license field), so their
    models keep BeaverTails' terms; the statement is the shipped cards' (rebuilt byte for byte)."""
    from lite_moderation.sources import describe_source
    from lite_moderation.training import BEAVERTAILS_LICENSE, model_license

    first = describe_source(str(BEAVERTAILS_TEST), 3021, 3021, 3021)
    assert first["license"] == "CC BY-NC 4.0 (BeaverTails 30k_test)"
    assert model_license([first]) == BEAVERTAILS_LICENSE
    other = {"name": "mine.jsonl", "license": None}
    assert model_license([first, other]) == f"{BEAVERTAILS_LICENSE} Also trained on: mine.jsonl (license unknown: check the source)."
    assert model_license([other, first]).startswith("Trained on: mine.jsonl (license unknown: check the source); "
                                                    "30k_test.jsonl (CC BY-NC 4.0 (BeaverTails 30k_test)).")
    for name in SHIPPED_MODELS:
        card = lm.read_card(name)
        sources = card["training_data"].get("sources") or [first]
        assert model_license(sources) == card["license"]


def test_missing_model_directory_fails_cleanly(runner, tmp_path):
    result = runner.invoke(main, ["score", "--model", str(tmp_path / "nope"), "text"])
    _assert_clean_failure(result, "no such model directory")


def test_json_to_stdout_is_pure_json(runner, tiny_model_dir, tiny_eval_data):
    result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--data", str(tiny_eval_data),
                                  "--json", "-"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["n"] == 90


def test_version_option(runner):
    assert runner.invoke(main, ["--version"]).exit_code == 0


def test_train_writes_a_loadable_model_path(runner, tiny_data, tmp_path):
    out = Path(tmp_path) / "nested" / "model"
    result = runner.invoke(main, ["train", "--data", str(tiny_data), "--output", str(out), "--char-ngrams", "none",
                                  "--min-df", "1", "--threshold-folds", "0", "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "model.json").is_file() and (out / "arrays.npz").is_file()


def test_train_records_only_the_options_given_and_presets_apply(runner, tiny_data, tmp_path):
    out = tmp_path / "fast"
    result = runner.invoke(main, ["train", "--data", str(tiny_data), "--output", str(out), "--preset", "fast",
                                  "--min-df", "1", "--threshold-holdout", "0.25", "--jobs", "2", "-q"])
    assert result.exit_code == 0, result.output
    metadata = json.loads((out / "model.json").read_text())
    assert metadata["card"]["recipe"]["command"] == (
        f"lite-moderation train --data {tiny_data.name} --output MODEL_DIR --preset fast --min-df 1 "
        "--threshold-holdout 0.25")  # --jobs changes speed, not the model
    assert metadata["params"]["vectorizer"]["char_fields"] == []
    assert metadata["params"]["classifier"]["threshold_holdout"] == 0.25


def test_char_ngrams_option_turns_them_back_on_in_the_fast_preset(runner, tiny_data, tmp_path):
    out = tmp_path / "m"
    result = runner.invoke(main, ["train", "--data", str(tiny_data), "--output", str(out), "--preset", "fast",
                                  "--char-ngrams", "3,4", "--min-df", "1", "--threshold-folds", "0", "-q"])
    assert result.exit_code == 0, result.output
    vectorizer = json.loads((out / "model.json").read_text())["params"]["vectorizer"]
    assert vectorizer["char_fields"] == ["response"] and vectorizer["char_ngram_range"] == [3, 4]


def _train_with(runner, tiny_data, out, *options: str) -> dict:
    """``train`` on the tiny data with recipe ``options`` (no tuning folds); the saved model.json."""
    result = runner.invoke(main, ["train", "--data", str(tiny_data), "--output", str(out), *options,
                                  "--min-df", "1", "--threshold-folds", "0", "-q"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "model.json").read_text())


def _refused(runner, tiny_data, tmp_path, option: str, bad_values: tuple[str, ...]) -> None:
    for bad in bad_values:
        refused = runner.invoke(main, ["train", "--data", str(tiny_data), "--output", str(tmp_path / "n"), option, bad])
        assert refused.exit_code == 2 and option in refused.output, bad
        assert not (tmp_path / "n").exists()


def test_nb_power_option_is_recorded_and_the_saved_model_scores_as_trained(runner, tiny_data, tmp_path):
    metadata = _train_with(runner, tiny_data, tmp_path / "m", "--nb-power", "response=0.5")
    assert "--nb-power response=0.5 " in metadata["card"]["recipe"]["command"]
    assert metadata["params"]["classifier"]["nb_power"] == {"response": 0.5}
    data = lm.load_dataset(str(tiny_data))
    trained = lm.default_estimator(nb_power={"response": 0.5}, min_df=1, threshold_folds=0).fit(data.pairs, data.y)
    plain = lm.default_estimator(min_df=1, threshold_folds=0).fit(data.pairs, data.y)
    loaded = lm.load(str(tmp_path / "m")).predict_proba(data.pairs[:20])
    np.testing.assert_allclose(loaded, trained.predict_proba(data.pairs[:20]), atol=1e-6)
    assert not np.allclose(loaded, plain.predict_proba(data.pairs[:20]), atol=1e-4)
    _refused(runner, tiny_data, tmp_path, "--nb-power", ("-1", "response=abc", "answer=2", "nan"))


def test_char_weight_option_is_recorded_and_the_saved_model_scores_as_trained(runner, tiny_data, tmp_path):
    metadata = _train_with(runner, tiny_data, tmp_path / "m", "--char-weight", "1.5")
    assert metadata["card"]["recipe"]["command"].endswith("--output MODEL_DIR --char-weight 1.5 --min-df 1 "
                                                          "--threshold-folds 0")
    assert metadata["params"]["classifier"]["char_weight"] == 1.5
    data = lm.load_dataset(str(tiny_data))
    trained = lm.default_estimator(char_weight=1.5, min_df=1, threshold_folds=0).fit(data.pairs, data.y)
    np.testing.assert_allclose(lm.load(str(tmp_path / "m")).predict_proba(data.pairs[:20]),
                               trained.predict_proba(data.pairs[:20]), atol=1e-6)
    _refused(runner, tiny_data, tmp_path, "--char-weight", ("0", "response=abc", "answer=2"))
    metadata = _train_with(runner, tiny_data, tmp_path / "by_field", "--char-weight", "response=1.5")
    assert "--char-weight response=1.5 " in metadata["card"]["recipe"]["command"]
    assert metadata["params"]["classifier"]["char_weight"] == {"response": 1.5}
    np.testing.assert_allclose(lm.load(str(tmp_path / "by_field")).predict_proba(data.pairs[:20]),
                               trained.predict_proba(data.pairs[:20]), atol=1e-6)


def test_max_features_per_field_caps_those_blocks_is_recorded_and_the_saved_model_scores_as_trained(
        runner, tiny_data, tmp_path):
    metadata = _train_with(runner, tiny_data, tmp_path / "m", "--max-features", "*=40,response=15")
    assert "--max-features '*=40,response=15' " in metadata["card"]["recipe"]["command"] + " "
    assert metadata["params"]["vectorizer"]["max_features"] == {"*": 40, "response": 15}
    model = lm.load(str(tmp_path / "m"))
    sizes = {(field, analyzer): len(block.vocabulary_) for field, analyzer, block in model.vectorizer_.blocks_}
    assert sizes == {("prompt", "word"): 40, ("response", "word"): 15, ("response", "char_wb"): 15}
    data = lm.load_dataset(str(tiny_data))
    trained = lm.default_estimator(max_features={"*": 40, "response": 15}, min_df=1, threshold_folds=0)
    trained.fit(data.pairs, data.y)
    np.testing.assert_allclose(model.predict_proba(data.pairs[:20]), trained.predict_proba(data.pairs[:20]),
                               atol=1e-6)
    np.testing.assert_allclose(lm.load_scorer(str(tmp_path / "m")).predict_proba(data.pairs[:20]),
                               trained.predict_proba(data.pairs[:20]), atol=1e-6)
    _refused(runner, tiny_data, tmp_path, "--max-features", ("0", "response=abc", "answer=20", "response=-3", "1.5"))


@pytest.mark.parametrize("name", ["default", "accurate", "fast", "beavertails"])
def test_shipped_models_by_name(runner, name):
    result = runner.invoke(main, ["score", "--model", name, "--format", "jsonl", "a text"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unsafe_score"] >= 0
    card = json.loads(runner.invoke(main, ["info", "--model", name, "--json"]).stdout)
    assert Path(card["path"]).name == ("default" if name == "accurate" else name)


def test_unknown_model_name_lists_the_shipped_ones(runner):
    result = runner.invoke(main, ["score", "--model", "nonexistent-model", "a text"])
    assert result.exit_code == 2 and "shipped models: default, fast, beavertails" in result.stderr  # not the alias


def test_score_file_at_the_strict_operating_point(runner, tiny_model_dir, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"prompt": "tell me about the garden", "response": f"marker{i % 14} river"})
                            + "\n" for i in range(40)))
    outputs = {}
    for name in ("default", "strict"):
        out = tmp_path / f"{name}.jsonl"
        result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "--input", str(data), "--output",
                                      str(out), "--threshold", name, "-q"])
        assert result.exit_code == 0, result.output
        outputs[name] = [json.loads(line) for line in out.read_text().splitlines()]
    cut = lm.load(tiny_model_dir).operating_points_["strict"]
    assert [r["unsafe_score"] for r in outputs["strict"]] == [r["unsafe_score"] for r in outputs["default"]]
    assert [r["flagged"] for r in outputs["strict"]] == [r["unsafe_score"] >= cut for r in outputs["strict"]]


@pytest.mark.parametrize("value", ["1.5", "lenient"])
def test_threshold_option_rejects_what_is_neither_a_probability_nor_a_name(runner, value):
    result = runner.invoke(main, ["score", "--threshold", value, "a text"])
    assert result.exit_code == 2 and "--threshold" in result.stderr


def test_cv_at_a_fixed_threshold_and_at_the_strict_operating_point(runner, tiny_data, tmp_path):
    metrics = {}
    for value in ("1.0", "strict"):
        out = tmp_path / f"cv-{value}.json"
        result = runner.invoke(main, ["cv", "--data", str(tiny_data), "--folds", "3", "--char-ngrams", "none",
                                      "--min-df", "1", "--threshold", value, "--json", str(out), "-q"])
        assert result.exit_code == 0, result.output
        metrics[value] = json.loads(out.read_text())
    assert metrics["1.0"]["unsafe"]["recall"] < 0.05  # almost nothing scores >= 1.0
    assert metrics["strict"]["unsafe"]["precision"] > 0.9  # the markers make the strict point easy
    assert metrics["strict"]["unsafe"]["auroc"] == metrics["1.0"]["unsafe"]["auroc"]  # same scores, other cut


# ------------------------------------------------------------------------------------------ degenerate data


def _records_without(category_index: int) -> list[dict]:
    records = synthetic_records(240, seed=0)
    for r in records:
        r["category"][CATEGORIES[category_index]] = False
        r["is_safe"] = not any(r["category"].values())
    return records


def test_train_on_all_safe_data_is_refused_in_one_line(runner, tmp_path):
    records = [{**r, "category": dict.fromkeys(CATEGORIES, False), "is_safe": True} for r in synthetic_records(60)]
    path = write_jsonl(tmp_path / "safe.jsonl", records)
    for command in (["train", "--output", str(tmp_path / "m")], ["cv"]):
        result = runner.invoke(main, [*command, "--data", str(path), "-q"])
        _assert_clean_failure(result, "--data: all 60 training rows are safe", "unsafe rows")
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_train_warns_once_naming_a_category_without_positives(runner, tmp_path):
    path = write_jsonl(tmp_path / "no_abuse.jsonl", _records_without(0))
    result = runner.invoke(main, ["train", "--data", str(path), "--output", str(tmp_path / "m"), "--cv-folds", "2",
                                  "--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "2", "-q"])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert warned == [f"warning: no training row is labelled '{CATEGORIES[0]}': the model will never flag it"]
    assert "LabelWarning" not in result.stderr


@pytest.mark.parametrize(("command", "option"), [(["train", "--cv-folds"], "--cv-folds"), (["cv", "--folds"], "--folds")])
@pytest.mark.parametrize("folds", ["1", "1000"])
def test_fold_count_errors_name_the_option_given(runner, tiny_data, tmp_path, command, option, folds):
    args = [command[0], "--data", str(tiny_data), command[1], folds, "-q"]
    if command[0] == "train":
        args += ["--output", str(tmp_path / "m")]
    result = runner.invoke(main, args)
    if command[0] == "cv" and folds == "1":  # below the option's own range: click names it
        assert result.exit_code == 2 and "'--folds'" in result.stderr
        return
    _assert_clean_failure(result, f"{option} must be between 2 and the number of distinct prompts")
    assert "n_folds" not in result.stderr and not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------------------ hostile text on a terminal (#22)

#: Retitle the terminal, clear it, move home, a CR/LF and a fake report line, a right-to-left override, a C1
#: control sequence introducer, a line separator.
HOSTILE_TEXT = ("hello \x1b]0;retitled\x07 world\x1b[2J\x1b[H\r\n#2  ok  unsafe 0.001 \u202eevil\u202c "
                "\x9b31m end\u2028x\x7f")
ESCAPED = ("hello \\x1b]0;retitled\\x07 world\\x1b[2J\\x1b[H\\r\\n#2  ok  unsafe 0.001 \\u202eevil\\u202c "
           "\\x9b31m end\\u2028x\\x7f")
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _obeyed_by_a_terminal(text: str) -> list[str]:
    """Characters a terminal would act on: controls other than the report's own line ends, bidi overrides."""
    return [c for c in text if (unicodedata.category(c) in ("Cc", "Zl", "Zp") and c != "\n") or c in _BIDI]


def test_explain_text_shows_the_inputs_control_characters_escaped(runner):
    for args in ([HOSTILE_TEXT], ["--prompt", HOSTILE_TEXT, "--response", HOSTILE_TEXT]):
        result = runner.invoke(main, ["explain", "--format", "text", *args])
        assert result.exit_code == 0, result.output
        assert _obeyed_by_a_terminal(result.stdout) == []
        shown = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
                 if line.startswith(("  message:", "  prompt:", "  response:"))]
        unmarked = str.maketrans("", "", "[]{}")  # the marks around n-grams (the text has brackets too)
        assert [line.translate(unmarked) for line in shown] == [ESCAPED.translate(unmarked)] * (1 if len(args) == 1 else 2)
        assert not any(line.startswith("#2") for line in result.stdout.splitlines())  # no fake report line


def test_score_table_reasons_show_the_inputs_control_characters_escaped(runner, tmp_path):
    """--threshold 0 flags every row, so the table quotes the input in its reasons: here the span of the word
    pair "best way", with the controls between its words."""
    text = "what is the best\x1b[H\x1b[A\r\n\u202e\x07\x9bway"
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"text": text}) + "\n" + json.dumps({"prompt": text, "response": "fine"}) + "\n")
    for args in (["--input", str(data)], [text]):
        result = runner.invoke(main, ["score", "--format", "table", "--threshold", "0", *args])
        assert result.exit_code == 0, result.output
        assert '"best\\x1b[H\\x1b[A\\r\\n\\u202e\\x07\\x9bway"' in result.stdout, result.stdout
        assert _obeyed_by_a_terminal(result.stdout) == []


def test_info_shows_a_model_cards_control_characters_escaped(runner, tmp_path, tiny_model_dir):
    """A model downloaded from elsewhere carries its author's card text."""
    card = json.loads((tiny_model_dir / "model.json").read_text())["card"]
    card["notes"] = [HOSTILE_TEXT]
    target = lm.save(lm.load(tiny_model_dir), tmp_path / "model", card)
    result = runner.invoke(main, ["info", "--model", str(target)])
    assert result.exit_code == 0, result.output
    assert _obeyed_by_a_terminal(result.stdout) == [] and "note: hello \\x1b]0;retitled" in result.stdout


# ------------------------------------------------------------------------------------------ model names (#22)


def test_a_shipped_models_name_means_it_even_beside_a_directory_of_that_name(runner, tmp_path, tiny_model_dir,
                                                                               monkeypatch):
    """./default (a model) and ./fast (not one) in the working directory: the names still mean the shipped
    models, stderr says which won, and ./default is how to reach the directory."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "default")
    (tmp_path / "fast").mkdir()
    for name in ("default", "fast"):
        result = runner.invoke(main, ["info", "--json", "--model", name])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["path"] == str(SHIPPED_MODELS[name])
        assert f"the directory {name} here is not used (give ./{name} to use it)" in result.stderr
    local = runner.invoke(main, ["info", "--json", "--model", "./default"])
    assert local.exit_code == 0, local.output
    assert Path(json.loads(local.stdout)["path"]).resolve() == (tmp_path / "default").resolve()
    assert local.stderr == ""
    pair = ["--prompt", "a question", "--response", "an answer", "--format", "json"]
    shipped_scores = json.loads(runner.invoke(main, ["score", "--model", "default", *pair]).stdout)
    assert shipped_scores == lm.load_scorer().moderate([("a question", "an answer")])
    assert lm.load_scorer("default").path_ == str(SHIPPED_MODELS["default"])
    assert Path(lm.load_scorer(Path("default")).path_).resolve() == (tmp_path / "default").resolve()
    assert "./default" in runner.invoke(main, ["info", "--help"]).stdout


def test_csv_columns_of_the_shipped_model_are_short_names_without_commas(runner, tmp_path):
    """BeaverTails' keys hold commas: as CSV headers they break pandas and spreadsheets, so CSV uses short names."""
    from lite_moderation.taxonomy import CATEGORIES, short_name

    result = runner.invoke(main, ["score", "a note about the garden", "--format", "csv"])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split(",")
    assert header == ["flagged", "unsafe_score", *map(short_name, CATEGORIES)]
