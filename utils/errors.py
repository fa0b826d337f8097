"""The one base class of errors a user can fix (bad flag, missing or broken file, bad data).

Scripts turn a `UserError` into exit code 2 and its one-line message, without a traceback;
anything else is a runtime failure (exit 1). Subclasses keep their builtin base too
(ValueError, FileNotFoundError, ...) so callers that catch those keep working.
"""


class UserError(Exception):
    """A usage or data error; the message names the file or field and says what to do."""
