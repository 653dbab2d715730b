"""`fillm_parser`: a graph-based dependency parser (deep biaffine attention) for spaCy.

It reads token vectors through a `spacy.Tok2VecListener.v1` (normally the `tok2vec` component
running `fillm.LLMEncoder.v1`), scores every arc and label with `fillm.BiaffineParser.v1`,
and decodes one maximum spanning tree per sentence (pipeline/mst.py). Sentences come from
the doc's sentence starts (a `senter` before it); a doc without any is one sentence.
"""
from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
from spacy.attrs import DEP, HEAD
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ..layers.biaffine import SentenceGradient, SentenceScores
from .mst import decode_tree

# The label of a sentence's root. The tree decides which token is the root, so it is not one
# of the learned labels; lowercase like UD-trained pipelines (spaCy's scorer ignores case).
ROOT_LABEL = "root"
# The label of a non-root arc when the parser has no labels (never initialized): UD's "unspecified".
UNLABELLED = "dep"
_ROOT_ID = -1
_UNLABELLED_ID = -2

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "fillm.BiaffineParser.v1"
arc_mlp_width = 500
label_mlp_width = 100
dropout = 0.33
nO = null

[model.tok2vec]
@architectures = "spacy.Tok2VecListener.v1"
width = 256
upstream = "*"
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]

# One doc's parse: absolute head index per token, and label id per token (_ROOT_ID for roots).
DocParse = Tuple[np.ndarray, np.ndarray]


@Language.factory(
    "fillm_parser",
    assigns=["token.dep", "token.head", "token.is_sent_start", "doc.sents"],
    default_config={"model": DEFAULT_MODEL, "scorer": {"@scorers": "spacy.parser_scorer.v1"}},
    default_score_weights={
        "dep_uas": 0.5,
        "dep_las": 0.5,
        "dep_las_per_type": None,
        "sents_p": None,
        "sents_r": None,
        "sents_f": 0.0,
    },
)
def make_fillm_parser(nlp: Language, name: str, model: Model, scorer: Optional[Callable]) -> "BiaffineParser":
    """A biaffine dependency parser. model: `fillm.BiaffineParser.v1` (or any model with the
    same output); scorer: defaults to spaCy's own parser scorer (dep_uas, dep_las, sents_f...)."""
    return BiaffineParser(nlp.vocab, model, name, scorer=scorer)


