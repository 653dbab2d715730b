"""Encoder + biaffine parser at a given model size with random weights: training-step speed and
peak accelerator memory (LoRA vs full fine-tuning) and inference speed.

No download is needed: the model is built from a `GemmaConfig` (SeaLLM-7B-v2.5's exact shape,
or a tiny one for tests) with random weights, so only speed and memory mean anything. It runs
the package's own torch modules (`LLMEncoderModule`, `BiaffineDependencyModel`, the docs →
pieces conversion and the MST decoder) with torch's AdamW, so LoRA and full fine-tuning differ
only in which parameters train. Used by `python -m fillm_spacy.bench scale`.
"""

import time
from typing import Dict, List, Optional

import torch

# SeaLLMs/SeaLLM-7B-v2.5 config.json (GemmaForCausalLM).
PRESETS: Dict[str, Dict[str, object]] = {
    "seallm-7b-v2.5": dict(
        hidden_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=16,
        head_dim=256,
        intermediate_size=24576,
        vocab_size=256000,
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh",
        rope_theta=10000.0,
    ),
    "tiny": dict(
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        intermediate_size=128,
        vocab_size=2000,
        max_position_embeddings=512,
    ),
}
N_LABELS = 40  # about the number of UD relations (with subtypes) in NewsCrawl


class VocabClampedTokenizer:
    """A tokenizer whose ids past the model's vocabulary become <unk>: lets a Gemma 3 tokenizer
    (262k pieces) drive a random Gemma 1 model (256k). For speed runs only."""

    def __init__(self, tokenizer, vocab_size: int):
        self.tokenizer, self.vocab_size = tokenizer, vocab_size

    def __call__(self, texts, **kwargs):
        encoded = self.tokenizer(texts, **kwargs)
        unk = self.tokenizer.unk_token_id
        encoded["input_ids"] = [[i if i < self.vocab_size else unk for i in ids] for ids in encoded["input_ids"]]
        return encoded

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def random_base_llm(preset: str, tokenizer, device: str, dtype: str):
    """A `BaseLLM` with random weights of the preset's shape, built directly on `device`."""
    from transformers import GemmaConfig, GemmaForCausalLM

    from ..models.loading import BaseLLM

    config = GemmaConfig(**PRESETS[preset])
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = GemmaForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.requires_grad_(False)
    model.eval()
    fingerprint = {"name": f"random:{preset}", "model_type": config.model_type}
    return BaseLLM(
        name=f"random:{preset}",
        path="",
        model=model,
        tokenizer=VocabClampedTokenizer(tokenizer, config.vocab_size),
        fingerprint=fingerprint,
    )


def load_tokenizer(path: Optional[str], texts: List[str]):
    """The tokenizer.json at `path` (e.g. Gemma's), or a small Gemma-style BPE trained on `texts`."""
    from transformers import PreTrainedTokenizerFast

    from ..models.tokenizer import train_gemma_style_tokenizer

    if path is None:
        return train_gemma_style_tokenizer(texts, vocab_size=1500)
    return PreTrainedTokenizerFast(
        tokenizer_file=path, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>"
    )


def word_batches(docs, words_per_batch: int):
    batch, n_words = [], 0
    for doc in docs:
        batch.append(doc)
        n_words += len(doc)
        if n_words >= words_per_batch:
            yield batch
            batch, n_words = [], 0
    if batch:
        yield batch


def parser_loss(groups, generator: torch.Generator) -> torch.Tensor:
    """The parser's own loss (BiaffineDependencyModel.loss) against random heads and labels:
    its cost does not depend on them."""
    from ..layers.biaffine import BiaffineDependencyModel

    total = None
    for group in groups:
        lengths = torch.as_tensor(group.lengths)
        longest = int(lengths.max())
        heads = (torch.rand((len(group.lengths), longest), generator=generator) * (lengths[:, None] + 1)).long()
        heads = torch.where(heads == torch.arange(1, longest + 1)[None, :], 0, heads)  # never itself
        heads = torch.where(torch.arange(longest)[None, :] < lengths[:, None], heads, -100)
        labels = torch.randint(0, group.labels.shape[-1], heads.shape, generator=generator).masked_fill(heads < 0, -100)
        loss = BiaffineDependencyModel.loss(group, heads, labels)
        total = loss if total is None else total + loss
    return total


