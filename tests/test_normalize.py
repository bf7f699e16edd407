"""Text normalisation (lite_moderation/normalize.py): invisible characters and compatibility forms cannot hide a
text from the model, in every scoring path, and explanations still point into the text as typed.

Found by a user's exploratory round: of AdvBench's first 200 requests, 176 flagged by `default` as typed, 0 with a
zero-width space between characters, 0 in fullwidth letters, 35 with soft hyphens inside words, 30 with Cyrillic
look-alike letters.
"""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest
from conftest import SHARED_DATA

import lite_moderation as lm
from lite_moderation.cli import main
from lite_moderation.explain import explain
from lite_moderation.normalize import normalize_texts, normalized, normalized_positions
from lite_moderation.persistence import _metadata_checksum

ADVBENCH = SHARED_DATA / "everyday" / "advbench_harmful_behaviors.jsonl"
MULTIJAIL = SHARED_DATA / "messages" / "multijail_heldout.jsonl"
CLINC150 = SHARED_DATA / "everyday" / "clinc150_queries.jsonl"


def normalized_visible(text: str) -> str:
    return normalized(text, "visible")


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


def _math_bold(text: str) -> str:
    return "".join(chr(0x1D41A + ord(c) - 97) if "a" <= c <= "z" else chr(0x1D400 + ord(c) - 65) if "A" <= c <= "Z"
                   else c for c in text)


#: Disguises a reader does not see (or reads as the same letters), each of a text.
DISGUISES = {
    "zero-width space between characters": lambda t: "\u200b".join(t),
    "soft hyphens inside words": lambda t: " ".join("\u00ad".join(w) for w in t.split(" ")),
    "word joiners and a byte-order mark": lambda t: "\ufeff" + "\u2060".join(t),
    "fullwidth letters": _fullwidth,
    "mathematical bold letters": _math_bold,
    "Cyrillic look-alike letters": lambda t: t.translate(str.maketrans("aeopcxyABEKMHOPCTX", "аеорсхуАВЕКМНОРСТХ")),
    "accents on vowels": lambda t: t.translate(str.maketrans("aeiouAEIOU", "áéíóúÁÉÍÓÚ")),
}

#: Disguises typed in ASCII, which the rule reads through but not always back to the text as typed ("a" typed "4"
#: alone stays "4"), each with the share of AdvBench's first 200 requests each shipped model must still flag:
#: floors just under what was measured when the rule came (default 0.800 / 0.705 / 0.865 / 0.755; fast 0.815 /
#: 0.805 / 0.900 / 0.760; as typed 0.885 and 0.895). Before it, default flagged 0.085 / 0.025 / 0.989 / 0.000 of
#: all 520 (the third with 88% of CLINC150 flagged too: spaced-out text of any kind; benchmarks/disguises.py).
ASCII_DISGUISES = {
    "leetspeak: a e i o as 4 3 1 0": (lambda t: t.translate(str.maketrans("aeioAEIO", "43104310")), 0.78, 0.79),
    "leetspeak: a e i o s t as 4 3 1 0 5 7": (
        lambda t: t.translate(str.maketrans("aeiostAEIOST", "431057431057")), 0.68, 0.78),
    "each word's letters spaced out": (lambda t: "  ".join(" ".join(w) for w in t.split(" ")), 0.84, 0.88),
    "each word's letters dotted": (lambda t: " ".join(".".join(w) for w in t.split(" ")), 0.73, 0.74),
}


def test_the_rule_folds_compatibility_forms_and_drops_invisible_characters():
    assert normalized_visible("ｆｕｌｌ\u3000ｗｉｄｔｈ") == "full width"
    assert normalized_visible("𝐛𝐨𝐥𝐝 ﬁne ①") == "bold fine 1"
    assert normalized_visible("in\u200bvis\u00adi\u200dble\u202e\ufeff") == "invisible"
    assert normalized_visible("naïve café 東京 привет") == "naïve café 東京 привет"  # already plain: unchanged
    assert normalized_visible("раураl сору а file") == "paypal copy a file"  # Latin text typed with look-alikes
    assert normalized_visible("привет, мир: ок") == "привет, мир: ок"  # Russian text stays Russian
    assert normalized_visible("Привет, how are уou") == "Привет, how are you"  # in mixed text, mixed words only
    assert normalized_visible("ΑΘΗΝΑ") == "ΑΘΗΝΑ"
    ascii_text = "plain ascii"
    assert normalized_visible(ascii_text) is ascii_text and normalized("ｘ", None) == "ｘ"
    texts = ["a", "b"]
    assert normalize_texts(texts, "visible") is texts


