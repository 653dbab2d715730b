"""The annotator's errors: each carries a one-line message meant for the user as it is."""


class AnnotateError(RuntimeError):
    """A job that cannot start or go on (a refused resume, a missing engine, a stuck worker)."""


class Interrupted(AnnotateError):
    """Ctrl-C: the finished shards are kept, and the same command continues from there."""
