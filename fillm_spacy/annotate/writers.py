"""Shard writers, one per output format, and the atomic write every shard and manifest goes through.

- spacy:  a DocBin with user_data (the input's metadata), readable by `spacy evaluate`, DocBin.from_disk.
- conllu: spacy-conll's ConllFormatter rows; one `# sent_id` and `# text` per sentence, `# newdoc id`
          and `# source` (input:record) on a document's first sentence. spaCy's whitespace tokens
          ("  ", "\\n") are not CoNLL-U words: they are left out, their dependents attached to the
          nearest word above them (a whitespace root hands the root to its first word).
- jsonl:  one line per document: {"text", "meta", "source", "doc": spaCy's Doc.to_json() less "text"}.

A shard is written under a temporary name, synced and renamed: it exists whole or not at all, and
a failed write (disk full, file size limit, no permission) leaves no temporary file behind and
says so in one line. Only the job's main process writes shards (engines hand it the bytes), and
the journal records each shard's size and sha256 so that a resumed job redoes a shard that was
truncated or altered since.
"""

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from .errors import AnnotateError
from .inputs import Record

EXTENSIONS = {"spacy": "spacy", "conllu": "conllu", "jsonl": "jsonl"}
TEMP_PREFIX = ".tmp-"

_LINE_BREAKING = re.compile(r"[\t\n\r]")
_SPACES = re.compile(" {2,}")  # the conllu parser also splits fields on two spaces


def shard_file_name(index: int, fmt: str) -> str:
    return f"shard-{index:06d}.{EXTENSIONS[fmt]}"