class BiaffineParser(TrainablePipe):
    """Dozat & Manning's graph-based parser as a spaCy component: heads and deps per token."""

    def __init__(self, vocab: Vocab, model: Model, name: str = "fillm_parser", *, scorer: Optional[Callable] = None):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.cfg: Dict[str, object] = {"labels": []}
        self.scorer = scorer

    @property
    def labels(self) -> Tuple[str, ...]:
        """The dependency labels of non-root arcs (the root label is always `root`)."""
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> Tuple[str, ...]:
        return self.labels

    def add_label(self, label: str) -> int:
        if not isinstance(label, str):
            raise ValueError(f"A dependency label must be a string, got {type(label).__name__}")
        if label in self.labels:
            return 0
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        if self.model.maybe_get_dim("nO") is not None:  # already sized: grow the label scorer
            self.set_output(len(self.labels))
        return 1

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Iterable[str]] = None,
    ) -> None:
        """Collect labels from the gold parses (or take `labels`, e.g. from `spacy init labels`)
        and size the label scorer."""
        validate_get_examples(get_examples, "BiaffineParser.initialize")
        if labels is None:
            found = set()
            for example in get_examples():
                for token in example.reference:
                    if token.dep_ and token.head.i != token.i and token.dep_.lower() != ROOT_LABEL:
                        found.add(token.dep_)
            labels = sorted(found)
        for label in labels:
            self.add_label(label)
        self.set_output(len(self.labels))
        doc_sample = [example.predicted for example in islice(get_examples(), 10)]
        self.model.initialize(X=doc_sample)

    def predict(self, docs: Iterable[Doc]) -> List[DocParse]:
        """The best single-rooted tree of every sentence, with the best label of every arc."""
        docs = list(docs)
        parses = [
            (np.arange(len(doc), dtype=np.int64), np.full(len(doc), _ROOT_ID, dtype=np.int64)) for doc in docs
        ]
        if not any(len(doc) for doc in docs):
            return parses
        for sentence in self.model.predict(docs):
            heads, label_ids = self._decode_sentence(sentence)
            doc_heads, doc_label_ids = parses[sentence.doc_index]
            doc_heads[sentence.start : sentence.end] = heads
            doc_label_ids[sentence.start : sentence.end] = label_ids
        return parses

    def _decode_sentence(self, sentence: SentenceScores) -> Tuple[np.ndarray, np.ndarray]:
        """Absolute heads (a root heads itself, as in spaCy) and label ids of one sentence."""
        ops = self.model.ops
        heads = decode_tree(ops.to_numpy(sentence.arcs))
        n = len(heads)
        positions = np.arange(n)
        is_root = heads == 0
        absolute_heads = np.where(is_root, sentence.start + positions, sentence.start + heads - 1)
        if self.labels:
            label_scores = ops.to_numpy(sentence.labels)[positions + 1, heads]
            label_ids = np.where(is_root, _ROOT_ID, label_scores.argmax(axis=1))
        else:
            label_ids = np.where(is_root, _ROOT_ID, _UNLABELLED_ID)
        return absolute_heads, label_ids

    def set_annotations(self, docs: Iterable[Doc], parses: List[DocParse]) -> None:
        labels = self.labels
        for doc, (heads, label_ids) in zip(docs, parses):
            if len(doc) == 0:
                continue
            deps = [
                ROOT_LABEL if i == _ROOT_ID else UNLABELLED if i == _UNLABELLED_ID else labels[i] for i in label_ids
            ]
            array = np.empty((len(doc), 2), dtype=np.uint64)
            # HEAD is stored relative to the token; negative offsets wrap in uint64 as spaCy expects.
            array[:, 0] = (heads - np.arange(len(doc))).astype(np.int64).astype(np.uint64)
            array[:, 1] = [self.vocab.strings.add(dep) for dep in deps]
            doc.from_array([HEAD, DEP], array)

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "BiaffineParser.update")
        if not any(len(example.predicted) for example in examples):
            return losses
        set_dropout_rate(self.model, drop)
        scores, backprop = self.model.begin_update(training_docs(examples))
        loss, d_scores = self.get_loss(examples, scores)
        backprop(d_scores)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: List[SentenceScores]) -> Tuple[float, List[SentenceGradient]]:
        """Cross-entropy of the gold head among all heads of the sentence, plus cross-entropy
        of the gold label at the gold head. Tokens whose gold head or label is missing, whose
        gold head lies outside their (predicted) sentence, or whose label was not seen at
        initialize add nothing to that part of the loss."""
        examples = list(examples)
        validate_examples(examples, "BiaffineParser.get_loss")
        label_ids = {label: i for i, label in enumerate(self.labels)}
        gold = [gold_targets(example, label_ids) for example in examples]
        ops = self.model.ops
        total = 0.0
        gradients: List[SentenceGradient] = []
        for sentence in scores:
            gold_heads, gold_labels = gold[sentence.doc_index]
            arc_targets = sentence_arc_targets(gold_heads, sentence.start, sentence.end)
            label_targets = np.where(arc_targets > 0, gold_labels[sentence.start : sentence.end], -1)
            arc_loss, d_arcs = arc_cross_entropy(ops.to_numpy(sentence.arcs), arc_targets)
            label_loss, d_labels = label_cross_entropy(ops.to_numpy(sentence.labels), arc_targets, label_targets)
            total += arc_loss + label_loss
            gradients.append((ops.asarray2f(d_arcs), ops.asarray3f(d_labels)))
        if np.isnan(total):
            raise ValueError(f"NaN loss in '{self.name}': the parser's model diverged (lower the learning rate).")
        return float(total), gradients


