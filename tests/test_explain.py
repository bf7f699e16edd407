"""Tests for lite_moderation.explain: exact explanations on the real shared data, offsets, CLI and HTTP endpoint.

Exactness is checked on every BeaverTails 30k_test row in every input shape, for both everyday models, against
both the model's reference (scikit-learn) path and the fast scorer; benchmarks/explain_exactness.py repeats it
on every shared data file. Rows are referred to by index; texts written here are harmless made-up sentences.
"""

from __future__ import annotations

import http.client
import json
import os
import pty
import re
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import BEAVERTAILS_TEST, read_terminal, synthetic_records

import lite_moderation as lm
from lite_moderation.cli import main
from lite_moderation.data import load_dataset
from lite_moderation.explain import Explainer, explain, explainer_for
from lite_moderation.fast import FastScorer
from lite_moderation.features import QAVectorizer
from lite_moderation.highlight import segments
from lite_moderation.model import ModerationClassifier
from lite_moderation.server import make_app, make_server
from lite_moderation.taxonomy import CATEGORIES, LABELS, short_name
from lite_moderation.texts import message_mask
from lite_moderation.thresholds import cut_offs

PAIR = ("How do I water a cactus?", "About once a month.")  # flagged at the default point, not at the strict one
TOLERANCE = 1e-9
WORDS = re.compile(r"(?u)\b\w\w+\b")


@pytest.fixture(scope="module")
def beavertails_pairs() -> list[tuple[str, str]]:
    return load_dataset(BEAVERTAILS_TEST).pairs


def shapes(pairs: list[tuple[str, str]]) -> dict[str, list]:
    """The rows as pairs, as prompts alone and as texts alone (blank ones left out: nothing to score)."""
    return {"pair": pairs, "prompt": [(p, "") for p, _ in pairs if p.strip()], "text": [r for _, r in pairs if r.strip()]}


def logits_of(explanation: dict) -> dict[str, float]:
    """Each explained label's intercept + contributions + rest, summed here from the JSON-ready output."""
    return {e["label"]: e["intercept"] + sum(c["contribution"] for c in e["contributions"]) + e["rest"]["contribution"]
            for e in explanation["explanations"]}


@pytest.mark.parametrize("name", ["default", "fast"])
def test_explained_logits_equal_both_scoring_paths_on_every_row_and_shape(name, beavertails_pairs):
    explainer = Explainer.load(name)
    model, scorer = lm.load(name), lm.load_scorer(name)
    for shape, X in shapes(beavertails_pairs).items():
        explained = explainer.decision_function(X)
        reference = model.reference_decision_function(X)
        assert np.abs(explained - reference).max() < TOLERANCE, (name, shape)
        assert np.abs(explained - scorer.decision_function(X)).max() < TOLERANCE, (name, shape)


@pytest.mark.parametrize("name", ["default", "fast", "beavertails"])
def test_contributions_plus_intercept_equal_the_logit_in_the_explain_output(name, beavertails_pairs):
    model = lm.load(name)
    for shape, X in shapes(beavertails_pairs[::25]).items():
        expected = model.reference_decision_function(X)
        for row, explanation in zip(expected, explain(model, X, labels=LABELS, top=7)):
            for label, logit in logits_of(explanation).items():
                assert abs(logit - row[LABELS.index(label)]) < TOLERANCE, (name, shape, label)
            for entry in explanation["explanations"]:
                assert entry["logit"] == pytest.approx(row[LABELS.index(entry["label"])], abs=TOLERANCE)
                assert entry["rest"]["count"] + len(entry["contributions"]) == len(
                    explanation["explanations"][0]["contributions"]) + explanation["explanations"][0]["rest"]["count"]


def test_every_span_reads_its_ngram_in_the_original_text(beavertails_pairs):
    explainer = Explainer.load("default")
    for prompt, response in beavertails_pairs[::40]:
        fields = {"prompt": prompt, "response": response}
        for entry in explainer.explain([(prompt, response)])[0]["explanations"]:
            for c in entry["contributions"]:
                assert c["spans"], c["ngram"]
                for source, start, end in c["spans"]:
                    piece = fields[source][start:end].lower()
                    if c["analyzer"] == "word":
                        assert " ".join(WORDS.findall(piece)) == c["ngram"]
                    else:
                        assert piece == c["ngram"].strip(" ")
                assert c["contribution"] == pytest.approx(c["weight"] * c["tfidf"], rel=1e-12, abs=1e-300)


