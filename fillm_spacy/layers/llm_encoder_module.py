"""The torch side of the LLM encoder: windows of pieces → chosen layers' outputs (+ LoRA) →
scalar mix → pooled per token → (stacked BiLSTM) → projection.

Two things here are about reading the LLM correctly and cheaply:
- The features are the chosen layers' own outputs. Hugging Face applies the final RMSNorm
  after its layer loop, so when only `last_layer` layers run, its last hidden state would be
  `norm(h_last)` (a norm trained for layer 18's output); the norm is switched off while the
  encoder runs the decoder.
- The frozen prefix. Layers below the first LoRA layer never change during training, so their
  outputs for a training window are computed once and kept (`PrefixCache`); every later epoch
  runs only the layers above it (or none at all when the LLM is frozen).
"""

import contextlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..models.adapters import AdapterNotFound, LanguageAdapter, LoraSettings, active_adapter
from ..models.loading import BaseLLM
from .bilstm import PackedBiLSTM
from .compiled import compilation_failed, compiled_forwards, give_up
from .encoder_batch import EncoderBatch
from .encoder_settings import BatchSettings, ComputeSettings, ContextualizerSettings, LayerSettings
from .precision import inference_dtype
from .scalar_mix import ScalarMix

# The model families whose attention-mask inputs `attention_mask()` knows: one 4-D mask (Gemma 1),
# or one per attention type (Gemma 3).
BIDIRECTIONAL_MODEL_TYPES = ("gemma", "gemma3_text", "gemma3")


