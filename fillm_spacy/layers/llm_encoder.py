"""The LLM encoder: a decoder LLM (+ LoRA) turned into one vector per spaCy token.

pieces + offsets ─► windows ─► base LLM with the encoder's LoRA adapter ─► scalar mix of
chosen layers ─► pool pieces per token ─► (BiLSTM) ─► projection.

Only the adapter and the encoder's own small modules train; base weights stay frozen and
are never serialized: a saved pipeline refers to its base model by name (and fingerprint).
"""
import contextlib
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import srsly
import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, PyTorchShim, torch2xp, xp2torch
from thinc.layers.pytorchwrapper import forward as pytorch_forward
from thinc.types import Floats2d

from ..models.adapters import active_adapter, add_lora_adapter, adapter_parameters, new_adapter_name
from ..models.loading import BaseLLM, check_fingerprint
from .alignment import DocPieces, align_tokens_to_pieces, assign_pieces_to_windows, window_starts
from .scalar_mix import ScalarMix

POOLING = ("mean", "first", "last")


def _one_thread_in_forked_child() -> None:
    # GNU OpenMP's thread pool does not survive fork(): the first matmul in a child forked by
    # nlp.pipe(n_process=N) would wait forever on the parent's threads. One thread per
    # process is also the right split of a small CPU between N processes.
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_thread_in_forked_child)

ATTENTION = ("causal", "bidirectional")


@dataclass
class EncoderBatch:
    """Everything the torch module needs for a batch of docs, computed on the CPU side."""

    windows: List[np.ndarray]  # piece ids per window, BOS first
    kept_rows: torch.Tensor  # for each kept piece (docs concatenated), its row in the stacked window outputs
    pool_pieces: torch.Tensor  # (n_links,) index into kept pieces
    pool_tokens: torch.Tensor  # (n_links,) index of the token (docs concatenated)
    pool_weights: torch.Tensor  # (n_links,) weight of the link
    doc_lengths: List[int]  # tokens per doc