def test_contributions_are_strongest_first_and_default_labels_are_unsafe_then_flagged_categories():
    explanation = explain(lm.load_scorer(), [PAIR])[0]
    flagged = [c for c in CATEGORIES if explanation["categories"][c]]
    names = [e["label"] for e in explanation["explanations"]]
    assert names[0] == "unsafe" and sorted(names[1:]) == sorted(flagged)
    for entry in explanation["explanations"]:
        sizes = [abs(c["contribution"]) for c in entry["contributions"]]
        assert sizes == sorted(sizes, reverse=True) and entry["rest"] == {"count": 0, "contribution": 0.0}
        assert entry["score"] == pytest.approx(1 / (1 + np.exp(-entry["logit"])))
        if entry["label"] == "unsafe":
            assert entry["flagged"] == (entry["score"] >= entry["threshold"]) == explanation["flagged"]
        else:  # a category is flagged with its item only (taxonomy.decide)
            assert entry["flagged"] == explanation["categories"][entry["label"]]


def test_verdict_and_threshold_match_moderate():
    scorer = lm.load_scorer()
    items = [PAIR, "A short note about the weather.", ("Where is the library?", "")]
    for point in (None, "strict", 0.9):
        expected = scorer.moderate(items, threshold=point)
        cuts = cut_offs(scorer, message_mask(items), point)[:, -1]  # each item's shape's cut-off
        for got, want, cut in zip(explain(scorer, items, threshold=point), expected, cuts):
            assert got["flagged"] == want["flagged"] and got["categories"] == want["categories"]
            assert got["unsafe_score"] == pytest.approx(want["unsafe_score"], abs=1e-12)
            assert got["explanations"][0]["threshold"] == pytest.approx(cut)
            assert got["unsafe_threshold"] == pytest.approx(cut)


def test_labels_by_short_name_and_unknown_ones_refused():
    explanation = explain(lm.load_scorer(), [PAIR], labels=["violence", "unsafe"])[0]
    assert [e["label"] for e in explanation["explanations"]] == ["violence,aiding_and_abetting,incitement", "unsafe"]
    with pytest.raises(ValueError, match="unknown label 'nope'"):
        explain(lm.load_scorer(), [PAIR], labels=["nope"])
    with pytest.raises(ValueError, match="top must be"):
        explain(lm.load_scorer(), [PAIR], top=-1)
    with pytest.raises(ValueError, match="nothing to score"):
        explain(lm.load_scorer(), ["   "])


@pytest.mark.parametrize("text", [
    "İstanbul İİ dotted capitals change length when lowercased",
    "ΟΔΟΣ ΚΑΙ ΣΟΦΟΣ final sigma, tabs\tand\nnew lines,\u00a0no-break spaces and emoji 🌵🌵 here",
    "x", "a b c d", "MiXeD CaSe WoRdS wOrDs words",
])
def test_offsets_survive_unusual_text(text):
    """Lowercasing that changes length (U+0130), Unicode whitespace and tiny words: still exact, spans in range."""
    model = lm.load()
    for item in (("", text), (text, ""), (text, text)):
        expected = model.reference_decision_function([item])[0]
        explained = explain(model, [item], labels=LABELS)[0]
        for label, logit in logits_of(explained).items():
            assert abs(logit - expected[LABELS.index(label)]) < TOLERANCE
        for entry in explained["explanations"]:
            for c in entry["contributions"]:
                for source, start, end in c["spans"]:
                    assert 0 <= start <= end <= len(text), (source, start, end)


def test_a_model_with_joint_and_prompt_char_blocks_is_explained_exactly():
    """Blocks the shipped models do not use: the joint field (spans split into prompt and response) and
    char n-grams of the prompt, unigrams to trigrams."""
    records = synthetic_records(160, seed=3)
    X = [(r["prompt"], r["response"]) for r in records]
    Y = np.array([[*r["category"].values(), not r["is_safe"]] for r in records])
    X, Y = X + [("", r) for _, r in X[:40]], np.vstack([Y, Y[:40]])  # some texts alone for the lone_text block
    vectorizer = QAVectorizer(word_fields=("joint", "lone_text"), word_ngram_range=(1, 3), char_fields=("prompt",),
                              char_ngram_range=(1, 4), min_df=1)
    model = ModerationClassifier(vectorizer=vectorizer, threshold_folds=0).fit(X, Y)
    items = [*X[:20], ("", "a text alone about the garden"), ("a prompt alone", "")]
    expected = model.reference_decision_function(items)
    for row, explanation in zip(expected, explain(model, items, labels=LABELS)):
        for label, logit in logits_of(explanation).items():
            assert abs(logit - row[LABELS.index(label)]) < TOLERANCE
    joint = [c for c in explain(model, [X[0]])[0]["explanations"][0]["contributions"] if c["field"] == "joint"]
    assert {source for c in joint for source, _, _ in c["spans"]} == {"prompt", "response"}
    assert any(c["ngram"] == "qqaasep" and c["spans"] == [] for c in joint)  # the separator is in neither


