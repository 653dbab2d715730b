"""`python -m fillm_spacy.adapt`: train a Tagalog LoRA adapter on raw text; probe layers."""

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from ..console import fail, layer_list, setup_cli_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
log = logging.getLogger("fillm_spacy.adapt")


@app.command()
def train(
    raw_text: Path = typer.Argument(..., help="UTF-8 raw text, one document per line"),
    output: Path = typer.Argument(..., help="adapter directory to write (peft layout + fillm_adapter.json)"),
    objective: str = typer.Option("clm", help="clm (causal LM) or mntp (masked next-piece, bidirectional)"),
    model: str = typer.Option("gemma3-270m", help="base model: alias, local directory or cached hub name"),
    last_layer: int = typer.Option(12, help="LoRA on decoder layers 1..LAST_LAYER (the layers encoders read)"),
    heldout_lines: int = typer.Option(1000, help="the text's last N non-empty lines are held out"),
    budget_pieces: int = typer.Option(300_000, help="pieces read in training"),
    sequence_length: int = typer.Option(256, help="pieces per training row"),
    batch_size: int = typer.Option(4, help="rows per step"),
    learning_rate: float = typer.Option(3e-4, help="AdamW peak learning rate"),
    r: int = typer.Option(8, help="LoRA rank"),
    mask_rate: float = typer.Option(0.2, help="share of pieces MNTP hides"),
    precision: str = typer.Option("float32", help="training compute: float32, bfloat16 or auto"),
    eval_rows: int = typer.Option(0, help="held-out rows scored (0: all)"),
    seed: int = typer.Option(0),
):
    """Train a language adapter and report held-out perplexity before/after (JSON on stdout)."""
    from ..models.adapters import save_adapter
    from ..models.loading import load_base_llm
    from .text import split_lines
    from .training import AdaptSettings, adapt

    setup_cli_logging()
    settings = AdaptSettings(
        objective=objective,
        last_layer=last_layer,
        r=r,
        alpha=2.0 * r,
        sequence_length=sequence_length,
        batch_size=batch_size,
        budget_pieces=budget_pieces,
        learning_rate=learning_rate,
        mask_rate=mask_rate,
        precision=precision,
        eval_rows=eval_rows,
        seed=seed,
    )
    try:
        text = split_lines(raw_text, heldout_lines)
        llm = load_base_llm(model)
        summary = adapt(llm, text, settings)
        save_adapter(llm, summary["adapter_name"], output, {**summary, "raw_text": str(raw_text), "model": model})
    except (OSError, ValueError, FloatingPointError) as error:
        fail(str(error), code=1)
    typer.echo(json.dumps({**summary, "output": str(output)}))


@app.command()
def probe(
    train_docs: Path = typer.Argument(..., help=".spacy file with gold POS (probe training)"),
    test_docs: Path = typer.Argument(..., help=".spacy file with gold POS (probe scoring)"),
    adapter: Optional[Path] = typer.Option(None, help="language adapter directory (none: the plain base)"),
    model: str = typer.Option("gemma3-270m", help="base model: alias, local directory or cached hub name"),
    layers: str = typer.Option("4 8 12", help="layers probed (k = decoder layer k's output)"),
    attention: Optional[str] = typer.Option(None, help="causal or bidirectional (default: the adapter's, else causal)"),
    output: Optional[Path] = typer.Option(None, help="also write the JSON here"),
    seed: int = typer.Option(0),
):
    """Linear UPOS probe accuracy per layer (JSON on stdout)."""
    from ..models.adapters import load_language_adapter
    from ..models.loading import load_base_llm
    from .probe import read_docs, upos_probe

    setup_cli_logging()
    chosen = layer_list(layers)
    try:
        llm = load_base_llm(model)
        adapter_name, meta = load_language_adapter(llm, adapter) if adapter else (None, {})
        attention = attention or meta.get("attention", "causal")
        scores = upos_probe(
            llm,
            read_docs(train_docs),
            read_docs(test_docs),
            chosen,
            attention=attention,
            adapter_name=adapter_name,
            seed=seed,
        )
    except (OSError, ValueError) as error:
        fail(str(error), code=1)
    result = {
        "adapter": str(adapter) if adapter else None,
        "attention": attention,
        "model": model,
        "upos_accuracy": {str(k): v for k, v in scores.items()},
    }
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
    typer.echo(json.dumps(result))
