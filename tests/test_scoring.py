"""Streaming scoring: chunked, parallel and serial runs give the same rows, in input order, all accounted for."""

from __future__ import annotations

import json

from conftest import BEAVERTAILS_TEST

import lite_moderation as lm
from lite_moderation.scoring import score_file


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