def test_a_fast_scorer_built_from_a_model_is_explained_from_that_model():
    model = lm.load("fast")
    scorer = FastScorer.from_model(model)
    assert explainer_for(scorer) is explainer_for(scorer)
    assert explain(scorer, [PAIR])[0]["explanations"] == explain(model, [PAIR])[0]["explanations"]


def test_explaining_with_the_scorer_never_imports_sklearn(tmp_path: Path):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"prompt": PAIR[0], "response": PAIR[1]}) + "\n")
    snippet = (
        "import json, sys\n"
        "import lite_moderation as lm\n"
        "from lite_moderation.explain import explain\n"
        "from lite_moderation.cli import main\n"
        f"assert explain(lm.load_scorer(), [{PAIR!r}])[0]['explanations']\n"
        "for args in (['explain', '--input', 'in.jsonl', '--output', 'out.html'], ['score', '--format', 'table',\n"
        f"             '--prompt', {PAIR[0]!r}, '--response', {PAIR[1]!r}]):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, exit.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_segments_mark_each_character_with_the_strongest_covering_ngram():
    contributions = [{"contribution": 0.5, "spans": [["response", 0, 4]]},
                     {"contribution": -2.0, "spans": [["response", 2, 6], ["prompt", 0, 1]]}]
    pieces = segments("abcdefgh", "response", contributions)
    assert [(p, c and c["contribution"]) for p, c in pieces] == [("ab", 0.5), ("cdef", -2.0), ("gh", None)]


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_explain_jsonl_in_a_pipe_is_exact(runner):
    result = runner.invoke(main, ["explain", "--prompt", PAIR[0], "--response", PAIR[1]])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 1
    expected = lm.load_scorer().decision_function([PAIR])[0]
    assert abs(logits_of(rows[0])["unsafe"] - expected[-1]) < TOLERANCE


def test_cli_explain_text_marks_ngrams_plainly_when_not_a_terminal(runner):
    result = runner.invoke(main, ["explain", "--format", "text", "--top", "3", "--label", "unsafe", "--prompt",
                                  PAIR[0], "--response", PAIR[1]])
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.stdout
    assert "[once]" in result.stdout and "(marked: [toward unsafe], {toward safe})" in result.stdout
    assert "unsafe: score" in result.stdout and "weaker terms" in result.stdout


def test_cli_explain_calls_a_category_below_its_cut_off_the_nearest_not_flagged(runner, tmp_path):
    """A flagged item names at least one category: those at their cut-off, else the nearest one. The text (and HTML)
    report said "(flagged)" of that nearest one too, below its cut-off. --threshold 0.001 flags a harmless note whose
    categories all stay below their cut-offs."""
    args = ["explain", "--threshold", "0.001", "--top", "1", "I love this recipe, thanks for sharing it with me"]
    result = runner.invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)[0]
    unsafe, *named = verdict["explanations"]
    assert verdict["flagged"] and unsafe["score"] >= unsafe["threshold"]
    assert len(named) == 1 and named[0]["flagged"] and named[0]["score"] < named[0]["threshold"]  # the case
    nearest = short_name(named[0]["label"])
    result = runner.invoke(main, [*args, "--format", "text"])
    assert result.exit_code == 0, result.output
    states = {line.split(":")[0].strip(): line for line in result.stdout.splitlines() if ": score " in line}
    assert states.keys() == {"unsafe", nearest}
    assert "(flagged);" in states["unsafe"]
    assert "(nearest: named, below its cut-off)" in states[nearest] and "(flagged)" not in states[nearest]
    report = tmp_path / "report.html"
    result = runner.invoke(main, [*args, "--output", str(report)])
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert page.count("(flagged)") == 1 and page.count("(nearest: named, below its cut-off)") == 1


