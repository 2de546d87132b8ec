"""The project's exceptions."""


class LNQError(Exception):
    """A user-fixable problem. The message says what is wrong and what to do, in one line."""


class Cancelled(Exception):
    """Long work stopped because the caller's ``cancel()`` returned True."""
