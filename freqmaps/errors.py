"""The one exception type for mistakes a user can fix (a bad path, config value or input tensor).

`train.py` prints these as a one-line `error: ...` instead of a traceback. It subclasses ValueError, so
code that expects ValueError for bad input keeps working.
"""


class UserInputError(ValueError):
    """Raised for input a user can correct; the message says what to change."""
