"""Static word vectors distilled from the LLM's middle layers (Gupta & Jaggi 2021).

Each word type's vector is the average, over its occurrences in raw text, of the frozen LLM's
contextual state for it: the same mixed state the encoder reads (layer-normed layers averaged,
`ScalarMix` at its initial uniform weights; a word's last piece, as `pooling = "last"`). The
table goes where floret's goes (`paths.vectors`), so a pipeline reads what the deep layers know
about a word at the cost of a table lookup: nothing at inference runs the LLM.

One row per lowercased form, so "Maynila" and "maynila" share the average of both; the row is
keyed by the form in lower case, in title case and as every spelling seen (spaCy looks vectors up
by ORTH: a LOWER-keyed table would be neater, but spaCy 3.8 saves `attr` only for floret
tables). `--with-floret` appends each type's floret vector (a table with both, in spaCy's
one-table-per-pipeline); words not seen in the raw text have no row and read zeros, where floret
alone would build one from character n-grams.

    python -m fillm_spacy.workflow.llm_vectors assets/raw/alt-fil-wikinews.txt vectors/llm-tl \\
        --layers 4 8 12 --lines 5000
"""

import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import spacy
import torch
import typer
from spacy.vectors import Vectors

from ..console import fail, layer_list, run_app, setup_cli_logging
from ..layers.scalar_mix import ScalarMix
from ..layers.token_states import doc_token_states
from ..models.loading import load_base_llm
from ..readers.raw_text import first_lines

log = logging.getLogger("fillm_spacy.llm_vectors")


def average_llm_states(
    texts: Iterable[str],
    *,
    model_name: str,
    layers: Sequence[int],
    lang: str = "tl",
    batch_size: int = 32,
    window: int = 256,
    stride: int = 192,
) -> Dict[str, object]:
    """Sum and count of the mixed LLM state of every lowercased token over `texts`, and the
    spellings each lowercased form was seen in."""
    llm = load_base_llm(model_name)
    # The encoder's mix at its initial weights: each layer normed, averaged, normed again. The
    # last piece of a token is the one pooled, so mixing the tokens' states equals mixing the
    # pieces' and pooling after, as the encoder does.
    mix = ScalarMix(len(layers), llm.config.hidden_size).eval()
    docs = spacy.blank(lang).tokenizer.pipe(texts)
    index: Dict[str, int] = {}
    spellings: List[set] = []
    sums: List[np.ndarray] = []
    counts: List[int] = []
    states_of_docs = doc_token_states(
        llm, docs, layers, pooling="last", window=window, stride=stride, batch_size=batch_size
    )
    for doc, states in states_of_docs:
        with torch.no_grad():
            mixed = mix(list(torch.from_numpy(states).unbind(dim=1))).numpy() if len(doc) else states[:, 0]
        for token, state in zip(doc, mixed):
            word = token.lower_
            if word.isspace():
                continue
            if word not in index:
                index[word] = len(sums)
                sums.append(np.zeros((mixed.shape[1],), dtype="float64"))
                counts.append(0)
                spellings.append({word, word.title()})
            sums[index[word]] += state
            counts[index[word]] += 1
            spellings[index[word]].add(token.text)
    return {
        "words": list(index),
        "spellings": spellings,
        "sums": np.stack(sums) if sums else np.zeros((0, 0)),
        "counts": np.asarray(counts),
    }


def reduce_dim(table: np.ndarray, dim: int) -> np.ndarray:
    """Centered PCA to `dim` columns (0 or >= width: the table as it is)."""
    if dim <= 0 or dim >= table.shape[1]:
        return table
    centered = table - table.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    return centered @ components[:dim].T


