"""Errors that are the user's to fix: shown as one paragraph, never as a traceback."""


class UserError(Exception):
    """A wrong config value or bad input: the message names the problem and the fix."""


class ConfigError(UserError):
    """A config value that is not allowed."""


class DataError(UserError):
    """A data file or data set that cannot be used."""


class StorageError(UserError):
    """A file or folder that cannot be written or read: a full disk, a read-only folder."""


class FolderRefused(UserError):
    """A run folder this process may not train into: another process holds it, or it holds a run
    and neither `resume=true` nor `overwrite=true` was given. A sweep stops at such a job."""
