"""Streaming scoring: chunked, parallel and serial runs give the same rows, in input order, all accounted for."""

from __future__ import annotations

import json

import pytest
from conftest import BEAVERTAILS_TEST

import lite_moderation as lm
from lite_moderation.scoring import score_file
from lite_moderation.texts import message_mask
from lite_moderation.thresholds import cut_offs


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_parallel_scoring_equals_serial_on_real_data_with_bad_lines(tmp_path):
    lines = BEAVERTAILS_TEST.read_text(encoding="utf-8").splitlines()[:700]
    lines[10] = "{broken json"
    lines[500] = '{"response": "no prompt"}'
    source = tmp_path / "input.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = lm.load()
    serial = score_file(model, source, tmp_path / "serial.jsonl", "jsonl", jobs=1)
    parallel = score_file(model, source, tmp_path / "parallel.jsonl", "jsonl", jobs=2)
    assert _rows(tmp_path / "serial.jsonl") == _rows(tmp_path / "parallel.jsonl")
    assert (serial.rows_in, serial.scored, serial.rejected) == (700, 698, 2) == (
        parallel.rows_in, parallel.scored, parallel.rejected)
    assert [e.line for e in parallel.errors] == [11, 501]
    rows = _rows(tmp_path / "parallel.jsonl")
    assert [r["line"] for r in rows] == [n for n in range(1, 701) if n not in (11, 501)]


def test_small_chunks_keep_order(tmp_path, tiny_model_dir, tiny_data):
    model = lm.load(tiny_model_dir)
    expected = model.moderate(lm.load_dataset(tiny_data).pairs)
    score_file(model, tiny_data, tmp_path / "out.jsonl", "jsonl", jobs=2, chunk_size=7)
    rows = _rows(tmp_path / "out.jsonl")
    assert [{k: v for k, v in r.items() if k != "line"} for r in rows] == expected


def test_score_file_rows_are_the_bytes_json_dumps_writes_of_each_verdict(tmp_path):
    """score_file formats JSONL rows from the probability arrays (issue 13): the same bytes as json.dumps of each
    moderate() verdict with its line, for the default cut-off and an explicit one; other formats are unchanged."""
    import io

    import numpy as np

    from lite_moderation.output import RowWriter

    lines = BEAVERTAILS_TEST.read_text(encoding="utf-8").splitlines()[:600]
    source = tmp_path / "input.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    scorer = lm.load_scorer("fast")
    pairs = lm.load_dataset(source).pairs
    for threshold in (None, 0.3):
        summary = score_file(scorer, source, tmp_path / "out.jsonl", "jsonl", threshold=threshold)
        verdicts = scorer.moderate(pairs, threshold=threshold)
        expected = "".join(json.dumps({"line": n, **v}) + "\n" for n, v in enumerate(verdicts, start=1))
        assert (tmp_path / "out.jsonl").read_text() == expected
        assert summary.flagged == sum(v["flagged"] for v in verdicts)
    proba = scorer.predict_proba(pairs)
    for fmt in ("jsonl", "csv", "json", "table"):
        by_rows, by_arrays = io.StringIO(), io.StringIO()
        rows_writer, arrays_writer = RowWriter(by_rows, fmt), RowWriter(by_arrays, fmt)
        for verdict in scorer.moderate(pairs):
            rows_writer.write(verdict)
        arrays_writer.write_scores(proba, cut_offs(scorer, message_mask(pairs)))
        rows_writer.close()
        arrays_writer.close()
        assert by_arrays.getvalue() == by_rows.getvalue(), fmt
    ids = [None if n % 3 == 0 else (n if n % 2 else f"r{n}%s\"") for n in range(len(pairs))]
    for fmt in ("jsonl", "csv"):  # with ids (some rows without): the array path writes what write() writes
        by_rows, by_arrays = io.StringIO(), io.StringIO()
        rows_writer, arrays_writer = RowWriter(by_rows, fmt, id_column=True), RowWriter(by_arrays, fmt, id_column=True)
        for n, verdict in enumerate(scorer.moderate(pairs), start=1):
            rows_writer.write(verdict, line=n, id=ids[n - 1])
        arrays_writer.write_scores(proba, cut_offs(scorer, message_mask(pairs)), list(range(1, len(pairs) + 1)),
                                   ids=ids)
        assert by_arrays.getvalue() == by_rows.getvalue(), fmt
    with_nan = proba.copy()
    with_nan[0, 0] = np.nan  # never a probability: refused, not written (NaN is not JSON, and never flagged)
    with pytest.raises(ValueError, match="not a number"):
        RowWriter(io.StringIO(), "jsonl").write_scores(with_nan, cut_offs(scorer, message_mask(pairs)))


@pytest.mark.parametrize("stop_at", [2, 4])  # after the second of 3 chunks; just before the file is put in place
def test_a_checkpoint_that_raises_stops_score_file_and_keeps_the_old_output(tmp_path, tiny_model_dir, tiny_data,
                                                                              stop_at):
    """How a stopped Dask run ends a task mid-file: the checkpoint's exception goes on, nothing is put in place."""
    model = lm.load(tiny_model_dir)
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    calls = []

    def checkpoint() -> None:
        calls.append(len(calls) + 1)
        if len(calls) == stop_at:
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        score_file(model, tiny_data, out, "jsonl", chunk_size=100, checkpoint=checkpoint)  # 240 rows: 3 chunks
    assert calls == list(range(1, stop_at + 1))
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temp file left
    calls.clear()
    score_file(model, tiny_data, out, "jsonl", chunk_size=100, checkpoint=lambda: calls.append(0))
    assert len(calls) == 4 and len(_rows(out)) == 240