@pytest.mark.parametrize(("text", "form", "folded", "typed"), [
    ("ｋ\u200bｉｌｌ ﬁre", "visible", "kill fire", ["ｋ", "ｉ", "ｌ", "ｌ", " ", "ﬁ", "ﬁ", "r", "e"]),
    ("I k i l l ｙ0u, b.o.m.b", "undisguised", "I kill you, bomb", list("I kill ｙ0u, bomb")),
])
def test_positions_map_each_character_back_to_the_text_as_typed(text, form, folded, typed):
    read, back = normalized_positions(text, form)
    assert read == folded and len(back) == len(folded) + 1 and back[-1] == len(text)
    assert [text[i] for i in back[:-1]] == typed
    assert normalized_positions("plain", form) == ("plain", None)


def test_decomposed_letters_read_as_the_composed_ones():
    for text in ["Tôi muốn biết", "café crème", "한국어 문장", "Ёлка й", "বাংলা ভাষা কোন", "e\u0301\u0302"]:
        assert normalized_visible(unicodedata.normalize("NFD", text)) == normalized_visible(text) == unicodedata.normalize(
            "NFC", text)
        assert normalized(unicodedata.normalize("NFD", text)) == normalized(text)  # and without marks (step 4)
    composed = "caf\u00e9 ok"
    assert normalized_visible(composed) is composed  # already composed: unchanged, not copied


def test_positions_of_decomposed_text_map_each_letter_to_where_it_was_typed():
    text = "ｃａｆe\u0301 한"
    folded, back = normalized_positions(unicodedata.normalize("NFD", text), "visible")
    typed = unicodedata.normalize("NFD", text)
    assert folded == "café 한" and len(back) == len(folded) + 1 and back[-1] == len(typed)
    assert [typed[i] for i in back[:-1]] == ["ｃ", "ａ", "ｆ", "e", " ", "\u1112"]


