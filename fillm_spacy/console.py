"""What the command lines share: progress goes to stderr through `logging`, so a caller chooses
its level (and a library user of the same functions sees nothing unless they ask); results a
command exists to produce (JSON, tables) go to stdout; a usage or input error is one line."""

import logging
from typing import TYPE_CHECKING, Any, List, Optional, Sequence

if TYPE_CHECKING:
    import typer

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


def run_app(app: "typer.Typer", argv: Optional[Sequence[str]] = None, prog_name: Optional[str] = None) -> Any:
    """`main(argv)` of a typer app that Python code also calls (tests, other modules): the app
    runs as on the command line (typer's usage errors, `--help`, `fail()`'s line and exit status
    all end in SystemExit), but a command that succeeds returns what it returned instead of
    exiting 0."""
    import typer.main

    command = typer.main.get_command(app)
    results = []
    invoke = command.invoke
    command.invoke = lambda ctx: results.append(invoke(ctx)) or results[-1]
    try:
        command.main(args=argv, prog_name=prog_name)
    except SystemExit as stop:  # standalone mode always ends so; 0 after a command that ran
        if stop.code or not results:
            raise
    return results[-1] if results else None


def layer_list(value: str) -> List[int]:
    """An option's layer numbers, "4 8 12" or "4,8,12"; anything else is a one-line error."""
    try:
        layers = [int(part) for part in value.replace(",", " ").split()]
    except ValueError:
        layers = []
    if not layers:
        fail(f"--layers takes whole numbers like '4 8 12', got {value!r}")
    return layers
