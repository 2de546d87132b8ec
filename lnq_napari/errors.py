"""The project's exceptions."""


class LNQError(Exception):
    """A user-fixable problem. The message says what is wrong and what to do, in one line."""


class Cancelled(Exception):
    """Long work stopped because the caller's ``cancel()`` returned True."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt: the same clean-up runs (atomic writes drop their
    temp file, locks are released), then the command ends in one line (:mod:`lnq_napari.signals`)."""


def kind_of(value) -> str:
    """What ``value`` is, as a user reads it in an error (numpy.ndarray, builtins.str, SimpleITK.Image)."""
    return type(value).__module__.split(".")[0] + "." + type(value).__name__
