"""The one base class of the project's errors.

Every error the package raises on purpose derives from :class:`WhoiscrawlError`,
so a command line catches one class to print the message and exit non-zero,
while anything else (a bug) still ends in a traceback.
"""

from __future__ import annotations


class WhoiscrawlError(Exception):
    """An expected failure whose message tells the user what went wrong and what to do."""
