"""Error types with messages meant for the user (which file, which row, which setting to fill)."""


class MernbError(Exception):
    """Base class for every error mernb raises on bad input or configuration."""


class ConfigError(MernbError):
    """A setting is missing or points nowhere (the message names the setting to fill)."""


class DatasetError(MernbError):
    """A dataset folder or annotation file is wrong (the message names the file, row and expectation)."""
