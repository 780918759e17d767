"""Errors a user can fix. The CLI prints their message (which names the file, genre or parameter)
instead of a traceback; anything else is a bug and keeps its traceback."""


class UserError(ValueError):
    """Bad input, configuration or environment, with a message that says what to do."""
