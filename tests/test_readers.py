"""fillm.JointCorpus.v1: treebank, NER and silver docs in one stream, each with its own annotation."""
import pytest
import spacy
from spacy.tokens import DocBin

from fillm_spacy.readers.joint_corpus import joint_corpus_v1

from .conftest import DATA, sample_docs


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
