"""The two language-adaptive objectives, scored over the corpus vocabulary only.

- "clm": the causal LM objective the model was pre-trained with (next piece, causal attention).
- "mntp": masked next-token prediction with bidirectional attention (LLM2Vec, BehnamGhader et
  al. 2024): a share of the pieces is replaced by a mask piece and each is predicted from the
  output one position before it, as a causal LM predicts; every piece sees the whole row.

The LM head of a 270M Gemma 3 has 262k rows (170M of its 268M parameters): logits over all of
them cost more than the 18 layers together. Tagalog news uses a few percent of them, so the
head is cut to the pieces that occur in the text (train and held-out), and perplexities are
over that vocabulary, before and after alike.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..layers.llm_encoder_module import decoder_attention_mask
from ..models.adapters import active_adapter
from ..models.loading import BaseLLM

OBJECTIVES = ("clm", "mntp")
ATTENTION_OF = {"clm": "causal", "mntp": "bidirectional"}


@dataclass
class VocabularyHead:
    """The LM head's rows of the corpus vocabulary and the map from piece id to row."""

    llm: BaseLLM
    weight: torch.Tensor  # (vocabulary, hidden)
    row_of: torch.Tensor  # (model vocabulary,) row of each piece id, -100 where not in the corpus

    @classmethod
    def build(cls, llm: BaseLLM, vocabulary: np.ndarray) -> "VocabularyHead":
        full = llm.model.get_output_embeddings().weight
        ids = torch.as_tensor(vocabulary, dtype=torch.long)
        row_of = torch.full((full.shape[0],), -100, dtype=torch.long)
        row_of[ids] = torch.arange(len(ids))
        return cls(llm=llm, weight=full.detach()[ids].clone(), row_of=row_of)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.llm.capped_logits(hidden @ self.weight.to(hidden.dtype).T).float()


def mask_positions(input_ids: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Bool (rows, length): the pieces MNTP hides, at least one per row, never the first
    (it has no position before it to be predicted from)."""
    chosen = torch.rand(input_ids.shape, generator=generator) < rate
    chosen[:, 0] = False
    empty = ~chosen.any(dim=1)
    if empty.any():
        picks = torch.randint(1, input_ids.shape[1], (int(empty.sum()),), generator=generator)
        chosen[empty.nonzero().flatten(), picks] = True
    return chosen


def sequence_loss(
    llm: BaseLLM,
    adapter_name: Optional[str],
    input_ids: torch.Tensor,
    objective: str,
    head: VocabularyHead,
    *,
    mask_rate: float = 0.2,
    mask_id: int = 0,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, int]:
    """(summed cross-entropy, number of pieces predicted) of a batch of full rows under
    `objective`, the model run with `adapter_name` (None: the plain base)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    device = llm.device
    ones = torch.ones_like(input_ids)
    if objective == "clm":
        inputs, rows, cols = input_ids, None, None
    else:
        hidden_pieces = mask_positions(input_ids, mask_rate, generator or torch.Generator().manual_seed(0))
        inputs = input_ids.masked_fill(hidden_pieces, mask_id)
        rows, cols = hidden_pieces.nonzero(as_tuple=True)
    attention = decoder_attention_mask(llm.config.model_type, ones.to(device), ATTENTION_OF[objective])
    with active_adapter(llm, adapter_name):
        hidden = llm.decoder(input_ids=inputs.to(device), attention_mask=attention, use_cache=False).last_hidden_state
    if objective == "clm":
        predicting = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        targets = head.row_of[input_ids[:, 1:].reshape(-1)]
    else:
        predicting = hidden[rows.to(device), (cols - 1).to(device)]
        targets = head.row_of[input_ids[rows, cols]]
    loss = F.cross_entropy(head.logits(predicting), targets.to(device), ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum())
