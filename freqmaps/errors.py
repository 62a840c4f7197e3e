"""The one exception type for mistakes a user can fix (a bad path, config value or input tensor).

`train.py` prints these as a one-line `error: ...` instead of a traceback. It subclasses ValueError, so
code that expects ValueError for bad input keeps working.
"""
from __future__ import annotations

import sys
from collections.abc import Callable


class UserInputError(ValueError):
    """Raised for input a user can correct; the message says what to change."""


def user_error(error: BaseException | None) -> UserInputError | None:
    """The UserInputError behind `error` (jsonargparse wraps errors raised while instantiating a config)."""
    while error is not None and not isinstance(error, UserInputError):
        error = error.__cause__ or error.__context__
    return error


def one_line(error: UserInputError) -> str:
    """The message of `error`; for one re-raised from a DataLoader worker (its message is the worker's
    traceback text), the original message, from the traceback's last line."""
    message = str(error).strip()
    marker = f"{type(error).__name__}: "
    if "Original Traceback" in message and marker in message:
        return message.rsplit(marker, 1)[1]
    return message


def exit_on_user_error(main: Callable[[], None]) -> None:
    """Run a command-line entry point; a UserInputError (however wrapped) exits with a one-line `error: ...`
    instead of a traceback. Any other exception propagates."""
    try:
        main()
    except Exception as error:
        cause = user_error(error)
        if cause is None:
            raise
        sys.exit(f"error: {one_line(cause)}")
