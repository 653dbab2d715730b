"""Data set-up for the project workflow (project.yml): offline copy, splits and conversion.

Every command takes its paths as arguments, so project.yml variables decide which files are
used; nothing here knows where the offline data lives except `setup`'s --shared argument.

    python -m fillm_spacy.workflow.data setup --shared ../shared/data --assets assets --ud-heldout-every 10
    python -m fillm_spacy.workflow.data convert-ud assets/ud/train.conllu corpus/ud/train.spacy
    python -m fillm_spacy.workflow.data split-ner assets/ner/wikiann-tl-corrected.spacy corpus/ner --seed 0
    python -m fillm_spacy.workflow.data convert-tests --ud "newscrawl=assets/ud/test.conllu" \
        --ner "wikiann=corpus/ner/test.spacy" --output-dir corpus/test
"""

import contextlib
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import spacy
import typer
from spacy.tokens import Doc, DocBin
from spacy.training.iob_utils import biluo_tags_to_spans, iob_to_biluo
from spacy.util import get_words_and_spaces
from spacy.vocab import Vocab

from ..console import fail, run_app, setup_cli_logging
from ..readers.raw_text import first_lines

log = logging.getLogger("fillm_spacy.data")

# What `setup` copies out of the offline data folder: source (relative to it) -> destination
# (relative to assets/). The UD train file is handled separately because of the held-out split.
OFFLINE_COPIES = {
    "ud/newscrawl-dev.conllu": "ud/dev.conllu",
    "ner/wikiann-tl-corrected.spacy": "ner/wikiann-tl-corrected.spacy",
    "raw/alt-fil-wikinews.txt": "raw/alt-fil-wikinews.txt",
    "summarization/ntrex-fil-headlines.jsonl": "summarization/ntrex-fil-headlines.jsonl",
    "README.md": "shared-data-README.md",  # provenance and licences travel with the copies
}
OFFLINE_UD_TRAIN = "ud/newscrawl-train.conllu"

NER_SPLIT_RATIOS = (0.8, 0.1, 0.1)
NER_SPLIT_NAMES = ("train", "dev", "test")
# Universal NER annotates PER/ORG/LOC plus OTH ("other"); calamanCy's models, and the WikiANN
# data, only know the first three, so OTH becomes "O" when converting a UNER test file.
DEFAULT_NER_LABELS = ("PER", "ORG", "LOC")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def conllu_sentences(text: str) -> List[str]:
    """The sentence blocks of a CoNLL-U file (comments included), without the blank separators."""
    return [block.strip("\n") for block in re.split(r"\n\s*\n", text) if block.strip()]


def split_conllu_heldout(text: str, every: int) -> Tuple[str, str]:
    """Hold out every `every`-th sentence (the 10th, 20th, ... for every=10) of a CoNLL-U text.

    Returns (kept, held_out) as CoNLL-U texts. every=0 keeps everything. The rule is positional,
    not random, so the split is the same on every machine and easy to describe."""
    if every < 0:
        raise ValueError(f"every must be >= 0, got {every}")
    sentences = conllu_sentences(text)
    if every == 0:
        kept, held_out = sentences, []
    else:
        kept = [s for i, s in enumerate(sentences) if i % every != every - 1]
        held_out = [s for i, s in enumerate(sentences) if i % every == every - 1]
    return _join_conllu(kept), _join_conllu(held_out)


def _join_conllu(sentences: Sequence[str]) -> str:
    return "".join(sentence + "\n\n" for sentence in sentences)