def training_docs(examples: List[Example]) -> List[Doc]:
    """The docs to parse during training: the predicted docs, but where one has no sentence
    boundaries (no senter annotated it) and the gold has, a copy with the gold boundaries:
    corpora come as multi-sentence docs, and one tree per many-sentence doc is not what the
    parser must learn. Copies keep the tokens, so the tok2vec listener still matches them."""
    docs = []
    for example in examples:
        doc = example.predicted
        if len(doc) > 1 and not doc.has_annotation("SENT_START") and example.reference.has_annotation("SENT_START"):
            starts = example.get_aligned_sent_starts()
            doc = doc.copy()
            for token, is_start in zip(doc, starts):
                token.is_sent_start = is_start
        docs.append(doc)
    return docs


def gold_targets(example: Example, label_ids: Dict[str, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Per predicted token: gold head index (itself for a root, -1 when missing or misaligned)
    and gold label id (-1 when missing, unseen at initialize, or the root label)."""
    heads, deps = example.get_aligned_parse(projectivize=False)
    gold_heads = np.full(len(heads), -1, dtype=np.int64)
    gold_labels = np.full(len(heads), -1, dtype=np.int64)
    for i, (head, dep) in enumerate(zip(heads, deps)):
        if head is None or not dep:  # spaCy marks a missing head as: head = self, dep = ""
            continue
        gold_heads[i] = head
        gold_labels[i] = label_ids.get(dep, -1)
    return gold_heads, gold_labels


def sentence_arc_targets(gold_heads: np.ndarray, start: int, end: int) -> np.ndarray:
    """Gold head of each token of the sentence [start, end) as a score column: 0 = ROOT,
    i = the sentence's i-th token, -1 = no target (missing, or outside the sentence)."""
    heads = gold_heads[start:end]
    positions = np.arange(start, end)
    inside = (heads >= start) & (heads < end)
    return np.where(heads < 0, -1, np.where(heads == positions, 0, np.where(inside, heads - start + 1, -1)))


def arc_cross_entropy(arcs: np.ndarray, targets: np.ndarray) -> Tuple[float, np.ndarray]:
    """Loss and gradient of softmax cross-entropy over each dependent's possible heads
    (every position of the sentence, ROOT included, except itself)."""
    n = len(targets)
    scores = arcs[1:].astype(np.float64)  # row d-1 = dependent d; the ROOT row is never a dependent
    scores[np.arange(n), np.arange(1, n + 1)] = -np.inf
    log_probs = scores - logsumexp(scores)
    d_arcs = np.zeros(arcs.shape, dtype=np.float32)
    rows = np.flatnonzero(targets >= 0)
    if len(rows) == 0:
        return 0.0, d_arcs
    d_rows = np.exp(log_probs[rows])
    d_rows[np.arange(len(rows)), targets[rows]] -= 1.0
    d_arcs[rows + 1] = d_rows
    return float(-log_probs[rows, targets[rows]].sum()), d_arcs


def label_cross_entropy(labels: np.ndarray, arc_targets: np.ndarray, label_targets: np.ndarray) -> Tuple[float, np.ndarray]:
    """Loss and gradient of softmax cross-entropy over labels, at each dependent's gold head."""
    d_labels = np.zeros(labels.shape, dtype=np.float32)
    rows = np.flatnonzero(label_targets >= 0)
    if len(rows) == 0:
        return 0.0, d_labels
    dependents, heads = rows + 1, arc_targets[rows]
    scores = labels[dependents, heads].astype(np.float64)
    log_probs = scores - logsumexp(scores)
    d_cells = np.exp(log_probs)
    d_cells[np.arange(len(rows)), label_targets[rows]] -= 1.0
    d_labels[dependents, heads] = d_cells
    return float(-log_probs[np.arange(len(rows)), label_targets[rows]].sum()), d_labels


def logsumexp(scores: np.ndarray) -> np.ndarray:
    """Row-wise log Σ exp, stable, as a column (rows of scores are never all -inf)."""
    top = scores.max(axis=1, keepdims=True)
    return top + np.log(np.exp(scores - top).sum(axis=1, keepdims=True))
