"""User-facing errors: one clear line naming the bad value and what is allowed."""


class ShearsError(ValueError):
    """Bad input or a state the user can fix. The CLI prints it as one line and exits 2."""
