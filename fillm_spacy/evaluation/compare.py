"""tl_fillm vs the calamanCy-style baseline: spaCy's scores, paired significance tests over
sentences, and calamanCy's published numbers in a separate column.

    # spaCy's own evaluation of every pipeline on every test set -> <output-dir>/<name>/<test>.json
    python -m fillm_spacy.evaluation.compare evaluate \
        --pipeline tl_fillm=training/tl_fillm/model-best \
        --pipeline calamancy_baseline=training/baseline/model \
        --test-dir corpus/test --output-dir metrics

    # per-sentence scores of both systems, paired tests, markdown table
    python -m fillm_spacy.evaluation.compare report \
        --system tl_fillm=training/tl_fillm/model-best \
        --baseline calamancy_baseline=training/baseline/model \
        --test-dir corpus/test --metrics-dir metrics --output metrics/compare.md

Pairing over sentences: every test DocBin holds one sentence per doc (calamanCy's `-n 1`
protocol), so "per doc" is "per sentence". For each doc and metric we count (tp, fp, fn) exactly
as spaCy's Scorer does (same alignment, missing values, ignored labels), so summing the counts
over docs gives spaCy's corpus score. The tests:

* paired bootstrap (Efron & Tibshirani; Koehn 2004; Berg-Kirkpatrick et al. 2012): resample
  sentences with replacement, recompute both corpus scores from the summed counts; the 95% CI is
  the percentile interval of the difference, the two-sided p-value the share of resampled
  differences at least as far from the observed one as the observed one is from zero
  (the bootstrap distribution shifted to the null).
* paired t-test (scipy.stats.ttest_rel, as the FiLLM paper used) on per-sentence scores, with
  the t interval of the mean per-sentence difference. A sentence with nothing to score for an
  F or accuracy (no gold and no predicted items, e.g. no entities and none predicted) scores 1.0:
  there was nothing to get wrong and nothing was got wrong; a sentence whose precision or recall
  is undefined (nothing predicted / nothing to find) is left out of that metric's t-test.
  Corpus scores (the table's values and the bootstrap) keep spaCy's convention (0.0), so they
  equal `spacy evaluate`'s. Per-sentence means weight sentences equally and corpus scores weight
  tokens or entities equally, so the two tests can disagree, even in sign.
"""
import argparse
import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

# ---------------------------------------------------------------------------------------------
# Statistics (pure functions over count arrays)
# ---------------------------------------------------------------------------------------------

# How a score is made from (tp, fp, fn) counts; spaCy's PRFScore conventions.
KINDS = ("precision", "recall", "f")


def metric_from_counts(counts: np.ndarray, kind: str, zero_division: float = 0.0) -> np.ndarray:
    """Score(s) from counts of shape (..., 3) = (tp, fp, fn).

    precision = tp/(tp+fp), recall = tp/(tp+fn), f = 2tp/(2tp+fp+fn) (= spaCy's 2PR/(P+R)).
    A zero denominator gives `zero_division`: 0.0 is spaCy's PRFScore convention for corpus
    scores (e.g. precision of a system that predicted no entity at all)."""
    counts = np.asarray(counts, dtype=float)
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    if kind == "precision":
        num, den = tp, tp + fp
    elif kind == "recall":
        num, den = tp, tp + fn
    elif kind == "f":
        num, den = 2 * tp, 2 * tp + fp + fn
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), zero_division)


def per_item_scores(counts: np.ndarray, kind: str) -> np.ndarray:
    """One score per item (sentence) from counts of shape (n, 3), for the t-test.

    A zero denominator: F scores 1.0 (nothing to find and nothing predicted is a perfect
    outcome; with 0.0 a sentence without entities would score the same for a system that
    predicts none and one that predicts spurious ones); precision (nothing predicted) and recall
    (nothing to find) are undefined, NaN, and paired_t_test drops that sentence."""
    undefined = 1.0 if kind == "f" else float("nan")
    return metric_from_counts(np.asarray(counts, dtype=float).reshape(-1, 3), kind, zero_division=undefined)