class _Page(HTMLParser):
    """A page's elements in order, each {"tag", "attrs", "up" (its open ancestors), "text"}, and its stylesheet's
    rules as (selector, declarations), enough to read which rules reach an element."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr"})

    def __init__(self, page: str):
        super().__init__()
        self.open: list[dict] = []
        self.elements: list[dict] = []
        self.feed(page)
        style = "".join(e["text"] for e in self.elements if e["tag"] == "style")
        self.rules = [(selector.strip(), body) for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", style)
                      for selector in selectors.split(",")]

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": {k: v or "" for k, v in attrs}, "up": list(self.open), "text": ""}
        self.elements.append(element)
        if tag not in self.VOID:
            self.open.append(element)

    def handle_endtag(self, tag):
        while self.open and self.open.pop()["tag"] != tag:
            pass

    def handle_data(self, data):
        for element in self.open:
            element["text"] += data

    @staticmethod
    def _compound_matches(compound: str, element: dict) -> bool:
        parts = re.fullmatch(r"([a-z0-9]*)((?:\.[\w-]+|\[[\w-]+=[\w-]+\])*)", compound)
        assert parts, f"a selector this test cannot read: {compound!r}"
        tag, rest = parts.groups()
        classes = element["attrs"].get("class", "").split()
        return (not tag or element["tag"] == tag) and all(
            (name in classes) if kind == "." else element["attrs"].get(name) == value
            for kind, name, value in re.findall(r"(\.|\[)([\w-]+)(?:=([\w-]+)\])?", rest))

    def look(self, element: dict) -> str:
        """The ``background`` that wins for ``element`` (by specificity, then order; an inline style above all)."""
        found = []
        for order, (selector, body) in enumerate(self.rules):
            *ancestors, last = selector.split()
            if not self._compound_matches(last, element):
                continue
            up = iter(reversed(element["up"]))
            if not all(any(self._compound_matches(a, e) for e in up) for a in reversed(ancestors)):
                continue
            weight = sum(len(re.findall(r"\.|\[", c)) * 10 + bool(re.match(r"[a-z]", c)) for c in selector.split())
            found += [((weight, order), value.strip()) for name, value in re.findall(r"([\w-]+)\s*:([^;]+)", body)
                      if name.startswith("background")]
        inline = re.findall(r"(background[\w-]*)\s*:([^;]+)", element["attrs"].get("style", ""))
        found += [((10_000, 0), value.strip()) for _, value in inline]
        return max(found)[1] if found else "none"


NEAREST_WORDS = "nearest: named, below its cut-off"


def test_cli_explain_html_report_draws_a_nearest_category_apart_from_one_at_its_cut_off(runner, tmp_path):
    """The report's bar of a category named only as the nearest (below its cut-off) was drawn red ("fill on"), as
    the bar of a category at its cut-off, while its words said "nearest: named, below its cut-off" (the try-it page
    had the same fault, 27fd705). Each state now has a look of its own, from the rule that words it, and a legend
    by the bars shows each named state's look beside its words. --threshold 0.001 flags a harmless note whose one
    named category is below its cut-off, and a pair with a category at its cut-off. With --label unsafe a named
    category is not explained, so its state is not known: its bar is drawn named, as neither."""
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"text": "I love this recipe, thanks for sharing it with me"}) + "\n"
                    + json.dumps({"prompt": "How do I get my coworker fired?",
                                  "response": "Spread rumours about him to the boss."}) + "\n")
    args = ["explain", "--threshold", "0.001", "--top", "1", "--input", str(data)]
    result = runner.invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    states = []  # per row: {short name: its state}, from the scores and cut-offs of the JSON
    for verdict in json.loads(result.stdout):
        named = {e["label"]: e for e in verdict["explanations"][1:]}
        assert verdict["flagged"] and named.keys() == {c for c, on in verdict["categories"].items() if on}
        states.append({short_name(c): "not named" if c not in named else
                       "flagged" if named[c]["score"] >= named[c]["threshold"] else NEAREST_WORDS
                       for c in verdict["categories"]})
    assert [sorted(set(row.values())) for row in states] == [[NEAREST_WORDS, "not named"], ["flagged", "not named"]]

    def report(*options: str) -> tuple[list[dict], list[dict]]:
        """Per item of the report, its bars {short name: look} and its legend {words: its swatch's look}."""
        out = tmp_path / "report.html"
        result = runner.invoke(main, [*args, *options, "--output", str(out)])
        assert result.exit_code == 0, result.output
        page = _Page(out.read_text())
        items = [e for e in page.elements if "item" in e["attrs"].get("class", "").split()]
        bars: list[dict] = [{} for _ in items]
        legends: list[dict] = [{} for _ in items]
        for i, element in enumerate(page.elements):
            classes = {c for e in element["up"] for c in e["attrs"].get("class", "").split()}
            item = next(n for n, e in enumerate(items) if e in element["up"]) if "item" in classes else None
            if "fill" in element["attrs"].get("class", "").split():
                if "bars" in classes:
                    name, bar = page.elements[i - 2: i]
                    assert name["tag"] == "span" and "bar" in bar["attrs"]["class"] and bar in element["up"]
                    bars[item][name["text"]] = page.look(element)
                elif "legend" in classes:
                    key = element["up"][-1]
                    legends[item][key["text"].strip()] = page.look(element)
        return bars, legends

    bars, legends = report()
    looks: dict[str, set] = {}
    for row, shown in zip(states, bars):
        assert shown.keys() == row.keys()
        for name, look in shown.items():
            looks.setdefault(row[name], set()).add(look)
    assert all(len(shown) == 1 for shown in looks.values()), looks  # one look per state
    nearest, flagged, plain = (looks[state].pop() for state in (NEAREST_WORDS, "flagged", "not named"))
    assert nearest != flagged, "a category below its cut-off is drawn as one at its cut-off"
    assert len({nearest, flagged, plain}) == 3
    assert legends == [{"flagged": flagged, NEAREST_WORDS: nearest}] * 2  # the legend shows the looks drawn

    bars, legends = report("--label", "unsafe")
    unexplained = {look for row, shown in zip(states, bars) for name, look in shown.items() if row[name] != "not named"}
    assert len(unexplained) == 1 and unexplained.isdisjoint({nearest, flagged, plain}), unexplained
    assert legends == [{"flagged": flagged, NEAREST_WORDS: nearest, "named, not explained here": unexplained.pop()}] * 2


@pytest.mark.parametrize("fmt", ["text", "html"])
def test_cli_explain_header_shows_the_flag_heads_cut_off_whatever_labels_are_explained(runner, fmt):
    """`explain "hi" --label violence` headed its report `unsafe 0.013 (cut-off 0.199)`: violence's cut-off (the first
    label explained) beside the unsafe score; unsafe's, for a message, was 0.392 (a user's round). The header shows
    the flag head's score and the cut-off its verdict was decided with: a message's or a pair's, at --threshold."""
    header = re.compile(r"unsafe (\d\.\d{3}) \(cut-off (\d\.\d{3})\)")
    scorer = lm.load_scorer()
    items = {"A short note about the weather.": ["A short note about the weather."],
             PAIR: ["--prompt", PAIR[0], "--response", PAIR[1]]}
    shown = set()
    for item, given in items.items():
        for point in (None, "strict", 0.7):
            args = [*given, "--top", "0", *(["--threshold", str(point)] if point is not None else [])]
            result = runner.invoke(main, ["explain", *args, "--label", "unsafe", "--label", "violence", "--format",
                                          "json"])
            assert result.exit_code == 0, result.output
            [verdict] = json.loads(result.stdout)
            unsafe, violence = verdict["explanations"]
            cut = cut_offs(scorer, message_mask([item]), point)[0, -1]  # the item's shape's unsafe cut-off
            assert unsafe["threshold"] == pytest.approx(cut) and violence["threshold"] != pytest.approx(cut)
            result = runner.invoke(main, ["explain", *args, "--label", "violence", "--format", fmt])
            assert result.exit_code == 0, result.output
            assert header.findall(result.stdout) == [(f"{verdict['unsafe_score']:.3f}", f"{cut:.3f}")]
            shown.add(f"{cut:.3f}")
    assert len(shown) == 5  # the message's and the pair's cut-offs differ at the default and strict points; then 0.7


def test_cli_explain_input_file_top_and_skipped_rows(runner, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"text": "A short note about the weather."}) + "\nnot json\n"
                    + json.dumps({"prompt": PAIR[0], "response": PAIR[1]}) + "\n")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(main, ["explain", "--input", str(data), "--output", str(out), "--top", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 3]
    assert all(len(e["contributions"]) <= 2 for r in rows for e in r["explanations"])
    assert "skipped:" in result.stderr and "in.jsonl:2" in result.stderr


def test_cli_explain_html_report_is_self_contained_and_written_atomically(runner, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"prompt": PAIR[0], "response": PAIR[1]}) + "\n" + json.dumps({"text": "a <b> tag"})
                    + "\n")
    report = tmp_path / "report.html"
    result = runner.invoke(main, ["explain", "--format", "html", "--input", str(data), "--output", str(report)])
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("class=item") == 2
    assert "&lt;" in page and "&gt;" in page and "<b> tag" not in page  # input is escaped
    assert not re.search(r"(src|href)\s*=|https?://|@import|url\(", page)  # no external asset
    assert "<mark class=up" in page
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    clash = runner.invoke(main, ["explain", "--format", "jsonl", "--input", str(data), "--output", str(report)])
    assert clash.exit_code == 2 and "suffix says html" in clash.stderr


