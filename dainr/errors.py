"""Errors a user can cause, and the one way every front end turns a failure into one line.

Front ends (``dainr`` CLI, Gadgetron gadget, MRD server) print or send :func:`error_line` of what went wrong and exit
non-zero (or send ERROR). Callers that must react to one kind of refusal catch its class (e.g.
:class:`NoImagingData`), never match the message text.
"""


class DainrError(Exception):
    """Base class of every error meant for the user: its message names the cause and the fix."""


class InputError(DainrError):
    """The raw input (file, header, acquisitions) is refused; see ``shared/design/INPUT_POLICY.md``."""


class NoImagingData(InputError):
    """The input (or one group of a stream) holds no imaging acquisition: only noise or other flagged scans."""


class ConfigError(DainrError):
    """A configuration value, preset name or override is invalid."""


class ResourceError(DainrError):
    """The problem does not fit the device (memory) even after degrading."""


def one_line(text: object) -> str:
    """``text`` (a message or an exception) with every run of whitespace, newlines included, made one space."""
    return " ".join(str(text).split())


def error_line(exc: BaseException) -> str:
    """What a front end prints or sends for ``exc``, on one line.

    A :class:`DainrError` gives its message (it names the cause and the fix); anything else is unexpected and gives
    ``internal error: <type>: <first line of its message>``.
    """
    if isinstance(exc, DainrError):
        return one_line(exc)
    text = str(exc).strip()
    first = one_line(text.splitlines()[0]) if text else ""
    return f"internal error: {type(exc).__name__}: {first}".rstrip(": ")
