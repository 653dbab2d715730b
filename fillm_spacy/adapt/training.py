"""Language-adaptive training of one LoRA adapter on the base LLM.

The adapter sits on the decoder layers the encoders read (1..last_layer): what an encoder gains
is in the states it reads, and a frozen prefix below the first LoRA layer would not move. The
layers above last_layer and the LM head stay frozen: they only carry the objective's gradient
down. Cost is bounded by a budget of pieces seen, not by epochs.
"""

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch

from ..layers.precision import check_precision, inference_dtype
from ..models.adapters import (
    LoraSettings,
    adapter_parameters,
    add_lora_adapter,
    new_adapter_name,
    remove_adapter,
    set_trainable,
)
from ..models.loading import BaseLLM
from .objectives import ATTENTION_OF, OBJECTIVES, VocabularyHead, sequence_loss
from .text import TextSplit, corpus_vocabulary, pack_sequences

log = logging.getLogger("fillm_spacy.adapt")

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class AdaptSettings:
    """How the adapter is trained.

    objective: "clm" (causal LM) or "mntp" (masked next-piece prediction, bidirectional).
    last_layer: LoRA on decoder layers 1..last_layer (the ones an encoder reading up to it runs).
    r, alpha, dropout, target_modules: the LoRA adapter.
    sequence_length, batch_size: pieces per row and rows per step.
    budget_pieces: pieces read in training (steps = budget / (rows x length), at least 1).
    learning_rate, warmup: AdamW with linear warm-up over this share of the steps, then decay.
    mask_rate: share of pieces MNTP hides.
    precision: what the layers compute in while training ("float32", "bfloat16": autocast where
        the device has fast bfloat16, else float32 with one log line; "auto"); evaluation is float32.
    eval_rows: held-out rows scored before and after (0: all).
    """

    objective: str = "clm"
    last_layer: int = 12
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: List[str] = field(default_factory=lambda: list(TARGET_MODULES))
    sequence_length: int = 256
    batch_size: int = 4
    budget_pieces: int = 300_000
    learning_rate: float = 3e-4
    warmup: float = 0.05
    mask_rate: float = 0.2
    precision: str = "float32"
    eval_rows: int = 0
    seed: int = 0

    def check(self, llm: BaseLLM) -> None:
        n_layers = llm.config.num_hidden_layers
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not 1 <= self.last_layer <= n_layers:
            raise ValueError(f"last_layer must be in 1..{n_layers} (the base model's layers), got {self.last_layer}")
        if self.r < 1 or self.batch_size < 1 or self.budget_pieces < 1:
            raise ValueError("r, batch_size and budget_pieces must be >= 1")
        if not 0.0 < self.mask_rate < 1.0:
            raise ValueError(f"mask_rate must be in (0, 1), got {self.mask_rate}")
        if not self.learning_rate > 0 or not 0.0 <= self.warmup < 1.0:
            raise ValueError("learning_rate must be > 0 and warmup in [0, 1)")
        check_precision(self.precision)
        context = getattr(llm.config, "max_position_embeddings", self.sequence_length)
        if self.sequence_length > context:
            raise ValueError(f"sequence_length {self.sequence_length} exceeds the model's context ({context})")


def mask_piece(tokenizer) -> int:
    """The piece MNTP puts where it hides one: the tokenizer's mask, unknown or padding piece."""
    for name in ("mask_token_id", "unk_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def objective_loss(llm: BaseLLM, adapter_name, batch, settings: AdaptSettings, head, generator):
    """`sequence_loss` of a batch under the settings' objective and mask rate."""
    return sequence_loss(
        llm, adapter_name, batch, settings.objective, head,
        mask_rate=settings.mask_rate, mask_id=mask_piece(llm.tokenizer), generator=generator,
    )  # fmt: skip


def heldout_perplexity(
    llm: BaseLLM, adapter_name: Optional[str], rows: np.ndarray, settings: AdaptSettings, head: VocabularyHead
) -> float:
    """exp(mean cross-entropy per predicted piece) over the held-out rows, float32, no dropout;
    MNTP hides the same pieces whatever the adapter (a fixed generator)."""
    generator = torch.Generator().manual_seed(12345)
    total, count = 0.0, 0
    llm.model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), settings.batch_size):
            batch = torch.as_tensor(rows[start : start + settings.batch_size])
            loss, n = objective_loss(llm, adapter_name, batch, settings, head, generator)
            total += float(loss)
            count += n
    return math.exp(total / max(count, 1))


