"""User-facing errors.

Raise `UserError` for anything the user can fix (bad path, bad field, bad value). The CLI
prints its message as `saessak: error: ...` and exits with status 2, without a traceback.
Programming errors stay ordinary exceptions so they keep their traceback.
"""


class UserError(Exception):
    """A mistake in the user's input: the message names the file, field or value."""

    exit_code = 2
