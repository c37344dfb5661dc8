"""The benchmark's one error: the harness itself failed (as opposed to a missed target).

::

    HarnessError   a process would not start or stop, a tool failed, an answer was wrong
"""

from __future__ import annotations


class HarnessError(Exception):
    """The benchmark could not measure something; ``python -m bench`` then exits 1."""
