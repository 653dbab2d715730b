"""Deep biaffine attention for dependency parsing (Dozat & Manning 2017), as a thinc model.

token vectors (from a tok2vec listener) ─► split into sentences, learned ROOT prepended ─►
dropout ─► four MLPs (arc-dep, arc-head, label-dep, label-head) ─► biaffine arc scorer
(n+1 × n+1 per sentence) and biaffine label scorer (n+1 × n+1 × labels per sentence).

The neural part is torch (wrapped with PyTorchWrapper_v3); losses and tree decoding live in
the spaCy component (fillm_spacy.pipeline.parser), so gradients flow from the component through
this model into the listener and from there into the encoder's LoRA adapter.
"""
import io
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v3, torch2xp, xp2torch
from thinc.types import Floats2d, Floats3d

from .weights import module_to_bytes, tensors_from_bytes

# Score cells computed per padded group of sentences (group size × (longest + 1)²): bounds the
# memory of the label tensor when one long sentence shares a batch with many short ones.
MAX_GROUP_CELLS = 1 << 18


class MLP(torch.nn.Module):
    """Linear → LeakyReLU → dropout: the paper's reduction of a token vector to one role."""

    def __init__(self, n_in: int, n_out: int, dropout: float):
        super().__init__()
        self.linear = torch.nn.Linear(n_in, n_out)
        self.activation = torch.nn.LeakyReLU(negative_slope=0.1)
        self.dropout = torch.nn.Dropout(dropout)
        torch.nn.init.orthogonal_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.linear(x)))