class LLMEncoderModule(torch.nn.Module):
    """The torch side of the encoder. `llm.model` is shared with other components."""

    def __init__(
        self,
        llm: BaseLLM,
        adapter_name: Optional[str],
        first_layer: int,
        last_layer: int,
        attention: str,
        contextualizer_width: int,
        width: int,
        max_batch_pieces: int,
        contextualizer_depth: int = 1,
        contextualizer_dropout: float = 0.0,
    ):
        super().__init__()
        self.llm = llm
        self.adapter_name = adapter_name
        self.base = llm.model  # a submodule so train()/eval() reach the LoRA dropout
        self.first_layer, self.last_layer = first_layer, last_layer
        self.attention = attention
        self.max_batch_pieces = max_batch_pieces
        hidden = llm.config.hidden_size
        self.mix = ScalarMix(last_layer - first_layer + 1, hidden)
        if contextualizer_width > 0:
            # A decoder LLM is causal: the BiLSTM gives each token its right context too.
            self.contextualizer = torch.nn.LSTM(
                hidden,
                contextualizer_width // 2,
                num_layers=contextualizer_depth,
                dropout=contextualizer_dropout if contextualizer_depth > 1 else 0.0,
                batch_first=True,
                bidirectional=True,
            )
            features = 2 * (contextualizer_width // 2)
        else:
            self.contextualizer = None
            features = hidden
        self.projection = torch.nn.Linear(features, width)

    def trainable_named_parameters(self):
        """This encoder's own parameters and its adapter's: other components' adapters on the
        shared base model are theirs to update."""
        for name, param in self.named_parameters():
            if not name.startswith("base.") or (self.adapter_name and f".{self.adapter_name}." in name):
                yield name, param

    def own_state(self) -> dict:
        """Trainable state this encoder owns (not the shared base weights)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("base.")}

    def forward(self, batch: EncoderBatch) -> torch.Tensor:
        device = self.projection.weight.device
        mixed = self.encode_windows(batch.windows, device)
        pieces = mixed[batch.kept_rows.to(device)]
        n_tokens = sum(batch.doc_lengths)
        weighted = pieces[batch.pool_pieces.to(device)] * batch.pool_weights.to(device)[:, None]
        tokens = torch.zeros((n_tokens, pieces.shape[1]), dtype=pieces.dtype, device=device)
        tokens = tokens.index_add(0, batch.pool_tokens.to(device), weighted)
        if self.contextualizer is not None and n_tokens > 0:
            tokens = self.contextualize(tokens, batch.doc_lengths)
        return self.projection(tokens)

    def contextualize(self, tokens: torch.Tensor, lengths: List[int]) -> torch.Tensor:
        per_doc = [seq for seq in torch.split(tokens, lengths) if len(seq)]
        packed = torch.nn.utils.rnn.pack_sequence(per_doc, enforce_sorted=False)
        output, _ = self.contextualizer(packed)
        padded, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True)
        return torch.cat([padded[i, : len(seq)] for i, seq in enumerate(per_doc)])

    def encode_windows(self, windows: List[np.ndarray], device) -> torch.Tensor:
        """Mixed hidden states of every window position, windows stacked in input order."""
        if not windows:
            return torch.zeros((0, self.llm.config.hidden_size), device=device)
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))  # length-sorted: little padding
        groups: List[List[int]] = []
        for index in order:  # the first window of a group is its longest
            if groups and (len(groups[-1]) + 1) * len(windows[groups[-1][0]]) <= self.max_batch_pieces:
                groups[-1].append(index)
            else:
                groups.append([index])
        outputs: List[Optional[torch.Tensor]] = [None] * len(windows)
        for group in groups:
            for index, output in zip(group, self.encode_group([windows[i] for i in group], device)):
                outputs[index] = output
        return torch.cat(outputs)

    def encode_group(self, windows: List[np.ndarray], device) -> List[torch.Tensor]:
        longest = max(len(w) for w in windows)
        pad_id = self.llm.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(windows), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(windows), longest), dtype=torch.long)
        for row, window in enumerate(windows):  # right padding: a causal model never sees it
            input_ids[row, : len(window)] = torch.as_tensor(window)
            mask[row, : len(window)] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        if self.attention == "bidirectional":
            visible = mask.bool()[:, None, None, :].expand(-1, 1, longest, -1)
            attention_mask = {"full_attention": visible, "sliding_attention": visible}
            if self.llm.config.model_type == "gemma":  # Gemma 1 (SeaLLM) takes one mask for all layers
                attention_mask = visible
        else:
            attention_mask = mask
        with active_adapter(self.llm, self.adapter_name), self.only_layers_needed():
            states = self.llm.decoder(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False
            ).hidden_states
        mixed = self.mix(states[self.first_layer : self.last_layer + 1])
        return [mixed[row, : len(window)] for row, window in enumerate(windows)]

    @contextlib.contextmanager
    def only_layers_needed(self):
        """Run the decoder only up to the last mixed layer: later layers cost time and add nothing."""
        decoder = self.llm.decoder
        layers = decoder.layers
        if self.last_layer < len(layers):
            decoder.layers = layers[: self.last_layer]
        try:
            yield
        finally:
            decoder.layers = layers


class LLMShim(PyTorchShim):
    """A PyTorchShim that serializes only the adapter and the encoder's own weights."""

    def predict(self, inputs: ArgsKwargs):
        self._model.eval()
        with torch.inference_mode():
            return self._model(*inputs.args, **inputs.kwargs)

    def finish_update(self, optimizer) -> None:
        for name, param in self._model.trainable_named_parameters():
            if param.grad is None:
                continue
            if not self._grad_scaler.found_inf:  # skip the step if a gradient overflowed
                value, _ = optimizer((self.id, name), torch2xp(param.data), torch2xp(param.grad))
                param.data = xp2torch(value, requires_grad=True, device=param.device)
            param.grad.zero_()
        self._grad_scaler.update()

    @contextlib.contextmanager
    def use_params(self, params):
        # Averaged parameters cover only what trains; swap those, never the frozen base.
        prefix = f"pytorch_{self.id}_"
        update = {k[len(prefix) :]: xp2torch(v, device=self.device) for k, v in params.items() if str(k).startswith(prefix)}
        if not update:
            yield
            return
        current = dict(self._model.named_parameters())
        backup = {k: current[k].detach().clone() for k in update}
        with torch.no_grad():
            for k, v in update.items():
                current[k].copy_(v)
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in backup.items():
                    current[k].copy_(v)

    def to_bytes(self) -> bytes:
        module: LLMEncoderModule = self._model
        adapter = {}
        if module.adapter_name is not None:
            adapter = {
                n.replace(f".{module.adapter_name}.", ".adapter."): p.detach().cpu()
                for n, p in adapter_parameters(module.llm, module.adapter_name)
            }
        return srsly.msgpack_dumps(
            {
                "fingerprint": module.llm.fingerprint,
                "adapter": tensors_to_bytes(adapter),
                "own": tensors_to_bytes({k: v.cpu() for k, v in module.own_state().items()}),
            }
        )

    def from_bytes(self, bytes_data: bytes) -> "LLMShim":
        module: LLMEncoderModule = self._model
        try:
            msg = srsly.msgpack_loads(bytes_data)
            adapter = tensors_from_bytes(msg["adapter"])
            own = tensors_from_bytes(msg["own"])
            fingerprint = msg["fingerprint"]
        except Exception as err:
            raise ValueError(
                "The LLM encoder's saved weights (tok2vec/model) are corrupt or not from fillm_spacy: "
                f"{type(err).__name__}: {err}. Re-train or re-copy the pipeline directory."
            ) from err
        check_fingerprint(fingerprint, module.llm, "The saved LLM encoder")
        device = self.device
        if bool(adapter) != (module.adapter_name is not None):
            raise ValueError("The saved LLM encoder's LoRA setting (lora_r) differs from its config.")
        if adapter:
            params = dict(adapter_parameters(module.llm, module.adapter_name))
            renamed = {n.replace(".adapter.", f".{module.adapter_name}."): v for n, v in adapter.items()}
            if set(renamed) != set(params):
                raise ValueError("The saved LoRA adapter does not match the encoder's LoRA config (r, target_modules).")
            with torch.no_grad():
                for name, value in renamed.items():
                    params[name].copy_(value.to(device))
        missing, unexpected = module.load_state_dict({k: v.to(device) for k, v in own.items()}, strict=False)
        missing = [k for k in missing if not k.startswith("base.")]
        if missing or unexpected:
            raise ValueError(f"The saved LLM encoder does not match its config: missing {missing}, unexpected {unexpected}")
        return self


def tensors_to_bytes(tensors: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tensors.items()}) if tensors else b""


