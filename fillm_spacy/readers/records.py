"""Gold records on disk and the held-out ranges taken from them: shared by generative fine-tuning
(finetune/), the compare report and the ROUGE evaluation, so that every tool reads the same
docs in the same order and a "START:END" range names the same records everywhere."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TypeVar

Record = TypeVar("Record")


def select_range(records: Sequence[Record], range_: Optional[str], limit: Optional[int] = None) -> List[Record]:
    """The records of a "START:END" range (either end may be empty; None or "": all of them),
    then at most `limit` of those."""
    selected = list(records)
    if range_:
        start, _, end = range_.partition(":")
        selected = selected[int(start) if start else 0 : int(end) if end else None]
    return selected[:limit] if limit is not None else selected


def read_docs(path: Path, lang: str = "tl") -> list:
    """Gold docs from a DocBin (.spacy) or CoNLL-U (one doc per sentence, multiword tokens merged
    into their surface token, as spaCy's converter does)."""
    import spacy
    from spacy.tokens import DocBin

    path = Path(path)
    if path.suffix == ".conllu":
        from spacy.training.converters import conllu_to_docs

        text = path.read_text(encoding="utf8")
        return list(conllu_to_docs(text, n_sents=1, merge_subtokens=True, append_morphology=False, no_print=True))
    return list(DocBin().from_disk(path).get_docs(spacy.blank(lang).vocab))


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    import srsly

    return list(srsly.read_jsonl(str(path)))
