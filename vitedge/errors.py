"""The one exception type the CLI turns into a single clear line on stderr."""


class VitedgeError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 1


class UsageError(VitedgeError):
    """A bad option combination (exit code 2, like Click's own usage errors)."""

    exit_code = 2
