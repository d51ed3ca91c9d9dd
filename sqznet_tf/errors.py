"""Errors raised for bad user input.

Every message names the bad value and what would be accepted, so the binaries can print it
as one line and exit non-zero without a traceback.
"""


class SqznetError(ValueError):
  """A value given by the user cannot be used; the message says which and why."""
