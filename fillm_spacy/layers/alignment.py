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
    a bidirectional one sees both sides, so the window where it sits most centrally.
    Ties go to the earlier window. A piece no window holds gets window 0.

    A few binary searches per piece (O(pieces · log windows)) instead of one pass over all the
    pieces per window: a long document has many windows, and windows × pieces is quadratic.
    """
    starts = np.asarray(starts, dtype="int64").reshape(-1)
    if len(starts) == 0 or (np.diff(starts) <= 0).any():
        raise ValueError(f"Window starts must be non-empty and increasing (use window_starts), got {starts[:10]}...")
    positions = np.arange(n_pieces, dtype="int64")
    # The windows holding a piece p are a run first..last: start in (p - window, p].
    first = np.searchsorted(starts, positions - window, side="right")
    last = np.searchsorted(starts, positions, side="right") - 1
    if causal:  # left context p - start: largest for the earliest start
        best = first
    else:
        # Context min(p - s, s + window - 1 - p) rises until s reaches p - (window - 1) / 2 and
        # falls after it, so the best window is one of the two starts beside that peak (compared
        # at twice the scale to stay in integers); the earlier one wins a tie.
        after_peak = np.searchsorted(2 * starts, 2 * positions - (window - 1), side="left")
        top = np.maximum(last, first)  # pieces no window holds are masked below
        before, after = np.clip(after_peak - 1, first, top), np.clip(after_peak, first, top)
        keep_before = _central_context(positions, starts, before, window) >= _central_context(
            positions, starts, after, window
        )
        best = np.where(keep_before, before, after)
    return np.where(first <= last, best, 0)


def _central_context(positions: np.ndarray, starts: np.ndarray, index: np.ndarray, window: int) -> np.ndarray:
    start = starts[np.minimum(index, len(starts) - 1)]  # index == len(starts) only for held-by-none pieces
    return np.minimum(positions - start, start + window - 1 - positions)
