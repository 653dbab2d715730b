"""Docs → the tensors the LLM encoder's torch module needs (`EncoderBatch`), on the CPU side.

Tokenize each doc's text with the base model's fast tokenizer, align pieces to spaCy tokens by
character offsets, cut long docs into overlapping windows (BOS first), and record how the
windows' rows are stitched back into one row per piece and pooled into one row per token.
"""

from dataclasses import dataclass
from typing import List

import numpy as np
import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model

from ..models.loading import BaseLLM
from .alignment import DocPieces, align_tokens_to_pieces, assign_pieces_to_windows, window_starts

POOLING = ("mean", "first", "last")


@dataclass
class EncoderBatch:
    """Everything the torch module needs for a batch of docs, computed on the CPU side."""

    windows: List[np.ndarray]  # piece ids per window, BOS first
    kept_rows: torch.Tensor  # for each kept piece (docs concatenated), its row in the stacked window outputs
    pool_pieces: torch.Tensor  # (n_links,) index into kept pieces
    pool_tokens: torch.Tensor  # (n_links,) index of the token (docs concatenated)
    pool_weights: torch.Tensor  # (n_links,) weight of the link
    doc_lengths: List[int]  # tokens per doc


def docs_to_batch(llm: BaseLLM, window: int, stride: int, causal: bool, pooling: str):
    """The thinc `convert_inputs` function of the encoder: docs → `EncoderBatch`.

    Each doc's pieces are cut into windows of at most `window` pieces, `stride` apart; every
    piece is kept from one window only (`assign_pieces_to_windows`: for a causal model, the
    one where it has the most left context)."""
    tokenizer = llm.tokenizer
    bos = tokenizer.bos_token_id

    def convert_inputs(model: Model, docs: List[Doc], is_train: bool):
        texts = [doc.text for doc in docs]
        # A document's "<bos>" or "<eos>" is text: split, it is pieces with offsets like any word,
        # not a control token the model would act on.
        encoded = (
            tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
            if texts
            else {"input_ids": [], "offset_mapping": []}
        )
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
                pieces, tokens, weights = pooling_links(aligned, pooling)
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


def pooling_links(aligned: DocPieces, pooling: str):
    """(piece, token, weight) links: how token vectors are made from piece vectors."""
    lengths = aligned.token_lengths
    tokens = np.repeat(np.arange(len(lengths)), lengths)
    if pooling == "mean":
        return aligned.token_pieces, tokens, np.repeat(1.0 / lengths, lengths).astype("float32")
    ends = np.cumsum(lengths)
    chosen = ends - lengths if pooling == "first" else ends - 1
    ones = np.ones((len(lengths),), dtype="float32")
    return aligned.token_pieces[chosen], np.arange(len(lengths)), ones
