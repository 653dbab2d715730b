"""Raw text → held-out split → packed piece sequences for language-adaptive training."""

from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np


@dataclass
class TextSplit:
    """Non-empty lines of a raw-text file: the training lines and the last `heldout` lines."""

    train: List[str]
    heldout: List[str]


def split_lines(path: Path, heldout_lines: int) -> TextSplit:
    """The file's non-empty lines, its last `heldout_lines` held out for evaluation."""
    path = Path(path)
    if heldout_lines < 1:
        raise ValueError(f"heldout_lines must be >= 1 (perplexity needs held-out text), got {heldout_lines}")
    if not path.is_file():
        raise FileNotFoundError(f"Raw text '{path}' does not exist: give a UTF-8 file with one document per line.")
    try:
        text = path.read_text(encoding="utf8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Raw text '{path}' is not UTF-8 (byte {error.start}): convert it first (iconv -t UTF-8)."
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if len(lines) <= heldout_lines:
        raise ValueError(
            f"Raw text '{path}' has {len(lines)} non-empty lines; holding out {heldout_lines} leaves nothing to "
            f"train on: give more text or a smaller --heldout-lines."
        )
    return TextSplit(train=lines[:-heldout_lines], heldout=lines[-heldout_lines:])


def pack_sequences(tokenizer, lines: List[str], length: int) -> np.ndarray:
    """The lines' pieces (joined by a newline, user text never read as control tokens) cut into
    rows of `length` pieces, each starting with BOS; the last, shorter row is dropped unless it is
    the only one. int64 (rows, length)."""
    if length < 8:
        raise ValueError(f"sequence length must be >= 8 pieces, got {length}")
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    encoded = tokenizer(lines, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    stream: List[int] = []
    for ids in encoded:
        stream.extend(ids)
        stream.extend(newline)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    body = length - len(bos)
    rows = [bos + stream[i : i + body] for i in range(0, len(stream), body)]
    if len(rows) > 1 and len(rows[-1]) < length:
        rows.pop()
    if not rows or len(rows[0]) < 2:
        raise ValueError("The text has too few pieces to make one training sequence.")
    if len(rows) == 1 and len(rows[0]) < length:
        return np.asarray(rows, dtype=np.int64)  # one short row: a tiny text still trains
    return np.asarray(rows, dtype=np.int64)


def corpus_vocabulary(*sequences: np.ndarray) -> np.ndarray:
    """Sorted ids of every piece that occurs in the sequences: the only outputs scored."""
    return np.unique(np.concatenate([s.ravel() for s in sequences]))
