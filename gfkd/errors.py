"""The error family that the CLI turns into one line on stderr and exit code 2.

Every message names the field or file at fault and how to fix it. Any other exception is a bug and keeps its
traceback.
"""


class GfkdError(Exception):
    """A user-facing error: bad input, missing data, an invalid file."""


class ConfigError(GfkdError):
    """A config key, value or file is wrong."""


class DataError(GfkdError):
    """A dataset is missing, unreadable or malformed."""


class CheckpointError(GfkdError):
    """A checkpoint is missing, corrupt or does not fit."""


class ShardError(GfkdError):
    """A pseudo-graph shard or its manifest failed validation."""


class StageError(GfkdError):
    """A stage could not finish (for example a non-finite loss)."""