def write_error(path: Path, error: OSError) -> AnnotateError:
    """An OSError of a write as the one line the user sees, with what to do about it."""
    reason = error.strerror or str(error) or type(error).__name__
    return AnnotateError(
        f"cannot write {path}: {reason} (free space, raise the file size limit, or choose a writable "
        f"output directory; finished shards are kept and the same command resumes)"
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name in the same directory, fsync, rename over `path`. On any
    failure (or Ctrl-C) the temporary file is removed; an OSError becomes an AnnotateError."""
    path = Path(path)
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        with open(temp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException as error:
        with contextlib.suppress(OSError):  # not created, or already renamed
            os.unlink(temp)
        if isinstance(error, OSError):
            raise write_error(path, error) from None
        raise


def write_shard(path: Path, data: bytes) -> Dict:
    """Write a shard atomically; its size and sha256 (for the journal and the manifest)."""
    write_atomic(path, data)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def shard_intact(path: Path, stats: Dict) -> bool:
    """True when the file at `path` is the shard the journal recorded: same size and sha256 (a
    record without them, from an older version, is not trusted)."""
    path = Path(path)
    try:
        if "sha256" not in stats or path.stat().st_size != stats.get("bytes"):
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(2**20), b""):
                digest.update(block)
    except OSError:
        return False
    return digest.hexdigest() == stats["sha256"]


Annotated = Tuple[Record, "object", int]  # (record, annotated Doc, document number in the job)


def spacy_shard(items: Sequence[Annotated], names: Sequence[str]) -> bytes:
    from spacy.tokens import DocBin

    docbin = DocBin(store_user_data=True)
    for _, doc, _ in items:
        docbin.add(doc)
    return docbin.to_bytes()


def jsonl_shard(items: Sequence[Annotated], names: Sequence[str]) -> bytes:
    lines = []
    for record, doc, _ in items:
        annotation = doc.to_json()
        annotation.pop("text", None)
        line = {
            "text": doc.text,
            "meta": record.meta,
            "source": {"input": names[record.input], "record": record.index},
            "doc": annotation,
        }
        lines.append(json.dumps(line, ensure_ascii=False) + "\n")
    return "".join(lines).encode("utf8")


def conllu_field(text: str) -> str:
    """A FORM or LEMMA that stays on its line and in its column."""
    text = _SPACES.sub(" ", _LINE_BREAKING.sub(" ", text)).strip()
    return text or "_"


def conllu_view(doc):
    """The doc's words without spaCy's whitespace tokens, as a new Doc with the same tags,
    morphology, lemmas and one tree per sentence (heads re-attached past removed tokens)."""
    from spacy.tokens import Doc

    words, spaces, heads, deps, tags, pos, morphs, lemmas = [], [], [], [], [], [], [], []
    for sent in doc.sents:
        kept = [t for t in sent if not t.is_space]
        if not kept:
            continue
        position = {t.i: len(words) + n for n, t in enumerate(kept)}

        def anchor(token):
            """The nearest word at or above `token`, None if only whitespace is above it."""
            while token.is_space and token.head.i != token.i:
                token = token.head
            return None if token.is_space else token

        roots = [t for t in kept if t.head.i == t.i or anchor(t.head) is None]
        root = roots[0]
        for token in kept:
            is_root = token is root
            head = root if (token.head.i == token.i or anchor(token.head) is None) else anchor(token.head)
            following = doc[token.i + 1] if token.i + 1 < len(doc) else None
            words.append(conllu_field(token.text))
            spaces.append(bool(token.whitespace_) or bool(following is not None and following.is_space))
            heads.append(position[token.i] if is_root else position[head.i])
            deps.append("root" if is_root else ("dep" if token.dep_.lower() == "root" else token.dep_ or "dep"))
            tags.append(token.tag_)
            pos.append(token.pos_)
            morphs.append(str(token.morph))
            lemmas.append(conllu_field(token.lemma_) if token.lemma_ else "")
    return (
        Doc(
            doc.vocab,
            words=words,
            spaces=spaces,
            heads=heads,
            deps=deps,
            tags=tags,
            pos=pos or None,
            morphs=morphs,
            lemmas=lemmas,
        )
        if words
        else None
    )


_FORMATTER = []


def conllu_formatter():
    from spacy_conll.formatter import ConllFormatter

    if not _FORMATTER:
        _FORMATTER.append(ConllFormatter(include_headers=True, disable_pandas=True))
    return _FORMATTER[0]


def conllu_document(doc, doc_id: str, source: str) -> str:
    formatter = conllu_formatter()  # creates the conll_metadata extension before it is set
    view = conllu_view(doc)
    if view is None:
        return ""
    for number, sent in enumerate(view.sents, start=1):
        header = f"# newdoc id = {doc_id}\n# source = {source}\n" if number == 1 else ""
        sent._.conll_metadata = f"{header}# sent_id = {doc_id}-s{number}\n# text = {sent.text}\n"
    formatter(view)
    return "".join(sent._.conll_str + "\n" for sent in view.sents)


def conllu_shard(items: Sequence[Annotated], names: Sequence[str]) -> bytes:
    blocks = []
    for record, doc, number in items:
        if not doc.has_annotation("DEP"):
            raise ValueError("--format conllu needs a pipeline with a parser: this one sets no heads")
        source = conllu_field(f"{names[record.input]}:{record.index}")
        blocks.append(conllu_document(doc, f"doc{number}", source))
    text = "".join(blocks)
    check_conllu(text)
    return text.encode("utf8")


def check_conllu(text: str) -> None:
    """Every shard is read back with the `conllu` parser before it is written: one root per
    sentence, heads inside it, a sent_id and a text."""
    import conllu

    for sentence in conllu.parse(text):
        heads = [token["head"] for token in sentence]
        if (
            heads.count(0) != 1
            or not all(0 <= h <= len(heads) for h in heads)
            or not {"sent_id", "text"} <= set(sentence.metadata)
        ):
            raise ValueError(f"invalid CoNLL-U sentence {sentence.metadata.get('sent_id')} (a bug in the writer)")


SERIALIZERS = {"spacy": spacy_shard, "conllu": conllu_shard, "jsonl": jsonl_shard}


def serialize_shard(fmt: str, items: Sequence[Annotated], names: Sequence[str]) -> bytes:
    return SERIALIZERS[fmt](items, names)


def output_documents(fmt: str, path: Path) -> List[Dict]:
    """The documents of a written shard as comparable dicts (for checks and tests): the text,
    every token attribute, sentences, entities and metadata."""
    if fmt == "jsonl":
        return [json.loads(line) for line in Path(path).read_text(encoding="utf8").splitlines()]
    if fmt == "conllu":
        import conllu

        return [
            {"metadata": dict(s.metadata), "tokens": [dict(t) for t in s]}
            for s in conllu.parse(Path(path).read_text(encoding="utf8"))
        ]
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    docs = DocBin().from_disk(path).get_docs(Vocab())
    return [
        {
            **doc.to_json(),
            "spaces": [t.whitespace_ for t in doc],
            "user_data": {k: v for k, v in doc.user_data.items() if isinstance(k, str)},
        }
        for doc in docs
    ]