def build_llm_vectors(
    raw_text: Path,
    output: Path,
    *,
    model_name: str,
    layers: Sequence[int],
    max_lines: int = 0,
    min_count: int = 2,
    dim: int = 0,
    with_floret: Optional[Path] = None,
    lang: str = "tl",
) -> Dict[str, object]:
    """Write a spaCy pipeline directory holding the table (what `paths.vectors` reads); returns
    what was built (also saved as llm_vectors.json beside it)."""
    start = time.time()
    lines = first_lines(raw_text, max_lines or None)
    if not lines:
        raise ValueError(f"{raw_text} has no text to average LLM states over")
    averaged = average_llm_states(lines, model_name=model_name, layers=layers, lang=lang)
    keep = np.flatnonzero(averaged["counts"] >= min_count)
    if len(keep) == 0:
        raise ValueError(f"No word occurs {min_count} times in the {len(lines)} lines read from {raw_text}")
    words = [averaged["words"][i] for i in keep]
    table = averaged["sums"][keep] / averaged["counts"][keep][:, None]
    table = reduce_dim(table, dim)
    if with_floret is not None:
        floret = spacy.load(with_floret)
        if floret.vocab.vectors.shape[0] == 0:
            raise ValueError(f"{with_floret} holds no vectors")
        table = np.hstack([table, np.stack([floret.vocab.get_vector(word) for word in words])])
    nlp = spacy.blank(lang)
    vectors = Vectors(strings=nlp.vocab.strings, data=table.astype("float32"), name=f"{lang}.llm_vectors")
    for row, i in enumerate(keep):
        for spelling in sorted(averaged["spellings"][i]):
            vectors.add(nlp.vocab.strings.add(spelling), row=row)
    nlp.vocab.vectors = vectors
    nlp.to_disk(output)
    summary = {
        "raw_text": str(raw_text),
        "lines": len(lines),
        "model": model_name,
        "layers": list(layers),
        "min_count": min_count,
        "types": len(words),
        "keys": vectors.n_keys,
        "types_seen": len(averaged["words"]),
        "tokens": int(averaged["counts"].sum()),
        "width": int(table.shape[1]),
        "with_floret": str(with_floret) if with_floret else None,
        "seconds": round(time.time() - start, 1),
    }
    (output / "llm_vectors.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf8")
    return summary


app = typer.Typer(add_completion=False, no_args_is_help=True)


def joined_layers(argv: Sequence[str]) -> List[str]:
    """`--layers 4 8 12` (one value per argument, as project.yml passes it) as the single value
    `--layers "4 8 12"` that the option reads."""
    joined: List[str] = []
    rest = list(argv)
    while rest:
        joined.append(rest.pop(0))
        if joined[-1] == "--layers":
            values = []
            while rest and rest[0].isdigit():
                values.append(rest.pop(0))
            if values:
                joined.append(" ".join(values))
    return joined


@app.command(help=__doc__.split("\n\n")[0])
def llm_vectors(
    raw_text: Path = typer.Argument(..., help="raw text, one document per line"),
    output: Path = typer.Argument(..., help="pipeline directory to write (paths.vectors)"),
    model: str = typer.Option("gemma3-270m", help="base model (alias, local directory or cached hub name)"),
    layers: str = typer.Option(
        "4 8 12", help="hidden states averaged (k = layer k's output): '4 8 12', 4,8,12 or --layers 4 8 12"
    ),
    lines: int = typer.Option(0, help="read the first N non-empty lines (0 = all)"),
    min_count: int = typer.Option(2, help="keep word types seen at least this often"),
    dim: int = typer.Option(0, help="PCA to this many columns (0 = the model's hidden size)"),
    with_floret: Optional[Path] = typer.Option(None, help="append this floret table's vector of each type"),
    lang: str = typer.Option("tl", help="language of spaCy's tokenizer"),
) -> Dict[str, object]:
    try:
        summary = build_llm_vectors(
            raw_text,
            output,
            model_name=model,
            layers=layer_list(layers),
            max_lines=lines,
            min_count=min_count,
            dim=dim,
            with_floret=with_floret,
            lang=lang,
        )
    except (OSError, ValueError) as error:
        fail(str(error), code=1)
    log.info(json.dumps(summary))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> Optional[Dict[str, object]]:
    setup_cli_logging()
    argv = joined_layers(sys.argv[1:] if argv is None else argv)
    return run_app(app, argv, prog_name="python -m fillm_spacy.workflow.llm_vectors")


if __name__ == "__main__":
    main()
