"""Errors a user can fix: the command line prints them as one line and exits non-zero."""


class ProjectError(Exception):
    """A problem with the user's input (a file, a config key, an argument), not a bug.

    The message must name the thing at fault and say what was expected; the command line
    prints ``error: <message>`` without a traceback and exits with status 2.
    """


class ConfigError(ProjectError):
    """An unknown config key, a value of the wrong type, or an unreadable config file."""
