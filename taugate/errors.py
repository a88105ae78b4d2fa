"""The one exception type a user can cause; its message is printed as a single line by the CLI."""


class TauGateError(ValueError):
    """Bad input, missing or corrupt file, or an impossible setting; the message names the problem."""
