"""Errors that the `dlcourse` command reports as one clear line (no traceback).

Raise a subclass of `DlcourseError` for anything a user can fix: a wrong shape, an unknown preset, a missing
dataset, a corrupt checkpoint. `dlcourse.cli.main` prints ``error: <message>`` and exits with status 2.
"""


class DlcourseError(Exception):
    """Base class: a problem with the user's input or environment, reported in one line."""


class ConfigError(DlcourseError):
    """An unknown preset, model or option, or a config value out of range."""


class DataMissingError(DlcourseError):
    """A dataset is not on disk and cannot be downloaded; the message says what to fetch and where to put it."""


class CheckpointError(DlcourseError):
    """A checkpoint is missing, corrupt, truncated, or belongs to another model."""


class NonFiniteLossError(DlcourseError):
    """The training loss became NaN or inf; the message names the step."""


class ShapeError(DlcourseError, ValueError):
    """A tensor has the wrong shape or dtype for the function it was given to."""
