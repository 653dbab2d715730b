"""`python -m fillm_spacy.finetune`: train and evaluate generative LoRA adapters."""

from types import SimpleNamespace
from typing import Any, Dict, Optional, Sequence

import typer

from ..console import fail, run_app, setup_cli_logging
from ..llm.instructions import TASKS
from .evaluation import evaluate as run_evaluate
from .training import train as run_train

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
CHAT_FORMATS = ("auto", "plain", "seallm", "tokenizer")
EVALUATED_TASKS = ("pos", "ner")


def checked(option: str, value: Optional[str], choices: Sequence[str]) -> Optional[str]:
    if value is not None and value not in choices:
        fail(f"{option} must be one of {', '.join(choices)}, not {value!r}")
    return value


@app.command()
def train(
    task: str = typer.Option(..., help=f"{', '.join(TASKS)}: what the adapter learns to answer"),
    model: str = typer.Option(
        "gemma3-270m",
        "--model",
        "--base",
        help="base model: alias, local HF dir, or cached hub name (--base: the former name)",
    ),
    train_file: str = typer.Option(..., "--train", help="pos: .conllu or .spacy; ner: .spacy; headline: .jsonl"),
    dev: Optional[str] = typer.Option(None, help="held-out file of the same kind (answer loss before/after)"),
    train_range: Optional[str] = typer.Option(None, help="START:END slice of the training records (e.g. 0:52)"),
    dev_range: Optional[str] = typer.Option(None, help="START:END slice of the dev records"),
    limit: Optional[int] = typer.Option(None, help="at most this many records per file"),
    output: str = typer.Option(..., help="adapter directory to write"),
    max_steps: int = typer.Option(200, help="optimizer steps"),
    lr: float = typer.Option(2e-4, help="AdamW peak learning rate"),
    warmup: float = typer.Option(0.05, help="fraction of steps with linear warm-up"),
    batch_size: int = typer.Option(2, help="pairs per micro-batch"),
    grad_accum: int = typer.Option(1, help="micro-batches per step"),
    max_length: int = typer.Option(1024, help="pairs longer than this (pieces) are left out"),
    max_input_pieces: int = typer.Option(768, help="headline: article pieces in the prompt"),
    lora_r: int = typer.Option(16, help="LoRA rank"),
    lora_alpha: float = typer.Option(32.0, help="LoRA alpha"),
    lora_dropout: float = typer.Option(0.05, help="LoRA dropout"),
    target_modules: str = typer.Option("q_proj,k_proj,v_proj,o_proj", help="comma-separated modules LoRA adapts"),
    labels: Optional[str] = typer.Option(None, help="ner: comma-separated labels (default PER,ORG,LOC)"),
    chat_format: str = typer.Option("auto", help=f"{', '.join(CHAT_FORMATS)}: how prompts are wrapped"),
    lang: str = typer.Option("tl", help="language of the blank pipeline that reads the data"),
    device: str = typer.Option("cpu", help="torch device"),
    dtype: str = typer.Option("float32", help="torch dtype of the base model"),
    seed: int = typer.Option(0, help="seeds the batches and the adapter's initialization"),
    log_every: int = typer.Option(10, help="log the loss every N steps"),
) -> Dict[str, Any]:
    """LoRA fine-tune the base LLM on instruction pairs (the report as JSON on stdout)."""
    checked("--task", task, TASKS)
    checked("--chat-format", chat_format, CHAT_FORMATS)
    # The report (kept with the adapter as its "args") lists the settings under these names.
    settings = SimpleNamespace(
        command="train",
        task=task,
        model=model,
        train=train_file,
        dev=dev,
        train_range=train_range,
        dev_range=dev_range,
        limit=limit,
        output=output,
        max_steps=max_steps,
        lr=lr,
        warmup=warmup,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        max_input_pieces=max_input_pieces,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        labels=labels,
        chat_format=chat_format,
        lang=lang,
        device=device,
        dtype=dtype,
        seed=seed,
        log_every=log_every,
    )
    return run_train(settings)


@app.command()
def evaluate(
    task: Optional[str] = typer.Option(None, help=f"{' or '.join(EVALUATED_TASKS)} (default: the adapter's task)"),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        "--base",
        help="base model (default: the one the adapter was trained on; --base: the former name)",
    ),
    adapter: Optional[str] = typer.Option(
        None, help="adapter directory from `train`; omit to score the base model few-shot"
    ),
    test: str = typer.Option(..., help=".spacy DocBin or .conllu"),
    range_: Optional[str] = typer.Option(None, "--range", help="START:END slice of the test docs"),
    limit: Optional[int] = typer.Option(None, help="at most this many test docs (of the range)"),
    output: Optional[str] = typer.Option(None, help="JSON file to write, e.g. metrics/llm_pos.json"),
    predictions: Optional[str] = typer.Option(
        None, help=".spacy DocBin for the predicted docs (for compare report --generative)"
    ),
    save_responses: Optional[str] = typer.Option(None, help="JSONL file for each doc's text and raw model responses"),
    shots: Optional[str] = typer.Option(
        None, help="gold file (.spacy/.conllu) to take few-shot examples from (replacing the defaults)"
    ),
    shots_range: Optional[str] = typer.Option(
        None, help="START:END slice of --shots (keep it apart from the test docs)"
    ),
    n_shots: int = typer.Option(3, help="few-shot examples taken from --shots"),
    max_new_tokens: Optional[int] = typer.Option(None, help="pieces generated per prompt (default: 512 pos, 256 ner)"),
    max_tokens_per_prompt: Optional[int] = typer.Option(None, help="pos: tokens per prompt"),
    context_length: Optional[int] = typer.Option(
        None, help="prompt + answer pieces (default: the adapter's training --max-length + answer)"
    ),
    batch_size: int = typer.Option(4, help="prompts per generation batch"),
    labels: Optional[str] = typer.Option(None, help="ner: comma-separated labels"),
    chat_format: str = typer.Option("auto", help=f"{', '.join(CHAT_FORMATS)}: how prompts are wrapped"),
    lang: str = typer.Option("tl", help="language of the blank pipeline"),
    device: str = typer.Option("cpu", help="torch device"),
    dtype: str = typer.Option("float32", help="torch dtype of the base model"),
) -> Dict[str, Any]:
    """Score an llm pipe (with an adapter) on a test file (the scores as JSON on stdout)."""
    checked("--task", task, EVALUATED_TASKS)
    checked("--chat-format", chat_format, CHAT_FORMATS)
    settings = SimpleNamespace(
        task=task,
        model=model,
        adapter=adapter,
        test=test,
        range=range_,
        limit=limit,
        output=output,
        predictions=predictions,
        save_responses=save_responses,
        shots=shots,
        shots_range=shots_range,
        n_shots=n_shots,
        max_new_tokens=max_new_tokens,
        max_tokens_per_prompt=max_tokens_per_prompt,
        context_length=context_length,
        batch_size=batch_size,
        labels=labels,
        chat_format=chat_format,
        lang=lang,
        device=device,
        dtype=dtype,
    )
    return run_evaluate(settings)


def main(argv: Optional[Sequence[str]] = None) -> Optional[Dict[str, Any]]:
    """The command line; from Python, returns the report or scores it printed."""
    setup_cli_logging()
    return run_app(app, argv, prog_name="python -m fillm_spacy.finetune")