def train_adapter(llm: BaseLLM, adapter_name: str, train_rows: np.ndarray, settings: AdaptSettings, head):
    """The training loop: (pieces seen, loss per step, seconds)."""
    from transformers import get_linear_schedule_with_warmup

    params = [p for _, p in adapter_parameters(llm, adapter_name)]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    pieces_per_step = settings.batch_size * train_rows.shape[1]
    steps = max(1, math.ceil(settings.budget_pieces / pieces_per_step))
    schedule = get_linear_schedule_with_warmup(optimizer, int(settings.warmup * steps), steps)
    dtype = inference_dtype(settings.precision, llm.device)
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    order = rng.permutation(len(train_rows))
    cursor, seen, losses = 0, 0, []
    train_started = time.perf_counter()
    llm.model.train()
    for step in range(1, steps + 1):
        if cursor + settings.batch_size > len(order):
            order, cursor = rng.permutation(len(train_rows)), 0
        batch = torch.as_tensor(train_rows[order[cursor : cursor + settings.batch_size]])
        cursor += settings.batch_size
        with torch.autocast(llm.device.type, dtype=dtype, enabled=dtype is not None):
            loss, n = objective_loss(llm, adapter_name, batch, settings, head, generator)
        mean = loss / max(n, 1)
        if not torch.isfinite(mean):
            raise FloatingPointError(
                f"The {settings.objective} loss is {float(mean.detach())} at step {step}: lower --learning-rate "
                f"(now {settings.learning_rate}) or use --precision float32."
            )
        mean.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        seen += int(batch.numel())
        losses.append(float(mean.detach()))
        if step % 25 == 0 or step == steps:
            rate = seen / (time.perf_counter() - train_started)
            log.info("step %d/%d  loss %.3f  %d pieces  %.0f pieces/s", step, steps, np.mean(losses[-25:]), seen, rate)
    return seen, losses, time.perf_counter() - train_started


def adapt(llm: BaseLLM, text: TextSplit, settings: AdaptSettings) -> Dict[str, object]:
    """Train a new adapter on `llm` (returned as "adapter_name") and measure it: held-out
    perplexity before and after, pieces seen, wall time."""
    settings.check(llm)
    torch.manual_seed(settings.seed)
    train_rows = pack_sequences(llm.tokenizer, text.train, settings.sequence_length)
    heldout_rows = pack_sequences(llm.tokenizer, text.heldout, settings.sequence_length)
    if settings.eval_rows:
        heldout_rows = heldout_rows[: settings.eval_rows]
    head = VocabularyHead.build(llm, corpus_vocabulary(train_rows, heldout_rows))
    log.info(
        "%d training rows, %d held-out rows of %d pieces; scoring over %d pieces of the %d in the vocabulary",
        len(train_rows),
        len(heldout_rows),
        settings.sequence_length,
        head.weight.shape[0],
        head.row_of.shape[0],
    )
    started = time.perf_counter()
    before = heldout_perplexity(llm, None, heldout_rows, settings, head)
    log.info("held-out %s perplexity of the plain base: %.2f", settings.objective, before)

    adapter_name = new_adapter_name("language")
    lora = LoraSettings(
        settings.r, settings.alpha, settings.dropout, tuple(settings.target_modules), tuple(range(settings.last_layer))
    )
    add_lora_adapter(llm, adapter_name, lora)
    try:
        seen, losses, train_seconds = train_adapter(llm, adapter_name, train_rows, settings, head)
    except BaseException:
        remove_adapter(llm, adapter_name)  # a failed or interrupted training leaves nothing on the shared model
        raise
    set_trainable(llm, adapter_name, False)  # trained: from now on it only runs, like a loaded one
    llm.model.eval()
    after = heldout_perplexity(llm, adapter_name, heldout_rows, settings, head)
    log.info("held-out %s perplexity with the adapter: %.2f (plain base %.2f)", settings.objective, after, before)
    return {
        "adapter_name": adapter_name,
        "objective": settings.objective,
        "attention": ATTENTION_OF[settings.objective],
        "settings": asdict(settings),
        "train_lines": len(text.train),
        "heldout_lines": len(text.heldout),
        "heldout_rows": len(heldout_rows),
        "vocabulary": int(head.weight.shape[0]),
        "steps": len(losses),
        "pieces_seen": seen,
        "first_loss": round(float(np.mean(losses[:25])), 4),
        "last_loss": round(float(np.mean(losses[-25:])), 4),
        "heldout_perplexity_before": round(before, 3),
        "heldout_perplexity_after": round(after, 3),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
    }
