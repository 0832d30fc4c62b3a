"""The store's errors: each a ``ValueError`` whose message says what is wrong and what to do."""

from __future__ import annotations

from typing import Any

from .remote import redact


class StoreError(ValueError):
    """A store cannot be opened, read or written; the message says why and what to do.

    A ``ValueError``: every bad argument of the public API (and every damaged
    store) raises one of its subclasses, so ``except ValueError`` catches them.
    Its message never carries a URL's user, password, query or signature
    (``remote.redact``), whichever text it quotes.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class RemoteStoreError(StoreError):
    """A remote store could not be reached or read (404, 403, timeout, offline); the message says what to check."""


class StoreBusy(StoreError):
    """Another process is writing to the store (its build journal's lock is held)."""
