"""fillm_spacy.evaluation: the statistics, the per-sentence counts (which must add up to spaCy's
own scores), the report and the compare CLI's runs."""

import json
import random

import numpy as np
import pytest
import spacy
from scipy import stats
from spacy.pipeline.dep_parser import parser_score
from spacy.pipeline.lemmatizer import lemmatizer_score
from spacy.pipeline.morphologizer import morphologizer_score
from spacy.pipeline.tagger import tagger_score
from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

from fillm_spacy.evaluation.counts import METRICS, doc_counts
from fillm_spacy.evaluation.published import published_for
from fillm_spacy.evaluation.report import compare_test_set, render_markdown, report
from fillm_spacy.evaluation.runner import evaluate
from fillm_spacy.evaluation.stats import (
    metric_from_counts,
    paired_bootstrap,
    paired_bootstrap_mean,
    paired_t_test,
    per_item_scores,
)
from fillm_spacy.readers.records import select_range

from ..conftest import sample_docs

# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------


def correctness_counts(correct: np.ndarray) -> np.ndarray:
    """Per-item counts of a one-decision-per-item accuracy: correct -> (1,0,0), wrong -> (0,1,1)."""
    correct = np.asarray(correct, dtype=bool)
    return np.stack([correct, ~correct, ~correct], axis=1).astype(float)


def test_metric_from_counts_matches_prf_definitions():
    counts = np.array([[3, 1, 2]])
    assert metric_from_counts(counts, "precision")[0] == pytest.approx(3 / 4)
    assert metric_from_counts(counts, "recall")[0] == pytest.approx(3 / 5)
    p, r = 3 / 4, 3 / 5
    assert metric_from_counts(counts, "f")[0] == pytest.approx(2 * p * r / (p + r))
    with pytest.raises(ValueError):
        metric_from_counts(counts, "accuracy")


def test_zero_denominators_follow_spacy_for_corpus_and_the_documented_rule_per_sentence():
    nothing = np.array([[0, 0, 0], [0, 0, 4]])  # nothing at all; nothing predicted, 4 missed
    assert metric_from_counts(nothing, "f").tolist() == [0.0, 0.0]
    assert metric_from_counts(nothing, "precision").tolist() == [0.0, 0.0]
    assert per_item_scores(nothing, "f").tolist() == [1.0, 0.0]
    assert np.isnan(per_item_scores(nothing, "precision")).all()
    recall = per_item_scores(nothing, "recall")
    assert np.isnan(recall[0]) and recall[1] == 0.0


def test_t_test_leaves_out_undefined_pairs():
    with_gaps = paired_t_test([0.9, np.nan, 0.8, 0.7, 0.95], [0.5, 0.6, np.nan, 0.4, 0.5])
    reference = stats.ttest_rel([0.9, 0.7, 0.95], [0.5, 0.4, 0.5])
    assert with_gaps.n_items == 3
    assert with_gaps.p_value == pytest.approx(reference.pvalue)


def test_identical_systems_are_not_significantly_different():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 6, size=(200, 3)).astype(float)
    boot = paired_bootstrap(counts, counts.copy(), "f", n_resamples=2000, seed=0)
    assert boot.delta == 0.0
    assert boot.p_value == pytest.approx(1.0)
    assert (boot.ci_low, boot.ci_high) == (0.0, 0.0)
    scores = per_item_scores(counts, "f")
    tt = paired_t_test(scores, scores.copy())
    assert tt.p_value == pytest.approx(1.0)
    assert tt.mean_delta == 0.0 and (tt.ci_low, tt.ci_high) == (0.0, 0.0)


def test_clearly_different_systems_are_significantly_different():
    rng = np.random.default_rng(2)
    good = correctness_counts(rng.random(300) < 0.9)
    bad = correctness_counts(rng.random(300) < 0.5)
    boot = paired_bootstrap(good, bad, "f", n_resamples=2000, seed=0)
    assert boot.delta > 0.3
    assert boot.p_value < 0.01
    assert 0 < boot.ci_low < boot.delta < boot.ci_high
    tt = paired_t_test(per_item_scores(good, "f"), per_item_scores(bad, "f"))
    assert tt.p_value < 0.01
    assert tt.ci_low > 0


