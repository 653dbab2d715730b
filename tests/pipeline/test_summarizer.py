"""fillm_summarizer (lead, centrality, abstractive) and the ROUGE evaluation."""

import json

import numpy as np
import pytest
import spacy
import srsly
from rouge_score import rouge_scorer

from fillm_spacy.evaluation.rouge import UnicodeWordTokenizer, make_scorer
from fillm_spacy.evaluation.rouge import main as rouge_main
from fillm_spacy.llm.headline import clean_headline, sentences
from fillm_spacy.models.loading import load_base_llm
from fillm_spacy.pipeline.extractive import centrality_scores

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Sentences 2 and 3 share most words with the others; sentence 4 shares none.
HAND_MADE = (
    "Kumakain ng isda ang pusa. "
    "Kumakain ng isda at karne ang pusa at ang aso. "
    "Kumakain ng karne ang aso. "
    "Umuulan sa Maynila kahapon."
)


def summarizer(mode: str, lang: str = "tl", **config) -> spacy.Language:
    nlp = spacy.blank(lang)
    nlp.add_pipe("fillm_summarizer", config={"mode": mode, **config})
    return nlp


def long_text(n_words: int, punctuated: bool = True) -> str:
    words = ["ang", "bata", "ay", "naglaro", "sa", "parke", "kasama", "ng", "aso", "niya"]
    out = []
    for i in range(n_words):
        out.append(words[i % len(words)])
        if punctuated and i % 20 == 19:
            out[-1] += "."
    return " ".join(out)


@pytest.mark.parametrize("mode", ["lead", "centrality"])
@pytest.mark.parametrize("text", ["", "   \n\n  "])
def test_empty_docs_get_empty_summaries(mode, text):
    assert summarizer(mode)(text)._.summary == ""


def test_lead_takes_the_first_sentences():
    nlp = summarizer("lead", max_sentences=2)
    assert nlp("Una ito. Pangalawa ito! Pangatlo ba ito? Pang-apat.")._.summary == "Una ito. Pangalawa ito!"
    assert summarizer("lead", max_sentences=9)("Isa lang.")._.summary == "Isa lang."


def test_lead_follows_sentence_boundaries_set_by_a_component():
    nlp = spacy.blank("tl")
    nlp.add_pipe("sentencizer", config={"punct_chars": [";"]})
    nlp.add_pipe("fillm_summarizer", config={"mode": "lead", "max_sentences": 1})
    assert nlp("Una ito. Pa rin; pangalawa na.")._.summary == "Una ito. Pa rin;"


def test_centrality_over_bag_of_words_picks_the_central_sentence():
    nlp = summarizer("centrality", max_sentences=1)
    assert nlp(HAND_MADE)._.summary == "Kumakain ng isda at karne ang pusa at ang aso."
    # Sentences 1 and 3 tie for second place: the earlier wins; the summary keeps document order.
    two = summarizer("centrality", max_sentences=2)(HAND_MADE)._.summary
    assert two == "Kumakain ng isda ang pusa. Kumakain ng isda at karne ang pusa at ang aso."


def test_centrality_uses_token_vectors_when_a_tok2vec_ran():
    nlp = spacy.blank("tl")
    doc = nlp.make_doc(HAND_MADE)
    sents = sentences(doc, 80)
    # Vectors that make sentence 4 the hub: 1-3 each point their own way, 4 lies between them.
    directions = {0: [1, 0, 0], 1: [0, 1, 0], 2: [0, 0, 1], 3: [1, 1, 1]}
    tensor = np.zeros((len(doc), 3), dtype="float32")
    for i, sent in enumerate(sents):
        tensor[sent.start : sent.end] = directions[i]
    doc.tensor = tensor
    component = summarizer("centrality", max_sentences=1).get_pipe("fillm_summarizer")
    assert component(doc)._.summary == "Umuulan sa Maynila kahapon."


def test_centrality_scores_are_a_distribution():
    scores = centrality_scores(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]))
    assert scores.sum() == pytest.approx(1.0) and scores.argmax() == 1


