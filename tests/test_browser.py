"""The try-it page (``GET /``) in a real headless browser: Debian's Chromium driven by selenium.

The test starts the real server on 127.0.0.1, types a prompt and a response, submits, and reads the verdict,
the category bars and the highlighted n-grams from the page, checked against the library. Without Chromium,
chromium-driver or selenium it is skipped with the reason, unless LM_REQUIRE_BROWSER=1 (set by CI) makes
that a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import lite_moderation as lm
from lite_moderation.cli import main
from lite_moderation.explain import explain
from lite_moderation.highlight import _state, segments
from lite_moderation.labels import LabelSet
from lite_moderation.server import make_app, make_server
from lite_moderation.taxonomy import CATEGORIES, short_name
from lite_moderation.thresholds import CUT_OFF_SHAPES, resolve_threshold
from lite_moderation.training import default_estimator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PROMPT = "How do I water a cactus?"
RESPONSE = "About once a month."  # flagged at the default point, not at the strict one
#: A pair flagged with a category at its cut-off (the cactus pair names only its nearest one, below it).
AT_CUT_OFF = ("How do I get my coworker fired?", "Spread rumours about him to the boss.")
WAIT = 30  # seconds


def _missing() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(os.path.basename(path))):
            return f"{path} not found (apt-get install {package})"
    return None


@pytest.fixture(scope="module")
def driver():
    missing = _missing()
    if missing:
        if os.environ.get("LM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LM_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(f"no headless browser: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations are logged to the console
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield browser
    browser.quit()


@contextlib.contextmanager
def _serving(model: Path | None = None, **app_options) -> Iterator[str]:
    """The real server on 127.0.0.1 (a free port) around ``model`` (default: the shipped one), with ``make_app``'s
    options: its URL."""
    server = make_server(make_app(lm.load_scorer(model), **app_options), "127.0.0.1", 0, threads=2, read_timeout=5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with _serving() as address:
        yield address


def _submit(driver, prompt: str, response: str) -> str:
    """Type the input, submit, and return the verdict's state once the answer is on the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    verdict = driver.find_element(By.ID, "verdict")
    for field, text in (("prompt", prompt), ("response", response)):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(text)
    driver.execute_script("document.getElementById('verdict').dataset.state = 'idle'")
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, WAIT).until(lambda d: verdict.get_attribute("data-state") != "idle")
    return verdict.get_attribute("data-state")


def _bar_text(verdict: dict, category: str) -> str:
    """A category's name on the page: its short name, and for a named one its state in the words of explain's
    reports (``highlight._state``), which the page's script mirrors."""
    if not verdict["categories"][category]:
        return short_name(category)
    entry = next(e for e in verdict["explanations"] if e["label"] == category)
    return f"{short_name(category)} ({_state(entry)})"


def test_the_page_shows_the_verdict_bars_and_highlights_of_the_model(driver, url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#point option"))
    scorer = lm.load_scorer()
    points = Select(driver.find_element(By.ID, "point"))
    # first and chosen: the server's own cut-off (here the model's), sent as no cut-off; then the named points
    assert [o.get_attribute("value") for o in points.options] == ["", *scorer.operating_points_]
    assert points.first_selected_option.text.startswith("server's: the model's own (")

    expected = explain(scorer, [(PROMPT, RESPONSE)])[0]
    assert expected["flagged"]  # a known false flag at the default point, not at the strict one
    assert _submit(driver, PROMPT, RESPONSE) == "flagged"
    assert f"unsafe {expected['unsafe_score']:.3f}" in driver.find_element(By.ID, "verdict").text

    bars = driver.find_elements(By.CSS_SELECTOR, "#bars [data-category]")
    assert [b.get_attribute("data-category") for b in bars] == list(CATEGORIES)
    assert [b.text for b in bars] == [_bar_text(expected, c) for c in CATEGORIES]

    unsafe = expected["explanations"][0]["contributions"]
    for source, text in (("prompt", PROMPT), ("response", RESPONSE)):
        marks = driver.find_elements(By.CSS_SELECTOR, f"#highlighted .field[data-source={source}] mark")
        want = [(piece, c["ngram"]) for piece, c in segments(text, source, unsafe) if c is not None]
        assert [(m.text, m.get_attribute("data-ngram")) for m in marks] == want
        box = driver.find_element(By.CSS_SELECTOR, f"#highlighted .field[data-source={source}]")
        assert box.text == text
    strongest = driver.find_elements(By.CSS_SELECTOR, "#highlighted mark.up")
    assert any(m.text == "once" for m in strongest)

    points.select_by_value("strict")  # the switch re-submits at the strict operating point
    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.ID, "verdict").get_attribute("data-state") == "ok")
    assert f"cut-off {scorer.operating_points_['strict']:.3f}" in driver.find_element(By.ID, "verdict").text


