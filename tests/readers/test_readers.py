"""fillm.JointCorpus.v1: treebank, NER and silver docs in one stream, each with its own annotation;
raw text one document per line."""

import pytest
import spacy
from spacy.tokens import DocBin

from fillm_spacy.readers.joint_corpus import joint_corpus_v1
from fillm_spacy.readers.raw_text import first_lines

from ..conftest import DATA, sample_docs


def write(path, docs):
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    return path


def test_treebank_then_ner_then_silver(tmp_path):
    nlp = spacy.blank("tl")
    treebank = write(tmp_path / "ud.spacy", sample_docs(5))
    ner = DATA / "wikiann-sample.spacy"
    silver = write(tmp_path / "silver.spacy", sample_docs(7)[5:])
    examples = list(joint_corpus_v1(treebank, ner, silver)(nlp))
    n_ner = len(list(DocBin().from_disk(ner).get_docs(nlp.vocab)))
    assert len(examples) == 5 + n_ner + 2
    assert [eg.reference.text for eg in examples[:5]] == [d.text for d in sample_docs(5)]
    assert [eg.reference.text for eg in examples[-2:]] == [d.text for d in sample_docs(7)[5:]]
    assert all(eg.reference.has_annotation("DEP") for eg in examples[-2:])
    # the registry resolves it from a config, and "null" paths are left out
    reader = spacy.registry.readers.get("fillm.JointCorpus.v1")(treebank=treebank, ner="null", silver=None)
    assert len(list(reader(nlp))) == 5


def test_missing_treebank_is_an_error_when_read():
    reader = joint_corpus_v1(None)
    with pytest.raises(ValueError, match="treebank path"):
        list(reader(spacy.blank("tl")))


def test_first_lines_skips_blank_lines_and_counts_documents(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("  Una.  \n\n \t\nIkalawa.\r\nIkatlo.\nIkaapat.", encoding="utf8")
    assert first_lines(raw, 2) == ["Una.", "Ikalawa."]
    assert first_lines(raw) == ["Una.", "Ikalawa.", "Ikatlo.", "Ikaapat."]
    assert first_lines(raw, 10) == first_lines(raw)
    assert first_lines(raw, 0) == []


def test_first_lines_errors_name_the_file(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Pi\u00f1as\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt is not UTF-8 text"):
        first_lines(latin1)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        first_lines(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="n_lines"):
        first_lines(latin1, -1)