def test_decomposed_text_gets_the_composed_texts_verdict_on_multilingual_requests():
    """Found by a user's round: a Vietnamese request flagged at 0.99 as typed composed scored 0.09 decomposed."""
    requests = [json.loads(line)["prompt"] for line in MULTIJAIL.read_text(encoding="utf-8").splitlines()[:300]]
    decomposed = [unicodedata.normalize("NFD", r) for r in requests]
    assert sum(d != r for d, r in zip(decomposed, requests)) > 50  # the set holds many letters with marks
    scorer = lm.load_scorer("default")
    np.testing.assert_allclose(scorer.predict_proba(decomposed), scorer.predict_proba(requests), rtol=0, atol=1e-12)
    model = lm.load("default")
    np.testing.assert_allclose(model.reference_decision_function(decomposed[:20]),
                               model.reference_decision_function(requests[:20]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["default", "fast", "beavertails"])
def test_no_disguise_changes_a_shipped_models_verdict_on_advbench(name):
    requests = [json.loads(line)["prompt"] for line in ADVBENCH.read_text().splitlines()[:200]]
    scorer = lm.load_scorer(name)
    plain = scorer.predict_proba(requests)
    assert plain[:, -1].max() > 0.5  # the set holds flagged requests
    for disguise, change in DISGUISES.items():
        disguised = [change(r) for r in requests]
        np.testing.assert_allclose(scorer.predict_proba(disguised), plain, rtol=0, atol=1e-12, err_msg=disguise)
        single = scorer.predict_proba([(disguised[3], "")])  # one request: the single-item path
        np.testing.assert_allclose(single[0], plain[3], rtol=0, atol=1e-12, err_msg=disguise)


@pytest.mark.parametrize("name", ["default", "fast"])
def test_shipped_models_read_through_ascii_disguises_on_both_sides(name):
    """Harmful requests typed in leetspeak or with letters spaced out are still flagged, and harmless queries typed
    the same way are not flagged more than as typed (CLINC150's first 1,000, plus one point)."""
    requests = [json.loads(line)["prompt"] for line in ADVBENCH.read_text().splitlines()[:200]]
    queries = [json.loads(line)["text"] for line in CLINC150.read_text().splitlines()[:1000]]
    scorer = lm.load_scorer(name)
    typed_fpr = np.mean([r["flagged"] for r in scorer.moderate(queries)])
    for disguise, (change, default_floor, fast_floor) in ASCII_DISGUISES.items():
        recall = np.mean([r["flagged"] for r in scorer.moderate([change(r) for r in requests])])
        fpr = np.mean([r["flagged"] for r in scorer.moderate([change(q) for q in queries])])
        assert recall >= {"default": default_floor, "fast": fast_floor}[name], disguise
        assert fpr <= typed_fpr + 0.01, disguise


def test_the_scikit_learn_path_and_the_explainer_read_the_same_text():
    model = lm.load("default")
    texts = ["ｈｏｗ ｄｏ ｉ ｐｉｃｋ ａ ｌｏｃｋ", "w\u200bh\u200by", ("q\u00adues\u00adtion", "ａｎｓｗｅｒ ﬁne")]
    reference = model.reference_decision_function(texts)
    np.testing.assert_allclose(lm.load_scorer("default").decision_function(texts), reference, rtol=0, atol=1e-9)
    explainer = lm.Explainer.from_model(model)
    np.testing.assert_allclose(explainer.decision_function(texts), reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("text", "pick", "lock"), [
    ("ｐｉｃｋ\u200b ａ ｌｏｃｋ", "ｐｉｃｋ", "ｌｏｃｋ"),  # fullwidth, a zero-width space (steps 1-3)
    ("how do I p i c k the l0ck", "p i c k", "l0ck"),  # spaced out, leetspeak (steps 5-6)
])
def test_explained_spans_point_into_the_text_as_typed(text, pick, lock):
    explanation = explain(lm.load("default"), [text], top=None)[0]["explanations"][0]
    words = {c["ngram"]: c["spans"] for c in explanation["contributions"] if c["analyzer"] == "word"}
    (_, start, end), = words["pick"]
    assert text[start:end] == pick
    (_, start, end), = words["lock"]
    assert text[start:end] == lock


def test_a_model_of_format_1_reads_texts_as_they_are(tiny_model_dir, tmp_path):
    lm.save(lm.load(tiny_model_dir), tmp_path / "old", lm.read_card(tiny_model_dir))
    path = tmp_path / "old" / "model.json"
    metadata = json.loads(path.read_text())
    assert metadata["format_version"] == 3 and metadata["params"]["vectorizer"]["normalize"] == "undisguised"
    del metadata["params"]["vectorizer"]["normalize"]
    metadata["format_version"] = 1
    metadata["checksum"] = _metadata_checksum(metadata)
    path.write_text(json.dumps(metadata))
    for loaded in (lm.load(tmp_path / "old"), lm.load_scorer(tmp_path / "old"), lm.Explainer.load(tmp_path / "old")):
        assert (loaded.vectorizer_.normalize if hasattr(loaded, "vectorizer_") else loaded.normalize) is None


def test_a_model_naming_an_unknown_normalisation_is_refused(tiny_model_dir, tmp_path):
    lm.save(lm.load(tiny_model_dir), tmp_path / "m", lm.read_card(tiny_model_dir))
    path = tmp_path / "m" / "model.json"
    metadata = json.loads(path.read_text())
    metadata["params"]["vectorizer"]["normalize"] = "nfd"
    metadata["checksum"] = _metadata_checksum(metadata)
    path.write_text(json.dumps(metadata))
    with pytest.raises(lm.ModelFormatError, match="params.vectorizer.normalize"):
        lm.load_scorer(tmp_path / "m")


def test_train_can_turn_normalisation_off(runner, tiny_data, tmp_path):
    for option, expected in (("undisguised", "undisguised"), ("visible", "visible"), ("none", None)):
        out = tmp_path / option
        result = runner.invoke(main, ["train", "--data", str(tiny_data), "--output", str(out), "--char-ngrams",
                                      "none", "--threshold-folds", "0", "--normalize", option, "-q"])
        assert result.exit_code == 0, result.stderr
        assert json.loads((out / "model.json").read_text())["params"]["vectorizer"]["normalize"] == expected
    plain = lm.load_scorer(tmp_path / "visible").predict_proba(["garden river"])
    assert np.array_equal(lm.load_scorer(tmp_path / "visible").predict_proba(["ｇａｒｄｅｎ ｒｉｖｅｒ"]), plain)
    assert not np.array_equal(lm.load_scorer(tmp_path / "none").predict_proba(["ｇａｒｄｅｎ ｒｉｖｅｒ"]),
                              lm.load_scorer(tmp_path / "none").predict_proba(["garden river"]))
    # a model saved with "visible" keeps reading leetspeak and spaced-out letters as typed; "undisguised" does not
    disguised = ["g4rd3n r1v3r", "g a r d e n river"]
    undisguised = lm.load_scorer(tmp_path / "undisguised")
    assert np.array_equal(undisguised.predict_proba(disguised), undisguised.predict_proba(["garden river"] * 2))
    visible = lm.load_scorer(tmp_path / "visible")
    assert not np.array_equal(visible.predict_proba(disguised), visible.predict_proba(["garden river"] * 2))


#: Disguises typed in ASCII (step 4, letters spaced out; step 5, leetspeak inside words) and how they read.
UNDISGUISED = {
    "how to m4k3 a b0mb": "how to make a bomb",
    "H0W D0 1 G3T 4 K3Y": "HoW D0 1 GeT 4 KeY",  # read in lower case (as every block reads); "D0", "1", "4": kept
    "P@ssw0rd and $ecret Micro$oft": "Password and $ecret Microsoft",
    "k i l l them": "kill them",
    "I k i l l, a b o m b": "I kill, a bomb",  # a leading "I" or "a" of a longer run stays a word
    "b.o.m.b or s-e-x or d_i_e or f*i*r*e": "bomb or sex or die or fire",
    "k 1 l l": "kill",  # joined, then read
    "h o w  t o  m a k e  a  b o m b": "how  to  make  a  bomb",  # short words set apart by double spaces
    "ｋ1ｌｌ": "kill",  # fullwidth (step 1), then read
    "Hów tó mákè á bómb": "How to make a bomb",  # marks off Latin letters (step 4)
    "k í l l and Mädchen, Tôi muốn": "kill and Madchen, Toi muon",
    "हिन्दी, привет, øre, straße": "हिन्दी, привет, øre, straße",  # other scripts and letters without a base: kept
}

#: Ordinary text holding digits between letters, single letters or separators between them: read as typed.
AS_TYPED = [
    "1st 2nd 4th mp3 mp4 h264 covid19 4x4 ak47 b2b x86 5g 3d US$5 2017 1.2.3 i18n",
    "r u ok? u r a star", "r u", "n-i-1 and a-b", "g u n.", "Here's a C# function", "e o nivel de a", "x y z ф", "I am a b",
    "mail john@gmail.com or @user504fly #t3st", "t.co/7KPWAdLF0R and 3fa85f64-5717-4562",
    "nice!!!!!cant wait", "color: #f1e05a", "ВОТ 3 КОТА",
]


@pytest.mark.parametrize("typed", list(UNDISGUISED))
def test_undisguised_joins_letters_spaced_out_and_reads_leetspeak_inside_words(typed):
    assert normalized(typed, "undisguised") == UNDISGUISED[typed]
    if typed.isascii():  # the older form leaves ASCII disguises as typed
        assert normalized(typed, "visible") == typed


@pytest.mark.parametrize("typed", AS_TYPED)
def test_undisguised_leaves_ordinary_digits_single_letters_and_identifiers_alone(typed):
    assert normalized(typed, "undisguised") == typed


def test_a_batch_reads_each_text_as_alone():
    """One scan finds the disguised texts of a batch (joined by newlines): each text reads as it would alone,
    and a run split across two texts or lines is not joined."""
    texts = [*UNDISGUISED, *AS_TYPED, "k i\nl l", "k i", "l l", "m4k3\nb0mb", "ｋ i l l", "", "a"]
    assert normalize_texts(texts, "undisguised") == [normalized(t, "undisguised") for t in texts]
    assert normalize_texts(["k i", "l l"], "undisguised") == ["k i", "l l"]
    plain = ["plain", "text"]
    assert normalize_texts(plain, "undisguised") is plain