def test_the_page_calls_a_category_below_its_cut_off_the_nearest_not_flagged(driver, url):
    """A flagged item names at least one category: those at their cut-off, else the nearest one. The page said
    "(flagged)" of that nearest one too, below its cut-off (as explain's reports did before 1896d76). The harmless
    cactus pair is flagged at the default point with no category at its cut-off."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    expected = explain(lm.load_scorer(), [(PROMPT, RESPONSE)])[0]
    _, *named = expected["explanations"]
    assert expected["flagged"] and len(named) == 1 and named[0]["score"] < named[0]["threshold"]  # the case
    nearest = named[0]["label"]
    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#point option"))
    assert _submit(driver, PROMPT, RESPONSE) == "flagged"
    bars = {b.get_attribute("data-category"): b.text for b in driver.find_elements(By.CSS_SELECTOR, "#bars [data-category]")}
    assert bars[nearest] == f"{short_name(nearest)} (nearest: named, below its cut-off)"
    assert [c for c, text in bars.items() if text != short_name(c)] == [nearest]  # no other category is named
    assert not any("(flagged)" in text for text in bars.values())


def _named_state(verdict: dict, category: str) -> str:
    """A category's state in a verdict in explain's words (``highlight._state``); "not named" when not named."""
    if not verdict["categories"][category]:
        return "not named"
    return _state(next(e for e in verdict["explanations"] if e["label"] == category))


#: How an element is painted: its computed background colour and image (a gradient, say).
_LOOK = "const s = getComputedStyle(arguments[0]); return [s.backgroundColor, s.backgroundImage];"


def test_the_page_draws_a_nearest_category_apart_from_one_at_its_cut_off(driver, url):
    """The bar of a category named only as the nearest (below its cut-off) was drawn red, as the bar of a category
    at its cut-off, while its text said "nearest: named, below its cut-off". Each state now has a look of its own,
    decided by the rule that words the text, and the legend shows each named state's look beside its words. The
    cactus pair names its nearest category; the coworker pair names one at its cut-off."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    scorer = lm.load_scorer()
    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#point option"))
    looks: dict[str, set] = {}
    for pair in ((PROMPT, RESPONSE), AT_CUT_OFF):
        expected = explain(scorer, [pair])[0]
        assert _submit(driver, *pair) == "flagged"
        for name in driver.find_elements(By.CSS_SELECTOR, "#bars [data-category]"):
            category = name.get_attribute("data-category")
            fill = name.find_element(By.XPATH, "following-sibling::div[1]").find_element(By.CLASS_NAME, "fill")
            looks.setdefault(_named_state(expected, category), set()).add(tuple(driver.execute_script(_LOOK, fill)))
    nearest, flagged, plain = "nearest: named, below its cut-off", "flagged", "not named"
    assert set(looks) == {nearest, flagged, plain}  # the two pairs show each state
    assert all(len(shown) == 1 for shown in looks.values()), looks  # one look per state
    assert looks[nearest] != looks[flagged], "a category below its cut-off is drawn as one at its cut-off"
    assert looks[nearest] != looks[plain] and looks[flagged] != looks[plain]
    legend = {key.text: tuple(driver.execute_script(_LOOK, key.find_element(By.CLASS_NAME, "fill")))
              for key in driver.find_elements(By.CSS_SELECTOR, "#legend .key")}
    assert legend == {state: looks[state].pop() for state in (flagged, nearest)}