def test_small_noisy_difference_is_not_significant():
    rng = np.random.default_rng(3)
    a = correctness_counts(rng.random(60) < 0.70)
    b = correctness_counts(rng.random(60) < 0.68)
    boot = paired_bootstrap(a, b, "f", n_resamples=2000, seed=0)
    assert boot.p_value > 0.05
    assert boot.ci_low < 0 < boot.ci_high


def test_bootstrap_ci_contains_the_observed_difference_and_is_seeded():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 8, size=(150, 3)).astype(float)
    b = rng.integers(0, 8, size=(150, 3)).astype(float)
    for kind in ("precision", "recall", "f"):
        first = paired_bootstrap(a, b, kind, n_resamples=1000, seed=7)
        again = paired_bootstrap(a, b, kind, n_resamples=1000, seed=7)
        assert first == again
        assert first.ci_low <= first.delta <= first.ci_high
        expected = metric_from_counts(a.sum(0), kind) - metric_from_counts(b.sum(0), kind)
        assert first.delta == pytest.approx(float(expected))


def test_bootstrap_handles_test_sets_larger_than_one_chunk():
    """Large test sets are resampled in batches (memory ~ batch x n): every resample is filled
    and the interval is still a sensible one around the observed difference."""
    rng = np.random.default_rng(5)
    a = correctness_counts(rng.random(4001) < 0.8)
    b = correctness_counts(rng.random(4001) < 0.78)
    boot = paired_bootstrap(a, b, "f", n_resamples=1200, seed=0)  # 2e6 // (4001 * 6) = 83 per batch
    assert boot.n_resamples == 1200 and boot.n_items == 4001
    assert boot.ci_low <= boot.delta <= boot.ci_high
    assert boot.ci_high - boot.ci_low < 0.05


def test_bootstrap_of_mean_per_item_scores():
    # Per-item differences 1, 0, 0, 1: mean 0.5; a resample's mean difference is k/4 with k the
    # number of drawn 1s, so the interval lies within [0, 1].
    boot = paired_bootstrap_mean([1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], n_resamples=2000, seed=0)
    assert (boot.score_a, boot.score_b, boot.delta, boot.n_items) == (0.75, 0.25, 0.5, 4)
    assert 0.0 <= boot.ci_low < 0.5 < boot.ci_high <= 1.0
    assert 0.0 < boot.p_value < 1.0
    same = paired_bootstrap_mean([0.2, 0.4, 0.9], [0.2, 0.4, 0.9], n_resamples=500, seed=0)
    assert (same.delta, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="at least two items"):
        paired_bootstrap_mean([1.0], [0.0])