def tensors_from_bytes(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data) if data else {}


def build_llm_encoder(
    llm: BaseLLM,
    *,
    width: int,
    lora_r: int,
    lora_alpha: float,
    lora_dropout: float,
    target_modules: Sequence[str],
    first_layer: int,
    last_layer: int,
    attention: str,
    pooling: str,
    contextualizer_width: int,
    window: int,
    stride: int,
    max_batch_pieces: int,
    contextualizer_depth: int,
    contextualizer_dropout: float,
) -> Model[List[Doc], List[Floats2d]]:
    """The thinc model wrapping `LLMEncoderModule` (validated arguments, see the registry)."""
    n_layers = llm.config.num_hidden_layers
    if not 0 <= first_layer <= last_layer <= n_layers:
        raise ValueError(
            f"Need 0 <= first_layer <= last_layer <= {n_layers} (the base model's layers), "
            f"got first_layer={first_layer}, last_layer={last_layer}"
        )
    if contextualizer_depth < 1 or not 0.0 <= contextualizer_dropout < 1.0:
        raise ValueError(
            f"Need contextualizer_depth >= 1 and 0 <= contextualizer_dropout < 1, "
            f"got {contextualizer_depth} and {contextualizer_dropout}"
        )
    if pooling not in POOLING:
        raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
    max_window = getattr(llm.config, "max_position_embeddings", window + 1) - 1
    if window > max_window:
        raise ValueError(f"window={window} is longer than the base model's context ({max_window} pieces)")
    adapter_name = None
    if lora_r > 0:
        adapter_name = new_adapter_name("encoder")
        add_lora_adapter(llm, adapter_name, r=lora_r, alpha=lora_alpha, dropout=lora_dropout, target_modules=list(target_modules))
    module = LLMEncoderModule(
        llm,
        adapter_name,
        first_layer,
        last_layer,
        attention,
        contextualizer_width,
        width,
        max_batch_pieces,
        contextualizer_depth=contextualizer_depth,
        contextualizer_dropout=contextualizer_dropout,
    )
    return Model(
        "llm_encoder",
        pytorch_forward,
        attrs={
            "convert_inputs": _docs_to_batch(llm, window, stride, attention == "causal", pooling),
            "convert_outputs": _tokens_to_arrays,
        },
        shims=[LLMShim(module)],
        dims={"nO": width},
    )


