"""Systems side by side on identical rows (``compare``), the paper tables, and the intervals of ``cv``/``evaluate``:
the real CLI through click's runner on real files (the shared XSTest rows and GuardReasoner's published verdicts)."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA, XSTEST, read_terminal, write_jsonl

from lite_moderation.cli import main
from lite_moderation.compare import System, compare_systems, read_system
from lite_moderation.data import DataError, load_dataset
from lite_moderation.tables import Table, latex_escape, render

PEERS = SHARED_DATA.parent / "reference" / "peers" / "xstest_response_harmful.guardreasoner.jsonl"
#: GuardReasoner's F1 / FPR on XSTest-response, as its peers README states them.
PUBLISHED = {"GuardReasoner-1B": (0.907, 0.027), "GuardReasoner-3B": (0.914, 0.027), "GuardReasoner-8B": (0.926, 0.024)}


def _systems_args(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--system", f"{name}={PEERS}")]


def _assert_clean_failure(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def ours_on_xstest(tmp_path_factory) -> tuple[Path, dict]:
    """The shipped beavertails model's per-row predictions and metrics (with intervals) on XSTest-response."""
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("ours")
    result = CliRunner().invoke(main, ["evaluate", "--model", "beavertails", "--data", str(XSTEST), "--predictions",
                                       str(out / "ours.jsonl"), "--json", str(out / "metrics.json")])
    assert result.exit_code == 0, result.output
    return out / "ours.jsonl", json.loads((out / "metrics.json").read_text())


# ------------------------------------------------------------------------------------------ compare


def test_compare_reproduces_guardreasoners_published_f1_and_fpr(runner, tmp_path) -> None:
    out = tmp_path / "cmp.json"
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), *_systems_args(*PUBLISHED), "--format", "json",
                                  "--output", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["rows_compared"] == 446 and summary["positives"] == 78
    for entry in summary["systems"]:
        f1, fpr = PUBLISHED[entry["name"]]
        assert round(entry["metrics"]["f1"], 3) == f1 and round(entry["metrics"]["fpr"], 3) == fpr
        for metric, (low, high) in entry["ci"].items():
            assert low <= entry["metrics"][metric] <= high, metric
        assert not entry["has_scores"] and "auroc" not in entry["metrics"]
    assert [(d["a"], d["b"]) for d in summary["differences"]] == [
        ("GuardReasoner-1B", "GuardReasoner-3B"), ("GuardReasoner-1B", "GuardReasoner-8B"),
        ("GuardReasoner-3B", "GuardReasoner-8B")]
    assert all(d["mcnemar"]["p_value"] > 0.05 for d in summary["differences"])  # the three sizes do not differ


def test_compare_ours_against_a_peer_matches_evaluate_and_draws_curves(runner, tmp_path, ours_on_xstest) -> None:
    predictions, metrics = ours_on_xstest
    out, png = tmp_path / "cmp.json", tmp_path / "curves.png"
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), "--system", f"ours={predictions}",
                                  *_systems_args("GuardReasoner-8B"), "--format", "json", "-o", str(out),
                                  "--plot", str(png)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    ours = summary["systems"][0]
    for name in ("f1", "precision", "recall", "fpr", "auprc", "auroc"):
        assert ours["metrics"][name] == pytest.approx(metrics["unsafe"][name])
        assert ours["ci"][name] == pytest.approx(metrics["unsafe"]["ci"][name])  # same groups, same seed
    diff = summary["differences"][0]
    assert set(diff["metrics"]) == {"f1", "precision", "recall", "fpr", "accuracy"}  # only the peer's verdicts
    assert diff["metrics"]["f1"]["ci"][1] < 0 and diff["mcnemar"]["p_value"] < 1e-10
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_perfect_system_is_compared_with_perfect_intervals(runner, tmp_path) -> None:
    """The report's case: 50 rows, 2 unsafe, all right. F1, precision and recall read 1.000 [0.000, 1.000]."""
    data = write_jsonl(tmp_path / "perfect.jsonl", [{"prompt": f"question {i}", "response": f"answer {i}",
                                                      "is_safe": i >= 2} for i in range(50)])
    predictions = write_jsonl(tmp_path / "pred.jsonl", [{"row": i, "flagged": i < 2, "score": 0.9 if i < 2 else 0.1}
                                                         for i in range(50)])
    result = runner.invoke(main, ["compare", "--data", str(data), "--system", f"perfect={predictions}"])
    assert result.exit_code == 0, result.output
    assert result.output.count("1.000 [1.000, 1.000]") == 6 and "0.000 [0.000, 1.000]" not in result.output
    assert "0.000 [0.000, 0.000]" in result.output  # FPR: defined (48 safe rows), and 0


