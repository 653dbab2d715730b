"""The compare CLI: the tl_fillm pipelines vs the calamanCy-style baseline, with paired tests over sentences.

spaCy's scores of every system, paired significance tests over sentences, and calamanCy's
published numbers in a separate column:

    # spaCy's own evaluation of every pipeline on every test set -> <output-dir>/<name>/<test>.json
    python -m fillm_spacy.evaluation.compare evaluate \
        --pipeline tl_fillm_sm=training/tl_fillm_sm/model-best \
        --pipeline calamancy_baseline=training/baseline/model \
        --test-dir corpus/test --output-dir metrics

    # per-sentence scores of both systems, paired tests, markdown table
    python -m fillm_spacy.evaluation.compare report \
        --system tl_fillm_sm=training/tl_fillm_sm/model-best \
        --baseline calamancy_baseline=training/baseline/model \
        --test-dir corpus/test --metrics-dir metrics --output metrics/compare.md

The modules behind it: `runner` (spacy evaluate, predictions, generative runs), `counts`
(per-sentence counts mirroring spaCy's Scorer), `stats` (paired bootstrap, paired t-test),
`report` (the comparison and its markdown), `published` (calamanCy's published numbers).
"""

from pathlib import Path
from typing import List, Optional, Tuple

import typer

from ..console import fail, setup_cli_logging
from .report import report as write_report
from .runner import evaluate as run_evaluate

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])


def named(values: List[str]) -> List[Tuple[str, str]]:
    """NAME=PATH values as (name, path) pairs."""
    pairs = []
    for value in values:
        name, _, path = value.partition("=")
        if not name or not path:
            fail(f"expected NAME=PATH, got {value!r}")
        pairs.append((name, path))
    return pairs


def unique(pairs: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        fail(f"duplicate names: {names}")
    return pairs


@app.command()
def evaluate(
    pipeline: List[str] = typer.Option(..., help="NAME=PATH of a pipeline, repeatable"),
    test_dir: Path = typer.Option(..., help="the .spacy test sets"),
    output_dir: Path = typer.Option(..., help="<output-dir>/<name>/<test>.json are written"),
    gpu_id: int = typer.Option(-1),
):
    """spacy evaluate of every pipeline on every test set."""
    run_evaluate(unique(named(pipeline)), test_dir, output_dir, gpu_id)


@app.command()
def report(
    system: List[str] = typer.Option(..., help="NAME=PATH of a system under test, repeatable (each vs each baseline)"),
    baseline: List[str] = typer.Option(..., help="NAME=PATH, repeatable"),
    test_dir: Path = typer.Option(...),
    metrics_dir: Path = typer.Option(..., help="where `evaluate` wrote its JSON"),
    output: Path = typer.Option(..., help="the markdown table"),
    json_output: Optional[Path] = typer.Option(None),
    generative: List[str] = typer.Option(
        [], help="NAME=RESULT.json of `fillm_spacy.finetune evaluate --predictions`, repeatable"
    ),
    generative_dir: Optional[Path] = typer.Option(
        None, help="every NAME.json with predictions here joins as --generative NAME=... (absent: none)"
    ),
    n_resamples: int = typer.Option(10000),
    seed: int = typer.Option(0),
    confidence: float = typer.Option(0.95),
    gpu_id: int = typer.Option(-1),
):
    """Markdown table with paired significance tests."""
    generative_pairs = named(generative)
    if generative_dir is not None and generative_dir.is_dir():
        generative_pairs += [(path.stem, str(path)) for path in sorted(generative_dir.glob("*.json"))]
    systems, baselines = named(system), named(baseline)
    unique(systems + baselines + generative_pairs)
    write_report(
        systems,
        baselines,
        test_dir,
        metrics_dir,
        output,
        json_output,
        generative=generative_pairs,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        gpu_id=gpu_id,
    )


def main(argv: Optional[List[str]] = None) -> None:
    setup_cli_logging()
    app(args=argv, prog_name="python -m fillm_spacy.evaluation.compare")


if __name__ == "__main__":
    main()
