"""The project's one error type for what a user can cause.

Bad input (a wrong action, goal, file, expression or setting) raises
``LabError`` with a message that says what went wrong and what to do. It
lives in the lowest layer (``common``) so every package can raise it.
"""


class LabError(ValueError):
    """A problem the user can fix; the message says how."""
