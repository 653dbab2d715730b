"""Raw text, one document per line: what the silver data, the LLM vectors and `bench` read."""

from itertools import islice
from pathlib import Path
from typing import List, Optional


def first_lines(path: Path, n_lines: Optional[int] = None) -> List[str]:
    """The first `n_lines` non-empty lines of a UTF-8 text file, stripped (None: every one).

    Blank lines are no documents, so they neither count nor come back. A file that is not UTF-8
    is an error (one line, naming the file) rather than text with replacement characters in it.
    """
    path = Path(path)
    if n_lines is not None and n_lines < 0:
        raise ValueError(f"n_lines must be >= 0 or None, not {n_lines}")
    try:
        with path.open(encoding="utf8") as stream:
            non_empty = (line.strip() for line in stream if line.strip())
            return list(islice(non_empty, n_lines))
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not UTF-8 text ({error.reason} at a byte {error.object[error.start : error.start + 1]!r})"
        ) from None