@pytest.mark.parametrize("punctuated", [True, False])
@pytest.mark.parametrize("mode", ["lead", "centrality"])
def test_very_long_docs_are_bounded(mode, punctuated):
    text = long_text(10_000, punctuated)
    nlp = summarizer(mode, max_sentences=3, max_sentence_tokens=40, max_input_sentences=100)
    doc = nlp(text)
    # Punctuated: sentences of 20 words and a period token; unpunctuated: one 10k-token sentence,
    # cut into units of 40 tokens. Only the first 100 units are read.
    unit_tokens, unit_words = (21, 20) if punctuated else (40, 40)
    units = nlp.get_pipe("fillm_summarizer").input_sentences(doc)
    assert len(units) == 100 and {len(unit) for unit in units} == {unit_tokens}
    # Every unit has the same words, so centrality ties everywhere and the earliest units win.
    assert doc._.summary == long_text(3 * unit_words, punctuated)


def test_non_tagalog_text():
    english = "The river flooded the town. Residents moved to higher ground. Schools were closed."
    assert summarizer("lead", "en", max_sentences=1)(english)._.summary == "The river flooded the town."
    hindi = "बारिश हो रही है। स्कूल बंद हैं।"
    assert summarizer("lead", "hi", max_sentences=1)(hindi)._.summary == "बारिश हो रही है।"
    russian = "Река вышла из берегов. Жители ушли. Школы закрыты. Река вышла и школы закрыты."
    assert summarizer("centrality", "ru", max_sentences=1)(russian)._.summary == "Река вышла и школы закрыты."


def test_abstractive_on_a_tiny_model_is_bounded(tiny_gemma3_dir):
    nlp = summarizer("abstractive", model_name=str(tiny_gemma3_dir), max_new_tokens=5, max_input_pieces=64)
    component = nlp.get_pipe("fillm_summarizer")
    assert component.generator.llm is load_base_llm(str(tiny_gemma3_dir))  # the shared base model
    tokenizer = component.generator.llm.tokenizer
    docs = list(nlp.pipe(["", long_text(10_000), "The river flooded the town. Schools were closed.", "Umuulan."]))
    assert docs[0]._.summary == ""
    for doc in docs[1:]:
        assert isinstance(doc._.summary, str) and "\n" not in doc._.summary
    # The three non-empty docs were generated in one batch, each at most max_new_tokens pieces.
    assert len(component.generator.last_response_pieces) == 3
    assert all(0 < n <= 5 for n in component.generator.last_response_pieces)
    # The 10k-word doc reaches the model as at most max_input_pieces pieces of its text.
    truncated = component.truncated_input(nlp.make_doc(long_text(10_000)))
    assert 0 < len(tokenizer(truncated, add_special_tokens=False)["input_ids"]) <= 64
    assert long_text(10_000).startswith(truncated)


@pytest.mark.parametrize(
    "response,headline",
    [
        ("* <strong>Baha sa Maynila</strong>\nArticle: ...", "Baha sa Maynila"),
        ('Headline: "Baha sa España"', "Baha sa España"),
        ("## Pamagat: 5 patay sa baha", "5 patay sa baha"),
        ("Article:", ""),
        ("", ""),
    ],
)
def test_generated_headlines_lose_their_wrapping(response, headline):
    assert clean_headline(response) == headline


def test_pipeline_with_summarizer_saves_and_loads(tmp_path):
    nlp = summarizer("centrality", max_sentences=1)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded(HAND_MADE)._.summary == nlp(HAND_MADE)._.summary


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="mode"):
        summarizer("extractive")
    with pytest.raises(ValueError, match="at least 1"):
        summarizer("lead", max_sentences=0)


# --------------------------------------------------------------------------- ROUGE