def split_indices(n: int, ratios: Sequence[float], seed: int) -> List[List[int]]:
    """Shuffle range(n) with `seed` and cut it into len(ratios) parts of those proportions.

    Part sizes are floor(n * ratio) except the last, which takes the rest, so every item lands in
    exactly one part. Indices inside each part are sorted (the original order of the data)."""
    if not ratios or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-9:
        raise ValueError(f"ratios must be non-negative and sum to 1, got {ratios}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    parts, start = [], 0
    for i, ratio in enumerate(ratios):
        end = n if i == len(ratios) - 1 else start + int(n * ratio)
        parts.append(sorted(order[start:end]))
        start = end
    return parts


def parse_named_paths(spec: str) -> List[Tuple[str, Path]]:
    """Parse "name=path,name=path" (a project.yml variable) into [(name, Path)]. Empty -> []."""
    pairs = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"expected name=path, got {item!r} in {spec!r}")
        name, path = (x.strip() for x in item.split("=", 1))
        if not _NAME_RE.match(name):
            raise ValueError(f"test-set name {name!r} must be letters, digits, '_', '-' or '.'")
        if not path:
            raise ValueError(f"empty path for {name!r} in {spec!r}")
        pairs.append((name, Path(path)))
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate test-set names in {spec!r}")
    return pairs


def iob2_to_docs(text: str, vocab: Vocab, keep_labels: Optional[Iterable[str]] = DEFAULT_NER_LABELS) -> List[Doc]:
    """Read a Universal NER .iob2 file (CoNLL-U-like: `# text = ...`, then `id<TAB>word<TAB>tag`).

    Spaces come from the `# text` line where it matches the words, so doc.text is the real
    sentence (the tokenizer sees what a user would give it). Labels outside keep_labels -> O.
    The tags become entities with spaCy's own IOB utilities (`iob_to_biluo`, which also starts
    an entity at an I- tag that does not continue one of its label, e.g. after a dropped OTH,
    and `biluo_tags_to_spans`). A malformed line raises ValueError naming its line number."""
    keep = set(keep_labels) if keep_labels is not None else None
    docs = []
    words: List[str] = []
    tags: List[str] = []
    sent_text: Optional[str] = None
    for number, line in enumerate([*text.split("\n"), ""], start=1):
        line = line.rstrip("\r")
        if not line.strip():  # a blank line ends the sentence (the file's end too)
            if words:
                docs.append(_iob2_doc(vocab, words, tags, sent_text))
            words, tags, sent_text = [], [], None
        elif line.startswith("# text ="):
            sent_text = line.split("=", 1)[1].strip()
        elif not line.startswith("#"):
            parts = line.split("\t")
            try:
                if len(parts) < 3:
                    raise ValueError(f"expected id, word and tag columns, got {line!r}")
                tag = _keep_iob_tag(parts[2].strip(), keep)
            except ValueError as error:
                raise ValueError(
                    f"line {number}: {error} (each line is id<TAB>word<TAB>IOB2 tag, e.g. B-PER, I-PER or O)"
                ) from None
            words.append(parts[1])
            tags.append(tag)
    return docs


def _iob2_doc(vocab: Vocab, words: List[str], tags: List[str], sent_text: Optional[str]) -> Doc:
    spaces = None
    if sent_text is not None:
        try:
            _, spaces = get_words_and_spaces(words, sent_text)
            if len(spaces) != len(words):
                spaces = None
        except ValueError:  # the text line does not contain the words in order
            spaces = None
    doc = Doc(vocab, words=words, spaces=spaces)
    doc.ents = biluo_tags_to_spans(doc, iob_to_biluo(tags))
    return doc


def _keep_iob_tag(tag: str, keep: Optional[set]) -> str:
    if tag in ("O", "_", ""):
        return "O"
    prefix, _, label = tag.partition("-")
    if prefix not in ("B", "I") or not label:
        raise ValueError(f"not an IOB2 tag: {tag!r}")
    return tag if keep is None or label in keep else "O"


# ---------------------------------------------------------------------------------------------
# File operations (the CLI's subcommands)
# ---------------------------------------------------------------------------------------------


