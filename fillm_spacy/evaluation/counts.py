"""Per-doc (tp, fp, fn) counts of every metric, mirroring spaCy's Scorer (spacy/scorer.py and the
components' scorers): the same alignment, missing values and ignored labels, so that summing a
metric's counts over docs gives spaCy's corpus score, and the counts of one doc are what the
paired tests resample.

Every test DocBin holds one sentence per doc (calamanCy's `-n 1` protocol), so "per doc" is
"per sentence".
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

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


def counts_array(per_doc: Sequence[Dict], counter: str, mask: Sequence[bool]) -> np.ndarray:
    """The (n, 3) counts of one counter over the docs `mask` keeps."""
    rows = [per_doc[i][counter] for i, keep in enumerate(mask) if keep]
    return np.asarray(rows, dtype=float).reshape(-1, 3)
