"""The one family of errors the engine raises.

The engine never prints or exits: it raises a `CharRNNError` whose message is one line a user can act on.
`charrnn.cli.main` turns it into that line on stderr and `exit_code` (2 for bad usage or input, 1 for a
check that failed). Set CHARRNN_DEBUG=1 to see the traceback instead.
"""


class CharRNNError(Exception):
    """A mistake in what the user asked for or gave us (exit code 2 unless said otherwise)."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