def test_evaluate_reports_what_an_all_safe_or_all_unsafe_file_cannot_measure_as_na(runner, tiny_model_dir,
                                                                                   tmp_path) -> None:
    """An all-safe file printed recall 0.000 [0.000, 0.000]; an all-unsafe one fpr 0.000 [0.000, 0.000]."""
    for safe, undefined in ((True, "recall"), (False, "fpr")):
        data = write_jsonl(tmp_path / f"{safe}.jsonl", [{"prompt": f"how do I plant tulips {i}", "response": "in "
                                                         "autumn", "is_safe": safe} for i in range(12)])
        out = tmp_path / f"{safe}.json"
        result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--json",
                                      str(out), "--bootstrap", "200", "-q"])
        assert result.exit_code == 0, result.output
        assert re.search(rf"\b{undefined} +n/a", result.output) and f"{undefined} n/a" in result.output
        metrics = json.loads(out.read_text())["unsafe"]
        assert metrics[undefined] is None and metrics["ci"][undefined] is None and metrics["auroc"] is None


def test_compare_data_in_fields_of_its_own_takes_the_column_options_its_error_names(runner, tmp_path) -> None:
    """`compare --data comments.csv` said "name another with --text-column or --prompt-column", options compare did
    not have (a user's round). It takes score's text column options; its prompts still group the bootstrap."""
    rows = [{"prompt": f"question {i % 7}", "response": f"answer {i}", "is_safe": i % 3 != 0} for i in range(42)]
    standard = write_jsonl(tmp_path / "standard.jsonl", rows)
    own = tmp_path / "own.csv"
    with open(own, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["question", "answer", "is_safe"])
        writer.writerows([r["prompt"], r["response"], r["is_safe"]] for r in rows)
    predictions = write_jsonl(tmp_path / "pred.jsonl", [{"row": i, "flagged": i % 2 == 0, "score": (i % 5) / 5}
                                                         for i in range(42)])
    args = ["--system", f"x={predictions}", "--format", "json", "--bootstrap", "200", "-q"]
    refused = runner.invoke(main, ["compare", "--data", str(own), *args])
    _assert_clean_failure(refused, "name another with --text-column or --prompt-column")
    expected = runner.invoke(main, ["compare", "--data", str(standard), *args])
    assert expected.exit_code == 0, expected.output
    for options in (["--prompt-column", "question", "--response-column", "answer"], ["--prompt-column", "question"]):
        result = runner.invoke(main, ["compare", "--data", str(own), *options, *args])
        assert result.exit_code == 0, result.output
        summary, want = json.loads(result.stdout), json.loads(expected.stdout)
        assert summary.pop("data") == str(own) and want.pop("data") == str(standard)
        assert summary == want  # the same rows, labels and prompt groups
    single = tmp_path / "single.csv"
    single.write_text("comment,is_safe\n" + "".join(f"text {i},{i % 3 != 0}\n" for i in range(42)))
    result = runner.invoke(main, ["compare", "--data", str(single), "--text-column", "comment", *args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_compared"] == 42


def test_compare_on_the_rows_all_systems_cover(tmp_path) -> None:
    dataset = load_dataset(XSTEST)
    peers = [json.loads(line) for line in PEERS.read_text().splitlines()]
    partial = write_jsonl(tmp_path / "half.jsonl", [{"row": r["row"], "score": float(r["GuardReasoner-8B"]),
                                                     "flagged": r["GuardReasoner-8B"]} for r in peers[::2]])
    systems = [read_system(PEERS, "GuardReasoner-1B", dataset), read_system(partial, "half", dataset)]
    summary = compare_systems(dataset, systems).summary
    assert summary["rows_compared"] == 223 and summary["rows_in_data"] == 446
    assert summary["systems"][1]["has_scores"] and summary["systems"][1]["rows_given"] == 223


@pytest.mark.parametrize("fmt", ["text", "markdown", "latex", "csv"])
def test_compare_table_formats(runner, fmt) -> None:
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), *_systems_args("GuardReasoner-1B",
                                                                                    "GuardReasoner-8B"),
                                  "--format", fmt, "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    assert "0.907" in result.stdout and "0.926" in result.stdout
    if fmt == "latex":
        _assert_compile_shaped(result.stdout)
        assert r"GuardReasoner-1B & 0.907" in result.stdout
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(result.stdout.split("\n\n")[0])))
        assert rows[0][0] == "system" and [r[0] for r in rows[1:]] == ["GuardReasoner-1B", "GuardReasoner-8B"]