def measure_scale(
    preset: str,
    texts: List[str],
    tokenizer_path: Optional[str],
    device: str,
    dtype: str,
    training: str,
    last_layer: Optional[int],
    words_per_batch: int,
    steps: int,
    inference: bool,
) -> Dict[str, object]:
    """One training configuration ('lora' or 'full') and, optionally, inference; see module doc."""
    import spacy

    from ..layers.biaffine import BiaffineDependencyModel
    from ..layers.encoder_batch import docs_to_batch
    from ..layers.encoder_settings import BatchSettings, LayerSettings
    from ..layers.llm_encoder_module import LLMEncoderModule
    from ..models.adapters import LoraSettings, add_lora_adapter
    from ..pipeline.parser import MAX_SENTENCE_TOKENS

    on_gpu = device.startswith("cuda")
    nlp = spacy.blank("tl")
    docs = [doc for doc in nlp.pipe(texts) if 0 < len(doc) <= MAX_SENTENCE_TOKENS]
    llm = random_base_llm(preset, load_tokenizer(tokenizer_path, texts), device, dtype)
    n_layers = llm.config.num_hidden_layers
    last_layer = min(last_layer or n_layers, n_layers)
    adapter = lora = None
    if training == "lora":
        adapter = "encoder"
        lora = LoraSettings(16, 32.0, 0.05, ("q_proj", "v_proj"), tuple(range(last_layer)))
        add_lora_adapter(llm, adapter, lora)
    elif training == "full":
        llm.model.requires_grad_(True)
    else:
        raise ValueError(f"training must be 'lora' or 'full', got {training!r}")
    encoder = LLMEncoderModule(
        llm, 256, LayerSettings((last_layer,)), batching=BatchSettings(8192), lora=lora, adapter_name=adapter
    )
    encoder.mix.to(device), encoder.projection.to(device)
    parser = BiaffineDependencyModel(256, N_LABELS, 500, 100, 0.33).to(device)
    convert = docs_to_batch(llm, window=256, stride=192, causal=True, pooling="last")
    # Full fine-tuning trains the base weights too; LoRA only the adapter and the encoder's own modules.
    encoder_params = (
        encoder.parameters() if training == "full" else (p for _, p in encoder.trainable_named_parameters())
    )
    trainable = [p for p in encoder_params if p.requires_grad] + list(parser.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, fused=on_gpu)
    generator = torch.Generator().manual_seed(0)

    def autocast():
        return torch.autocast(
            device_type="cuda" if on_gpu else "cpu", dtype=getattr(torch, dtype), enabled=dtype != "float32"
        )

    def sync():
        if on_gpu:
            torch.cuda.synchronize()

    result: Dict[str, object] = {
        "preset": preset,
        "device": torch.cuda.get_device_name() if on_gpu else "cpu",
        "dtype": dtype,
        "training": training,
        "of_layers": n_layers,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "model_parameters": sum(p.numel() for p in llm.model.parameters()),
    }
    batches = list(word_batches(docs, words_per_batch))
    if len(batches) < steps + 2:
        raise ValueError(f"Need {steps + 2} batches of {words_per_batch} words; the texts give {len(batches)}")
    encoder.train(), parser.train()
    # Which decoder layers really run (1-based), recorded by hooks rather than echoed from the arguments.
    ran = set()
    hooks = [
        layer.register_forward_hook(lambda *_, number=i + 1: ran.add(number))
        for i, layer in enumerate(llm.decoder.layers)
    ]
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    n_words = n_pieces = 0
    seconds = 0.0
    try:
        for step, batch in enumerate(batches[: steps + 2]):
            inputs, _ = convert(None, batch, True)
            sync()
            start = time.perf_counter()
            with autocast():
                tokens = encoder(*inputs.args)
                lengths = [len(doc) for doc in batch]
                loss = parser_loss(parser(tokens, lengths), generator)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync()
            if step >= 2:  # the first steps allocate and tune kernels
                seconds += time.perf_counter() - start
                n_words += sum(lengths)
                n_pieces += sum(len(w) for w in inputs.args[0].windows)
    except torch.cuda.OutOfMemoryError as err:
        result["train_error"] = f"out of memory at {words_per_batch} words per batch: {str(err).splitlines()[0]}"
    else:
        result.update(
            train_words_per_second=round(n_words / seconds, 1),
            train_pieces_per_second=round(n_pieces / seconds, 1),
            train_seconds_per_step=round(seconds / steps, 3),
            words_per_batch=words_per_batch,
        )
    for hook in hooks:
        hook.remove()
    result["layers_run"] = sorted(ran)
    if on_gpu:
        result["train_peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del optimizer
    if inference and "train_error" not in result:
        result.update(measure_inference(encoder, parser, convert, docs, autocast, sync, on_gpu))
    return result


def measure_inference(encoder, parser, convert, docs, autocast, sync, on_gpu) -> Dict[str, object]:
    """Words/s of encoder + parser scoring + MST decoding (on the CPU) + labels at the trees'
    arcs over all docs, as the parser component decodes."""
    from ..pipeline.parser import decode_group

    encoder.eval(), parser.eval()
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    n_words = 0
    sync()
    start = time.perf_counter()
    with torch.inference_mode(), autocast():
        for batch in word_batches(docs, 2000):
            inputs, _ = convert(None, batch, False)
            for group in parser(encoder(*inputs.args), [len(doc) for doc in batch]):
                decode_group(group, labelled=True)
            n_words += sum(len(doc) for doc in batch)
    sync()
    seconds = time.perf_counter() - start
    out = {"inference_words": n_words, "inference_words_per_second": round(n_words / seconds, 1)}
    if on_gpu:
        out["inference_peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out
