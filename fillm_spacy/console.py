"""What the command lines share: progress goes to stderr through `logging`, so a caller chooses
its level (and a library user of the same functions sees nothing unless they ask); results a
command exists to produce (JSON, tables) go to stdout; a usage or input error is one line."""

import logging

FORMAT = "%(asctime)s %(name)s: %(message)s"


def setup_cli_logging(level: int = logging.INFO) -> None:
    """What every `python -m fillm_spacy...` entry point calls first."""
    logging.basicConfig(level=level, format=FORMAT, datefmt="%H:%M:%S")


def fail(message: str, code: int = 2) -> None:
    """End a typer command with one line on stderr (no traceback, no box) and exit status
    `code` (2: a usage error, as click's own; 1: the input or the run failed)."""
    import typer

    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=code)