@pytest.mark.parametrize(("name", "fmt"), [("cmp.json", "json"), ("cmp.csv", "csv"), ("cmp.md", "markdown"),
                                         ("cmp.tex", "latex"), ("cmp.txt", "text")])
def test_compare_output_suffix_decides_the_format(runner, tmp_path, name, fmt) -> None:
    """`compare -o cmp.json` (.csv, .md) wrote the plain-text table whatever the name said."""
    args = ["compare", "--data", str(XSTEST), *_systems_args("GuardReasoner-8B"), "--bootstrap", "50", "-q"]
    printed = runner.invoke(main, [*args, "--format", fmt])
    assert printed.exit_code == 0, printed.output
    result = runner.invoke(main, [*args, "-o", str(tmp_path / name)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / name).read_text() == printed.stdout
    if fmt == "json":
        assert json.loads(printed.stdout)["rows_compared"] == 446


@pytest.mark.parametrize(("options", "message"), [
    (["-o", "{d}/cmp.csv", "--format", "json"], "{d}/cmp.csv: the suffix says csv but --format is json"),
    (["-o", "{d}/cmp.out"], "{d}/cmp.out: unknown output suffix '.out'"),
    (["-o", "{d}/cmp.txt", "--plot", "{d}/curves.pdf"], ("--plot {d}/curves.pdf: the suffix says pdf, but --plot "
                                                         "writes png only")),
], ids=["format contradicts suffix", "unknown suffix", "plot not png"])
def test_compare_refuses_an_output_name_that_says_another_format(runner, tmp_path, options, message) -> None:
    d = str(tmp_path)
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), *_systems_args("GuardReasoner-8B"),
                                  "--bootstrap", "10", *(o.format(d=d) for o in options)])
    _assert_clean_failure(result, message.format(d=d))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("lines", "fragments"), [
    (['{"row": 0, "flagged": true}', "not json"], ["preds.jsonl:2:", "not valid JSON"]),
    (['{"flagged": true}'], ["preds.jsonl:1:", "field 'row'"]),
    (['{"row": 0, "flagged": true}', '{"row": 0, "flagged": false}'], ["preds.jsonl:2:", "first on line 1"]),
    (['{"row": 446, "flagged": true}'], ["preds.jsonl:1:", "past the end of --data (446 rows)"]),
    (['{"row": 0, "flagged": "yes"}'], ["preds.jsonl:1:", "field 'flagged'", "true or false"]),
    (['{"row": 0, "score": 0.3}', '{"row": 1, "flagged": true}'], ["preds.jsonl:2:", "first line did not agree"]),
    (['{"row": 0, "other": 1}'], ["preds.jsonl:1:", "no verdict or score of system 'x'"]),
    (['{"row": 0, "line": 5, "flagged": true}'], ["preds.jsonl:1:", "field 'line'", "another file"]),
    ([""], ["preds.jsonl", "no predictions"]),
])
def test_compare_refuses_malformed_predictions_with_file_and_line(runner, tmp_path, lines, fragments) -> None:
    path = tmp_path / "preds.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), "--system", f"x={path}"])
    _assert_clean_failure(result, *fragments)