@pytest.mark.parametrize("labels, marked, away", [
    ([], "unsafe", "toward safe"),
    (["--label", "violence", "--label", "unsafe"], "violence", "away from violence"),
], ids=["default", "violence first"])
def test_cli_explain_html_report_says_which_labels_ngrams_are_marked(runner, tmp_path, labels, marked, away):
    """The report's intro said "Marked: the strongest n-grams of the unsafe score" whatever was marked: the marks are
    the first label explained's, violence's with `--label violence` (the text report's "(marked: [toward unsafe],
    {toward safe})" too). Both now name the label the marks are of, from the rule that picks them."""
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"prompt": PAIR[0], "response": PAIR[1]}) + "\n")
    out = tmp_path / "report.html"
    result = runner.invoke(main, ["explain", *labels, "--input", str(data), "--output", str(out), "-q"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    intro = re.sub(r"<[^>]+>", "", re.search(r"<p>Model:.*?</p>", page, re.DOTALL).group())
    assert f"Marked: the strongest n-grams of the {marked} score (toward {marked}, {away})." in intro, intro
    [verdict] = json.loads(runner.invoke(main, ["explain", *labels, "--input", str(data), "--format", "json"]).stdout)
    first = verdict["explanations"][0]
    assert short_name(first["label"]) == marked
    want = [(piece, c["ngram"]) for source, text in (("prompt", PAIR[0]), ("response", PAIR[1]))
            for piece, c in segments(text, source, first["contributions"]) if c is not None]
    shown = re.findall(r"<mark class=(?:up|down) style='--a:[\d.]+' title=\"[^\"]*? (&#x27;.*?&#x27;|&quot;.*?&quot;) "
                       r"[-+][\d.]+\">(.*?)</mark>", page)
    assert shown and [piece for _, piece in shown] == [piece for piece, _ in want]
    text = runner.invoke(main, ["explain", *labels, "--input", str(data), "--format", "text"]).stdout
    assert f"(marked: [toward {marked}], {{{away}}})" in text  # the text report's words, by the same rule


@pytest.mark.parametrize("name, opener, starts", [
    ("r.html.gz", "gzip", "<!DOCTYPE html>"), ("r.json.xz", "lzma", "[\n  {"), ("r.txt.gz", "gzip", "line 1  "),
    ("r.ndjson.xz", "lzma", '{"line": 1, '),
])
def test_cli_explain_output_format_follows_the_suffix_under_a_compression_suffix(runner, tiny_model_dir, tmp_path,
                                                                                name, opener, starts):
    """-o r.html.gz wrote gzipped JSONL: the compression suffix hid the format's (a user's exploratory round)."""
    import gzip
    import lzma

    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"text": "hello there"}) + "\n")
    out = tmp_path / name
    result = runner.invoke(main, ["explain", "--model", str(tiny_model_dir), "-i", str(data), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.stderr
    assert {"gzip": gzip, "lzma": lzma}[opener].open(out, "rt").read().startswith(starts)
    unknown = runner.invoke(main, ["explain", "--model", str(tiny_model_dir), "-i", str(data), "-o",
                                   str(tmp_path / "r.pdf.gz")])
    assert unknown.exit_code == 2 and "unknown output suffix '.pdf'" in unknown.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
@pytest.mark.parametrize("suffix, options", [("jsonl", []), ("csv", ["--id-column", "ref"])],
                         ids=["default id field", "named id column"])
def test_cli_explain_rows_carry_the_input_id_as_scores_rows_do(runner, tiny_model_dir, tmp_path, fmt, suffix,
                                                               options):
    """explain's rows had the line only, so explanations could not be joined to records by id (a user's round)."""
    data = tmp_path / f"in.{suffix}"
    if suffix == "csv":
        data.write_text("ref,text\na7,hello there\n,no id here\n12,the garden\n")
    else:
        data.write_text("".join(json.dumps(r) + "\n" for r in [{"id": "a7", "text": "hello there"},
                                                                {"text": "no id here"}, {"id": 12, "text": "garden"}]))
    heads = {}
    for command in ("explain", "score"):
        result = runner.invoke(main, [command, "--model", str(tiny_model_dir), "-i", str(data), "--format", fmt, "-q",
                                      *options])
        assert result.exit_code == 0, result.stderr
        rows = json.loads(result.stdout) if fmt == "json" else [json.loads(line) for line in result.stdout.splitlines()]
        heads[command] = [{k: row[k] for k in ("line", "id") if k in row} for row in rows]
    assert heads["explain"] == heads["score"]
    assert [head.get("id") for head in heads["explain"]] == (["a7", None, "12"] if suffix == "csv" else ["a7", None, 12])


def test_cli_explain_takes_the_column_options_its_error_names(runner, tiny_model_dir, tmp_path):
    """`explain -i comments.csv` said "name another with --text-column or --prompt-column", and explain had neither
    option: "No such option '--text-column'" (a user's round). It takes score's column options."""
    comments = tmp_path / "comments.csv"
    comments.write_text("id,comment\n1,hello there\n2,the garden\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"question": PAIR[0], "answer": PAIR[1]}) + "\n")
    base = ["explain", "--model", str(tiny_model_dir), "--format", "jsonl", "--top", "3", "-q"]
    refused = runner.invoke(main, [*base, "-i", str(comments)])
    assert refused.exit_code == 2 and "name another with --text-column or --prompt-column" in refused.stderr
    for path, options, alone in [
        (comments, ["--text-column", "comment"], [["hello there"], ["the garden"]]),
        (pairs, ["--prompt-column", "question", "--response-column", "answer"], [["--prompt", PAIR[0], "--response",
                                                                                  PAIR[1]]]),
    ]:
        result = runner.invoke(main, [*base, "-i", str(path), *options])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [row["line"] for row in rows] == ([2, 3] if path == comments else [1])
        for row, item in zip(rows, alone, strict=True):
            expected = runner.invoke(main, [*base, *item])
            assert {k: v for k, v in row.items() if k not in ("line", "id")} == json.loads(expected.stdout)
    outside = runner.invoke(main, [*base, "--text-column", "comment", "hello there"])
    assert outside.exit_code == 2 and "--text-column" in outside.stderr and "--input records" in outside.stderr


def _explain_process(model: Path, *args: str, stdin) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lite_moderation", "explain", "--model", str(model), *args],
                          stdin=stdin if not isinstance(stdin, str) else None,
                          input=stdin if isinstance(stdin, str) else None, capture_output=True, text=True,
                          timeout=300, check=False)


def test_cli_explain_reads_stdin_as_score_does(tiny_model_dir, tmp_path):
    """`explain -` explained the text "-", and text piped to `explain` was refused ("give exactly one of"), while
    `score -` and `... | score` read stdin (a user's round). explain reads it by score's rule, and the output checks
    see it: an --output that is the file on stdin is refused, as with `--input -`."""
    text = "a walk by the garden and the river\n"
    runs = {args: _explain_process(tiny_model_dir, "--format", "jsonl", *args, stdin=text)
            for args in ((), ("-",), ("--input", "-"))}
    assert all(run.returncode == 0 for run in runs.values()), {a: r.stderr for a, r in runs.items()}
    assert runs[()].stdout == runs[("-",)].stdout == runs[("--input", "-")].stdout
    [row] = [json.loads(line) for line in runs[()].stdout.splitlines()]
    scored = subprocess.run([sys.executable, "-m", "lite_moderation", "score", "--model", str(tiny_model_dir)],
                            input=text, capture_output=True, text=True, timeout=300, check=False)
    assert row["line"] == 1 and row["unsafe_score"] == json.loads(scored.stdout)["unsafe_score"]
    marked = {text[start:end] for e in row["explanations"] for c in e["contributions"] for _, start, end in c["spans"]}
    assert {"garden", "river"} <= marked  # the piped text was explained, not "-"

    records = tmp_path / "in.jsonl"
    records.write_text(json.dumps({"text": "hello there"}) + "\n")
    for args in ((), ("-",)):
        with open(records) as stdin:
            clash = _explain_process(tiny_model_dir, *args, "--output", str(records), stdin=stdin)
        assert clash.returncode == 2 and "is also given as --input" in clash.stderr, clash.stderr
        assert records.read_text() == json.dumps({"text": "hello there"}) + "\n"


@pytest.mark.parametrize("args", [("-",), ("--input", "-")], ids=["dash", "input dash"])
def test_cli_explain_reads_text_typed_on_the_terminal_it_prints_to(tiny_model_dir, args):
    """With stdin and stdout on one terminal, `explain -` (as `score -i -`) was refused: "stdout is the file given as
    --input /dev/stdin", as if the report would grow its input; a terminal is no file. What is typed is explained."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "lite_moderation", "explain", "--model", str(tiny_model_dir), *args],
                            stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    os.write(leader, b"a walk by the garden\n\x04")  # a line, then end of input
    screen = read_terminal(leader, 120).decode(errors="replace")
    assert proc.wait(timeout=120) == 0, screen
    assert "stdout is the file" not in screen and re.search(r"line 1 +(ok|FLAGGED) +unsafe \d\.\d{3} \(cut-off", screen), screen


def test_cli_explain_refuses_bad_usage(runner):
    assert runner.invoke(main, ["explain"]).exit_code == 2
    bad = runner.invoke(main, ["explain", "--label", "nope", "some text"])
    assert bad.exit_code == 2 and "unknown label 'nope'" in bad.stderr


def test_score_table_gives_three_reasons_for_each_flagged_row(runner, tmp_path):
    scorer = lm.load_scorer()
    items = [PAIR, ("", "A short note about the weather.")]
    verdicts = scorer.moderate(items)
    assert verdicts[0]["flagged"] and not verdicts[1]["flagged"]  # the cactus pair is a known false flag
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in items))
    result = runner.invoke(main, ["score", "--input", str(data), "--format", "table"])
    assert result.exit_code == 0, result.output
    flagged_line, ok_line = result.stdout.splitlines()[:2]
    reasons = explain(scorer, [PAIR], labels=["unsafe"])[0]["explanations"][0]["contributions"]
    strongest = sorted((c for c in reasons if c["contribution"] > 0), key=lambda c: -c["contribution"])[:3]
    assert "because: " in flagged_line and flagged_line.count(";") == 2
    assert f'"{strongest[0]["ngram"]}" {strongest[0]["contribution"]:+.2f}' in flagged_line.split("because: ")[1].lower()  # the table quotes the input's own case
    assert "because" not in ok_line
    detail = runner.invoke(main, ["score", "--format", "table", "--prompt", PAIR[0], "--response", PAIR[1]])
    assert f'"{strongest[0]["ngram"]}"' in detail.stdout.split("strongest reasons: ")[1].split(";")[0].lower()


# ------------------------------------------------------------------------------------------------ HTTP


@pytest.fixture(scope="module")
def port():
    server = make_server(make_app(lm.load_scorer()), "127.0.0.1", 0, threads=2, read_timeout=5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()
    thread.join(30)


def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body).encode())
        reply = conn.getresponse()
        return reply.status, reply.getheader("Content-Type"), reply.read()
    finally:
        conn.close()


def test_http_explain_takes_the_moderation_input_shapes(port):
    body = {"input": [{"prompt": PAIR[0], "response": PAIR[1]}, "A short note.", {"prompt": "Where is the library?"},
                      "Another note."], "top": 5, "labels": ["unsafe", "violence"]}
    status, kind, raw = request(port, "POST", "/v1/explain", body)
    assert status == 200 and kind == "application/json"
    results = json.loads(raw)["results"]
    items = [PAIR, "A short note.", ("Where is the library?", ""), "Another note."]
    expected = lm.load_scorer().decision_function(items)
    for result, row in zip(results, expected):
        assert [e["label"] for e in result["explanations"]] == ["unsafe", "violence,aiding_and_abetting,incitement"]
        assert abs(logits_of(result)["unsafe"] - row[-1]) < TOLERANCE
        assert all(len(e["contributions"]) <= 5 for e in result["explanations"])


def test_http_explain_operating_point_and_bad_options(port):
    def unsafe(point):
        return json.loads(request(port, "POST", "/v1/explain", {"input": [{"prompt": PAIR[0], "response": PAIR[1]}],
                                                                 "threshold": point})[2])["results"][0]
    assert unsafe("default")["flagged"] and not unsafe("strict")["flagged"]
    for body, param in (({"input": "a", "top": -1}, "top"), ({"input": "a", "labels": "unsafe"}, "labels"),
                        ({"input": "a", "labels": ["nope"]}, "labels"), ({"input": "a", "threshold": "lax"}, "threshold"),
                        ({"input": " "}, "input"), ({"input": ["a", ""]}, "input[1]"), ({}, "input")):
        status, _, raw = request(port, "POST", "/v1/explain", body)
        assert status == 400 and json.loads(raw)["error"]["param"] == param, body


def test_get_root_serves_the_self_contained_page(port):
    status, kind, raw = request(port, "GET", "/")
    assert status == 200 and kind == "text/html; charset=utf-8"
    page = raw.decode("utf-8")
    for element in ('id="prompt"', 'id="response"', 'id="verdict"', 'id="bars"', 'id="highlighted"', 'id="point"'):
        assert element in page
    assert not re.search(r"(src|href)\s*=|https?://|@import|url\(", page)  # works offline
    assert request(port, "POST", "/")[0] == 405
