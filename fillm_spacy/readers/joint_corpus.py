"""`fillm.JointCorpus.v1`: one training stream from a treebank, an NER corpus and silver data.

tl_fillm trains every head on one shared encoder, but Tagalog has no corpus annotated for
both syntax and entities. Docs from each corpus leave the other's annotation missing
(not empty), so each head learns only from the docs that carry its annotation. Silver docs
(raw text annotated by a larger pipeline, for distillation) carry every annotation.
"""

from pathlib import Path
from typing import Callable, Iterator, Optional

from spacy.language import Language
from spacy.training import Corpus, Example


def _given(path: Optional[Path]) -> bool:
    return path is not None and str(path) not in ("", "None", "null")


def joint_corpus_v1(
    treebank: Optional[Path],
    ner: Optional[Path] = None,
    silver: Optional[Path] = None,
    max_length: int = 0,
    limit: int = 0,
) -> Callable[[Language], Iterator[Example]]:
    """Examples of `treebank` (a .spacy file or directory), then those of `ner` and `silver`
    (both optional).

    max_length, limit: as for spacy.Corpus.v1, applied to each corpus.
    """
    paths = [path for path in (treebank, ner, silver) if _given(path)]

    def read(nlp: Language) -> Iterator[Example]:
        if not _given(treebank):  # like spacy.Corpus.v1: a missing path is an error when read, not when built
            raise ValueError("fillm.JointCorpus.v1 needs a treebank path: set paths.train / paths.dev")
        for corpus in (Corpus(path, max_length=max_length, limit=limit) for path in paths):
            yield from corpus(nlp)

    return read