def test_compare_reads_gzipped_predictions_and_names_a_compression_it_does_not(runner, tmp_path) -> None:
    """A user test: `evaluate --predictions p.jsonl.gz` writes gzip, which `compare` read as text (`p.jsonl.gz:1: not
    valid UTF-8 (byte offset 1)`), and a .bz2 file was "not valid UTF-8" too. Prediction files are opened as data
    files are: .gz and .xz read, another compression named with how to decompress it."""
    written = tmp_path / "fast.jsonl.gz"
    result = runner.invoke(main, ["evaluate", "--model", "fast", "--data", str(XSTEST), "--bootstrap", "0",
                                  "--predictions", str(written)])
    assert result.exit_code == 0, result.output
    assert written.read_bytes()[:2] == b"\x1f\x8b"  # gzip, as its name says
    plain = tmp_path / "fast.jsonl"
    plain.write_bytes(gzip.decompress(written.read_bytes()))
    peers_xz = tmp_path / "peers.jsonl.xz"
    peers_xz.write_bytes(lzma.compress(PEERS.read_bytes()))
    args = ["compare", "--data", str(XSTEST), "--bootstrap", "20", "--format", "json", "-q"]
    expected = runner.invoke(main, [*args, "--system", f"fast={plain}", *_systems_args("GuardReasoner-8B")])
    assert expected.exit_code == 0, expected.output
    result = runner.invoke(main, [*args, "--system", f"fast={written}", "--system", f"GuardReasoner-8B={peers_xz}"])
    assert result.exit_code == 0, result.output
    summaries = [json.loads(r.stdout) for r in (result, expected)]
    for summary in summaries:
        assert [s.pop("source") for s in summary["systems"]]  # the files' names differ, nothing else
    assert summaries[0] == summaries[1] and summaries[0]["rows_compared"] == 446
    bzipped = tmp_path / "peers.jsonl.bz2"
    bzipped.write_bytes(bz2.compress(PEERS.read_bytes()))
    result = runner.invoke(main, [*args, "--system", f"GuardReasoner-8B={bzipped}"])
    _assert_clean_failure(result, f"{bzipped}: the file is bzip2-compressed", ".gz (gzip) and .xz (xz)", "bunzip2 -k")
    assert "UTF-8" not in result.stderr


def test_latin1_predictions_are_told_where_and_how_to_convert_them(runner, tmp_path) -> None:
    """A user test: a Latin-1 prediction file got `p.jsonl:2: not valid UTF-8 (byte offset 41)` and none of the advice
    a Latin-1 data file gets; now the same words, by the same function, with its file and line."""
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"row": 0, "flagged": true}\n{"row": 1, "flagged": false, "note": "caf\xe9"}\n')
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), "--system", f"x={path}"])
    _assert_clean_failure(result, f"{path}:2: not valid UTF-8 (byte offset 41)", "must be UTF-8",
                          "iconv -f latin1 -t utf-8 FILE > NEW")


def test_compare_usage_errors(runner, tmp_path) -> None:
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), "--system", str(PEERS)])
    assert result.exit_code == 2 and "NAME=PREDICTIONS" in result.output
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), *_systems_args("GuardReasoner-1B"),
                                  "--reference", "nope"])
    _assert_clean_failure(result, "reference 'nope' is not one of the systems")
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), *_systems_args("GuardReasoner-1B"),
                                  "--output", str(PEERS)])
    _assert_clean_failure(result, "is also given as --system")
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), *_systems_args("GuardReasoner-1B"),
                                  "--plot", str(tmp_path)])
    _assert_clean_failure(result, "is a directory")


def test_compare_reference_compares_each_system_with_it_only(runner) -> None:
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), *_systems_args(*PUBLISHED), "--reference",
                                  "GuardReasoner-8B", "--format", "json", "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    pairs = [(d["a"], d["b"]) for d in json.loads(result.stdout)["differences"]]
    assert pairs == [("GuardReasoner-8B", "GuardReasoner-1B"), ("GuardReasoner-8B", "GuardReasoner-3B")]


def test_plot_dash_writes_the_png_to_stdout_and_nothing_else(tmp_path) -> None:
    """`--plot -` wrote a file named '-'; "-" is stdout for every output of the CLI, so the PNG goes there."""
    tables = tmp_path / "cmp.txt"
    proc = subprocess.run([sys.executable, "-m", "lite_moderation", "compare", "--data", str(XSTEST),
                           *_systems_args("GuardReasoner-8B"), "--bootstrap", "10", "-o", str(tables), "--plot", "-"],
                          cwd=tmp_path, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout[:8] == b"\x89PNG\r\n\x1a\n" and proc.stdout.endswith(b"IEND\xaeB`\x82")  # one whole PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp.txt"]  # no file named '-'
    assert "GuardReasoner-8B" in tables.read_text()


def test_plot_dash_beside_the_tables_on_stdout_is_refused(runner, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["compare", "--data", str(XSTEST), *_systems_args("GuardReasoner-8B"),
                                  "--bootstrap", "10", "--plot", "-"])
    _assert_clean_failure(result, "--plot - and the comparison tables would both write to stdout",
                          "give each output")
    assert list(tmp_path.iterdir()) == []


def _on_terminal(args: list[str], cwd: Path, stderr: Path) -> tuple[int, bytes]:
    """Run the CLI with its stdout on a pseudo-terminal (read as it comes: a PNG would fill its buffer); its exit
    code and what the terminal received."""
    leader, follower = pty.openpty()
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "lite_moderation", *args], stdin=subprocess.DEVNULL,
                                stdout=follower, stderr=err, cwd=cwd)
    os.close(follower)
    screen = read_terminal(leader, 120)
    return proc.wait(timeout=120), screen


