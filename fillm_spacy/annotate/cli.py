"""`python -m fillm_spacy.annotate MODEL INPUT OUTPUT_DIR` (also the console script
`fillm-annotate`): the command line over job.annotate, with `spacy apply`'s option names where
they exist. Errors are one line on stderr (exit 2); Ctrl-C exits 130 and keeps finished shards,
and so does SIGTERM (exit 143: what a scheduler or `kill` sends), so that the workers are ended
with the job. A file size limit (SIGXFSZ) is reported as a failed write, not a core dump.
"""

import contextlib
import signal
import sys
from typing import List, Optional

import typer

from ..console import run_app
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


app = typer.Typer(add_completion=False, no_args_is_help=True)
PROG = "python -m fillm_spacy.annotate"


@app.command(
    help="Annotate a corpus with a spaCy pipeline (tl_fillm_sm) into resumable numbered shards and a manifest."
)
def annotate_command(
    model: str = typer.Argument(..., metavar="MODEL", help="pipeline package name (tl_fillm_sm) or directory"),
    source: str = typer.Argument(
        ...,
        metavar="INPUT",
        help="a .txt (one document a line), .jsonl or .spacy file, a directory of them, or a glob",
    ),
    output_dir: str = typer.Argument(
        ..., metavar="OUTPUT_DIR", help="where the shards and manifest.json go; rerun the same command to resume"
    ),
    text_key: str = typer.Option("text", "--text-key", "-tk", help="JSONL key of the text"),
    batch_size: Optional[int] = typer.Option(
        None,
        "--batch-size",
        "-b",
        help="documents per nlp.pipe batch, at most --part-tokens tokens in all (default: the pipeline's)",
    ),
    n_process: int = typer.Option(1, "--n-process", "-n", help="local processes, or Ray actors"),
    fmt: str = typer.Option("spacy", "--format", help=f"shard format: {', '.join(FORMATS)}"),
    shard_size: int = typer.Option(1000, help="documents per shard"),
    engine: str = typer.Option(
        "local", help=f"{' or '.join(ENGINES)}: local processes, or Ray Data (extra 'distributed')"
    ),
    address: Optional[str] = typer.Option(
        None, help="an existing Ray cluster (e.g. auto, or HOST:6379); default: start a local one"
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU; with Ray each actor takes one GPU"),
    force: bool = typer.Option(False, "--force", "-F", help="start the output directory over"),
    part_tokens: int = typer.Option(10000, help="longer documents are annotated in parts of this many tokens"),
    part_chars: int = typer.Option(
        PART_CHARS,
        help="and of at most this many characters, which bounds what one part costs whatever the text: a longer "
        "run without whitespace is split into tokens of this many characters",
    ),
    shard_timeout: float = typer.Option(3600, help="seconds one shard may take before its worker is ended, 0 for none"),
    progress: Optional[bool] = typer.Option(
        None, "--progress/--no-progress", help="always or never show the progress bar (default: on a terminal)"
    ),
) -> None:
    # --format and --engine are checked by annotate() itself, first: one line, exit 2.
    try:
        with signals_handled():
            summary = annotate(
                model,
                source,
                output_dir,
                fmt=fmt,
                text_key=text_key,
                batch_size=batch_size,
                n_process=n_process,
                shard_size=shard_size,
                engine=engine,
                address=address,
                gpu_id=gpu_id,
                force=force,
                part_tokens=part_tokens,
                part_chars=part_chars,
                shard_timeout=shard_timeout,
                progress=progress,
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


def main(argv: Optional[List[str]] = None) -> None:
    run_app(app, argv, prog_name=PROG)
