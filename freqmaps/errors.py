"""The one exception type for mistakes a user can fix (a bad path, config value or input tensor).

`train.py` prints these as a one-line `error: ...` instead of a traceback. It subclasses ValueError, so
code that expects ValueError for bad input keeps working.
"""


class UserInputError(ValueError):
    """Raised for input a user can correct; the message says what to change."""


def user_error(error: BaseException | None) -> UserInputError | None:
    """The UserInputError behind `error` (jsonargparse wraps errors raised while instantiating a config)."""
    while error is not None and not isinstance(error, UserInputError):
        error = error.__cause__ or error.__context__
    return error