@dataclass
class PrefixCache:
    """Outputs of the frozen layers per training window, keyed by the window's piece ids.

    Bounded: once `max_bytes` are stored, further windows are computed every time (with a
    fixed training set read epoch after epoch, keeping a fixed subset beats evicting)."""

    max_bytes: int
    entries: Dict[bytes, Dict[int, torch.Tensor]] = field(default_factory=dict)
    n_bytes: int = 0

    def get(self, key: bytes) -> Optional[Dict[int, torch.Tensor]]:
        return self.entries.get(key)

    def put(self, key: bytes, states: Dict[int, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in states.values())
        if self.n_bytes + size <= self.max_bytes:
            self.entries[key] = states
            self.n_bytes += size

    def clear(self) -> None:
        self.entries.clear()
        self.n_bytes = 0


class LLMEncoderModule(torch.nn.Module):
    """The torch side of the encoder. `llm.model` is shared with other components.

    width: the output width per token.
    layers, contextualizer, batching, compute: the settings (layers/encoder_settings.py).
    lora, adapter_name: the encoder's own LoRA adapter, already on `llm` (None: frozen).
    language_adapter: a frozen language adapter the LLM runs with (fillm_spacy.adapt).
    """

    def __init__(
        self,
        llm: BaseLLM,
        width: int,
        layers: LayerSettings,
        *,
        contextualizer: ContextualizerSettings = ContextualizerSettings(),
        batching: BatchSettings = BatchSettings(),
        compute: ComputeSettings = ComputeSettings(),
        lora: Optional[LoraSettings] = None,
        adapter_name: Optional[str] = None,
        language_adapter: Optional[LanguageAdapter] = None,
    ):
        super().__init__()
        # The builder refuses a task LoRA beside a language adapter (with the setting to change).
        if (lora is None) != (adapter_name is None) or (language_adapter is not None and adapter_name is not None):
            raise ValueError("An encoder runs its own LoRA (settings and name together) or a language adapter")
        self.llm = llm
        self.width = width
        self.layer_settings = layers
        self.contextualizer_settings = contextualizer
        self.batching = batching
        self.compute = compute
        self.lora = lora  # how the adapter was made: a copy adds one like it
        self.adapter_name = adapter_name
        self.language_adapter = language_adapter
        self.prefix_cache = PrefixCache(batching.prefix_cache_mb * 2**20)
        self.base = llm.model  # a submodule so train()/eval() reach the LoRA dropout
        hidden = llm.config.hidden_size
        self.mix = ScalarMix(len(self.mixed_layers), hidden)
        if contextualizer.width > 0:
            # A decoder LLM is causal: the BiLSTM gives each token its right context too.
            self.contextualizer = PackedBiLSTM(
                hidden, contextualizer.width, contextualizer.depth, contextualizer.dropout
            )
            features = contextualizer.width
        else:
            self.contextualizer = None
            features = hidden
        self.projection = torch.nn.Linear(features, width)

    # What the settings say, read where the module needs it.
    @property
    def mixed_layers(self) -> List[int]:
        return list(self.layer_settings.mixed)

    @property
    def last_layer(self) -> int:
        return self.layer_settings.last

    @property
    def attention(self) -> str:
        return self.layer_settings.attention

    @property
    def final_norm(self) -> bool:
        return self.layer_settings.final_norm

    @property
    def frozen_prefix(self) -> int:
        return min(self.batching.frozen_prefix, self.last_layer)

    @property
    def max_batch_pieces(self) -> int:
        return self.batching.max_batch_pieces

    @property
    def precision(self) -> str:
        return self.compute.precision

    @property
    def compiled(self) -> bool:
        """Compiled layers only where the graph cannot miss an adapter switch (layers/compiled.py)."""
        return self.compute.compiled and self.adapter_name is None and self.language_adapter is None

    def settings(self) -> dict:
        """The keyword arguments a module like this one is built from (its copies)."""
        return dict(
            contextualizer=self.contextualizer_settings,
            batching=self.batching,
            compute=self.compute,
            language_adapter=self.language_adapter,
        )

    @property
    def active_adapter_name(self) -> Optional[str]:
        """The adapter the LLM runs with: the encoder's own LoRA, its language adapter, or none."""
        if self.language_adapter is None:
            return self.adapter_name
        if self.language_adapter.name is None:
            raise AdapterNotFound(
                f"Language adapter '{self.language_adapter.path}' was never loaded: the directory does not "
                "exist here and no saved pipeline supplied its weights. Point language_adapter at the directory."
            )
        return self.language_adapter.name

    def train(self, mode: bool = True):
        """As torch's, under the shared base model's lock: the recursion reaches the base (its
        LoRA dropout), which another thread's forward pass may be running."""
        with self.llm.lock:
            return super().train(mode)

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
        if sum(batch.doc_lengths) == 0:  # no token at all: nothing for the BiLSTM or the projection
            return self.projection(self.projection.weight.new_zeros((0, self.projection.in_features)))
        tokens = self.token_states(batch)
        if self.contextualizer is not None:
            tokens = self.contextualizer(tokens, batch.doc_lengths)
        return self.projection(tokens)

    def token_states(self, batch: EncoderBatch, mix: bool = True) -> torch.Tensor:
        """One mixed LLM state per token (docs concatenated), before the BiLSTM: (tokens, hidden).
        mix False: each mixed layer's own state instead, (tokens, len(mixed_layers), hidden)."""
        device = self.projection.weight.device
        n_tokens = sum(batch.doc_lengths)
        hidden = self.llm.config.hidden_size
        shape = (hidden,) if mix else (len(self.mixed_layers), hidden)
        if n_tokens == 0:
            return torch.zeros((0, *shape), device=device)
        states = self.encode_windows(batch.windows, device, mix)
        pieces = states[batch.kept_rows.to(device)]
        weights = batch.pool_weights.to(device).reshape(-1, *([1] * len(shape)))
        weighted = pieces[batch.pool_pieces.to(device)] * weights
        tokens = torch.zeros((n_tokens, *shape), dtype=pieces.dtype, device=device)
        return tokens.index_add(0, batch.pool_tokens.to(device), weighted)

    def encode_windows(self, windows: List[np.ndarray], device, mix: bool = True) -> torch.Tensor:
        """Hidden states of every window position, windows stacked in input order: mixed, or
        (mix False) the mixed layers' own, stacked on a second axis."""
        if not windows:
            hidden = self.llm.config.hidden_size
            return torch.zeros((0, hidden) if mix else (0, len(self.mixed_layers), hidden), device=device)
        outputs: List[Optional[torch.Tensor]] = [None] * len(windows)
        for group in self.length_groups(windows):
            for index, output in zip(group, self.encode_group([windows[i] for i in group], device, mix)):
                outputs[index] = output
        return torch.cat(outputs)

    def length_groups(self, windows: List[np.ndarray]) -> List[List[int]]:
        """Window indices in forward passes of at most `max_batch_pieces` padded pieces,
        length-sorted so that little is padding."""
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
        groups: List[List[int]] = []
        for index in order:  # the first window of a group is its longest
            if groups and (len(groups[-1]) + 1) * len(windows[groups[-1][0]]) <= self.max_batch_pieces:
                groups[-1].append(index)
            else:
                groups.append([index])
        return groups

    def encode_group(self, windows: List[np.ndarray], device, mix: bool = True) -> List[torch.Tensor]:
        if self.training and self.frozen_prefix > 0 and self.prefix_cache.max_bytes > 0:
            states = self.layer_states_with_prefix_cache(windows, device)
        else:
            input_ids, mask = self.pad(windows, device)
            dtype = None if self.training else inference_dtype(self.precision, torch.device(device))
            compiled = self.compiled and not self.training and not compilation_failed()
            with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
                try:
                    states = self.run_layers(0, self.last_layer, mask, input_ids=input_ids, compiled=compiled)
                except Exception as error:  # inductor's own failures (no compiler, an unsupported op)
                    if not compiled:
                        raise
                    give_up(error)
                    states = self.run_layers(0, self.last_layer, mask, input_ids=input_ids)
            if dtype is not None:  # the encoder's own modules read float32, as in training
                states = {layer: state.float() for layer, state in states.items()}
        if self.final_norm:  # after the cache, which keeps the layers' own outputs
            states = {**states, self.last_layer: self.llm.decoder.norm(states[self.last_layer])}
        chosen = [states[layer] for layer in self.mixed_layers]
        mixed = self.mix(chosen) if mix else torch.stack(chosen, dim=2)
        return [mixed[row, : len(window)] for row, window in enumerate(windows)]

    def layer_states_with_prefix_cache(self, windows: List[np.ndarray], device) -> Dict[int, torch.Tensor]:
        """The mixed layers' states, the frozen prefix's read from (or put into) the cache."""
        prefix = self.frozen_prefix
        kept = [layer for layer in self.mixed_layers if layer <= prefix] + [prefix]
        keys = [np.asarray(window, dtype=np.int64).tobytes() for window in windows]
        cached = [self.prefix_cache.get(key) for key in keys]
        missing = [row for row, entry in enumerate(cached) if entry is None]
        if missing:
            input_ids, mask = self.pad([windows[row] for row in missing], device)
            with torch.no_grad():
                fresh = self.run_layers(0, prefix, mask, input_ids=input_ids)
            for i, row in enumerate(missing):
                n = len(windows[row])
                cached[row] = {layer: fresh[layer][i, :n].detach().clone() for layer in kept}
                self.prefix_cache.put(keys[row], cached[row])
        states = {
            layer: torch.nn.utils.rnn.pad_sequence([entry[layer] for entry in cached], batch_first=True)
            for layer in kept
        }
        if self.last_layer > prefix:
            mask = self.padding_mask(windows, device)
            above = self.run_layers(prefix, self.last_layer, mask, hidden=states[prefix])
            states.update({layer: state for layer, state in above.items() if layer > prefix})
        return states

    def pad(self, windows: List[np.ndarray], device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Right-padded piece ids and their 0/1 mask (a causal model never sees right padding)."""
        longest = max(len(w) for w in windows)
        pad_id = self.llm.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(windows), longest), pad_id, dtype=torch.long)
        for row, window in enumerate(windows):
            input_ids[row, : len(window)] = torch.as_tensor(window)
        return input_ids.to(device), self.padding_mask(windows, device)

    @staticmethod
    def padding_mask(windows: List[np.ndarray], device) -> torch.Tensor:
        """1 over each window's pieces, 0 over its right padding."""
        lengths = torch.as_tensor([len(w) for w in windows])
        return (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long().to(device)

    def attention_mask(self, mask: torch.Tensor):
        """What the decoder takes as `attention_mask` for this encoder's attention."""
        return decoder_attention_mask(self.llm.config.model_type, mask, self.attention)

    def run_layers(
        self,
        start: int,
        stop: int,
        mask: torch.Tensor,
        input_ids: Optional[torch.Tensor] = None,
        hidden: Optional[torch.Tensor] = None,
        compiled: bool = False,
    ) -> Dict[int, torch.Tensor]:
        """Outputs of decoder layers start+1..stop (and the input state `start`), each the
        layer's own output: from piece ids when start = 0, else from the state `hidden` = h_start.
        compiled: run the layers' torch.compile'd forwards (inference of a frozen encoder)."""
        decoder = self.llm.decoder
        kwargs = {"input_ids": input_ids}
        with contextlib.ExitStack() as stack:
            stack.enter_context(active_adapter(self.llm, self.active_adapter_name))
            if start > 0:
                # `hidden` goes in as inputs_embeds (for the shapes and the masks), but a model may
                # scale those (Gemma 1 multiplies them by sqrt(hidden), which is not exact in
                # bf16): the first layer that runs reads `hidden` itself.
                kwargs = {"inputs_embeds": hidden}
                hook = decoder.layers[start].register_forward_pre_hook(lambda _, args: (hidden,) + args[1:])
                stack.callback(hook.remove)
            if compiled:
                stack.enter_context(compiled_forwards(decoder.layers[start:stop]))
            stack.enter_context(layers_only(decoder, start, stop))
            # The base is shared: another component's train()/eval() may have set its mode (LoRA
            # dropout) since this module's was set; this forward runs in this module's mode.
            self.base.train(self.training)
            states = decoder(
                attention_mask=self.attention_mask(mask), output_hidden_states=True, use_cache=False, **kwargs
            ).hidden_states
        outputs = {start + i: state for i, state in enumerate(states)}
        if start > 0:
            outputs[start] = hidden  # what the model recorded as its input is the scaled copy
        return outputs


def decoder_attention_mask(model_type: str, mask: torch.Tensor, attention: str):
    """What a decoder of `model_type` takes as `attention_mask` for right-padded rows (`mask`:
    1 over pieces, 0 over padding): the padding mask itself for causal attention; for
    bidirectional attention, a 4-D mask that lets every piece see every piece of its row."""
    if attention == "causal":
        return mask
    visible = mask.bool()[:, None, None, :].expand(-1, 1, mask.shape[1], -1)
    if model_type == "gemma":  # Gemma 1 (SeaLLM) takes one mask for all layers
        return visible
    return {"full_attention": visible, "sliding_attention": visible}


@contextlib.contextmanager
def layers_only(decoder: torch.nn.Module, start: int, stop: int):
    """Run only decoder layers start+1..stop, without the final norm (see the module doc).
    The encoder calls it under the base model's lock (active_adapter), which every reader of the
    layer list (adapter_parameters, other encoders, generation) also takes."""
    layers, norm = decoder.layers, decoder.norm
    decoder.layers = layers[start:stop]
    decoder.norm = torch.nn.Identity()
    try:
        yield
    finally:
        decoder.layers, decoder.norm = layers, norm
