"""The one exception type that means "the user asked for something wrong", and the one-line warning."""

import sys


class UserError(Exception):
    """Bad input from the user: the CLI prints it as one line and exits with status 2.

    Anything else that escapes is a bug in gantrain and keeps its traceback.
    """


def warn(message: str) -> None:
    """One ``gantrain: warning: ...`` line on stderr, for tasks that run without a log file (eval, translate)."""
    print(f"gantrain: warning: {message}", file=sys.stderr)
