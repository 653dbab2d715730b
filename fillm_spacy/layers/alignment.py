"""Which word pieces belong to which spaCy token, and how long documents are windowed.

Gemma-style pieces carry a leading '▁', so their character offsets include the space
before a word. We align by character offsets after dropping that leading whitespace:
every token gets exactly the pieces that cover its characters. (spacy-alignments aligns
two lists of strings; we already have exact offsets from the fast tokenizer, which also
place byte-fallback pieces of an emoji on the emoji.)
"""
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np
from spacy.tokens import Doc


@dataclass
class DocPieces:
    """A document's pieces and the token → piece alignment."""

    piece_ids: np.ndarray  # (n_pieces,) vocabulary ids, no special tokens
    token_lengths: np.ndarray  # (n_tokens,) number of pieces per token, always >= 1 when there are pieces
    token_pieces: np.ndarray  # (sum(token_lengths),) piece indices, token by token


def content_spans(text: str, offsets: Sequence[Sequence[int]]) -> np.ndarray:
    """Character spans of pieces without the whitespace they carry in front of a word."""
    spans = np.asarray(offsets, dtype="int64").reshape(-1, 2).copy()
    for row, (start, end) in enumerate(spans):
        piece_text = text[start:end]
        stripped = piece_text.lstrip()
        if stripped:  # a whitespace-only piece keeps its span: it belongs to a whitespace token
            spans[row, 0] = start + (len(piece_text) - len(stripped))
    return spans


def align_tokens_to_pieces(doc: Doc, piece_ids: Sequence[int], offsets: Sequence[Sequence[int]]) -> DocPieces:
    """Token → pieces by character overlap. A token no piece overlaps (spaCy's token for a
    run of extra spaces, whose space the next piece swallowed) gets the piece just before it."""
    n_tokens = len(doc)
    piece_ids = np.asarray(piece_ids, dtype="int64")
    if n_tokens == 0:
        return DocPieces(piece_ids, np.zeros((0,), "int64"), np.zeros((0,), "int64"))
    if len(piece_ids) == 0:
        raise ValueError(f"The tokenizer produced no pieces for a non-empty text: {doc.text[:50]!r}")
    spans = content_spans(doc.text, offsets)
    token_starts = np.array([t.idx for t in doc], dtype="int64")
    token_ends = token_starts + np.array([len(t.text) for t in doc], dtype="int64")
    # First token ending after the piece starts, last token starting before the piece ends.
    first = np.searchsorted(token_ends, spans[:, 0], side="right")
    last = np.searchsorted(token_starts, spans[:, 1], side="left") - 1
    members: List[List[int]] = [[] for _ in range(n_tokens)]
    for piece, (lo, hi) in enumerate(zip(first, last)):
        for token in range(lo, min(hi, n_tokens - 1) + 1):
            members[token].append(piece)
    piece_starts = spans[:, 0]
    for token, pieces in enumerate(members):
        if not pieces:
            before = np.searchsorted(piece_starts, token_starts[token], side="right") - 1
            pieces.append(int(max(before, 0)))
    lengths = np.array([len(p) for p in members], dtype="int64")
    return DocPieces(piece_ids, lengths, np.concatenate([np.asarray(p, "int64") for p in members]))


def window_starts(n_pieces: int, window: int, stride: int) -> List[int]:
    """Start offsets of overlapping windows of `window` pieces, `stride` apart, covering all pieces."""
    if window <= 0 or stride <= 0 or stride > window:
        raise ValueError(f"Need 0 < stride <= window, got window={window}, stride={stride}")
    starts = [0]
    while starts[-1] + window < n_pieces:
        starts.append(starts[-1] + stride)
    return starts


def assign_pieces_to_windows(n_pieces: int, starts: Sequence[int], window: int, causal: bool) -> np.ndarray:
    """For each piece, the window whose output we keep: the one giving it the most context.
    A causal model sees only the left, so that is the window with most pieces before it;
    a bidirectional one sees both sides, so the window where it sits most centrally."""
    best = np.zeros((n_pieces,), dtype="int64")
    best_context = np.full((n_pieces,), -1, dtype="int64")
    positions = np.arange(n_pieces)
    for index, start in enumerate(starts):
        inside = (positions >= start) & (positions < start + window)
        left = positions - start
        context = left if causal else np.minimum(left, start + window - 1 - positions)
        better = inside & (context > best_context)
        best[better] = index
        best_context[better] = context[better]
    return best
