"""Train floret vectors on raw text for the calamanCy-style baseline.

calamanCy v0.2.0 (models/v0.2.0/project.yml, train-vectors-md) trains its tl_calamancy_md vectors
with the floret binary: `floret skipgram -dim 200 -minn 3 -maxn 5 -mode floret -hashCount 2
-bucket 200000` on TLUnified (1.1 GB of text), then `spacy init vectors tl ... --mode floret`.
This does the same with the floret Python package (no binary to build), on whatever raw text the
project variable names, with dim/bucket/epochs as arguments so a 2-core machine finishes in a
minute or two (the project's default bucket is 50k rows: the "50k keys" of calamanCy's model card).

The text is first tokenized with spaCy's Tagalog tokenizer, so floret learns vectors for the
same strings the pipeline later looks up ("France." becomes "France" "."); floret splits on
whitespace only.

    python -m fillm_spacy.workflow.vectors assets/raw/alt-fil-wikinews.txt vectors/floret-tl.floret --dim 200
    python -m spacy init vectors tl vectors/floret-tl.floret vectors/floret-tl --mode floret
"""

import logging
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import spacy
import typer

from ..console import fail, run_app, setup_cli_logging

log = logging.getLogger("fillm_spacy.vectors")

# floret settings shared with calamanCy's recipe; the rest are floret's defaults (lr 0.05, ws 5,
# neg 5, minCount 5), which calamanCy's command line also left untouched.
FLORET_MODE = "floret"
FLORET_MODEL = "skipgram"
MINN, MAXN, HASH_COUNT = 3, 5, 2


def tokenize_lines(lines: Iterable[str], lang: str = "tl", batch_size: int = 1000) -> Iterator[str]:
    """Each non-empty line as its spaCy tokens joined by single spaces."""
    tokenizer = spacy.blank(lang).tokenizer
    stripped = (line.strip() for line in lines)
    for doc in tokenizer.pipe((line for line in stripped if line), batch_size=batch_size):
        yield " ".join(token.text for token in doc if not token.is_space)


def train_floret_vectors(
    raw_text: Path,
    output: Path,
    *,
    dim: int,
    bucket: int,
    epochs: int,
    threads: int,
    lang: str = "tl",
    min_count: int = 5,
) -> Path:
    """Tokenize `raw_text`, train floret and write the .floret table that `spacy init vectors
    --mode floret` reads. Returns `output`."""
    import floret  # the "baseline" extra: only this command needs it

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tokenized = Path(tmp) / "tokenized.txt"
        start = time.time()
        with raw_text.open(encoding="utf8") as lines, tokenized.open("w", encoding="utf8") as out:
            n_lines = 0
            for line in tokenize_lines(lines, lang):
                out.write(line + "\n")
                n_lines += 1
        if n_lines == 0:
            raise ValueError(f"{raw_text} has no text to train vectors on")
        log.info(f"tokenized {n_lines} lines in {time.time() - start:.1f}s")
        start = time.time()
        model = floret.train_unsupervised(
            str(tokenized),
            model=FLORET_MODEL,
            mode=FLORET_MODE,
            dim=dim,
            minn=MINN,
            maxn=MAXN,
            hashCount=HASH_COUNT,
            bucket=bucket,
            epoch=epochs,
            minCount=min_count,
            thread=threads,
            verbose=0,
        )
        log.info(
            f"trained floret (dim {dim}, bucket {bucket}, {epochs} epochs, "
            f"{len(model.words)} words) in {time.time() - start:.1f}s"
        )
    model.save_floret_vectors(str(output))
    log.info(f"wrote {output}")
    return output


app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.command(help=__doc__.split("\n")[0])
def train_vectors(
    raw_text: Path = typer.Argument(..., help="raw text, one paragraph or sentence a line"),
    output: Path = typer.Argument(..., help="the .floret file to write"),
    dim: int = typer.Option(200, help="vector width"),
    bucket: int = typer.Option(50000, help="rows of the hash table (the vectors' 'keys')"),
    epochs: int = typer.Option(5, help="passes over the text"),
    threads: int = typer.Option(2, help="floret's training threads"),
    min_count: int = typer.Option(5, help="words seen fewer times get no vector of their own"),
    lang: str = typer.Option("tl", help="language of spaCy's tokenizer"),
) -> None:
    try:
        train_floret_vectors(
            raw_text,
            output,
            dim=dim,
            bucket=bucket,
            epochs=epochs,
            threads=threads,
            lang=lang,
            min_count=min_count,
        )
    except (OSError, ValueError) as error:  # no such file, no text in it
        fail(str(error), code=1)


def main(argv: Optional[Sequence[str]] = None) -> None:
    setup_cli_logging()
    run_app(app, argv, prog_name="python -m fillm_spacy.workflow.vectors")


if __name__ == "__main__":
    main()
