"""Input side of the annotator: finding the input files, reading their records one at a time
(bounded memory), and turning each record into clean text or tokens, or a counted reason to skip it.

Formats: `.txt` (one document a line), `.jsonl` (the text under `text_key`; the other fields become
the document's metadata), `.spacy` (a DocBin: its tokenization is kept, its annotations are
replaced). A record is identified by (input index, record index) where the record index is the
0-based line number, or the document's index in the DocBin.

Bad input never raises here: a record is repaired (and the repair counted) or skipped (and the
reason counted). Repairs keep the document; skips drop it, and every skip is reported.
"""

import functools
import glob
import json
import re
from pathlib import Path
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".spacy": "spacy"}

# A record larger than this is skipped (reason too_long) without ever being held in memory whole.
MAX_RECORD_BYTES = 64 * 2**20
# Metadata nested deeper than this is skipped (reason too_deep): msgpack (DocBin user_data, Ray
# rows) refuses about 500 levels, and Python's json recursion about 1,000; no real record comes near.
MAX_DEPTH = 100
_CHUNK = 2**20

REPAIRED = {
    "invalid_utf8": "bytes that are not UTF-8 replaced by U+FFFD",
    "nul_bytes": "NUL characters removed",
    "lone_surrogates": 'lone surrogates (e.g. a JSON "\\ud800") replaced by U+FFFD',
    "big_integers": "metadata integers beyond 64 bits kept as strings",
}
SKIPPED = {
    "empty": "empty or whitespace-only document",
    "not_json": "JSONL line that is not JSON",
    "not_an_object": "JSONL line that is not a JSON object",
    "missing_key": "JSONL object without the text key",
    "text_not_a_string": "JSONL text that is not a string",
    "too_long": f"record over {MAX_RECORD_BYTES // 2**20} MiB",
    "too_deep": f"JSON nested more than {MAX_DEPTH} levels deep",
    "unreadable": "record that could not be read for another reason (see the examples)",
}

_SURROGATES = re.compile("[\ud800-\udfff]")
_INT_RANGE = (-(2**63), 2**64 - 1)  # what msgpack (DocBin user_data, Ray rows) can hold


class InputError(ValueError):
    """The input path names nothing that can be read (a one-line message)."""


class TooDeep(ValueError):
    """A JSON value nested more than MAX_DEPTH levels deep."""


class InputFile(NamedTuple):
    path: str
    format: str  # txt | jsonl | spacy
    name: str  # path relative to the input root, for provenance in the output


class Record(NamedTuple):
    """One document to annotate: `text`, or `words` + `spaces` (from a DocBin), with metadata."""

    input: int
    index: int
    text: Optional[str]
    words: Optional[List[str]]
    spaces: Optional[List[bool]]
    meta: Dict


class Raw(NamedTuple):
    """One record as read: its position, its bytes span (txt/jsonl) and what it became."""

    index: int
    start: int
    end: int
    record: Optional[Record]
    reasons: Tuple[str, ...]


def discover_inputs(spec: str, exclude: Optional[Path] = None) -> List[InputFile]:
    """The input files named by `spec`: a file, a directory (searched recursively for .txt,
    .jsonl and .spacy files) or a glob, sorted by path; files under `exclude` (the output
    directory) are left out."""
    path = Path(spec)
    if path.is_file():
        if path.suffix not in FORMATS:
            raise InputError(f"{spec}: unknown input format '{path.suffix}' (use .txt, .jsonl or .spacy)")
        return [InputFile(str(path.resolve()), FORMATS[path.suffix], path.name)]
    if path.is_dir():
        root, candidates = path, [p for p in path.rglob("*") if p.suffix in FORMATS]
    elif glob.has_magic(spec):
        root, candidates = None, [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).suffix in FORMATS]
    else:
        raise InputError(f"{spec}: no such file or directory")
    excluded = exclude.resolve() if exclude is not None else None
    files = []
    for candidate in sorted(candidates):
        resolved = candidate.resolve()
        hidden = (
            any(part.startswith(".") for part in candidate.relative_to(root).parts)
            if root
            else candidate.name.startswith(".")
        )
        if not candidate.is_file() or hidden or (excluded and resolved.is_relative_to(excluded)):
            continue
        name = str(candidate.relative_to(root)) if root else str(candidate)
        files.append(InputFile(str(resolved), FORMATS[candidate.suffix], name))
    if not files:
        raise InputError(f"{spec}: no .txt, .jsonl or .spacy files found")
    return files


