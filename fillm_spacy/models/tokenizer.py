"""Gemma-style SentencePiece-BPE tokenizers as Hugging Face fast tokenizers.

transformers derives a *unigram* tokenizer from Gemma 3 GGUF files, which splits
ordinary words into characters ('capital' into 5 pieces). Gemma's SentencePiece
model is BPE: we rebuild it from the GGUF vocabulary, deriving the merges from the
vocabulary ranks the way SentencePiece BPE ranks them (a merge is as good as the
piece it produces).
"""

from typing import Dict, Iterable, List, Sequence, Tuple

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
from transformers import PreTrainedTokenizerFast

# GGUF token types (llama.cpp's llama_token_type)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6


def merges_from_vocab(tokens: Sequence[str], types: Sequence[int]) -> List[Tuple[str, str]]:
    """Every split of a normal piece into two known pieces is a merge, ranked by the piece's id
    (SentencePiece stores BPE pieces in merge order, so a lower id is an earlier merge)."""
    vocab = {tok: i for i, tok in enumerate(tokens)}
    ranked = []
    for piece_id, (piece, kind) in enumerate(zip(tokens, types)):
        if kind != TOKEN_NORMAL or len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((piece_id, vocab[left], vocab[right], left, right))
    ranked.sort()
    return [(left, right) for _, _, _, left, right in ranked]


def build_gemma_tokenizer(
    tokens: Sequence[str],
    types: Sequence[int],
    *,
    bos_token: str = "<bos>",
    eos_token: str = "<eos>",
    unk_token: str = "<unk>",
    pad_token: str = "<pad>",
) -> PreTrainedTokenizerFast:
    """A Gemma tokenizer: spaces become '▁' (no dummy prefix), BPE with byte fallback,
    '<bos>' prepended when special tokens are requested. Offsets point into the raw text,
    so a piece '▁ako' covers the space before 'ako'."""
    vocab: Dict[str, int] = {tok: i for i, tok in enumerate(tokens)}
    bpe = models.BPE(
        vocab=vocab,
        merges=merges_from_vocab(tokens, types),
        unk_token=unk_token,
        fuse_unk=True,
        byte_fallback=True,
    )
    tokenizer = Tokenizer(bpe)
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.add_special_tokens(
        [AddedToken(tok, special=True, normalized=False) for tok, kind in zip(tokens, types) if kind == TOKEN_CONTROL]
    )
    tokenizer.add_tokens(
        [
            AddedToken(tok, special=False, normalized=True)
            for tok, kind in zip(tokens, types)
            if kind == TOKEN_USER_DEFINED
        ]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos_token} $A", pair=f"{bos_token} $A $B", special_tokens=[(bos_token, vocab[bos_token])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos_token,
        eos_token=eos_token,
        unk_token=unk_token,
        pad_token=pad_token,
        padding_side="left",  # decoder-only generation pads on the left
    )


def train_gemma_style_tokenizer(texts: Iterable[str], vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A small tokenizer of the same kind, trained on `texts`: for tiny test models."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    byte_pieces = [f"<0x{b:02X}>" for b in range(256)]
    from tokenizers import pre_tokenizers, trainers

    trainer_tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    # Learn pieces within words, '▁' in front, as SentencePiece does; the built tokenizer
    # then needs no pre-tokenizer, like Gemma's.
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")

    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials + byte_pieces, show_progress=False)
    trainer_tokenizer.train_from_iterator(texts, trainer=trainer)
    inverse = {i: tok for tok, i in trainer_tokenizer.get_vocab().items()}
    tokens = [inverse[i] for i in range(len(inverse))]
    types = [TOKEN_CONTROL if tok in specials else TOKEN_BYTE if tok in byte_pieces else TOKEN_NORMAL for tok in tokens]
    return build_gemma_tokenizer(tokens, types)