def test_t_test_agrees_with_scipy():
    rng = np.random.default_rng(6)
    a = rng.random(80)
    b = a - 0.05 + rng.normal(0, 0.1, 80)
    tt = paired_t_test(a, b, confidence=0.95)
    reference = stats.ttest_rel(a, b)
    assert tt.p_value == pytest.approx(reference.pvalue)
    assert tt.statistic == pytest.approx(reference.statistic)
    low, high = reference.confidence_interval(0.95)
    assert (tt.ci_low, tt.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert tt.ci_low <= tt.mean_delta <= tt.ci_high
    assert tt.mean_delta == pytest.approx(float(np.mean(a - b)))


def test_t_test_constant_nonzero_difference_is_certain():
    tt = paired_t_test([1.0, 1.0, 1.0], [0.5, 0.5, 0.5])
    assert tt.p_value == 0.0 and tt.mean_delta == 0.5 and tt.ci_low == tt.ci_high == 0.5


def test_unpaired_inputs_are_rejected():
    with pytest.raises(ValueError):
        paired_bootstrap(np.zeros((3, 3)), np.zeros((4, 3)), "f")
    with pytest.raises(ValueError):
        paired_bootstrap_mean([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_t_test([1.0, 2.0], [1.0])


def test_ranges_select_the_same_records_everywhere():
    records = list("abcdefgh")
    assert select_range(records, "2:5", None) == ["c", "d", "e"]
    assert select_range(records, ":2", None) == ["a", "b"]
    assert select_range(records, "6:", None) == ["g", "h"]
    assert select_range(records, None, 3) == ["a", "b", "c"]
    assert select_range(records, "1:7", 2) == ["b", "c"]  # the range first, then the limit
    assert select_range(range(4), "", None) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------
# per-sentence counts add up to spaCy's scores
# ---------------------------------------------------------------------------------------------


def perturbed_prediction(nlp, gold: Doc, rng: random.Random, retokenize: bool, split: bool = False) -> Doc:
    """A predicted doc for `gold` with some wrong annotation. retokenize=True uses the tokenizer's
    tokens (which differ from the treebank's merged multiword tokens) and a star-shaped parse;
    split=True predicts no parse but two sentences (a senter's output)."""
    if retokenize:
        pred = nlp.make_doc(gold.text)
        example = Example(pred, gold)
        x2y = example.alignment.x2y
        words = [t.text for t in pred]
        spaces = [bool(t.whitespace_) for t in pred]
        pos, tags, lemmas, morphs, deps = [], [], [], [], []
        for token in pred:
            gold_token = gold[x2y[token.i][0]] if x2y.lengths[token.i] == 1 else None
            pos.append(gold_token.pos_ if gold_token is not None and rng.random() > 0.2 else "X")
            tags.append(gold_token.tag_ if gold_token is not None and rng.random() > 0.2 else "X")
            lemmas.append(gold_token.lemma_ if gold_token is not None and rng.random() > 0.2 else token.text)
            morphs.append(str(gold_token.morph) if gold_token is not None and rng.random() > 0.2 else "")
            deps.append(gold_token.dep_ if gold_token is not None else "dep")
        heads = [0] * len(pred)  # every token attached to the first one: always a tree
        deps[0] = "ROOT"
    else:
        words = [t.text for t in gold]
        spaces = [bool(t.whitespace_) for t in gold]
        pos = [t.pos_ if rng.random() > 0.15 else "NOUN" for t in gold]
        tags = [t.tag_ if rng.random() > 0.15 else "NOUN" for t in gold]
        lemmas = [t.lemma_ if rng.random() > 0.15 else t.text.lower() for t in gold]
        morphs = [str(t.morph) if rng.random() > 0.15 else "" for t in gold]
        root = next(t.i for t in gold if t.head.i == t.i)
        heads, deps = [], []
        for t in gold:
            reattach = t.i != root and rng.random() < 0.2  # to the root: still a tree
            heads.append(root if reattach else t.head.i)
            deps.append(("obl" if rng.random() < 0.5 else t.dep_) if t.i != root else "ROOT")
    if split:
        starts = [i in (0, len(words) // 2) for i in range(len(words))]
        return Doc(
            nlp.vocab, words=words, spaces=spaces, pos=pos, tags=tags, lemmas=lemmas, morphs=morphs, sent_starts=starts
        )
    return Doc(
        nlp.vocab, words=words, spaces=spaces, pos=pos, tags=tags, lemmas=lemmas, morphs=morphs, heads=heads, deps=deps
    )


def with_entities(doc: Doc, rng: random.Random, noise: float) -> Doc:
    """Entities on PROPN runs (gold) or on perturbed runs (predictions)."""
    spans, i = [], 0
    while i < len(doc):
        if doc[i].pos_ == "PROPN" or rng.random() < noise:
            j = i + 1
            while j < len(doc) and doc[j].pos_ == "PROPN":
                j += 1
            label = "PER" if rng.random() > noise else "LOC"
            spans.append(Span(doc, i, j, label=label))
            i = j
        else:
            i += 1
    doc.ents = spans
    return doc


@pytest.fixture(scope="module")
def scored_examples():
    nlp = spacy.blank("tl")
    rng = random.Random(0)
    examples = []
    for n, gold in enumerate(sample_docs(60)):
        gold = Doc(nlp.vocab).from_bytes(gold.to_bytes())
        with_entities(gold, rng, noise=0.0)
        pred = perturbed_prediction(nlp, gold, rng, retokenize=n % 2 == 0, split=n % 5 == 1)
        with_entities(pred, rng, noise=0.1)
        examples.append(Example(pred, gold))
    return examples


def corpus_score(examples, metric):
    rows = [c for c in (doc_counts(eg)[metric.counter] for eg in examples) if c is not None]
    return float(metric_from_counts(np.asarray(rows, dtype=float).sum(0), metric.kind))


def test_per_doc_counts_add_up_to_spacys_scores(scored_examples):
    spacy_scores = {}
    spacy_scores.update(Scorer.score_tokenization(scored_examples))
    spacy_scores.update(morphologizer_score(scored_examples))
    spacy_scores.update(tagger_score(scored_examples))
    spacy_scores.update(lemmatizer_score(scored_examples))
    spacy_scores.update(parser_score(scored_examples))
    spacy_scores.update(get_ner_prf(scored_examples))
    # The perturbations must make every score informative, or the test proves little.
    for metric in METRICS:
        assert 0.05 < spacy_scores[metric.key] < 1.0, (metric.key, spacy_scores[metric.key])
        assert corpus_score(scored_examples, metric) == pytest.approx(spacy_scores[metric.key], abs=1e-12), metric.key


def test_perfect_predictions_score_one_everywhere():
    nlp = spacy.blank("tl")
    rng = random.Random(0)
    examples = []
    for gold in sample_docs(10):
        gold = with_entities(Doc(nlp.vocab).from_bytes(gold.to_bytes()), rng, 0.0)
        examples.append(Example(Doc(nlp.vocab).from_bytes(gold.to_bytes()), gold))
    for metric in METRICS:
        if metric.counter == "ents" and not any(eg.reference.ents for eg in examples):
            continue
        assert corpus_score(examples, metric) == pytest.approx(1.0), metric.key


def test_docs_without_gold_annotation_are_not_scored():
    nlp = spacy.blank("tl")
    gold = nlp.make_doc("Pumunta si Juan sa Maynila .")  # no sentences, no entities annotated
    counts = doc_counts(Example(nlp.make_doc(gold.text), gold))
    assert counts["ents"] is None and counts["sents"] is None
    assert counts["pos"] == (0, 0, 0) and counts["uas"] == (0, 0, 0)
    assert counts["token"] == (6, 0, 0)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def test_published_numbers_are_matched_by_test_set_name():
    exact = published_for("ud-newscrawl")
    assert exact["same_split"] and exact["scores"]["dep_las"] == pytest.approx(0.7712571247)
    other_split = published_for("ud-newscrawl-heldout")
    assert not other_split["same_split"] and other_split["dataset"] == exact["dataset"]
    assert published_for("ner-uner-trg")["scores"]["ents_f"] == pytest.approx(0.9777777778)
    assert published_for("ner-wikiann") is None
    assert published_for("ud-trgx") is None  # a prefix must end at a "-"


def test_compare_test_set_and_markdown(scored_examples):
    system = [doc_counts(eg) for eg in scored_examples]
    perfect = [doc_counts(Example(eg.reference, eg.reference)) for eg in scored_examples]
    result = compare_test_set(
        "ud-newscrawl-heldout",
        ("gold_copy", perfect),
        ("perturbed", system),
        {"gold_copy": None, "perturbed": {"pos_acc": corpus_score(scored_examples, METRICS[1]), "speed": 1234.5}},
        n_resamples=500,
        seed=0,
        confidence=0.95,
    )
    assert [row["metric"] for row in result["rows"]] == [m.key for m in METRICS]
    assert result["warnings"] == []
    by_metric = {row["metric"]: row for row in result["rows"]}
    assert by_metric["dep_las"]["bootstrap"]["delta"] > 0
    assert by_metric["dep_las"]["bootstrap"]["p_value"] < 0.01
    text = render_markdown([result], n_resamples=500, seed=0, confidence=0.95)
    assert "## ud-newscrawl-heldout: gold_copy vs perturbed (60 docs)" in text
    assert "UD-NewsCrawl official test split †" in text
    las_line = next(line for line in text.splitlines() if "`dep_las`" in line)
    assert las_line.rstrip(" |").endswith("77.13")  # the published LAS, in its own column
    assert "1,234" in text  # speed from spacy evaluate's JSON

    # A disagreement with spacy evaluate's number is reported, not hidden.
    wrong = compare_test_set(
        "ner-x",
        ("a", system),
        ("b", system),
        {"a": {"ents_f": 0.5}, "b": None},
        n_resamples=100,
        seed=0,
        confidence=0.95,
    )
    assert any(w.startswith("a ents_f") for w in wrong["warnings"])
    assert "Warning: a ents_f" in render_markdown([wrong], n_resamples=100, seed=0, confidence=0.95)


def test_evaluate_and_report_end_to_end(tmp_path):
    """Two saved pipelines (blank, and blank + an entity ruler) through `spacy evaluate` and the
    report: spaCy's JSON and the per-sentence counts must agree (no warnings)."""
    nlp = spacy.blank("tl")
    texts = ["Pumunta si Juan sa Maynila .", "Si Maria ay taga-Cebu .", "Walang pangalan dito ."] * 4
    gold_ents = {"Juan": "PER", "Maynila": "LOC", "Maria": "PER"}
    docs = []
    for text in texts:
        doc = nlp.make_doc(text)
        doc.ents = [Span(doc, t.i, t.i + 1, label=gold_ents[t.text]) for t in doc if t.text in gold_ents]
        docs.append(doc)
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    DocBin(docs=docs).to_disk(test_dir / "ner-toy.spacy")

    blank_dir = tmp_path / "blank"
    spacy.blank("tl").to_disk(blank_dir)
    ruler_nlp = spacy.blank("tl")
    ruler = ruler_nlp.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "PER", "pattern": "Juan"},
            {"label": "PER", "pattern": "Maria"},
            {"label": "LOC", "pattern": "Maynila"},
        ]
    )
    ruler_dir = tmp_path / "ruler"
    ruler_nlp.to_disk(ruler_dir)

    metrics = tmp_path / "metrics"
    written = evaluate([("ruler", str(ruler_dir))], test_dir, metrics)
    assert written == [metrics / "ruler" / "ner-toy.json"]
    assert json.loads(written[0].read_text())["ents_f"] == pytest.approx(1.0)

    output = tmp_path / "compare.md"
    results = report(
        [("ruler", str(ruler_dir))],
        [("blank", str(blank_dir))],
        test_dir,
        metrics,
        output,
        tmp_path / "compare.json",
        n_resamples=300,
        seed=0,
    )
    (result,) = results
    assert result["warnings"] == []
    rows = {row["metric"]: row for row in result["rows"]}
    assert set(rows) == {"token_acc", "ents_p", "ents_r", "ents_f"}
    assert rows["ents_f"]["bootstrap"]["score_a"] == pytest.approx(1.0)
    assert rows["ents_f"]["bootstrap"]["score_b"] == 0.0
    assert rows["ents_f"]["t_test"]["n_items"] == 12
    assert "| NER F (`ents_f`) | 100.00 | 0.00 |" in output.read_text()
    assert json.loads((tmp_path / "compare.json").read_text())[0]["test_set"] == "ner-toy"

    # A generative run over docs 1:4 (saved predictions: Juan found, Maria missed, one spurious
    # entity) is paired with both pipelines on the same three docs, on its task's metrics only.
    predicted = []
    for text in texts[1:4]:
        doc = nlp.make_doc(text)
        doc.ents = [Span(doc, t.i, t.i + 1, label="PER") for t in doc if t.text in ("Juan", "dito")]
        predicted.append(doc)
    DocBin(docs=predicted).to_disk(tmp_path / "gen.spacy")
    gen_json = tmp_path / "gen.json"

    def generative_report(doc_range: str):
        result = {"task": "ner", "test": str(test_dir / "ner-toy.spacy"), "range": doc_range, "limit": None}
        gen_json.write_text(json.dumps({**result, "predictions": str(tmp_path / "gen.spacy")}))
        generative = [("llm", str(gen_json))]
        systems, baselines = [("ruler", str(ruler_dir))], [("blank", str(blank_dir))]
        return report(systems, baselines, test_dir, metrics, output, generative=generative, n_resamples=300, seed=0)

    results = generative_report("1:4")
    generative = [r for r in results if r["system"] == "llm"]
    assert [(r["test_set"], r["baseline"], r["n_docs"]) for r in generative] == [
        ("ner-toy docs 1:4, generative", "ruler", 3),
        ("ner-toy docs 1:4, generative", "blank", 3),
    ]
    gen_rows = {row["metric"]: row["bootstrap"] for row in generative[0]["rows"]}
    assert set(gen_rows) == {"ents_p", "ents_r", "ents_f"}
    # docs 1:4 hold Maria | (none) | Juan, Maynila: 3 gold entities; predicted Juan (right) and dito
    assert gen_rows["ents_p"]["score_a"] == pytest.approx(1 / 2)
    assert gen_rows["ents_r"]["score_a"] == pytest.approx(1 / 3)
    assert gen_rows["ents_f"]["score_b"] == pytest.approx(1.0)  # the ruler on the same docs
    assert "ner-toy docs 1:4, generative: llm vs ruler (3 docs)" in output.read_text()

    with pytest.raises(ValueError, match="3 predicted docs for 5 test docs"):
        generative_report("0:5")


def test_report_compares_every_system_with_every_baseline(tmp_path):
    """The family (tl_fillm_sm, tl_fillm_lg) against the baseline(s): one table per pair."""
    nlp = spacy.blank("tl")
    docs = []
    for text in ["Pumunta si Juan sa Maynila .", "Walang pangalan dito ."] * 3:
        doc = nlp.make_doc(text)
        doc.ents = [Span(doc, t.i, t.i + 1, label="PER") for t in doc if t.text == "Juan"]
        docs.append(doc)
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    DocBin(docs=docs).to_disk(test_dir / "ner-toy.spacy")
    paths = {}
    for name, pattern in (("finds_juan", "Juan"), ("finds_nothing", None), ("finds_sa", "sa")):
        pipeline = spacy.blank("tl")
        if pattern:
            pipeline.add_pipe("entity_ruler").add_patterns([{"label": "PER", "pattern": pattern}])
        pipeline.to_disk(tmp_path / name)
        paths[name] = str(tmp_path / name)
    results = report(
        [("finds_juan", paths["finds_juan"]), ("finds_sa", paths["finds_sa"])],
        [("finds_nothing", paths["finds_nothing"])],
        test_dir,
        tmp_path / "metrics",
        tmp_path / "compare.md",
        n_resamples=200,
        seed=0,
    )
    assert [(r["system"], r["baseline"]) for r in results] == [
        ("finds_juan", "finds_nothing"),
        ("finds_sa", "finds_nothing"),
    ]
    f_scores = {
        r["system"]: {row["metric"]: row for row in r["rows"]}["ents_f"]["bootstrap"]["score_a"] for r in results
    }
    assert f_scores == {"finds_juan": pytest.approx(1.0), "finds_sa": 0.0}