def setup_offline_data(shared: Path, assets: Path, ud_heldout_every: int = 10) -> List[Path]:
    """Copy the offline data into assets/; returns the files written ([] when `shared` is absent).

    The offline UD file is the official NewsCrawl *dev* split minus every 10th sentence (see the
    data README); with ud_heldout_every=N every N-th of its sentences becomes assets/ud/test.conllu
    and the rest assets/ud/train.conllu, so the test set is never seen in training or model
    selection (the dev file picks model-best)."""
    if not shared.is_dir():
        log.warning(
            f"{shared} not found: nothing to copy. Fetch the upstream data with "
            f"`spacy project assets --extra` and point the vars at it (see assets/README.md)."
        )
        return []
    written = []
    for source, dest in OFFLINE_COPIES.items():
        src, dst = shared / source, assets / dest
        if not src.exists():
            raise FileNotFoundError(f"expected offline file {src}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        written.append(dst)
    train_text = (shared / OFFLINE_UD_TRAIN).read_text(encoding="utf8")
    kept, held_out = split_conllu_heldout(train_text, ud_heldout_every)
    (assets / "ud").mkdir(parents=True, exist_ok=True)
    train_path, test_path = assets / "ud" / "train.conllu", assets / "ud" / "test.conllu"
    train_path.write_text(kept, encoding="utf8")
    written.append(train_path)
    if held_out:
        test_path.write_text(held_out, encoding="utf8")
        written.append(test_path)
    elif test_path.exists():
        test_path.unlink()  # a stale held-out file would overlap the new training file
    n_kept, n_held = len(conllu_sentences(kept)), len(conllu_sentences(held_out))
    for path in written:
        log.info(f"wrote {path}")
    log.info(
        f"UD: {n_kept} training sentences, {n_held} held-out test sentences "
        f"(every {ud_heldout_every}th of {shared / OFFLINE_UD_TRAIN})"
    )
    return written


def convert_ud(source: Path, dest: Path) -> int:
    """Convert a CoNLL-U file into the DocBin `dest` with calamanCy v0.2.0's protocol (its
    project.yml, setup-finetuning-data: XPOS+morphology as the tag, multiword tokens merged into
    one spaCy token, one sentence a doc), i.e. `spacy convert --converter conllu --morphology
    --merge-subtokens --n-sents 1`, in process: spaCy's own conllu
    converter with those settings, the docs written as `spacy convert` writes them (the same
    bytes)."""
    from spacy.training.converters import conllu_to_docs

    if not source.is_file():
        raise FileNotFoundError(f"no such CoNLL-U file: {source}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    docs = conllu_to_docs(
        source.read_text(encoding="utf8"), n_sents=1, merge_subtokens=True, append_morphology=True, no_print=True
    )
    bin_ = DocBin(docs=docs, store_user_data=True)
    bin_.to_disk(dest)
    log.info(f"{source} -> {dest}: {len(bin_)} docs")
    return len(bin_)


def split_ner(source: Path, output_dir: Path, seed: int, ratios: Sequence[float] = NER_SPLIT_RATIOS) -> List[Path]:
    """Split a NER DocBin into train/dev/test DocBins (seeded shuffle, `ratios`)."""
    vocab = spacy.blank("xx").vocab
    docs = list(DocBin().from_disk(source).get_docs(vocab))
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, indices in zip(NER_SPLIT_NAMES, split_indices(len(docs), ratios, seed)):
        path = output_dir / f"{name}.spacy"
        DocBin(docs=[docs[i] for i in indices]).to_disk(path)
        n_ents = sum(len(docs[i].ents) for i in indices)
        log.info(f"{path}: {len(indices)} docs, {n_ents} entities")
        paths.append(path)
    return paths


def convert_ner_test(source: Path, dest: Path, keep_labels: Optional[Sequence[str]] = DEFAULT_NER_LABELS) -> int:
    """A NER test set as a DocBin: .spacy files are copied, Universal NER .iob2 files converted."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".spacy":
        if source.resolve() != dest.resolve():
            shutil.copyfile(source, dest)
        n_docs = len(DocBin().from_disk(dest))
    elif source.suffix == ".iob2":
        try:
            docs = iob2_to_docs(source.read_text(encoding="utf8"), spacy.blank("xx").vocab, keep_labels)
        except ValueError as error:
            raise ValueError(f"{source}, {error}; correct the file or leave it out of the NER test sets") from None
        DocBin(docs=docs).to_disk(dest)
        n_docs = len(docs)
    else:
        raise ValueError(f"NER test sets must be .spacy or .iob2 files, got {source}")
    log.info(f"NER test {source} -> {dest}: {n_docs} docs")
    return n_docs


def convert_tests(ud_spec: str, ner_spec: str, output_dir: Path) -> List[Path]:
    """Write every test set as output_dir/ud-<name>.spacy or output_dir/ner-<name>.spacy.

    The folder is emptied first: evaluate and compare score every file in it, so a test set
    dropped from the variables must not linger."""
    ud_tests, ner_tests = parse_named_paths(ud_spec), parse_named_paths(ner_spec)
    if not ud_tests and not ner_tests:
        raise ValueError("no test sets given: set the ud_tests and/or ner_tests variables")
    if output_dir.exists():
        for stale in output_dir.glob("*.spacy"):
            stale.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, path in ud_tests:
        dest = output_dir / f"ud-{name}.spacy"
        convert_ud(path, dest)
        written.append(dest)
    for name, path in ner_tests:
        dest = output_dir / f"ner-{name}.spacy"
        convert_ner_test(path, dest)
        written.append(dest)
    return written


def head_lines(source: Path, dest: Path, n_lines: int) -> int:
    """Write the first `n_lines` non-empty lines of a raw-text file (the silver data's input;
    0 writes none), stripped."""
    lines = first_lines(source, n_lines)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join(line + "\n" for line in lines), encoding="utf8")
    log.info(f"{source} -> {dest}: {len(lines)} lines")
    return len(lines)


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])


@contextlib.contextmanager
def one_line_errors():
    """A missing or broken input file ends the command with one line (exit 1), not a traceback."""
    try:
        yield
    except (OSError, ValueError) as error:
        fail(str(error), code=1)


@app.command("setup")
def setup_command(
    shared: Path = typer.Option(..., help="the offline data folder (nothing is copied when it is absent)"),
    assets: Path = typer.Option(Path("assets"), help="where the copies go"),
    ud_heldout_every: int = typer.Option(
        10, help="every N-th UD training sentence becomes the held-out test set (0: none)"
    ),
) -> None:
    """Copy the offline data into assets/ (no-op without it)."""
    with one_line_errors():
        setup_offline_data(shared, assets, ud_heldout_every)


@app.command("convert-ud")
def convert_ud_command(
    source: Path = typer.Argument(..., help="a CoNLL-U file"),
    dest: Path = typer.Argument(..., help="the DocBin (.spacy) to write"),
) -> None:
    """CoNLL-U -> DocBin with calamanCy's flags."""
    with one_line_errors():
        convert_ud(source, dest)


@app.command("split-ner")
def split_ner_command(
    source: str = typer.Argument(..., help='a NER DocBin, or "" when train/dev/test come from elsewhere'),
    output_dir: Path = typer.Argument(..., help="train.spacy, dev.spacy and test.spacy are written here"),
    seed: int = typer.Option(0, help="seed of the shuffle"),
) -> None:
    """Seeded 80/10/10 split of a NER DocBin."""
    if not source:
        log.info("no source given (ner_source is empty): using the ner_* variables as they are")
        return
    with one_line_errors():
        split_ner(Path(source), output_dir, seed)


@app.command("convert-tests")
def convert_tests_command(
    ud: str = typer.Option("", help='UD test sets, "name=path.conllu,..."'),
    ner: str = typer.Option("", help='NER test sets, "name=path.spacy|path.iob2,..."'),
    output_dir: Path = typer.Option(..., help="<output-dir>/{ud,ner}-<name>.spacy are written (the folder is emptied)"),
) -> None:
    """All test sets -> <output-dir>/{ud,ner}-<name>.spacy."""
    with one_line_errors():
        convert_tests(ud, ner, output_dir)


@app.command("head-lines")
def head_lines_command(
    source: Path = typer.Argument(..., help="a raw-text file"),
    dest: Path = typer.Argument(..., help="the file to write"),
    lines: int = typer.Option(..., help="how many non-empty lines are kept (0: none)"),
) -> None:
    """The first N non-empty lines of a text file."""
    with one_line_errors():
        head_lines(source, dest, lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    setup_cli_logging()
    run_app(app, argv, prog_name="python -m fillm_spacy.workflow.data")


if __name__ == "__main__":
    main()
