"""A stacked bidirectional LSTM over each document's own tokens, and its thinc layer.

Packed, never padded: torch's LSTM run over a zero-padded batch starts a shorter document's
backward direction in the padding, so a document's vectors would depend on its neighbours in
the batch (and `nlp(text)` would disagree with `nlp.pipe`). Packing runs each document's
sequence alone. The encoder's torch module and the thinc pipelines use this one implementation.
"""

from typing import List, Sequence, Tuple

import torch
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v3, torch2xp, xp2torch
from thinc.types import Floats2d

from .weights import module_to_bytes, tensors_from_bytes


class PackedBiLSTM(torch.nn.Module):
    """Concatenated token rows of several documents → the BiLSTM's output rows, each document
    read on its own (Dozat & Manning 2017's contextualizer: `depth` layers, dropout between)."""

    def __init__(self, n_in: int, width: int, depth: int = 1, dropout: float = 0.0):
        super().__init__()
        if width < 2 or width % 2:
            raise ValueError(
                f"A bidirectional LSTM's width is two directions' worth: need an even width >= 2, got {width}"
            )
        self.width = width
        self.lstm = torch.nn.LSTM(
            n_in,
            width // 2,
            num_layers=depth,
            dropout=dropout if depth > 1 else 0.0,
            batch_first=True,
            bidirectional=True,
        )

    def forward(self, tokens: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
        """tokens: (sum(lengths), n_in), documents one after the other → (sum(lengths), width)."""
        per_doc = [seq for seq in torch.split(tokens, list(lengths)) if len(seq)]
        if not per_doc:
            return tokens.new_zeros((0, self.width)) + 0 * self.lstm.weight_ih_l0.sum()
        packed = torch.nn.utils.rnn.pack_sequence(per_doc, enforce_sorted=False)
        output, _ = self.lstm(packed)
        padded, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True)
        return torch.cat([padded[i, : len(seq)] for i, seq in enumerate(per_doc)])


def packed_bilstm(width: int, n_in: int, depth: int = 1, dropout: float = 0.0) -> Model[List[Floats2d], List[Floats2d]]:
    """A thinc layer over one array per document, its weights saved as safetensors."""
    model = PyTorchWrapper_v3(
        PackedBiLSTM(n_in, width, depth, dropout),
        convert_inputs=arrays_to_rows,
        convert_outputs=rows_to_arrays,
        serialize_model=module_to_bytes,
        deserialize_model=state_from_safetensors,
    )
    model.set_dim("nI", n_in)
    model.set_dim("nO", width)
    return model


def arrays_to_rows(model: Model, arrays: List[Floats2d], is_train: bool) -> Tuple[ArgsKwargs, callable]:
    lengths = [len(a) for a in arrays]
    n_in = model.get_dim("nI")
    rows = model.ops.xp.concatenate(arrays) if arrays else model.ops.alloc2f(0, n_in)
    tokens = xp2torch(model.ops.asarray2f(rows), requires_grad=is_train)

    def backprop(d_inputs: ArgsKwargs) -> List[Floats2d]:
        d_rows = d_inputs.args[0]
        d_rows = torch2xp(d_rows) if d_rows is not None else model.ops.alloc2f(len(rows), n_in)
        return list(model.ops.xp.split(d_rows, model.ops.xp.cumsum(lengths)[:-1])) if arrays else []

    return ArgsKwargs(args=(tokens, lengths), kwargs={}), backprop


def rows_to_arrays(model: Model, inputs_outputs, is_train: bool):
    (arrays, output) = inputs_outputs
    lengths = [len(a) for a in arrays]
    result = [model.ops.asarray2f(torch2xp(t)) for t in torch.split(output.detach(), lengths)]

    def backprop(d_arrays: List[Floats2d]) -> ArgsKwargs:
        d_rows = model.ops.xp.concatenate(d_arrays) if d_arrays else model.ops.alloc2f(0, output.shape[1])
        return ArgsKwargs(args=(output,), kwargs={"grad_tensors": (xp2torch(d_rows).to(output.device),)})

    return result, backprop


def state_from_safetensors(module: torch.nn.Module, data: bytes, device: "torch.device") -> torch.nn.Module:
    try:
        state = tensors_from_bytes(data)
    except Exception as err:
        raise ValueError(
            "The BiLSTM's saved weights are not safetensors (a pipeline saved before the packed BiLSTM, "
            f"or a corrupt file: {type(err).__name__}): re-train the pipeline with this version."
        ) from None
    module.load_state_dict(state)
    return module.to(device)
