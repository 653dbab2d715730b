"""`python -m fillm_spacy.annotate MODEL INPUT OUTPUT_DIR` (also the console script
`fillm-annotate`): the command line over job.annotate, with `spacy apply`'s option names where
they exist. Errors are one line on stderr (exit 2); Ctrl-C exits 130 and keeps finished shards,
and so does SIGTERM (exit 143: what a scheduler or `kill` sends), so that the workers are ended
with the job. A file size limit (SIGXFSZ) is reported as a failed write, not a core dump.
"""

import argparse
import contextlib
import signal
import sys
from typing import List, Optional

from .errors import AnnotateError, Interrupted
from .job import ENGINES, FORMATS, annotate
from .worker import PART_CHARS

_STOPPED_BY = {"signal": signal.SIGINT}


def _terminate_as_ctrl_c(signum, frame) -> None:
    _STOPPED_BY["signal"] = signum
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_handled():
    """While the command runs: SIGTERM stops the job as Ctrl-C does, SIGXFSZ is ignored (the write
    then fails with one line). Only the main thread may install handlers: elsewhere (main() called
    from a thread) they stay as they are. The previous handlers are put back afterwards."""
    wanted = {signal.SIGTERM: _terminate_as_ctrl_c}
    if hasattr(signal, "SIGXFSZ"):
        wanted[signal.SIGXFSZ] = signal.SIG_IGN
    previous = {}
    try:
        for signum, handler in wanted.items():
            previous[signum] = signal.signal(signum, handler)
    except ValueError:
        pass
    _STOPPED_BY["signal"] = signal.SIGINT
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fillm_spacy.annotate",
        description="Annotate a corpus with a spaCy pipeline (tl_fillm_sm) into resumable numbered shards and a manifest.",
    )
    parser.add_argument("model", help="pipeline package name (tl_fillm_sm) or directory")
    parser.add_argument(
        "input", help="a .txt (one document a line), .jsonl or .spacy file, a directory of them, or a glob"
    )
    parser.add_argument("output_dir", help="where the shards and manifest.json go; rerun the same command to resume")
    parser.add_argument("--text-key", "-tk", default="text", help="JSONL key of the text (default: text)")
    parser.add_argument(
        "--batch-size",
        "-b",
        type=int,
        default=None,
        help="documents per nlp.pipe batch, at most --part-tokens tokens in all (default: the pipeline's)",
    )
    parser.add_argument("--n-process", "-n", type=int, default=1, help="local processes, or Ray actors (default: 1)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="spacy", help="shard format (default: spacy)")
    parser.add_argument("--shard-size", type=int, default=1000, help="documents per shard (default: 1000)")
    parser.add_argument(
        "--engine", choices=ENGINES, default="local", help="local processes, or Ray Data (extra 'distributed')"
    )
    parser.add_argument(
        "--address", default=None, help="an existing Ray cluster (e.g. auto, or HOST:6379); default: start a local one"
    )
    parser.add_argument(
        "--gpu-id", "-g", type=int, default=-1, help="GPU id, -1 for CPU; with Ray each actor takes one GPU"
    )
    parser.add_argument("--force", "-F", action="store_true", help="start the output directory over")
    parser.add_argument(
        "--part-tokens",
        type=int,
        default=10000,
        help="longer documents are annotated in parts of this many tokens (default: 10000)",
    )
    parser.add_argument(
        "--part-chars",
        type=int,
        default=PART_CHARS,
        help=f"and of at most this many characters, which bounds what one part costs whatever the text: a longer "
        f"run without whitespace is split into tokens of this many characters (default: {PART_CHARS})",
    )
    parser.add_argument(
        "--shard-timeout",
        type=float,
        default=3600,
        help="seconds one shard may take before its worker is ended, 0 for none (default: 3600)",
    )
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show the progress bar"
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show it (default: on a terminal)"
    )
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        with signals_handled():
            summary = annotate(
                args.model,
                args.input,
                args.output_dir,
                fmt=args.fmt,
                text_key=args.text_key,
                batch_size=args.batch_size,
                n_process=args.n_process,
                shard_size=args.shard_size,
                engine=args.engine,
                address=args.address,
                gpu_id=args.gpu_id,
                force=args.force,
                part_tokens=args.part_tokens,
                part_chars=args.part_chars,
                shard_timeout=args.shard_timeout,
                progress=args.progress,
            )
    except Interrupted as error:
        print(str(error), file=sys.stderr)
        sys.exit(128 + _STOPPED_BY["signal"])
    except KeyboardInterrupt:  # before any shard was started: nothing to keep
        print("interrupted before annotating; the same command starts again", file=sys.stderr)
        sys.exit(128 + _STOPPED_BY["signal"])
    except AnnotateError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # what no more specific message caught (an input that cannot be read)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(summary["line"], file=sys.stderr)
