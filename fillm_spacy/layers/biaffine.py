"""Deep biaffine attention for dependency parsing (Dozat & Manning 2017), as a thinc model.

token vectors (from a tok2vec listener) ─► split into sentences, learned ROOT prepended ─►
dropout ─► four MLPs (arc-dep, arc-head, label-dep, label-head) ─► biaffine arc scorer
(n+1 × n+1 per sentence) and biaffine label scorer (n+1 × n+1 × labels per sentence in training;
at inference only at each dependent's chosen head, n × labels, once the tree is decoded).

The neural part is torch (wrapped with PyTorchWrapper_v3): scores and the training loss stay in
torch on the padded groups, on the model's device. The spaCy component (fillm_spacy.pipeline.parser)
chooses the sentences, builds the gold targets and decodes trees (only arc scores go to the host);
the loss's backward flows through this model into the listener and from there into the encoder.
"""

import io
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v3, torch2xp, xp2torch
from thinc.types import Floats2d

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
        weight = torch.zeros((n_out, *self.weight.shape[1:]), dtype=self.weight.dtype, device=self.weight.device)
        kept = min(n_out, self.n_out)
        weight[:kept] = self.weight.detach()[:kept]
        self.weight = torch.nn.Parameter(weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = self._with_bias(x, y)
        return torch.einsum("bxi,oij,byj->boxy", x, self.weight, y)

    def score_pairs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """s[b, i, o] = [x_i; 1]ᵀ W_o [y_i; 1]: the i-th row of x against the i-th row of y only
        (forward's diagonal, without the other pairs' cost)."""
        x, y = self._with_bias(x, y)
        return torch.einsum("bxi,oij,bxj->bxo", x, self.weight, y)

    def _with_bias(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.bias_x:
            x = torch.cat([x, x.new_ones((*x.shape[:-1], 1))], dim=-1)
        if self.bias_y:
            y = torch.cat([y, y.new_ones((*y.shape[:-1], 1))], dim=-1)
        return x, y


@dataclass
class ScoredGroup:
    """Scores of a group of sentences padded to the longest (torch, on the model's device).

    sentences: the sentences' indices in the batch; lengths: their tokens. arcs[g, d, h] scores
    head h for dependent d of sentence g, labels[g, d, h, k] label k on that arc; index 0 is the
    ROOT, i the sentence's i-th token; cells beyond a sentence's length are padding.
    At inference labels is None: every label of every arc is what the loss needs, but a tree
    needs one arc per dependent, so the group keeps the label MLPs' outputs and the label scorer,
    and `best_labels` scores the chosen arcs only (no tensor of every label on every arc).
    """

    sentences: List[int]
    lengths: List[int]
    arcs: torch.Tensor  # (G, L+1, L+1)
    labels: Optional[torch.Tensor]  # (G, L+1, L+1, n_labels) in training
    spans: List["SentenceSpan"] = field(default_factory=list)  # (doc, start, end) of each sentence
    label_dep: Optional[torch.Tensor] = None  # (G, L+1, label MLP width) at inference
    label_head: Optional[torch.Tensor] = None  # (G, L+1, label MLP width) at inference
    label_scorer: Optional["Biaffine"] = None  # the model's label Biaffine, at inference


class BiaffineDependencyModel(torch.nn.Module):
    """Scores every (dependent, head) arc and every label of every arc, on padded groups of
    sentences, and their training loss (SuPar's layout: scoring and loss here, tree decoding in
    the component).

    Input: the token vectors of all sentences concatenated, and the sentence lengths.
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

    def forward(self, tokens: torch.Tensor, lengths: List[int]) -> List[ScoredGroup]:
        sentences = torch.split(tokens, lengths)
        groups = []
        for group in group_by_length(lengths, MAX_GROUP_CELLS):
            groups.append(self.score_padded([sentences[i] for i in group], group, [lengths[i] for i in group]))
        return groups

    def score_padded(self, sentences: List[torch.Tensor], indices: List[int], lengths: List[int]) -> ScoredGroup:
        """Scores of sentences padded to the longest; cells of padding are garbage, masked or
        sliced away by their readers (every layer is position-wise or pairwise, so padding never
        leaks into a real cell)."""
        with_root = [torch.cat([self.root[None, :].to(s.dtype), s]) for s in sentences]
        x = self.input_dropout(torch.nn.utils.rnn.pad_sequence(with_root, batch_first=True))
        arcs = self.arc_attn(self.arc_mlp_dep(x), self.arc_mlp_head(x)).squeeze(1)
        label_dep, label_head = self.label_mlp_dep(x), self.label_mlp_head(x)
        if self.training:
            return ScoredGroup(indices, lengths, arcs, self.label_attn(label_dep, label_head).permute(0, 2, 3, 1))
        return ScoredGroup(
            indices, lengths, arcs, None, label_dep=label_dep, label_head=label_head, label_scorer=self.label_attn
        )

    @staticmethod
    def loss(group: ScoredGroup, arc_targets: torch.Tensor, label_targets: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy of each dependent's gold head among the sentence's positions
        (ROOT included, itself and padding excluded), plus that of its gold label at the gold
        head. arc_targets, label_targets: (G, L) per dependent 1..L, IGNORE where there is no
        target (padding, a missing or unusable gold head or label)."""
        arcs = group.arcs[:, 1:].float()  # row d-1 = dependent d; the ROOT is never a dependent
        _, longest, n_heads = arcs.shape
        device = arcs.device
        lengths = torch.as_tensor(group.lengths, device=device)
        heads = torch.arange(n_heads, device=device)
        dependents = torch.arange(1, longest + 1, device=device)
        impossible = (heads[None, None, :] > lengths[:, None, None]) | (
            heads[None, None, :] == dependents[None, :, None]
        )
        arcs = arcs.masked_fill(impossible, float("-inf"))  # every row keeps the ROOT: never all -inf
        arc_targets, label_targets = arc_targets.to(device), label_targets.to(device)
        total = F.cross_entropy(
            arcs.reshape(-1, n_heads), arc_targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
        )
        n_labels = group.labels.shape[-1]
        if n_labels and bool((label_targets != IGNORE).any()):
            at_gold = arc_targets.clamp(min=0)[:, :, None, None].expand(-1, -1, 1, n_labels)
            chosen = group.labels[:, 1:].gather(2, at_gold).squeeze(2).float()
            total = total + F.cross_entropy(
                chosen.reshape(-1, n_labels), label_targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
            )
        return total

    @staticmethod
    def best_labels(group: ScoredGroup, heads: torch.Tensor) -> torch.Tensor:
        """(G, L) the best label of each dependent's arc to `heads` (G, L: 0 = ROOT)."""
        if group.labels is not None:
            heads = heads.to(group.labels.device)[:, :, None, None].expand(-1, -1, 1, group.labels.shape[-1])
            return group.labels[:, 1:].gather(2, heads).squeeze(2).argmax(dim=-1)
        heads = heads.to(group.label_head.device)[:, :, None].expand(-1, -1, group.label_head.shape[-1])
        at_head = group.label_head.gather(1, heads)  # (G, L, width): each dependent's chosen head
        return group.label_scorer.score_pairs(group.label_dep[:, 1:], at_head).argmax(dim=-1)


# Target of a dependent without one (cross_entropy's ignore_index).
IGNORE = -100


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


# (doc index, start, end) of one sentence of a batch: the parser component chooses them.
SentenceSpan = Tuple[int, int, int]


def biaffine_parser_v1(
    tok2vec: Model[List[Doc], List[Floats2d]],
    arc_mlp_width: int = 500,
    label_mlp_width: int = 100,
    dropout: float = 0.33,
    nO: Optional[int] = None,
) -> Model[Tuple[List[Doc], List[SentenceSpan]], List[ScoredGroup]]:
    """`fillm.BiaffineParser.v1`: arc and label scores of the given sentences of a batch of docs.

    Input: the docs and their sentences, (doc index, start, end), covering every token of every
    doc in order (the component chooses them). Output: the scores as `ScoredGroup`s; in training,
    backprop takes the loss tensor computed from them (`BiaffineDependencyModel.loss`).

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
        convert_outputs=_scores_stay_in_torch,
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


def init(model: Model, X=None, Y=None) -> Model:
    docs = X[0] if isinstance(X, tuple) else X  # (docs, sentences) or docs alone
    model.get_ref("tok2vec").initialize(X=docs)
    n_labels = model.maybe_get_dim("nO")
    if n_labels is not None:
        resize_output(model, n_labels)
    return model


def forward(
    model: Model, inputs: Tuple[List[Doc], List[SentenceSpan]], is_train: bool
) -> Tuple[List[ScoredGroup], Callable]:
    docs, spans = inputs
    tok2vec = model.get_ref("tok2vec")
    scorer = model.get_ref("scorer")
    vectors, backprop_tok2vec = tok2vec(docs, is_train)
    doc_lengths = [len(doc) for doc in docs]
    lengths = [end - start for _, start, end in spans]
    if sum(lengths) != sum(doc_lengths):
        raise ValueError("The parser's sentences must cover every token of every doc, in order.")
    width = model.get_dim("nI")

    if not spans:

        def backprop_nothing(d_loss) -> List[Floats2d]:
            return backprop_tok2vec([model.ops.alloc2f(n, width) for n in doc_lengths])

        return [], backprop_nothing

    tokens = model.ops.xp.concatenate([v for v in vectors if len(v)])
    groups, backprop_scorer = scorer((tokens, lengths), is_train)
    for group in groups:
        group.spans = [spans[i] for i in group.sentences]

    def backprop(d_loss: torch.Tensor) -> List[Floats2d]:
        d_tokens = backprop_scorer(d_loss)
        d_vectors, offset = [], 0
        for n in doc_lengths:
            d_vectors.append(d_tokens[offset : offset + n])
            offset += n
        return backprop_tok2vec(d_vectors)

    return groups, backprop


def _tokens_to_torch(model: Model, inputs: Tuple[Floats2d, List[int]], is_train: bool):
    tokens, lengths = inputs
    tokens_torch = xp2torch(tokens, requires_grad=is_train)

    def get_d_tokens(d_inputs: ArgsKwargs) -> Floats2d:
        d_tokens = d_inputs.args[0]
        if d_tokens is None:  # nothing reached the inputs (e.g. an all-zero loss)
            return model.ops.alloc2f(*tokens.shape)
        return model.ops.asarray2f(torch2xp(d_tokens))

    return ArgsKwargs(args=(tokens_torch, lengths), kwargs={}), get_d_tokens


def _scores_stay_in_torch(model: Model, inputs_outputs, is_train: bool):
    """The scores go to the component as torch tensors on the model's device; what comes back
    is the loss tensor the component computed from them, whose backward is the backprop."""
    _, groups = inputs_outputs

    def get_d_outputs(loss: torch.Tensor) -> ArgsKwargs:
        return ArgsKwargs(args=((loss,),), kwargs={"grad_tensors": (torch.ones_like(loss),)})

    return groups, get_d_outputs


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


def _deserialize_resizing_labels(
    module: BiaffineDependencyModel, state_bytes: bytes, device
) -> BiaffineDependencyModel:
    """Load saved weights, first giving the label scorer the saved number of labels: a freshly
    built model (before initialize) does not know its labels yet."""
    state = _load_state(state_bytes, device)
    module.resize_labels(state["label_attn.weight"].shape[0])
    module.load_state_dict(state)
    module.to(device)
    return module
