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
    _doc, enc, aligned = align(nlp, tokenizer, "sila ay")
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    first_len = aligned.token_lengths[0]
    first_pieces = [pieces[p] for p in aligned.token_pieces[:first_len]]
    assert all("▁" not in piece for piece in first_pieces)
    assert "".join(first_pieces) == "sila"


def test_empty_doc_has_no_tokens_and_no_links(tokenizer):
    nlp = spacy.blank("tl")
    doc, _enc, aligned = align(nlp, tokenizer, "")
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


def assign_pieces_to_windows_reference(n_pieces, starts, window, causal):
    """The original windows × pieces scan, kept as the reference the closed form must match."""
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


@settings(max_examples=400, deadline=None)
@given(n_pieces=st.integers(0, 600), window=st.integers(1, 80), data=st.data(), causal=st.booleans())
def test_window_assignment_matches_the_windows_times_pieces_scan(n_pieces, window, data, causal):
    stride = data.draw(st.integers(1, window))
    starts = window_starts(n_pieces, window, stride)
    expected = assign_pieces_to_windows_reference(n_pieces, starts, window, causal)
    assert assign_pieces_to_windows(n_pieces, starts, window, causal).tolist() == expected.tolist()


@settings(max_examples=300, deadline=None)
@given(
    starts=st.lists(st.integers(0, 300), min_size=1, max_size=30, unique=True).map(sorted),
    n_pieces=st.integers(0, 400),
    window=st.integers(1, 60),
    causal=st.booleans(),
)
def test_window_assignment_matches_the_scan_for_uneven_starts_and_gaps(starts, n_pieces, window, causal):
    """Starts that are not evenly spaced, some pieces in no window (those get window 0)."""
    expected = assign_pieces_to_windows_reference(n_pieces, starts, window, causal)
    assert assign_pieces_to_windows(n_pieces, starts, window, causal).tolist() == expected.tolist()


def test_window_assignment_refuses_unsorted_starts():
    with pytest.raises(ValueError, match="increasing"):
        assign_pieces_to_windows(10, [4, 0], 6, causal=False)


@pytest.mark.parametrize("causal", [True, False])
def test_window_assignment_of_two_million_pieces(causal):
    """Linear in the pieces: the old scan would take windows × pieces (about 10^10 steps) here."""
    n_pieces, window, stride = 2_000_000, 512, 384
    starts = np.asarray(window_starts(n_pieces, window, stride))
    owner = assign_pieces_to_windows(n_pieces, starts, window, causal)
    positions = np.arange(n_pieces)
    chosen = starts[owner]
    assert ((positions >= chosen) & (positions < chosen + window)).all()
    if causal:  # the earliest window holding the piece
        assert (owner == np.maximum(0, -(-(positions - window + 1) // stride))).all()
        return

    # The context is unimodal over the windows, so beating both neighbours is the optimum;
    # the earlier neighbour must not even tie it.
    def context(index):
        start = starts[np.clip(index, 0, len(starts) - 1)]
        held = (index >= 0) & (index < len(starts)) & (positions >= start) & (positions < start + window)
        return np.where(held, np.minimum(positions - start, start + window - 1 - positions), -1)

    mine = context(owner)
    assert (mine > context(owner - 1)).all() and (mine >= context(owner + 1)).all()


def test_window_arguments_are_checked():
    with pytest.raises(ValueError, match="stride"):
        window_starts(10, 4, 5)


def test_control_tokens_written_in_a_document_are_text_for_the_encoder(tiny_gemma3_dir):
    """A doc's "<eos>" or "<bos>" reaches the encoder as ordinary pieces (the only <bos> is the
    one each window starts with), and the pieces still align with the tokens."""
    from fillm_spacy.layers.encoder_batch import docs_to_batch
    from fillm_spacy.models.loading import load_base_llm

    llm = load_base_llm(str(tiny_gemma3_dir))
    tokenizer = llm.tokenizer
    nlp = spacy.blank("tl")
    doc = nlp("Sabi niya <eos> at <bos> tapos <pad> na " * 8)
    convert = docs_to_batch(llm, window=16, stride=12, causal=True, pooling="mean")
    batch = convert(None, [doc], False)[0].args[0]
    assert len(batch.windows) > 1
    for window in batch.windows:
        assert window[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in window[1:].tolist()
        assert tokenizer.eos_token_id not in window.tolist() and tokenizer.pad_token_id not in window.tolist()
    assert len(batch.pool_tokens) and set(batch.pool_tokens.tolist()) == set(range(len(doc)))
    # the tokens of "<eos>" get the pieces that spell it
    encoded = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
    aligned = align_tokens_to_pieces(doc, encoded["input_ids"], encoded["offset_mapping"])
    span = doc.char_span(doc.text.index("<eos>"), doc.text.index("<eos>") + len("<eos>"))
    first = int(aligned.token_lengths[: span.start].sum())
    pieces = sorted(set(aligned.token_pieces[first : first + aligned.token_lengths[span.start : span.end].sum()]))
    assert tokenizer.decode([encoded["input_ids"][p] for p in pieces]).strip() == "<eos>"