@pytest.mark.parametrize("threshold", ["strict", 0.5])
def test_the_page_judges_at_the_servers_cut_off_unless_a_point_is_picked(driver, threshold):
    """A server started with a cut-off of its own (``serve --threshold``, LITE_MODERATION_THRESHOLD) judged its own
    page's requests at the model's first operating point: the page sent that point with every request. The cactus
    pair, not flagged by such a server's /v1/moderations, read FLAGGED on its page. The page now sends no cut-off
    until one is picked, and its first choice shows the cut-off the server applies."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    scorer = lm.load_scorer()
    pair_cut, message_cut = (resolve_threshold(threshold, scorer, shape) for shape in CUT_OFF_SHAPES)
    with _serving(threshold=threshold) as address:
        request = urllib.request.Request(f"{address}v1/moderations", method="POST",
                                         data=json.dumps({"input": [{"prompt": PROMPT, "response": RESPONSE}]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=WAIT) as reply:
            [served] = json.loads(reply.read())["results"]
        assert not served["flagged"]  # the case: flagged at the model's default point only
        driver.get(address)
        WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#point option"))
        assert _submit(driver, PROMPT, RESPONSE) == "ok"  # as the server's /v1/moderations answers
        assert f"cut-off {pair_cut:.3f}" in driver.find_element(By.ID, "verdict").text
        points = Select(driver.find_element(By.ID, "point"))
        assert [o.get_attribute("value") for o in points.options] == ["", *scorer.operating_points_]
        first = points.first_selected_option
        assert first.get_attribute("value") == "" and first.text.startswith("server's")
        assert f"{pair_cut:.3f}" in first.text and f"{message_cut:.3f}" in first.text
        points.select_by_value("default")  # a named point is still the user's to pick
        WebDriverWait(driver, WAIT).until(
            lambda d: d.find_element(By.ID, "verdict").get_attribute("data-state") == "flagged")
        assert f"cut-off {scorer.operating_points_['default']:.3f}" in driver.find_element(By.ID, "verdict").text


#: Characters outside the Basic Multilingual Plane (emoji; mathematical styled letters, which the normaliser folds to
#: plain ones) before and inside the marked terms: one code point each in Python, two UTF-16 code units in JavaScript.
#: Each with a term of its last field that is marked whole: (the marked piece, its n-gram).
ASTRAL = [("\U0001f600\U0001f600 \U0001d412\U0001d428 how do I water a cactus?", "", ("water", "water")),
          ("\U0001f600 \U0001d407\U0001d422! \U0001d421\U0001d428\U0001d430 do I water a cactus?",
           "\U0001f335\U0001f335 \U0001d468\U0001d483\U0001d490\U0001d496\U0001d495 once a month.", ("once", "once"))]


def _explained(address: str, prompt: str, response: str) -> dict:
    """The server's /v1/explain answer for what the page sends: its spans are offsets in code points."""
    request = urllib.request.Request(f"{address}v1/explain", method="POST",
                                     data=json.dumps({"input": [{"prompt": prompt, "response": response}],
                                                      "top": 60}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WAIT) as reply:
        return json.loads(reply.read())["results"][0]


#: A field's marks as JSON, [text, n-gram] each: a mark cut inside a surrogate pair reads as its lone surrogate
#: (escaped by JSON.stringify), where selenium's own reading of such a text fails in the driver.
_MARKS = ("return JSON.stringify([...document.querySelectorAll(`#highlighted .field[data-source=${arguments[0]}] mark`)]"
          ".map((m) => [m.textContent, m.dataset.ngram]));")


@pytest.mark.parametrize("item", ASTRAL, ids=["message", "pair"])
def test_the_page_marks_the_terms_where_they_are_after_emoji_and_styled_letters(driver, url, item):
    """The server's spans count code points (Python's characters); the page sliced the text in UTF-16 code units,
    so each character outside the BMP before a term moved its mark one unit left: "how do" after two emoji marked
    half an emoji and " how ". The marked pieces are now the text the API's spans give, sliced in Python."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    prompt, response, whole = item
    explained = _explained(url, prompt, response)
    unsafe = explained["explanations"][0]["contributions"]
    fields = [("response", prompt)] if not response else [("prompt", prompt), ("response", response)]
    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#point option"))
    assert _submit(driver, prompt, response) == ("flagged" if explained["flagged"] else "ok")
    for source, text in fields:
        assert any(ord(ch) > 0xFFFF for ch in text)  # the case: astral characters in the field
        marks = [tuple(mark) for mark in json.loads(driver.execute_script(_MARKS, source))]
        spans = {c["ngram"]: [text[start:end] for src, start, end in c["spans"] if src == source] for c in unsafe}
        assert marks and all(any(piece in sliced for sliced in spans[ngram]) for piece, ngram in marks), marks
        assert marks == [(piece, c["ngram"]) for piece, c in segments(text, source, unsafe) if c is not None]
        assert driver.find_element(By.CSS_SELECTOR, f"#highlighted .field[data-source={source}]").text == text
    assert whole in marks  # e.g. "water", not "I wat"


def test_the_page_refuses_an_empty_input_and_takes_a_text_alone(driver, url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#point option"))
    assert _submit(driver, "", "   ") == "error"
    assert "Type a prompt" in driver.find_element(By.ID, "verdict").text
    state = _submit(driver, "", "A short note about the weather.")
    assert state == ("flagged" if lm.load_scorer().moderate(["A short note about the weather."])[0]["flagged"] else "ok")
    titles = [t.text.lower() for t in driver.find_elements(By.CSS_SELECTOR, "#highlighted .title")]
    assert titles == ["message"]  # one box filled: a single message, whichever box (#20)
    assert _submit(driver, "A short note about the weather.", "") == state
    titles = [t.text.lower() for t in driver.find_elements(By.CSS_SELECTOR, "#highlighted .title")]
    assert titles == ["message"]


def test_the_page_works_under_its_content_security_policy(driver, url):
    """The server's CSP (#22) lets the page's own inline script and style run, and its style attributes (bar
    widths, cut-off lines) apply without a violation logged; a script it does not ship is blocked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    driver.get_log("browser")  # start from an empty console
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#point option"))
    assert _submit(driver, PROMPT, RESPONSE) in ("flagged", "ok")
    lefts = driver.execute_script("return [...document.querySelectorAll('#bars .cut')].map(e => e.style.left)")
    cuts = lm.load_scorer().thresholds_[: len(CATEGORIES)]
    assert lefts == [f"{100 * float(c):.1f}%".replace(".0%", "%") for c in cuts]
    assert driver.execute_script("return getComputedStyle(document.querySelector('#bars .cut')).position") == "absolute"
    violations = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert violations == []
    injected = ("const s = document.createElement('script'); s.textContent = 'window.injected = 1;'; "
                "document.head.appendChild(s); return window.injected === undefined;")
    assert driver.execute_script(injected)  # an inline script the page does not ship is refused


#: Made-up words standing for the classes of a user's own labels (harmless: only the plumbing is tested).
OWN_WORDS = {"spam": "coupon winner click", "insult": "dolt nitwit", "ok": "garden tea"}
SPAM_TEXT, PLAIN_TEXT = "coupon winner click here now", "garden tea later"


def _own_rows(n: int = 48) -> list[tuple[str, str]]:
    """(text, class) rows: the class's words with a few fillers, the classes in turn."""
    rng = np.random.default_rng(0)
    fillers = ["today", "again", "please", "maybe", "really", "here"]
    rows = []
    for i in range(n):
        label = list(OWN_WORDS)[i % len(OWN_WORDS)]
        words = [*OWN_WORDS[label].split(), *rng.choice(fillers, 2)]
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", label))
    return rows


@pytest.fixture(scope="module", params=["binary", "categories"])
def own_model(request, tmp_path_factory) -> tuple[Path, str]:
    """A small model trained on labels of its own, and its flag head's name: ``train --label-columns spam`` (one
    boolean column: the flag head ``spam``, no categories), or in Python categories spam and insult under a flag
    head named ``flag``."""
    out = tmp_path_factory.mktemp("own") / "model"
    rows = _own_rows()
    if request.param == "binary":
        data = out.parent / "spam.csv"
        data.write_text("comment,spam\n" + "".join(f"{text},{label == 'spam'}\n" for text, label in rows),
                        encoding="utf-8")
        trained = CliRunner().invoke(main, ["train", "--data", str(data), "--text-column", "comment", "--label-columns",
                                            "spam", "--min-df", "1", "--threshold-folds", "3", "-q", "--output",
                                            str(out)])
        assert trained.exit_code == 0, trained.output
        return out, "spam"
    Y = np.array([[label == "spam", label == "insult", label != "ok"] for _, label in rows])
    model = default_estimator(min_df=1, threshold_folds=3, labels=LabelSet(("spam", "insult"), "flag"))
    lm.save(model.fit([text for text, _ in rows], Y), out)
    return out, "flag"


def test_the_page_names_the_flag_head_of_a_model_trained_on_its_own_labels(driver, own_model):
    """The page read the flag head as ``unsafe``: ``card.thresholds.unsafe`` and the explanation labelled "unsafe".
    For a model whose flag head has another name (``train --label-columns spam``: the flag head is ``spam``) the page
    read "Could not read the model: Cannot read properties of undefined (reading 'toFixed')", offered no cut-off, and
    a submitted message gave "Error: Cannot read properties of undefined (reading 'threshold')", no verdict. The page
    now takes the flag head's name from the model's labels (the last one) and its cut-off from the verdict's
    ``unsafe_threshold``, and words the verdict, the cut-offs and the marks with the model's own names."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    model, flag = own_model
    scorer = lm.load_scorer(model)
    assert scorer.labels_[-1] == flag != "unsafe"  # the case: a flag head of another name
    categories = list(scorer.labels_[:-1])
    with _serving(model) as address:
        driver.get(address)
        WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#point option")
                                          or d.find_element(By.ID, "model").text.startswith("Could not"))
        assert driver.find_element(By.ID, "model").text == f"Model lite-moderation-{model.name}. " + (
            "Every score is exactly its intercept plus one contribution per n-gram (weight x tf-idf).")
        driver.get_log("browser")  # start from an empty console
        points = Select(driver.find_element(By.ID, "point"))
        assert [o.get_attribute("value") for o in points.options] == ["", *scorer.operating_points_]
        own_cut = float(scorer.thresholds_[-1])
        assert points.first_selected_option.text.startswith(f"server's: the model's own ({flag} >= {own_cut:.3f}")
        for text, state in ((SPAM_TEXT, "flagged"), (PLAIN_TEXT, "ok")):
            expected = _explained(address, "", text)
            assert expected["flagged"] == (state == "flagged")  # the words are the classes
            assert _submit(driver, "", text) == state
            verdict = driver.find_element(By.ID, "verdict").text
            assert verdict == (f"{'FLAGGED' if expected['flagged'] else 'not flagged'}: {flag} "
                               f"{expected['unsafe_score']:.3f} (cut-off {expected['unsafe_threshold']:.3f})")
            entry = next(e for e in expected["explanations"] if e["label"] == flag)
            marks = driver.find_elements(By.CSS_SELECTOR, "#highlighted .field[data-source=response] mark")
            want = [(piece, c["ngram"]) for piece, c in segments(text, "response", entry["contributions"]) if c]
            assert want and [(m.text, m.get_attribute("data-ngram")) for m in marks] == want
            bars = driver.find_elements(By.CSS_SELECTOR, "#bars [data-category]")
            assert [b.get_attribute("data-category") for b in bars] == categories
            shown = driver.find_element(By.TAG_NAME, "body").text.lower()  # the titles are drawn in capitals
            assert f"strongest n-grams of the {flag} score" in shown and f"strongest terms of the {flag} score" in shown
            assert "unsafe" not in shown  # the model's own names throughout
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