@dataclass
class BootstrapResult:
    score_a: float
    score_b: float
    delta: float  # score_a - score_b on the whole test set
    ci_low: float
    ci_high: float
    p_value: float
    n_items: int
    n_resamples: int


@dataclass
class TTestResult:
    mean_delta: float  # mean of per-item (a - b)
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float
    n_items: int


def paired_bootstrap(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    kind: str,
    *,
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Paired bootstrap of a corpus-level score difference (a - b) over items.

    counts_a, counts_b: (n_items, 3) per-item (tp, fp, fn) of systems a and b on the same items."""
    counts_a = np.asarray(counts_a, dtype=float).reshape(-1, 3)
    counts_b = np.asarray(counts_b, dtype=float).reshape(-1, 3)
    if counts_a.shape != counts_b.shape:
        raise ValueError(f"unpaired counts: {counts_a.shape} vs {counts_b.shape}")
    n = len(counts_a)
    if n == 0:
        raise ValueError("no items to resample")
    score_a = float(metric_from_counts(counts_a.sum(axis=0), kind))
    score_b = float(metric_from_counts(counts_b.sum(axis=0), kind))
    observed = score_a - score_b
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_resamples)
    # Resample in chunks so memory stays ~ chunk * n, whatever the test set size.
    chunk = max(1, min(n_resamples, 2_000_000 // n))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        deltas[start:stop] = metric_from_counts(counts_a[idx].sum(axis=1), kind) - metric_from_counts(
            counts_b[idx].sum(axis=1), kind
        )
    alpha = 1.0 - confidence
    ci_low, ci_high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    # Shifted to the null: how often is a resampled difference as far from the observed one as
    # the observed one is from 0? Identical systems: every delta is 0, p = 1.
    tol = 1e-12
    extreme = np.count_nonzero(np.abs(deltas - observed) >= abs(observed) - tol)
    p_value = (extreme + 1) / (n_resamples + 1)
    return BootstrapResult(score_a, score_b, observed, float(ci_low), float(ci_high), float(p_value), n, n_resamples)


def paired_t_test(scores_a: Sequence[float], scores_b: Sequence[float], *, confidence: float = 0.95) -> TTestResult:
    """scipy's paired t-test of per-item scores, with the t interval of the mean difference.
    Pairs with a NaN (an undefined score) on either side are left out; n_items counts the rest."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"unpaired scores: {a.shape} vs {b.shape}")
    defined = ~(np.isnan(a) | np.isnan(b))
    a, b = a[defined], b[defined]
    n = len(a)
    diffs = a - b
    mean = float(diffs.mean()) if n else float("nan")
    if n < 2:
        return TTestResult(mean, float("nan"), float("nan"), float("nan"), float("nan"), n)
    sd = float(diffs.std(ddof=1))
    if sd == 0.0:
        # scipy returns nan here (0/0) or an infinite statistic; the answer is known.
        p_value = 1.0 if mean == 0.0 else 0.0
        statistic = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        return TTestResult(mean, mean, mean, p_value, statistic, n)
    result = stats.ttest_rel(a, b)
    half_width = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return TTestResult(mean, mean - half_width, mean + half_width, float(result.pvalue), float(result.statistic), n)


# ---------------------------------------------------------------------------------------------
# Per-doc counts, mirroring spaCy's Scorer (spacy/scorer.py and the components' scorers)
# ---------------------------------------------------------------------------------------------

Counts = Tuple[int, int, int]
MISSING_VALUES = frozenset([None, 0, ""])  # spacy.scorer.MISSING_VALUES
IGNORED_DEPS = ("p", "punct")  # spacy.pipeline.dep_parser.parser_score


def token_counts(example) -> Optional[Counts]:
    """token_acc = tp / (tp + fp): predicted tokens aligned one-to-one with a gold token."""
    if example.reference.has_unknown_spaces:
        return None
    lengths = example.alignment.x2y.lengths
    tp = fp = 0
    for token in example.predicted:
        if token.orth_.isspace():
            continue
        if lengths[token.i] != 1:
            fp += 1
        else:
            tp += 1
    return tp, fp, 0


def token_attr_counts(example, getter: Callable) -> Counts:
    """Scorer.score_token_attr for one example: (gold index, value) sets."""
    align = example.alignment
    gold, missing = set(), set()
    for gold_i, token in enumerate(example.reference):
        value = getter(token)
        if value not in MISSING_VALUES:
            gold.add((gold_i, value))
        else:
            missing.add(gold_i)
    pred = set()
    for token in example.predicted:
        if token.orth_.isspace():
            continue
        if align.x2y.lengths[token.i] == 1:
            gold_i = align.x2y[token.i][0]
            if gold_i not in missing:
                pred.add((gold_i, getter(token)))
    return _set_counts(pred, gold)


def dep_counts(example) -> Tuple[Counts, Counts]:
    """Scorer.score_deps with parser_score's getter (lower-cased labels) and ignored labels;
    returns (unlabelled, labelled) counts. Missing gold labels are tracked per doc (spaCy keeps
    the set across docs, which only matters for partially annotated test sets)."""
    align = example.alignment
    gold, missing = set(), set()
    for gold_i, token in enumerate(example.reference):
        dep = token.dep_.lower()
        if dep not in MISSING_VALUES:
            if dep not in IGNORED_DEPS:
                gold.add((gold_i, token.head.i, dep))
        else:
            missing.add(gold_i)
    pred, unaligned = set(), 0
    for token in example.predicted:
        if token.orth_.isspace():
            continue
        gold_i = align.x2y[token.i][0] if align.x2y.lengths[token.i] == 1 else None
        if gold_i in missing:
            continue
        dep = token.dep_.lower()
        if dep in IGNORED_DEPS or not token.orth_.strip():
            continue
        head = token.head
        gold_head = align.x2y[head.i][0] if align.x2y.lengths[head.i] == 1 else None
        if gold_i is None or gold_head is None:
            unaligned += 1  # spaCy counts these as false positives, labelled and unlabelled
        else:
            pred.add((gold_i, gold_head, dep))
    labelled = _set_counts(pred, gold)
    unlabelled = _set_counts({item[:2] for item in pred}, {item[:2] for item in gold})
    return (
        (unlabelled[0], unlabelled[1] + unaligned, unlabelled[2]),
        (labelled[0], labelled[1] + unaligned, labelled[2]),
    )


def sents_counts(example) -> Optional[Counts]:
    """Scorer.score_spans(..., "sents") as the senter/parser scorers call it."""
    gold_doc, pred_doc = example.reference, example.predicted
    if not gold_doc.has_annotation("SENT_START"):
        return None
    gold = {(span.label_, span.start, span.end - 1) for span in gold_doc.sents}
    pred = set()
    if pred_doc.has_annotation("SENT_START"):
        for span in example.get_aligned_spans_x2y(pred_doc.sents, False):
            pred.add((span.label_, span.start, span.end - 1))
    return _set_counts(pred, gold)


def ents_counts(example) -> Optional[Counts]:
    """spacy.scorer.get_ner_prf for one example (micro counts over labels)."""
    if not example.y.has_annotation("ENT_IOB"):
        return None
    golds = {(ent.label_, ent.start, ent.end) for ent in example.y.ents}
    align_x2y = example.alignment.x2y
    tp = fp = 0
    for pred_ent in example.x.ents:
        indices = align_x2y[pred_ent.start : pred_ent.end]
        if len(indices):
            gold_span = example.y[indices[0] : indices[-1] + 1]
            # spaCy ignores predictions over tokens whose gold NER annotation is missing.
            if all(token.ent_iob != 0 for token in gold_span):
                key = (pred_ent.label_, indices[0], indices[-1] + 1)
                if key in golds:
                    tp += 1
                    golds.remove(key)
                else:
                    fp += 1
    return tp, fp, len(golds)


def _set_counts(pred: set, gold: set) -> Counts:
    return len(pred & gold), len(pred - gold), len(gold - pred)


@dataclass(frozen=True)
class Metric:
    key: str  # spaCy's score name
    label: str
    counter: str  # which per-doc counter feeds it
    kind: str  # how the score is made from the counts


METRICS: Tuple[Metric, ...] = (
    Metric("token_acc", "Token acc.", "token", "precision"),
    Metric("pos_acc", "UPOS acc.", "pos", "f"),
    Metric("tag_acc", "Tag acc. (XPOS+morph)", "tag", "f"),
    Metric("morph_acc", "Morph acc.", "morph", "f"),
    Metric("lemma_acc", "Lemma acc.", "lemma", "f"),
    Metric("dep_uas", "UAS", "uas", "f"),
    Metric("dep_las", "LAS", "las", "f"),
    Metric("sents_f", "Sentences F", "sents", "f"),
    Metric("ents_p", "NER P", "ents", "precision"),
    Metric("ents_r", "NER R", "ents", "recall"),
    Metric("ents_f", "NER F", "ents", "f"),
)


def doc_counts(example) -> Dict[str, Optional[Counts]]:
    """All counters for one example. None: the doc is not scored for that counter (spaCy skips
    it: unknown spaces, or no gold sentence / entity annotation)."""
    uas, las = dep_counts(example)
    return {
        "token": token_counts(example),
        "pos": token_attr_counts(example, lambda t: t.pos),
        "tag": token_attr_counts(example, lambda t: t.tag),
        "morph": token_attr_counts(example, lambda t: t.morph.key),
        "lemma": token_attr_counts(example, lambda t: t.lemma),
        "uas": uas,
        "las": las,
        "sents": sents_counts(example),
        "ents": ents_counts(example),
    }


# ---------------------------------------------------------------------------------------------
# Running pipelines
# ---------------------------------------------------------------------------------------------


def predict_examples(nlp, test_path: Path) -> list:
    """The examples of a test DocBin with nlp's predictions, made as `spacy evaluate` makes them
    (spacy.training.Corpus, then Language.pipe over the tokenizer's docs)."""
    from spacy.training import Corpus

    examples = list(Corpus(test_path)(nlp))
    for example, doc in zip(examples, nlp.pipe([eg.predicted for eg in examples])):
        example.predicted = doc
    return examples


def collect_counts(model: str, test_paths: Sequence[Path], gpu_id: int = -1) -> Dict[str, List[Dict]]:
    """Per-doc counts of one pipeline on each test set: {test name: [doc_counts, ...]}."""
    import spacy

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    return {path.stem: [doc_counts(eg) for eg in predict_examples(nlp, path)] for path in test_paths}


def counts_array(per_doc: Sequence[Dict], counter: str, mask: Sequence[bool]) -> np.ndarray:
    rows = [per_doc[i][counter] for i, keep in enumerate(mask) if keep]
    return np.asarray(rows, dtype=float).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------
# calamanCy's published numbers
# ---------------------------------------------------------------------------------------------

# calamanCy v0.2.0, tl_calamancy_md (the floret-vector CPU pipeline whose recipe the baseline
# reproduces), trained on the full UD-NewsCrawl train split (12,495 sentences) and TLUnified-NER.
# Source: ljvmiranda921/calamanCy, models/v0.2.0/evals/tl_calamancy_md/{dep_newscrawl,dep_trg,
# dep_ugnayan,ner_tlunified,ner_uner-trg,ner_uner-ugnayan,ner_tfnerd}.json (`spacy evaluate
# --per-component` outputs committed with the release), cross-checked against the release notes
# (website/content/news/release-v020.md). The notes agree on every UD metric (their "Token Acc."
# column is token_f: 95.01 on NewsCrawl; token_acc is 99.77), on UNER-Ugnayan and on TF-NERD; for
# UNER-TRG the notes list md as P 57.50 / R 100 / F 73.02 while the md JSON holds 100 / 95.65 /
# 97.78 (the same as lg's): both are shown. Speeds are not shown: they were measured on other
# hardware. calamanCy published no v0.2.0 number on WikiANN.
PUBLISHED_SOURCE = (
    "calamanCy v0.2.0 tl_calamancy_md: ljvmiranda921/calamanCy models/v0.2.0/evals/tl_calamancy_md/*.json, "
    "cross-checked with website/content/news/release-v020.md"
)
PUBLISHED_CALAMANCY_MD: Dict[str, Dict] = {
    "ud-newscrawl": {
        "dataset": "UD-NewsCrawl official test split",
        "scores": {"token_acc": 0.9977388853, "pos_acc": 0.9499709311, "tag_acc": 0.9085019253,
                   "morph_acc": 0.9534146752, "lemma_acc": 0.9009458039, "dep_uas": 0.8345386513,
                   "dep_las": 0.7712571247, "sents_f": 0.999040614},
    },
    "ud-trg": {
        "dataset": "UD-TRG test",
        "scores": {"token_acc": 1.0, "pos_acc": 0.7820163488, "tag_acc": 0.5817438692,
                   "morph_acc": 0.7316076294, "lemma_acc": 0.7983651226, "dep_uas": 0.9328914664,
                   "dep_las": 0.6694283347, "sents_f": 1.0},
    },
    "ud-ugnayan": {
        "dataset": "UD-Ugnayan test",
        "scores": {"token_acc": 0.9950884086, "pos_acc": 0.8282025819, "tag_acc": 0.4915590864,
                   "morph_acc": 0.5941381023, "lemma_acc": 0.8229475767, "dep_uas": 0.7970183486,
                   "dep_las": 0.5732265446, "sents_f": 1.0},
    },
    "ner-tlunified": {
        "dataset": "TLUnified-NER test",
        "scores": {"token_acc": 1.0, "ents_p": 0.8757206919, "ents_r": 0.8657378087, "ents_f": 0.8707006369},
    },
    "ner-uner-trg": {
        "dataset": "Universal NER TRG",
        "scores": {"ents_p": 1.0, "ents_r": 0.9565217391, "ents_f": 0.9777777778},
        "note": "calamanCy's release notes list tl_calamancy_md on UNER-TRG at P 57.50 / R 100.00 / F 73.02; "
                "this column shows the committed eval JSON (the same numbers as tl_calamancy_lg's)",
    },
    "ner-uner-ugnayan": {
        "dataset": "Universal NER Ugnayan",
        "scores": {"ents_p": 0.5897435897, "ents_r": 0.696969697, "ents_f": 0.6388888889},
    },
    "ner-tfnerd": {
        "dataset": "TF-NERD test (GPE as LOC)",
        "scores": {"ents_p": 0.6836228288, "ents_r": 0.7077713552, "ents_f": 0.6954875355},
    },
}


def published_for(test_name: str) -> Optional[Dict]:
    """The published entry for a test set named ud-<name> / ner-<name>: an exact key, or a key
    followed by "-" (ud-newscrawl-heldout -> ud-newscrawl, flagged as another split)."""
    if test_name in PUBLISHED_CALAMANCY_MD:
        return {**PUBLISHED_CALAMANCY_MD[test_name], "same_split": True}
    for key in sorted(PUBLISHED_CALAMANCY_MD, key=len, reverse=True):
        if test_name.startswith(key + "-"):
            return {**PUBLISHED_CALAMANCY_MD[key], "same_split": False}
    return None


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def compare_test_set(
    test_name: str,
    system: Tuple[str, List[Dict]],
    baseline: Tuple[str, List[Dict]],
    spacy_scores: Dict[str, Optional[Dict]],
    *,
    n_resamples: int,
    seed: int,
    confidence: float,
    metrics: Sequence[str] = (),
) -> Dict:
    """All metrics (or the named ones) of one test set for one (system, baseline) pair, as a
    JSON-able dict."""
    (sys_name, sys_docs), (base_name, base_docs) = system, baseline
    if len(sys_docs) != len(base_docs):
        raise ValueError(f"{test_name}: {len(sys_docs)} vs {len(base_docs)} docs")
    rows, warnings = [], []
    for metric in METRICS:
        if metrics and metric.key not in metrics:
            continue
        mask = [a[metric.counter] is not None and b[metric.counter] is not None for a, b in zip(sys_docs, base_docs)]
        counts_a = counts_array(sys_docs, metric.counter, mask)
        counts_b = counts_array(base_docs, metric.counter, mask)
        # Nothing to score (e.g. UPOS on a NER-only test set): spaCy reports None; skip the row.
        if len(counts_a) == 0 or (counts_a.sum() == 0 and counts_b.sum() == 0):
            continue
        boot = paired_bootstrap(counts_a, counts_b, metric.kind, n_resamples=n_resamples, seed=seed,
                                confidence=confidence)
        ttest = paired_t_test(per_item_scores(counts_a, metric.kind), per_item_scores(counts_b, metric.kind),
                              confidence=confidence)
        for name, ours in ((sys_name, boot.score_a), (base_name, boot.score_b)):
            reported = (spacy_scores.get(name) or {}).get(metric.key)
            if reported is not None and abs(reported - ours) > 1e-6:
                warnings.append(f"{name} {metric.key}: spacy evaluate {reported:.6f}, per-sentence counts {ours:.6f}")
        rows.append({"metric": metric.key, "label": metric.label, "bootstrap": asdict(boot), "t_test": asdict(ttest)})
    speeds = {name: (spacy_scores.get(name) or {}).get("speed") for name in (sys_name, base_name)}
    return {"test_set": test_name, "n_docs": len(sys_docs), "system": sys_name, "baseline": base_name,
            "rows": rows, "speed": speeds, "published": published_for(test_name), "warnings": warnings}


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:+.2f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def render_markdown(results: List[Dict], *, n_resamples: int, seed: int, confidence: float) -> str:
    level = f"{100 * confidence:g}%"
    lines = [
        "# tl_fillm vs the calamanCy-style baseline",
        "",
        "Scores in % (speed in words/s, from `spacy evaluate`). Δ = system − baseline. Paired tests over "
        f"test sentences (one per doc): bootstrap with {n_resamples} resamples (seed {seed}), {level} percentile "
        "CI of the corpus-level Δ and two-sided p; scipy's paired t-test on per-sentence scores, "
        f"{level} t interval of the mean per-sentence Δ. n = sentences scored for that metric.",
        "",
        f"The last column is **published**, not measured here: {PUBLISHED_SOURCE}. Those models were "
        "trained on the full UD-NewsCrawl train split and TLUnified-NER, and evaluated on the named test set, "
        "which may differ from the one in the row (marked †). n/a: no published number.",
        "",
    ]
    for result in results:
        published = result["published"]
        if published is None:
            pub_header, pub_scores = "published calamanCy v0.2.0 md (none for this test set)", {}
        else:
            mark = "" if published["same_split"] else " †"
            pub_header = f"published calamanCy v0.2.0 md ({published['dataset']}{mark})"
            pub_scores = published["scores"]
        sys_name, base_name = result["system"], result["baseline"]
        lines += [
            f"## {result['test_set']}: {sys_name} vs {base_name} ({result['n_docs']} docs)",
            "",
            f"| metric | {sys_name} | {base_name} | Δ | bootstrap {level} CI | bootstrap p | "
            f"t-test mean Δ | t-test {level} CI | t-test p | n | {pub_header} |",
            "|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|",
        ]
        for row in result["rows"]:
            boot, tt = row["bootstrap"], row["t_test"]
            lines.append(
                f"| {row['label']} (`{row['metric']}`) | {_pct(boot['score_a'])} | {_pct(boot['score_b'])} | "
                f"{_signed(boot['delta'])} | [{_signed(boot['ci_low'])}, {_signed(boot['ci_high'])}] | "
                f"{_p(boot['p_value'])} | {_signed(tt['mean_delta'])} | "
                f"[{_signed(tt['ci_low'])}, {_signed(tt['ci_high'])}] | {_p(tt['p_value'])} | {tt['n_items']} | "
                f"{_pct(pub_scores.get(row['metric']))} |"
            )
        speed_a, speed_b = result["speed"][sys_name], result["speed"][base_name]
        fmt = lambda s: "n/a" if s is None else f"{s:,.0f}"  # noqa: E731
        lines.append(f"| Speed (words/s, `speed`) | {fmt(speed_a)} | {fmt(speed_b)} | | | | | | | | n/a |")
        notes = []
        if published is not None and published.get("note"):
            notes.append(f"Published: {published['note']}.")
        if published is not None and not published["same_split"]:
            notes.append(f"† The published column is on {published['dataset']}, not on these sentences.")
        notes += [f"Warning: {w}" for w in result["warnings"]]
        lines += [""] + [f"{note}  " for note in notes] + ([""] if notes else [])
    return "\n".join(lines).rstrip() + "\n"


# The metric each generative task is scored on (fillm_spacy.llm.finetune evaluate).
GENERATIVE_METRICS = {"pos": ("pos_acc",), "ner": ("ents_p", "ents_r", "ents_f")}


def load_generative(result_file: Path) -> Dict:
    """A generative evaluation (`fillm_spacy.llm.finetune evaluate --output --predictions`): its
    result JSON, the indices of the test docs it covered, and per-doc counts of its predictions."""
    import spacy
    from spacy.tokens import DocBin
    from spacy.training import Example

    from ..llm.finetune import parse_range, read_docs, select

    result = json.loads(Path(result_file).read_text())
    if not result.get("predictions"):
        raise ValueError(f"{result_file} has no predictions: run `finetune evaluate` with --predictions")
    test = Path(result["test"])
    if test.suffix != ".spacy":
        raise ValueError(f"{result_file}: compare needs the generative run on a .spacy test file, got {test}")
    lang = result.get("lang", "tl")
    references = read_docs(test, lang)
    indices = select(list(range(len(references))), parse_range(result.get("range")), result.get("limit"))
    predicted = list(DocBin().from_disk(result["predictions"]).get_docs(spacy.blank(lang).vocab))
    if len(predicted) != len(indices):
        raise ValueError(f"{result_file}: {len(predicted)} predicted docs for {len(indices)} test docs")
    counts = [doc_counts(Example(pred, references[i])) for pred, i in zip(predicted, indices)]
    return {"result": result, "test": test, "indices": indices, "counts": counts}


def report(
    system: Tuple[str, str],
    baselines: Sequence[Tuple[str, str]],
    test_dir: Path,
    metrics_dir: Path,
    output: Path,
    json_output: Optional[Path] = None,
    *,
    generative: Sequence[Tuple[str, str]] = (),
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    gpu_id: int = -1,
) -> List[Dict]:
    """The table of `system` vs each baseline on every test set in test_dir; then each
    generative evaluation (NAME=result.json) vs the same pipelines on the docs it covered."""
    test_paths = sorted(test_dir.glob("*.spacy"))
    if not test_paths:
        raise FileNotFoundError(f"no .spacy test sets in {test_dir}")
    generated = {name: load_generative(Path(path)) for name, path in generative}
    # A generative run may be on a file outside test_dir (e.g. the dev split): score that too.
    extra_paths = sorted({g["test"] for g in generated.values()} - set(test_paths), key=str)
    counts = {name: collect_counts(model, [*test_paths, *extra_paths], gpu_id) for name, model in [system, *baselines]}
    results = []
    for path in test_paths:
        spacy_scores = {}
        for name, _ in [system, *baselines]:
            metrics_file = metrics_dir / name / f"{path.stem}.json"
            spacy_scores[name] = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        for base_name, _ in baselines:
            results.append(compare_test_set(
                path.stem, (system[0], counts[system[0]][path.stem]), (base_name, counts[base_name][path.stem]),
                spacy_scores, n_resamples=n_resamples, seed=seed, confidence=confidence,
            ))
    for gen_name, gen in generated.items():
        task = gen["result"]["task"]
        span = gen["result"].get("range") or "all"
        test_name = f"{gen['test'].stem} docs {span}" + (f" (first {gen['result']['limit']})" if gen["result"].get("limit") else "")
        for name, _ in [system, *baselines]:
            pipeline_counts = counts[name][gen["test"].stem]
            results.append(compare_test_set(
                f"{test_name}, generative", (gen_name, gen["counts"]), (name, [pipeline_counts[i] for i in gen["indices"]]),
                {}, n_resamples=n_resamples, seed=seed, confidence=confidence, metrics=GENERATIVE_METRICS[task],
            ))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_markdown(results, n_resamples=n_resamples, seed=seed, confidence=confidence))
    print(f"[compare] wrote {output}")
    if json_output is not None:
        json_output.write_text(json.dumps(results, indent=2))
        print(f"[compare] wrote {json_output}")
    return results


