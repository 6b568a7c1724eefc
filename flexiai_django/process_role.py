"""Whether this process serves requests (and so listens to broadcasts) or only publishes.

A worker joins the broadcast group so that transitions and provider changes made
elsewhere reach it. A one-off process (``manage.py shell``, a command saving a
provider, a migration) has nobody to serve: it only publishes what it changed. Were it
to join, its channel would stay a member of the group, queuing every broadcast for a
reader that is gone, until ``group_expiry`` (minutes). So a process started by a
management command joins only if that command serves (:data:`SERVING_COMMANDS`);
gunicorn, uvicorn, daphne and pytest are not management commands and always join.

The same processes run the deployment's background probers (active and warm-up), except
where a test harness holds them off (:func:`probers_held`): they call providers on
their own clock, which a test counting upstream calls cannot tell from its own.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: Management commands that serve requests or consume channels, and so join the group.
SERVING_COMMANDS = frozenset({"runserver", "runworker"})

_command: str | None = None
_probers_held = 0


def management_command() -> str | None:
    """The management command setting Django up now (``manage.py``, ``django-admin``,
    ``python -m django``, wrappers), read from ``ManagementUtility.execute`` on the call
    stack; ``None`` outside one (a server importing the application, pytest)."""
    management = sys.modules.get("django.core.management")
    if management is None:
        return None
    execute = management.ManagementUtility.execute.__code__
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code is execute:
            return str(frame.f_locals.get("subcommand") or "help")
        frame = frame.f_back
    return None


def remember_command(command: str | None) -> None:
    """Called once at start (``AppConfig.ready``) with :func:`management_command`."""
    global _command
    _command = command


def listens() -> bool:
    """Whether this process joins the broadcast group (else it only publishes)."""
    return _command is None or _command in SERVING_COMMANDS


def runs_probers() -> bool:
    """Whether building the breaker store starts this process's background probers."""
    return listens() and not _probers_held


@contextmanager
def probers_held() -> Iterator[None]:
    """No background prober starts by itself inside (a test starts its own ``Runner``)."""
    global _probers_held
    _probers_held += 1
    try:
        yield
    finally:
        _probers_held -= 1
