"""`fillm.JointCorpus.v1`: one training stream from a treebank and an NER corpus.

tl_fillm trains every head on one shared encoder, but Tagalog has no corpus annotated for
both syntax and entities. Docs from each corpus leave the other's annotation missing
(not empty), so each head learns only from the docs that carry its annotation.
"""
from pathlib import Path
from typing import Callable, Iterator, Optional

from spacy.language import Language
from spacy.training import Corpus, Example


def joint_corpus_v1(
    treebank: Optional[Path],
    ner: Optional[Path] = None,
    max_length: int = 0,
    limit: int = 0,
) -> Callable[[Language], Iterator[Example]]:
    """Examples of `treebank` (a .spacy file or directory) followed by those of `ner` (optional).

    max_length, limit: as for spacy.Corpus.v1, applied to each corpus.
    """
    paths = [path for path in (treebank, ner) if path is not None and str(path) not in ("", "None", "null")]

    def read(nlp: Language) -> Iterator[Example]:
        if treebank is None:  # like spacy.Corpus.v1: a missing path is an error when read, not when built
            raise ValueError("fillm.JointCorpus.v1 needs a treebank path: set paths.train / paths.dev")
        for corpus in (Corpus(path, max_length=max_length, limit=limit) for path in paths):
            yield from corpus(nlp)

    return read
