"""Errors a user can cause. Front ends print ``str(error)`` as one line and exit non-zero (or send ERROR)."""


class DainrError(Exception):
    """Base class of every error meant for the user: its message names the cause and the fix."""


class InputError(DainrError):
    """The raw input (file, header, acquisitions) is refused; see ``shared/design/INPUT_POLICY.md``."""


class ConfigError(DainrError):
    """A configuration value, preset name or override is invalid."""


class ResourceError(DainrError):
    """The problem does not fit the device (memory) even after degrading."""
