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

import argparse
from pathlib import Path
from typing import Optional, Sequence, Tuple

from ..logs import setup_cli_logging
from .report import report
from .runner import evaluate


def _named(value: str) -> Tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    name, path = value.split("=", 1)
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, path


def main(argv: Optional[Sequence[str]] = None) -> None:
    setup_cli_logging()
    parser = argparse.ArgumentParser(
        prog="python -m fillm_spacy.evaluation.compare", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ev = commands.add_parser("evaluate", help="spacy evaluate of every pipeline on every test set")
    ev.add_argument("--pipeline", type=_named, action="append", required=True, help="NAME=PATH, repeatable")
    ev.add_argument("--test-dir", type=Path, required=True)
    ev.add_argument("--output-dir", type=Path, required=True)
    ev.add_argument("--gpu-id", type=int, default=-1)

    rep = commands.add_parser("report", help="markdown table with paired significance tests")
    rep.add_argument(
        "--system",
        type=_named,
        action="append",
        required=True,
        help="NAME=PATH of a system under test, repeatable (each is compared with each baseline)",
    )
    rep.add_argument("--baseline", type=_named, action="append", required=True, help="NAME=PATH, repeatable")
    rep.add_argument("--test-dir", type=Path, required=True)
    rep.add_argument("--metrics-dir", type=Path, required=True, help="where `evaluate` wrote its JSON")
    rep.add_argument("--output", type=Path, required=True)
    rep.add_argument("--json-output", type=Path, default=None)
    rep.add_argument(
        "--generative",
        type=_named,
        action="append",
        default=[],
        help="NAME=RESULT.json of `fillm_spacy.finetune evaluate --predictions`, repeatable",
    )
    rep.add_argument(
        "--generative-dir",
        type=Path,
        default=None,
        help="every NAME.json with predictions here joins as --generative NAME=... (absent: none)",
    )
    rep.add_argument("--n-resamples", type=int, default=10000)
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--confidence", type=float, default=0.95)
    rep.add_argument("--gpu-id", type=int, default=-1)

    args = parser.parse_args(argv)
    if args.command == "report" and args.generative_dir is not None and args.generative_dir.is_dir():
        args.generative += [(path.stem, str(path)) for path in sorted(args.generative_dir.glob("*.json"))]
    if args.command == "evaluate":
        names = [name for name, _ in args.pipeline]
        if len(set(names)) != len(names):
            parser.error(f"duplicate pipeline names: {names}")
        evaluate(args.pipeline, args.test_dir, args.output_dir, args.gpu_id)
    else:
        names = (
            [name for name, _ in args.system]
            + [name for name, _ in args.baseline]
            + [name for name, _ in args.generative]
        )
        if len(set(names)) != len(names):
            parser.error(f"duplicate system names: {names}")
        report(
            args.system,
            args.baseline,
            args.test_dir,
            args.metrics_dir,
            args.output,
            args.json_output,
            generative=args.generative,
            n_resamples=args.n_resamples,
            seed=args.seed,
            confidence=args.confidence,
            gpu_id=args.gpu_id,
        )


if __name__ == "__main__":
    main()