def test_plot_dash_on_a_terminal_is_refused(tmp_path) -> None:
    """`--plot -` with stdout on a terminal printed the PNG's bytes on the screen (garbage and control bytes the
    terminal obeys): refused before any work, the tables' file not written either."""
    work = tmp_path / "work"
    work.mkdir()
    code, screen = _on_terminal(["compare", "--data", str(XSTEST), *_systems_args("GuardReasoner-8B"),
                                 "--bootstrap", "10", "-o", "cmp.txt", "--plot", "-"], work, tmp_path / "stderr")
    stderr = (tmp_path / "stderr").read_text()
    assert code == 2, stderr
    assert "--plot -: stdout is a terminal" in stderr and "redirect stdout" in stderr and "Traceback" not in stderr
    assert b"PNG" not in screen and list(work.iterdir()) == []


@pytest.mark.parametrize("option", ["--data", "--system"])
def test_plot_dash_with_stdout_on_an_input_is_refused(tmp_path, option) -> None:
    """`compare -o t.txt --plot - >> INPUT`: stdout was checked against the inputs only when the tables went
    there, so the PNG was appended to an input file (`score -i data.jsonl >> data.jsonl` is refused)."""
    data, peers = tmp_path / "xstest.jsonl", tmp_path / "peers.jsonl"
    shutil.copyfile(XSTEST, data)
    shutil.copyfile(PEERS, peers)
    target = data if option == "--data" else peers
    before = target.read_bytes()
    with open(target, "ab") as stdout:
        proc = subprocess.run([sys.executable, "-m", "lite_moderation", "compare", "--data", str(data),
                               "--system", f"GuardReasoner-8B={peers}", "--bootstrap", "10", "-o", "cmp.txt",
                               "--plot", "-"], stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"stdout is the file given as {option} {target}" in proc.stderr and "Traceback" not in proc.stderr
    assert target.read_bytes() == before and not (tmp_path / "cmp.txt").exists()


def test_plot_without_matplotlib_says_which_extra_to_install(tmp_path) -> None:
    png = tmp_path / "c.png"
    snippet = ("import sys\nsys.modules['matplotlib'] = None\nfrom lite_moderation.cli import main\n"
               f"main(['compare', '--data', {str(XSTEST)!r}, '--system', 'g=' + {str(PEERS)!r}, '--system', "
               f"'GuardReasoner-8B=' + {str(PEERS)!r}, '--plot', {str(png)!r}])\n")
    proc = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'lite-moderation[plot]'" in proc.stderr and "Traceback" not in proc.stderr
    assert not png.exists() and proc.stdout == ""  # refused before any work


def test_systems_need_predictions_and_distinct_names(tmp_path) -> None:
    with pytest.raises(ValueError, match="needs scores or verdicts"):
        System("x", [0, 1])
    dataset = load_dataset(XSTEST)
    with pytest.raises(ValueError, match="names must differ"):
        compare_systems(dataset, [read_system(PEERS, "GuardReasoner-1B")] * 2)
    one_row = load_dataset(write_jsonl(tmp_path / "one.jsonl", [{"prompt": "p", "response": "r", "is_safe": True}]))
    with pytest.raises(DataError, match="past the end"):
        read_system(PEERS, "GuardReasoner-1B", one_row)


# ------------------------------------------------------------------------------------------ tables


def _assert_compile_shaped(latex: str) -> None:
    """Balanced environments, booktabs rules, escaped specials, every row as wide as the header."""
    begins, ends = re.findall(r"\\begin\{(\w+)\}", latex), re.findall(r"\\end\{(\w+)\}", latex)
    assert begins and sorted(begins) == sorted(ends)
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", latex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack.pop() == env
    assert not stack
    assert latex.count(r"\toprule") == latex.count(r"\bottomrule") == latex.count(r"\begin{tabular}")
    assert not re.search(r"(?<!\\)[_%#&]", latex.replace(" & ", " ").replace(r"\\", "")), latex
    for tabular in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", latex, re.DOTALL):
        spec, body = tabular
        rows = [line for line in body.splitlines() if line.endswith(r"\\")]
        assert rows and all(line.count(" & ") == len(spec) - 1 for line in rows)


def test_latex_escapes_and_is_compile_shaped() -> None:
    table = Table(["system", "F1 [95% CI]"], [["my_model #2 & co", "0.5"], ["50%_x", "n/a"]], "a_b $ caption",
                  ["note ~ ^ {x}"])
    latex = render(table, "latex")
    _assert_compile_shaped(latex)
    assert r"my\_model \#2 \& co" in latex and r"50\%\_x" in latex and r"\$" in latex
    assert latex_escape("a\\b") == r"a\textbackslash{}b"


def test_markdown_and_csv_shapes() -> None:
    table = Table(["a", "b"], [["x|y", "1"]], "cap")
    md = render(table, "markdown").splitlines()
    assert md[2] == "| a | b |" and md[3] == "|---|---:|" and md[4] == r"| x\|y | 1 |"
    assert list(csv.reader(io.StringIO(render(table, "csv")))) == [["a", "b"], ["x|y", "1"]]
    with pytest.raises(ValueError, match="unknown table format"):
        render(table, "html")


# ------------------------------------------------------------------------------------------ cv / evaluate


def test_evaluate_json_has_intervals_beside_the_metrics(ours_on_xstest) -> None:
    _, metrics = ours_on_xstest
    assert set(metrics) == {"n", "unsafe", "bootstrap"}
    assert metrics["bootstrap"] == {"method": "percentile bootstrap over prompt groups", "resamples": 1000,
                                    "seed": 0, "level": 0.95, "groups": 446}
    ci = metrics["unsafe"]["ci"]
    assert set(ci) == {"f1", "precision", "recall", "fpr", "accuracy", "auprc", "auroc"}
    for name, (low, high) in ci.items():
        assert low <= metrics["unsafe"][name] <= high and high - low < 0.25, name
    assert round(metrics["unsafe"]["f1"], 3) == 0.454 and round(metrics["unsafe"]["fpr"], 3) == 0.399


def test_evaluate_tables_and_no_bootstrap(runner, tiny_model_dir, tiny_eval_data) -> None:
    base = ["evaluate", "--model", str(tiny_model_dir), "--data", str(tiny_eval_data)]
    result = runner.invoke(main, [*base, "--format", "latex"])
    assert result.exit_code == 0, result.output
    _assert_compile_shaped(result.stdout)
    assert result.stdout.count(r"\begin{table}") == 3 and "95" in result.stdout  # unsafe, categories twice
    result = runner.invoke(main, [*base, "--format", "markdown"])
    assert result.exit_code == 0 and "| F1 | 0." in result.stdout and "macro-F1" in result.stdout
    result = runner.invoke(main, [*base, "--bootstrap", "0", "--json", "-"])
    metrics = json.loads(result.stdout)
    assert "ci" not in metrics["unsafe"] and "bootstrap" not in metrics
    result = runner.invoke(main, base)
    assert "95% CI: f1 [" in result.stdout and "macro-F1 " in result.stdout


def test_cv_repeats_report_mean_and_sd_over_fold_seeds(runner, tiny_data, tmp_path) -> None:
    common = ["cv", "--data", str(tiny_data), "--folds", "3", "--char-ngrams", "none", "--min-df", "1", "-q",
              "--bootstrap", "300"]
    out = tmp_path / "cv.json"
    result = runner.invoke(main, [*common, "--seed", "3", "--repeats", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert "mean ± sd" in result.stdout
    single = []
    for seed in (3, 4):
        one = runner.invoke(main, [*common, "--seed", str(seed), "--json", "-"])
        single.append(json.loads(one.stdout))
    assert metrics["unsafe"]["f1"] == single[0]["unsafe"]["f1"]  # the reported run is the first seed's
    repeats = metrics["repeats"]
    assert repeats["seeds"] == [3, 4]
    f1s = [s["unsafe"]["f1"] for s in single]
    assert repeats["mean"]["unsafe"]["f1"] == pytest.approx(sum(f1s) / 2)
    assert repeats["std"]["unsafe"]["f1"] == pytest.approx(abs(f1s[0] - f1s[1]) / 2 ** 0.5)
    assert repeats["mean"]["categories"]["macro_f1"] == pytest.approx(
        sum(s["categories"]["macro_f1"] for s in single) / 2)
    low, high = metrics["categories"]["ci"]["macro_f1"]
    assert low <= metrics["categories"]["macro_f1"] <= high
    result = runner.invoke(main, [*common, "--repeats", "2", "--format", "markdown"])
    assert result.exit_code == 0 and "over 2 fold seeds (0..1)" in result.stdout