def evaluate(pipelines: Sequence[Tuple[str, str]], test_dir: Path, output_dir: Path, gpu_id: int = -1) -> List[Path]:
    """`python -m spacy evaluate` of every pipeline on every test set in test_dir: the same
    command, tokenizer and scorer for every system. Writes <output_dir>/<name>/<test>.json."""
    test_paths = sorted(test_dir.glob("*.spacy"))
    if not test_paths:
        raise FileNotFoundError(f"no .spacy test sets in {test_dir}")
    written = []
    for name, model in pipelines:
        (output_dir / name).mkdir(parents=True, exist_ok=True)
        for test in test_paths:
            out = output_dir / name / f"{test.stem}.json"
            command = [sys.executable, "-m", "spacy", "evaluate", model, str(test), "--output", str(out),
                       "--gpu-id", str(gpu_id)]
            print("[evaluate] " + " ".join(command[1:]), flush=True)
            subprocess.run(command, check=True)
            written.append(out)
    return written


def _named(value: str) -> Tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    name, path = value.split("=", 1)
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, path


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fillm_spacy.evaluation.compare", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    ev = commands.add_parser("evaluate", help="spacy evaluate of every pipeline on every test set")
    ev.add_argument("--pipeline", type=_named, action="append", required=True, help="NAME=PATH, repeatable")
    ev.add_argument("--test-dir", type=Path, required=True)
    ev.add_argument("--output-dir", type=Path, required=True)
    ev.add_argument("--gpu-id", type=int, default=-1)

    rep = commands.add_parser("report", help="markdown table with paired significance tests")
    rep.add_argument("--system", type=_named, required=True, help="NAME=PATH of the system under test")
    rep.add_argument("--baseline", type=_named, action="append", required=True, help="NAME=PATH, repeatable")
    rep.add_argument("--test-dir", type=Path, required=True)
    rep.add_argument("--metrics-dir", type=Path, required=True, help="where `evaluate` wrote its JSON")
    rep.add_argument("--output", type=Path, required=True)
    rep.add_argument("--json-output", type=Path, default=None)
    rep.add_argument("--generative", type=_named, action="append", default=[],
                     help="NAME=RESULT.json of `fillm_spacy.llm.finetune evaluate --predictions`, repeatable")
    rep.add_argument("--generative-dir", type=Path, default=None,
                     help="every NAME.json with predictions here joins as --generative NAME=... (absent: none)")
    rep.add_argument("--n-resamples", type=int, default=10000)
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--confidence", type=float, default=0.95)
    rep.add_argument("--gpu-id", type=int, default=-1)

    args = parser.parse_args(argv)
    if args.command == "report" and args.generative_dir is not None and args.generative_dir.is_dir():
        args.generative += [(path.stem, str(path)) for path in sorted(args.generative_dir.glob("*.json"))]
    if args.command == "evaluate":
        names = [name for name, _ in args.pipeline]
        if len(set(names)) != len(names):
            parser.error(f"duplicate pipeline names: {names}")
        evaluate(args.pipeline, args.test_dir, args.output_dir, args.gpu_id)
    else:
        names = [args.system[0]] + [name for name, _ in args.baseline] + [name for name, _ in args.generative]
        if len(set(names)) != len(names):
            parser.error(f"duplicate system names: {names}")
        report(args.system, args.baseline, args.test_dir, args.metrics_dir, args.output, args.json_output,
               generative=args.generative, n_resamples=args.n_resamples, seed=args.seed, confidence=args.confidence, gpu_id=args.gpu_id)


if __name__ == "__main__":
    main()
