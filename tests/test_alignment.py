import numpy as np
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st

from fillm_spacy.layers.alignment import (
    align_tokens_to_pieces,
    assign_pieces_to_windows,
    content_spans,
    window_starts,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_gemma3_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_gemma3_dir))


def align(nlp, tokenizer, text):
    doc = nlp(text)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return doc, enc, align_tokens_to_pieces(doc, enc["input_ids"], enc["offset_mapping"])


TEXTS = [
    "Ibang tao ang kumain ng mangga, hindi ba?",  # 'ibang' is a multiword token in UD (iba + -ng)
    "Dahil kapwa sila  Kapamilya ay hindi rin daw maiiwasan 😀😀 na magkakatrabaho sila.",
    "  \n Ka-MU niya raw?!  ",
    "«Sabi niya:» 100% ₱5,000.00 — ok…",
]


@pytest.mark.parametrize("text", TEXTS)
def test_every_token_gets_exactly_the_pieces_covering_it(tokenizer, text):
    nlp = spacy.blank("tl")
    doc, enc, aligned = align(nlp, tokenizer, text)
    spans = content_spans(text, enc["offset_mapping"])
    assert len(aligned.token_lengths) == len(doc)
    assert (aligned.token_lengths >= 1).all()
    starts = np.concatenate([[0], np.cumsum(aligned.token_lengths)])
    for i, token in enumerate(doc):
        pieces = aligned.token_pieces[starts[i] : starts[i + 1]]
        t_start, t_end = token.idx, token.idx + len(token.text)
        covered = set()
        for piece in pieces:
            p_start, p_end = spans[piece]
            covered.update(range(max(p_start, t_start), min(p_end, t_end)))
        if token.is_space:
            continue  # a run of extra spaces may have been swallowed by the next piece's '▁'
        # every piece given to the token overlaps it, and together they cover all its characters
        assert all(spans[p][0] < t_end and spans[p][1] > t_start for p in pieces), token.text
        assert covered == set(range(t_start, t_end)), token.text


def test_leading_space_piece_is_not_given_to_previous_word(tokenizer):
    # spacy-transformers 1.4 gives each word one piece too many with Gemma offsets, because
    # '▁word' starts on the space after the previous word.
    nlp = spacy.blank("tl")
    doc, enc, aligned = align(nlp, tokenizer, "sila ay")
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    first_len = aligned.token_lengths[0]
    first_pieces = [pieces[p] for p in aligned.token_pieces[:first_len]]
    assert all("▁" not in piece for piece in first_pieces)
    assert "".join(first_pieces) == "sila"


def test_empty_doc_has_no_tokens_and_no_links(tokenizer):
    nlp = spacy.blank("tl")
    doc, enc, aligned = align(nlp, tokenizer, "")
    assert len(doc) == 0 and len(aligned.token_pieces) == 0


@settings(max_examples=200, deadline=None)
@given(n_pieces=st.integers(1, 400), window=st.integers(1, 64), data=st.data(), causal=st.booleans())
def test_windows_cover_every_piece_and_each_piece_picks_a_window_containing_it(n_pieces, window, data, causal):
    stride = data.draw(st.integers(1, window))
    starts = window_starts(n_pieces, window, stride)
    assert starts[0] == 0 and starts[-1] + window >= n_pieces
    owner = assign_pieces_to_windows(n_pieces, starts, window, causal)
    chosen = np.asarray(starts)[owner]
    positions = np.arange(n_pieces)
    assert ((positions >= chosen) & (positions < chosen + window)).all()
    if causal:  # the first window containing a piece gives it the most left context
        first = [min(i for i, s in enumerate(starts) if s <= p < s + window) for p in positions]
        assert owner.tolist() == first


def test_window_arguments_are_checked():
    with pytest.raises(ValueError, match="stride"):
        window_starts(10, 4, 5)
