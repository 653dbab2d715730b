"""Logging for the command lines: progress goes to stderr through `logging`, so a caller
chooses its level (and a library user of the same functions sees nothing unless they ask);
results a command exists to produce (JSON, tables) go to stdout."""

import logging

FORMAT = "%(asctime)s %(name)s: %(message)s"


def setup_cli_logging(level: int = logging.INFO) -> None:
    """What every `python -m fillm_spacy...` entry point calls first."""
    logging.basicConfig(level=level, format=FORMAT, datefmt="%H:%M:%S")
