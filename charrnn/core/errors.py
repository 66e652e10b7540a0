"""The one family of errors the engine raises, and the exit codes the command line turns them into.

The engine never prints or exits: it raises a `CharRNNError` whose message is one line a user can act on.
`charrnn.cli.app` turns it into that line on stderr and `exit_code`. Set CHARRNN_DEBUG=1 to see the traceback.

Exit codes (the README's "Errors" section lists the same):
    0   success
    1   a check failed (gradcheck, diagnose)
    2   bad usage or input (a flag, a file, a checkpoint)
    3   internal error: a bug in charrnn (the message asks for CHARRNN_DEBUG=1)
    4   the system refused a write (disk full, permission denied); the previous checkpoint is intact
    130 interrupted (Ctrl-C); last.pt holds the run so far
"""

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_WRITE_FAILED = 4


class CharRNNError(Exception):
    """A mistake in what the user asked for or gave us (exit code 2 unless said otherwise)."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def write_failed(path, error: OSError, consequence: str) -> CharRNNError:
    """One line for an OS error while writing `path`: what failed, why, and what is still safe."""
    why = error.strerror or str(error) or type(error).__name__
    return CharRNNError(f"cannot write {path}: {why}; {consequence}", exit_code=EXIT_WRITE_FAILED)