class Biaffine(torch.nn.Module):
    """s[b, o, i, j] = [x_i; 1]ᵀ W_o [y_j; 1] (the ones only where bias_x / bias_y).

    With bias_x, the scorer learns a prior for each head regardless of the dependent
    (some words are better heads); with bias_y, a prior for each dependent.
    """

    def __init__(self, n_in: int, n_out: int = 1, bias_x: bool = True, bias_y: bool = True):
        super().__init__()
        self.n_in, self.bias_x, self.bias_y = n_in, bias_x, bias_y
        # Zero start (as in the paper's code): all heads equally likely until the MLPs learn.
        self.weight = torch.nn.Parameter(torch.zeros(n_out, n_in + bias_x, n_in + bias_y))

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]

    def resize(self, n_out: int) -> None:
        """Change the number of outputs, keeping the weights of the outputs that stay."""
        if n_out == self.n_out:
            return
        weight = torch.zeros(
            (n_out, *self.weight.shape[1:]), dtype=self.weight.dtype, device=self.weight.device
        )
        kept = min(n_out, self.n_out)
        weight[:kept] = self.weight.detach()[:kept]
        self.weight = torch.nn.Parameter(weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.bias_x:
            x = torch.cat([x, x.new_ones((*x.shape[:-1], 1))], dim=-1)
        if self.bias_y:
            y = torch.cat([y, y.new_ones((*y.shape[:-1], 1))], dim=-1)
        return torch.einsum("bxi,oij,byj->boxy", x, self.weight, y)


class BiaffineDependencyModel(torch.nn.Module):
    """Scores every (dependent, head) arc and every label of every arc, sentence by sentence.

    Input: the token vectors of all sentences concatenated, and the sentence lengths.
    Output: per sentence, arc scores (n+1, n+1) indexed [dependent, head] and label scores
    (n+1, n+1, n_labels); index 0 is the ROOT, index i the sentence's i-th token.
    """

    def __init__(self, n_in: int, n_labels: int, arc_mlp_width: int, label_mlp_width: int, dropout: float):
        super().__init__()
        # A learned vector plays the ROOT so that "attach to root" is scored like any other head.
        self.root = torch.nn.Parameter(torch.randn(n_in) * 0.1)
        self.input_dropout = torch.nn.Dropout(dropout)
        self.arc_mlp_dep = MLP(n_in, arc_mlp_width, dropout)
        self.arc_mlp_head = MLP(n_in, arc_mlp_width, dropout)
        self.label_mlp_dep = MLP(n_in, label_mlp_width, dropout)
        self.label_mlp_head = MLP(n_in, label_mlp_width, dropout)
        # No bias_y for arcs: a per-dependent constant does not change which head wins.
        self.arc_attn = Biaffine(arc_mlp_width, 1, bias_x=True, bias_y=False)
        self.label_attn = Biaffine(label_mlp_width, n_labels, bias_x=True, bias_y=True)

    @property
    def n_labels(self) -> int:
        return self.label_attn.n_out

    def resize_labels(self, n_labels: int) -> None:
        self.label_attn.resize(n_labels)

    def forward(self, tokens: torch.Tensor, lengths: List[int]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        sentences = torch.split(tokens, lengths)
        arcs: List[Optional[torch.Tensor]] = [None] * len(lengths)
        labels: List[Optional[torch.Tensor]] = [None] * len(lengths)
        for group in group_by_length(lengths, MAX_GROUP_CELLS):
            group_arcs, group_labels = self.score_padded([sentences[i] for i in group])
            for row, index in enumerate(group):
                size = lengths[index] + 1
                arcs[index] = group_arcs[row, :size, :size]
                labels[index] = group_labels[row, :size, :size]
        return arcs, labels

    def score_padded(self, sentences: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scores of sentences padded to the longest; cells of padding are garbage, sliced away
        by the caller (every layer is position-wise or pairwise, so padding never leaks in)."""
        with_root = [torch.cat([self.root[None, :].to(s.dtype), s]) for s in sentences]
        x = self.input_dropout(torch.nn.utils.rnn.pad_sequence(with_root, batch_first=True))
        arc_scores = self.arc_attn(self.arc_mlp_dep(x), self.arc_mlp_head(x)).squeeze(1)
        label_scores = self.label_attn(self.label_mlp_dep(x), self.label_mlp_head(x)).permute(0, 2, 3, 1)
        return arc_scores, label_scores


def group_by_length(lengths: List[int], max_cells: int) -> List[List[int]]:
    """Sentence indices grouped, longest first, so that each padded group stays under max_cells."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: List[List[int]] = []
    for index in order:  # a group's first sentence is its longest
        if groups and (len(groups[-1]) + 1) * (lengths[groups[-1][0]] + 1) ** 2 <= max_cells:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


@dataclass
class SentenceScores:
    """The scores of one sentence of a batch: which doc, where, and its score arrays."""

    doc_index: int
    start: int  # token offset of the sentence in its doc
    arcs: Floats2d  # (n+1, n+1): [dependent, head], 0 = ROOT
    labels: Floats3d  # (n+1, n+1, n_labels): [dependent, head, label]

    @property
    def end(self) -> int:
        return self.start + self.arcs.shape[0] - 1


# The gradient of one sentence's scores: (d_arcs, d_labels), shaped like (arcs, labels).
SentenceGradient = Tuple[Floats2d, Floats3d]


# Longest stretch parsed as one tree. Scores grow with the square of the length (times the
# labels), so a 10k-token doc without sentence boundaries would need gigabytes; UD sentences
# are far shorter, so longer stretches are cut into pieces that are each a tree.
MAX_SENTENCE_TOKENS = 256


def sentence_bounds(doc: Doc) -> List[Tuple[int, int]]:
    """(start, end) of each sentence: a new sentence at every token marked as a sentence start,
    and every MAX_SENTENCE_TOKENS tokens within a longer one.

    A doc without sentence boundaries (no senter ran) is one sentence (cut the same way).
    """
    if len(doc) == 0:
        return []
    starts = [0] + [token.i for token in doc[1:] if token.is_sent_start]
    bounds = []
    for start, end in zip(starts, starts[1:] + [len(doc)]):
        bounds.extend((cut, min(cut + MAX_SENTENCE_TOKENS, end)) for cut in range(start, end, MAX_SENTENCE_TOKENS))
    return bounds


def biaffine_parser_v1(
    tok2vec: Model[List[Doc], List[Floats2d]],
    arc_mlp_width: int = 500,
    label_mlp_width: int = 100,
    dropout: float = 0.33,
    nO: Optional[int] = None,
) -> Model[List[Doc], List[SentenceScores]]:
    """`fillm.BiaffineParser.v1`: arc and label scores for every sentence of a batch of docs.

    tok2vec: token vectors, normally `spacy.Tok2VecListener.v1` reading the `tok2vec` component.
        Its width (nO) must be known when the model is built.
    arc_mlp_width, label_mlp_width: widths of the arc and label MLPs (the paper: 500 and 100).
    dropout: dropout on the token vectors and after every MLP (the paper: 0.33).
    nO: number of labels; None = set by the component from its labels at initialize.
    """
    n_in = tok2vec.maybe_get_dim("nO")
    if not n_in:
        raise ValueError(
            "fillm.BiaffineParser.v1 needs the width of its tok2vec (nO) when it is built: "
            "set `width` on the spacy.Tok2VecListener.v1 to the upstream tok2vec's width."
        )
    module = BiaffineDependencyModel(n_in, nO or 0, arc_mlp_width, label_mlp_width, dropout)
    scorer = PyTorchWrapper_v3(
        module,
        convert_inputs=_tokens_to_torch,
        convert_outputs=_scores_to_arrays,
        serialize_model=module_to_bytes,
        deserialize_model=_deserialize_resizing_labels,
    )
    return Model(
        "biaffine_parser",
        forward,
        init=init,
        layers=[tok2vec, scorer],
        refs={"tok2vec": tok2vec, "scorer": scorer},
        dims={"nI": n_in, "nO": nO},
        attrs={"resize_output": resize_output},
    )


def resize_output(model: Model, n_labels: int) -> Model:
    """Set the number of labels (keeping the trained weights of the labels that stay)."""
    scorer = model.get_ref("scorer")
    scorer.shims[0]._model.resize_labels(n_labels)
    model.set_dim("nO", n_labels, force=True)
    return model


def init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> Model:
    model.get_ref("tok2vec").initialize(X=X)
    n_labels = model.maybe_get_dim("nO")
    if n_labels is not None:
        resize_output(model, n_labels)
    return model


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[SentenceScores], Callable]:
    tok2vec = model.get_ref("tok2vec")
    scorer = model.get_ref("scorer")
    vectors, backprop_tok2vec = tok2vec(docs, is_train)
    spans = [(i, start, end) for i, doc in enumerate(docs) for start, end in sentence_bounds(doc)]
    doc_lengths = [len(doc) for doc in docs]
    width = model.get_dim("nI")

    if not spans:
        def backprop_nothing(d_scores: List[SentenceGradient]) -> List[Floats2d]:
            return backprop_tok2vec([model.ops.alloc2f(n, width) for n in doc_lengths])

        return [], backprop_nothing

    tokens = model.ops.xp.concatenate([v for v in vectors if len(v)])
    (arcs, labels), backprop_scorer = scorer((tokens, [end - start for _, start, end in spans]), is_train)
    scores = [
        SentenceScores(doc_index=i, start=start, arcs=a, labels=l)
        for (i, start, _), a, l in zip(spans, arcs, labels)
    ]

    def backprop(d_scores: List[SentenceGradient]) -> List[Floats2d]:
        d_tokens = backprop_scorer(d_scores)
        d_vectors, offset = [], 0
        for n in doc_lengths:
            d_vectors.append(d_tokens[offset : offset + n])
            offset += n
        return backprop_tok2vec(d_vectors)

    return scores, backprop


def _tokens_to_torch(model: Model, inputs: Tuple[Floats2d, List[int]], is_train: bool):
    tokens, lengths = inputs
    tokens_torch = xp2torch(tokens, requires_grad=is_train)

    def get_d_tokens(d_inputs: ArgsKwargs) -> Floats2d:
        d_tokens = d_inputs.args[0]
        if d_tokens is None:  # nothing reached the inputs (e.g. an all-zero loss)
            return model.ops.alloc2f(*tokens.shape)
        return model.ops.asarray2f(torch2xp(d_tokens))

    return ArgsKwargs(args=(tokens_torch, lengths), kwargs={}), get_d_tokens


def _scores_to_arrays(model: Model, inputs_outputs, is_train: bool):
    _, (arcs, labels) = inputs_outputs
    arc_arrays = [model.ops.asarray2f(torch2xp(a.detach())) for a in arcs]
    label_arrays = [model.ops.asarray3f(torch2xp(l.detach())) for l in labels]

    def get_d_outputs(d_scores: List[SentenceGradient]) -> ArgsKwargs:
        outputs, grads = [], []
        for tensor_pair, grad_pair in zip(zip(arcs, labels), d_scores):
            for tensor, grad in zip(tensor_pair, grad_pair):
                if tensor.requires_grad and tensor.numel():
                    outputs.append(tensor)
                    grads.append(xp2torch(model.ops.asarray(grad), device=tensor.device))
        return ArgsKwargs(args=(outputs,), kwargs={"grad_tensors": grads})

    return (arc_arrays, label_arrays), get_d_outputs


def _load_state(state_bytes: bytes, device) -> dict:
    from safetensors import SafetensorError

    if _looks_like_safetensors(state_bytes):
        try:
            return {name: tensor.to(device) for name, tensor in tensors_from_bytes(state_bytes).items()}
        except SafetensorError as error:
            raise ValueError(
                f"The biaffine parser's weights are damaged safetensors ({error}): re-train the parser."
            ) from None
    # Saved by an earlier fillm_spacy with torch.save: a plain state dict loads without
    # unpickling arbitrary objects; anything else is refused, never executed.
    try:
        return torch.load(io.BytesIO(state_bytes), map_location=device, weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError, ... depending on the payload
        raise ValueError(
            "The biaffine parser's weights are neither safetensors nor a plain torch.save state dict "
            f"({type(error).__name__}), so they are not loaded: re-train the parser."
        ) from None


def _looks_like_safetensors(data: bytes) -> bool:
    """safetensors starts with the JSON header's length (8 bytes, little-endian), then its '{';
    torch.save's zip archive or pickle never has a '{' there."""
    return len(data) >= 10 and data[8:9] == b"{" and 8 + int.from_bytes(data[:8], "little") <= len(data)


def _deserialize_resizing_labels(module: BiaffineDependencyModel, state_bytes: bytes, device) -> BiaffineDependencyModel:
    """Load saved weights, first giving the label scorer the saved number of labels: a freshly
    built model (before initialize) does not know its labels yet."""
    state = _load_state(state_bytes, device)
    module.resize_labels(state["label_attn.weight"].shape[0])
    module.load_state_dict(state)
    module.to(device)
    return module