def repair_text(text: str) -> Tuple[str, List[str]]:
    """Text that every spaCy tokenizer and UTF-8 writer accepts, and what was repaired: NUL
    characters removed, lone surrogates (which make spaCy raise, and can hang its
    multiprocessing) replaced by U+FFFD."""
    reasons = []
    if "\x00" in text:
        text = text.replace("\x00", "")
        reasons.append("nul_bytes")
    if _SURROGATES.search(text):
        text = _SURROGATES.sub("\ufffd", text)
        reasons.append("lone_surrogates")
    return text, reasons


def repair_scalar(value, reasons: List[str]):
    if isinstance(value, str):
        fixed, found = repair_text(value)
        reasons.extend(r for r in found if r not in reasons)
        return fixed
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        if "big_integers" not in reasons:
            reasons.append("big_integers")
        return str(value)
    return value


def repair_value(value, reasons: List[str], max_depth: int = MAX_DEPTH):
    """A JSON value made storable in msgpack (DocBin user_data) and UTF-8: strings repaired as
    text, integers beyond 64 bits kept as strings; repairs are appended to `reasons`. Iterative
    (an explicit stack, no recursion limit to hit); raises TooDeep past `max_depth` levels of
    lists and objects, which msgpack and json could not store."""
    if not isinstance(value, (list, tuple, dict)):
        return repair_scalar(value, reasons)
    root = {} if isinstance(value, dict) else []
    # (source container, its repaired copy, depth): each child's copy is put in its parent's copy
    # at once, in order, and filled when its turn on the stack comes
    stack = [(value, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        if depth > max_depth:
            raise TooDeep(f"nested more than {max_depth} levels deep")
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, child in items:
            if isinstance(child, (list, tuple, dict)):
                copy = {} if isinstance(child, dict) else []
                stack.append((child, copy, depth + 1))
            else:
                copy = repair_scalar(child, reasons)
            if isinstance(source, dict):
                target[repair_scalar(key, reasons)] = copy
            else:
                target.append(copy)
    return root


def decode_line(raw: bytes) -> Tuple[str, List[str]]:
    """A line's text without its line ending; undecodable bytes replaced (and counted)."""
    try:
        text, reasons = raw.decode("utf-8"), []
    except UnicodeDecodeError:
        text, reasons = raw.decode("utf-8", errors="replace"), ["invalid_utf8"]
    return text.rstrip("\n").rstrip("\r"), reasons


def text_record(input_index: int, index: int, raw: bytes) -> Tuple[Optional[Record], List[str]]:
    text, reasons = decode_line(raw)
    text, repaired = repair_text(text)
    reasons += repaired
    if not text.strip():
        return None, reasons + ["empty"]
    return Record(input_index, index, text, None, None, {}), reasons


def jsonl_record(input_index: int, index: int, raw: bytes, text_key: str) -> Tuple[Optional[Record], List[str]]:
    line, reasons = decode_line(raw)
    if not line.strip():
        return None, reasons + ["empty"]
    try:
        value = json.loads(line)
    except RecursionError:  # json's own depth limit (about 1,000 levels)
        return None, reasons + ["too_deep"]
    except ValueError:
        return None, reasons + ["not_json"]
    if not isinstance(value, dict):
        return None, reasons + ["not_an_object"]
    if text_key not in value:
        return None, reasons + ["missing_key"]
    text = value.pop(text_key)
    if not isinstance(text, str):
        return None, reasons + ["text_not_a_string"]
    text, repaired = repair_text(text)
    reasons += repaired
    try:
        meta = repair_value(value, reasons)
    except TooDeep:
        return None, reasons + ["too_deep"]
    if not text.strip():
        return None, reasons + ["empty"]
    return Record(input_index, index, text, None, None, meta), reasons


def iter_lines(
    stream, on_bytes: Optional[Callable[[bytes], None]] = None
) -> Iterator[Tuple[int, int, Optional[bytes]]]:
    """(start byte, end byte, line) for each line from the stream's position; a line over
    MAX_RECORD_BYTES comes as None, read in chunks and dropped, never held whole."""
    offset = stream.tell()
    while True:
        line = stream.readline(MAX_RECORD_BYTES + 1)
        if not line:
            return
        start = offset
        offset += len(line)
        if on_bytes:
            on_bytes(line)
        if len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(_CHUNK)
                offset += len(line)
                if on_bytes:
                    on_bytes(line)
            line = None
        yield start, offset, line


def docbin_records(input_index: int, data: bytes) -> Iterator[Tuple[Optional[Record], List[str]]]:
    """The documents of a DocBin as token records (their tokenization, their string-keyed
    user_data as metadata)."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    for index, doc in enumerate(DocBin(store_user_data=True).from_bytes(data).get_docs(Vocab())):
        if not len(doc) or not doc.text.strip():
            yield None, ["empty"]
            continue
        reasons: List[str] = []
        try:
            meta = repair_value({k: v for k, v in doc.user_data.items() if isinstance(k, str)}, reasons)
        except TooDeep:
            yield None, reasons + ["too_deep"]
            continue
        yield Record(input_index, index, None, [t.text for t in doc], [bool(t.whitespace_) for t in doc], meta), reasons


def read_records(
    file: InputFile,
    input_index: int,
    text_key: str,
    start: Tuple[int, int] = (0, 0),
    on_bytes: Optional[Callable[[bytes], None]] = None,
) -> Iterator[Raw]:
    """Every record of one input from `start` = (record index, byte offset) on."""
    first_index, offset = start
    if file.format == "spacy":
        if on_bytes:  # the plan's pass: hash the bytes and read them once
            data = Path(file.path).read_bytes()
            on_bytes(data)
            decoded = list(docbin_records(input_index, data))
        else:  # a shard's read: DocBins cannot be read in part; decode once per process
            decoded = _cached_docbin(file.path, input_index)
        for index in range(first_index, len(decoded)):
            record, reasons = decoded[index]
            yield Raw(index, 0, 0, record, tuple(reasons))
        return
    with open(file.path, "rb") as stream:
        stream.seek(offset)
        for index, (begin, end, line) in enumerate(iter_lines(stream, on_bytes), start=first_index):
            if line is None:
                record, reasons = None, ["too_long"]
            else:
                try:
                    if file.format == "jsonl":
                        record, reasons = jsonl_record(input_index, index, line, text_key)
                    else:
                        record, reasons = text_record(input_index, index, line)
                except Exception:  # one record no rule foresaw must not stop the job: skipped, counted
                    record, reasons = None, ["unreadable"]
            yield Raw(index, begin, end, record, tuple(reasons))


@functools.lru_cache(maxsize=1)
def _cached_docbin(path: str, input_index: int) -> List[Tuple[Optional[Record], List[str]]]:
    return list(docbin_records(input_index, Path(path).read_bytes()))


def read_range(files: Sequence[InputFile], text_key: str, span: Dict) -> Iterator[Record]:
    """The records (skips left out) of one shard range: {"input", "records": [start, stop],
    "bytes": [start, end]}, as the plan recorded it."""
    file = files[span["input"]]
    start, stop = span["records"]
    for raw in read_records(file, span["input"], text_key, (start, span["bytes"][0])):
        if raw.index >= stop:
            return
        if raw.record is not None:
            yield raw.record