def test_rouge_tokenizer_keeps_tagalog_and_unicode_words():
    tokenizer = UnicodeWordTokenizer()
    assert tokenizer.tokenize("Si Niño ay nagpunta sa Parañaque, 'di ba?") == [
        "si",
        "niño",
        "ay",
        "nagpunta",
        "sa",
        "parañaque",
        "di",
        "ba",
    ]
    assert tokenizer.tokenize("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # vowel signs stay inside the word
    assert tokenizer.tokenize("ฝนตก หนัก") == ["ฝนตก", "หนัก"]
    # rouge-score's default tokenizer keeps only [a-z0-9]: "Niño" becomes "ni", "o" and a
    # Cyrillic headline becomes nothing, scoring 0 against itself.
    default = rouge_scorer.RougeScorer(["rouge1"])
    assert default._tokenizer.tokenize("Niño") == ["ni", "o"]
    headline = "Река вышла из берегов"
    assert default.score(headline, headline)["rouge1"].fmeasure == 0.0
    assert make_scorer().score(headline, headline)["rouge1"].fmeasure == pytest.approx(1.0)
    reference, prediction = "Dumating si Niño sa Parañaque", "Dumating si Nino sa Paranaque"
    assert make_scorer().score(reference, prediction)["rouge1"].fmeasure == pytest.approx(0.6)


def test_rouge_cli_reports_system_beside_lead1(tmp_path):
    records = [
        {"doc_id": "a", "text": HAND_MADE, "summary": "Kumakain ang pusa at aso"},
        {
            "doc_id": "b",
            "text": "Umuulan sa Maynila. Baha sa España Boulevard. Sarado ang mga paaralan.",
            "summary": "Baha sa España",
        },
        {"doc_id": "c", "text": "Walang kinalaman ito.", "summary": "Iba ito"},
    ]
    data = tmp_path / "pairs.jsonl"
    srsly.write_jsonl(data, records)
    output = tmp_path / "metrics" / "rouge.json"
    rouge_main(
        [
            "--data",
            str(data),
            "--range",
            "0:2",
            "--mode",
            "centrality",
            "--output",
            str(output),
            "--save-predictions",
            str(tmp_path / "pred.jsonl"),
        ]
    )
    result = json.loads(output.read_text())
    assert result["n_docs"] == 2
    assert set(result["system"]) >= {"rouge1", "rouge2", "rougeL"} and result["lead1"]["name"] == "lead-1"
    assert set(result["difference_f"]) == {"rouge1", "rouge2", "rougeL"}
    # Lead-1 of doc b is "Umuulan sa Maynila.": no word of "Baha sa España" but "sa".
    lead_b = make_scorer().score("Baha sa España", "Umuulan sa Maynila.")["rouge1"].fmeasure
    lead_a = make_scorer().score("Kumakain ang pusa at aso", "Kumakain ng isda ang pusa.")["rouge1"].fmeasure
    assert result["lead1"]["rouge1"]["f"] == pytest.approx((lead_a + lead_b) / 2)
    # Scoring saved predictions gives the same system scores.
    again = rouge_main(["--data", str(data), "--range", "0:2", "--predictions", str(tmp_path / "pred.jsonl")])
    assert again["system"]["rouge1"] == result["system"]["rouge1"]


def test_abstractive_prompt_keeps_a_documents_control_tokens_as_text(tiny_gemma3_dir):
    """ "<eos>"/"<bos>" in a doc are pieces of text in the prompt, and the input bound counts them so."""
    nlp = summarizer("abstractive", model_name=str(tiny_gemma3_dir), max_new_tokens=3, max_input_pieces=24)
    component = nlp.get_pipe("fillm_summarizer")
    tokenizer = component.generator.llm.tokenizer
    doc = nlp.make_doc("Sabi niya <eos> <bos> <eos> at <eos> wakas. " * 20)
    ids = component.generator.encode_prompt(component.build_prompt(doc))
    assert ids.count(tokenizer.bos_token_id) == 1 and tokenizer.eos_token_id not in ids
    truncated = component.truncated_input(doc)
    assert "<eos>" in truncated
    pieces = tokenizer(truncated, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert 0 < len(pieces) <= 24
    assert isinstance(nlp(doc)._.summary, str)
