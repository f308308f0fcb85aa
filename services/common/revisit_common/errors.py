"""The error policy of every stage, free of transport details.

A handler raises `PoisonError` for input that can never be processed (it goes to the
stage's DLQ with the reason) and `TransientError` for a failure that may pass (broker,
Triton, database or payload store unavailable: retried with backoff, never skipped).
Any other exception is a bug or an unforeseen bad input: the message goes to the DLQ so
that it is kept for a replay after the fix, and processing continues.
"""

from __future__ import annotations


class PoisonError(Exception):
    """The message can never be processed as it is."""


class TransientError(Exception):
    """The message could not be processed now; the same attempt may succeed later."""