def _docs_to_batch(llm: BaseLLM, window: int, stride: int, causal: bool, pooling: str):
    tokenizer = llm.tokenizer
    bos = tokenizer.bos_token_id

    def convert_inputs(model: Model, docs: List[Doc], is_train: bool):
        texts = [doc.text for doc in docs]
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True) if texts else {"input_ids": [], "offset_mapping": []}
        windows: List[np.ndarray] = []
        kept_rows: List[np.ndarray] = []
        pool_pieces: List[np.ndarray] = []
        pool_tokens: List[np.ndarray] = []
        pool_weights: List[np.ndarray] = []
        row_offset = piece_offset = token_offset = 0
        for doc, ids, offsets in zip(docs, encoded["input_ids"], encoded["offset_mapping"]):
            aligned: DocPieces = align_tokens_to_pieces(doc, ids, offsets)
            n_pieces = len(aligned.piece_ids)
            if len(doc) and n_pieces:
                starts = window_starts(n_pieces, window, stride)
                owner = assign_pieces_to_windows(n_pieces, starts, window, causal)
                window_rows = []
                for start in starts:
                    piece_slice = aligned.piece_ids[start : start + window]
                    windows.append(np.concatenate([[bos], piece_slice]) if bos is not None else piece_slice)
                    window_rows.append(row_offset)
                    row_offset += len(windows[-1])
                shift = 1 if bos is not None else 0
                positions = np.arange(n_pieces)
                kept_rows.append(np.asarray(window_rows)[owner] + positions - np.asarray(starts)[owner] + shift)
                pieces, tokens, weights = _pooling_links(aligned, pooling)
                pool_pieces.append(pieces + piece_offset)
                pool_tokens.append(tokens + token_offset)
                pool_weights.append(weights)
                piece_offset += n_pieces
            token_offset += len(doc)

        def cat(arrays, dtype):
            return torch.as_tensor(np.concatenate(arrays) if arrays else np.zeros((0,)), dtype=dtype)

        batch = EncoderBatch(
            windows=windows,
            kept_rows=cat(kept_rows, torch.long),
            pool_pieces=cat(pool_pieces, torch.long),
            pool_tokens=cat(pool_tokens, torch.long),
            pool_weights=cat(pool_weights, torch.float32),
            doc_lengths=[len(doc) for doc in docs],
        )
        return ArgsKwargs(args=(batch,), kwargs={}), lambda d_inputs: []

    return convert_inputs


def _pooling_links(aligned: DocPieces, pooling: str):
    """(piece, token, weight) links: how token vectors are made from piece vectors."""
    lengths = aligned.token_lengths
    tokens = np.repeat(np.arange(len(lengths)), lengths)
    if pooling == "mean":
        return aligned.token_pieces, tokens, np.repeat(1.0 / lengths, lengths).astype("float32")
    ends = np.cumsum(lengths)
    chosen = ends - lengths if pooling == "first" else ends - 1
    ones = np.ones((len(lengths),), dtype="float32")
    return aligned.token_pieces[chosen], np.arange(len(lengths)), ones


