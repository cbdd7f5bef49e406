"""User-facing errors: one line that names the file or subject and says what to do."""


class UserError(Exception):
    """An error caused by the user's input or environment, shown without a traceback.

    The message must name the offending file, subject or option and suggest a fix.
    """
