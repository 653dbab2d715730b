"""`fillm_parser`: a graph-based dependency parser (deep biaffine attention) for spaCy.

It chooses the sentences (the doc's sentence starts, from a `senter` before it; a doc without
any is one sentence; stretches over MAX_SENTENCE_TOKENS are cut), has `fillm.BiaffineParser.v1`
score every arc and label of them through a `spacy.Tok2VecListener.v1` (normally the `tok2vec`
component running `fillm.LLMEncoder.v2`), trains on the loss computed in torch from those scores,
and decodes one maximum spanning tree per sentence (pipeline/mst.py): only the arc scores leave
the model's device.
"""

from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from spacy.attrs import DEP, HEAD
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ..layers.biaffine import IGNORE, BiaffineDependencyModel, ScoredGroup, SentenceSpan
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

# Longest stretch parsed as one tree. Scores grow with the square of the length (times the
# labels), so a 10k-token doc without sentence boundaries would need gigabytes; UD sentences
# are far shorter, so longer stretches are cut into pieces that are each a tree.
MAX_SENTENCE_TOKENS = 256


def sentence_spans(docs: List[Doc]) -> List[SentenceSpan]:
    """(doc index, start, end) of every sentence: a new sentence at every token marked as a
    sentence start, and every MAX_SENTENCE_TOKENS tokens within a longer one. A doc without
    sentence boundaries (no senter ran) is one sentence (cut the same way)."""
    spans = []
    for index, doc in enumerate(docs):
        if len(doc) == 0:
            continue
        starts = [0] + [token.i for token in doc[1:] if token.is_sent_start]
        for start, end in zip(starts, [*starts[1:], len(doc)]):
            spans.extend(
                (index, cut, min(cut + MAX_SENTENCE_TOKENS, end)) for cut in range(start, end, MAX_SENTENCE_TOKENS)
            )
    return spans


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
        parses = [(np.arange(len(doc), dtype=np.int64), np.full(len(doc), _ROOT_ID, dtype=np.int64)) for doc in docs]
        spans = sentence_spans(docs)
        if not spans:
            return parses
        for group in self.model.predict((docs, spans)):
            self._decode_group(group, parses)
        return parses

    def _decode_group(self, group: ScoredGroup, parses: List[DocParse]) -> None:
        """The group's trees and labels (decode_group) written into `parses`."""
        heads, best = decode_group(group, labelled=bool(self.labels))
        for row, ((doc_index, start, end), n) in enumerate(zip(group.spans, group.lengths)):
            sentence_heads = heads[row, :n]
            is_root = sentence_heads == 0
            positions = np.arange(n)
            doc_heads, doc_label_ids = parses[doc_index]
            doc_heads[start:end] = np.where(is_root, start + positions, start + sentence_heads - 1)
            doc_label_ids[start:end] = np.where(
                is_root, _ROOT_ID, best[row, :n] if best is not None else _UNLABELLED_ID
            )

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
        docs = training_docs(examples)
        groups, backprop = self.model.begin_update((docs, sentence_spans(docs)))
        loss, loss_tensor = self.get_loss(examples, groups)
        if loss_tensor is not None:
            backprop(loss_tensor)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: List[ScoredGroup]) -> Tuple[float, Optional[torch.Tensor]]:
        """Cross-entropy of the gold head among all heads of the sentence, plus cross-entropy
        of the gold label at the gold head, summed, in torch on the scores' device: (its value,
        the tensor whose backward trains the model; None when no sentence was scored). Tokens
        whose gold head or label is missing, whose gold head lies outside their (predicted)
        sentence, or whose label was not seen at initialize add nothing to that part."""
        examples = list(examples)
        validate_examples(examples, "BiaffineParser.get_loss")
        if not scores:
            return 0.0, None
        label_ids = {label: i for i, label in enumerate(self.labels)}
        gold = [gold_targets(example, label_ids) for example in examples]
        total = None
        for group in scores:
            arc_targets, label_targets = group_targets(group, gold)
            loss = BiaffineDependencyModel.loss(group, arc_targets, label_targets)
            total = loss if total is None else total + loss
        value = float(total.detach())
        if np.isnan(value):
            raise ValueError(f"NaN loss in '{self.name}': the parser's model diverged (lower the learning rate).")
        return value, total


def decode_group(group: ScoredGroup, labelled: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Trees of a group's sentences from its arc scores (on the host: Chu-Liu/Edmonds), and the
    labels chosen on the model's device at the trees' arcs. Returns heads (G, L: 0 = ROOT, i the
    sentence's i-th token; padding 0) and label ids (G, L), None unless `labelled`."""
    arcs = group.arcs.detach().float().cpu().numpy()
    heads = np.zeros((len(group.lengths), arcs.shape[1] - 1), dtype=np.int64)
    for row, n in enumerate(group.lengths):
        heads[row, :n] = decode_tree(arcs[row, : n + 1, : n + 1])
    if not labelled:
        return heads, None
    with torch.no_grad():
        return heads, BiaffineDependencyModel.best_labels(group, torch.as_tensor(heads)).cpu().numpy()


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


def group_targets(group: ScoredGroup, gold: List[Tuple[np.ndarray, np.ndarray]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(G, L) arc and label targets of a group's dependents 1..L (IGNORE where none): the gold
    head as a score column (0 = ROOT), and the gold label id on non-root arcs."""
    longest = max(group.lengths)
    arc_targets = np.full((len(group.spans), longest), IGNORE, dtype=np.int64)
    label_targets = np.full((len(group.spans), longest), IGNORE, dtype=np.int64)
    for row, (doc_index, start, end) in enumerate(group.spans):
        gold_heads, gold_labels = gold[doc_index]
        arcs = sentence_arc_targets(gold_heads, start, end)
        labels = np.where(arcs > 0, gold_labels[start:end], -1)
        arc_targets[row, : end - start] = np.where(arcs >= 0, arcs, IGNORE)
        label_targets[row, : end - start] = np.where(labels >= 0, labels, IGNORE)
    return torch.from_numpy(arc_targets), torch.from_numpy(label_targets)
