"""`python -m fillm_spacy.finetune`: train and evaluate generative LoRA adapters."""

import argparse
from typing import Any, Dict, Optional, Sequence

from ..console import setup_cli_logging
from ..llm.instructions import TASKS
from .evaluation import evaluate
from .training import train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fillm_spacy.finetune", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    tr = commands.add_parser("train", help="LoRA fine-tune the base LLM on instruction pairs")
    tr.add_argument("--task", choices=TASKS, required=True)
    tr.add_argument(
        "--model",
        "--base",
        dest="model",
        default="gemma3-270m",
        help="base model: alias, local HF dir, or cached hub name (--base: the former name)",
    )
    tr.add_argument("--train", required=True, help="pos: .conllu or .spacy; ner: .spacy; headline: .jsonl")
    tr.add_argument("--dev", help="held-out file of the same kind (answer loss before/after)")
    tr.add_argument("--train-range", help="START:END slice of the training records (e.g. 0:52)")
    tr.add_argument("--dev-range", help="START:END slice of the dev records")
    tr.add_argument("--limit", type=int, help="at most this many records per file")
    tr.add_argument("--output", required=True, help="adapter directory to write")
    tr.add_argument("--max-steps", type=int, default=200)
    tr.add_argument("--lr", type=float, default=2e-4)
    tr.add_argument("--warmup", type=float, default=0.05, help="fraction of steps with linear warm-up")
    tr.add_argument("--batch-size", type=int, default=2)
    tr.add_argument("--grad-accum", type=int, default=1)
    tr.add_argument("--max-length", type=int, default=1024, help="pairs longer than this (pieces) are left out")
    tr.add_argument("--max-input-pieces", type=int, default=768, help="headline: article pieces in the prompt")
    tr.add_argument("--lora-r", type=int, default=16)
    tr.add_argument("--lora-alpha", type=float, default=32.0)
    tr.add_argument("--lora-dropout", type=float, default=0.05)
    tr.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj")
    tr.add_argument("--labels", help="ner: comma-separated labels (default PER,ORG,LOC)")
    tr.add_argument("--chat-format", default="auto", choices=("auto", "plain", "seallm", "tokenizer"))
    tr.add_argument("--lang", default="tl")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--dtype", default="float32")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--log-every", type=int, default=10)
    tr.set_defaults(func=train)

    ev = commands.add_parser("evaluate", help="score an llm pipe (with an adapter) on a test file")
    ev.add_argument("--task", choices=("pos", "ner"), help="default: the adapter's task")
    ev.add_argument(
        "--model",
        "--base",
        dest="model",
        help="base model (default: the one the adapter was trained on; --base: the former name)",
    )
    ev.add_argument("--adapter", help="adapter directory from `train`; omit to score the base model few-shot")
    ev.add_argument("--test", required=True, help=".spacy DocBin or .conllu")
    ev.add_argument("--range", help="START:END slice of the test docs")
    ev.add_argument("--limit", type=int)
    ev.add_argument("--output", help="JSON file to write, e.g. metrics/llm_pos.json")
    ev.add_argument("--predictions", help=".spacy DocBin for the predicted docs (for compare report --generative)")
    ev.add_argument("--save-responses", help="JSONL file for each doc's text and raw model responses")
    ev.add_argument(
        "--shots", help="gold file (.spacy/.conllu) to take few-shot examples from (replacing the defaults)"
    )
    ev.add_argument("--shots-range", help="START:END slice of --shots (keep it apart from the test docs)")
    ev.add_argument("--n-shots", type=int, default=3)
    ev.add_argument("--max-new-tokens", type=int)
    ev.add_argument("--max-tokens-per-prompt", type=int, help="pos: tokens per prompt")
    ev.add_argument(
        "--context-length",
        type=int,
        help="prompt + answer pieces (default: the adapter's training --max-length + answer)",
    )
    ev.add_argument("--batch-size", type=int, default=4)
    ev.add_argument("--labels", help="ner: comma-separated labels")
    ev.add_argument("--chat-format", default="auto", choices=("auto", "plain", "seallm", "tokenizer"))
    ev.add_argument("--lang", default="tl")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--dtype", default="float32")
    ev.set_defaults(func=evaluate)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    setup_cli_logging()
    args = build_parser().parse_args(argv)
    return args.func(args)