def _tokens_to_arrays(model: Model, inputs_outputs, is_train: bool):
    docs, tokens = inputs_outputs
    lengths = [len(doc) for doc in docs]
    arrays = [model.ops.asarray2f(torch2xp(t)) for t in torch.split(tokens.detach(), lengths)]

    def backprop(d_arrays: List[Floats2d]) -> ArgsKwargs:
        d_tokens = xp2torch(model.ops.xp.concatenate(d_arrays) if d_arrays else model.ops.alloc2f(0, tokens.shape[1]))
        return ArgsKwargs(args=(tokens,), kwargs={"grad_tensors": (d_tokens.to(tokens.device),)})

    return arrays, backprop


def llm_encoder_v1(
    model_name: str = "gemma3-270m",
    width: int = 256,
    lora_r: int = 16,
    lora_alpha: float = 32.0,
    lora_dropout: float = 0.05,
    target_modules: List[str] = ["q_proj", "v_proj"],
    first_layer: int = 1,
    last_layer: int = 4,
    attention: str = "causal",
    pooling: str = "last",
    contextualizer_width: int = 0,
    contextualizer_depth: int = 1,
    contextualizer_dropout: float = 0.0,
    window: int = 256,
    stride: int = 192,
    max_batch_pieces: int = 4096,
    dtype: str = "float32",
    features: Optional[Model[List[Doc], List[Floats2d]]] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """`fillm.LLMEncoder.v1`: token vectors from a LoRA-tuned causal LM, for spaCy's tok2vec.

    model_name: an alias (`gemma3-270m`), a local Hugging Face directory, or a hub name
        already in the local Hugging Face cache (e.g. `SeaLLMs/SeaLLM-7B-v2.5`).
    width: output width per token (what listeners read).
    lora_r, lora_alpha, lora_dropout, target_modules: the LoRA adapter; lora_r = 0 keeps the LLM frozen.
    first_layer, last_layer: hidden states mixed (0 = embeddings); layers after last_layer never run.
    attention: "causal" (as pre-trained) or "bidirectional" (every piece sees the whole window;
        needs LoRA to adapt).
    pooling: how a token's pieces become one vector: "first", "mean" or "last" (for a causal
        model the last piece has seen the whole word).
    contextualizer_width: width of a BiLSTM over token vectors (0 = none): right context for a causal LLM.
    contextualizer_depth, contextualizer_dropout: BiLSTM layers, and dropout between them
        (Dozat & Manning 2017 use 3 layers and 0.33).
    window, stride: documents longer than `window` pieces run in overlapping windows `stride` apart.
    max_batch_pieces: padded pieces per forward pass (memory bound).
    dtype: torch dtype of the base weights ("float32" on CPU; "bfloat16" for 7B models on GPU).
    features: optional extra token features (e.g. spaCy's MultiHashEmbed + MaxoutWindowEncoder)
        concatenated with the LLM features: Tagalog affixes and reduplication live in characters.
    """
    from thinc.api import Maxout, chain, concatenate, with_array

    from ..models.loading import load_base_llm

    llm = load_base_llm(model_name, dtype=dtype)
    encoder = build_llm_encoder(
        llm,
        width=width,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        first_layer=first_layer,
        last_layer=last_layer,
        attention=attention,
        pooling=pooling,
        contextualizer_width=contextualizer_width,
        contextualizer_depth=contextualizer_depth,
        contextualizer_dropout=contextualizer_dropout,
        window=window,
        stride=stride,
        max_batch_pieces=max_batch_pieces,
    )
    if features is None:
        return encoder
    combined = chain(concatenate(encoder, features), with_array(Maxout(nO=width, nP=3, normalize=True, dropout=0.0)))
    combined.set_dim("nO", width)
    return combined
