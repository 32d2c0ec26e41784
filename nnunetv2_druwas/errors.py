"""The one exception type for problems a user can fix (bad input, missing runs).

The command line prints its message as ``error: ...`` and exits with status 2,
without a traceback. Messages name the file or case and say what to do.
"""


class DruwasError(Exception):
    """A user-facing error: bad input, a missing file or run, a refused overwrite."""
