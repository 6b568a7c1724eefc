"""Error reports that never show a password written inside a URL.

Django's :class:`~django.views.debug.SafeExceptionReporterFilter` hides settings by
*name* (``SECRET_KEY``, ``DATABASES[...]["PASSWORD"]``…), but a Redis or database
password usually travels inside a URL: ``REDIS_URL``, ``CACHES[...]["LOCATION"]``,
``CHANNEL_LAYERS[...]["CONFIG"]["hosts"]``, the environment in ``request.META`` under
runserver. Those names look harmless, so the technical 500 page (DEBUG on) and the error
e-mails to ``ADMINS`` would print them. Use it with::

    DEFAULT_EXCEPTION_REPORTER_FILTER = "flexiai_django.reporting.SafeExceptionReporterFilter"
"""

from __future__ import annotations

import re
from collections.abc import ItemsView
from pprint import pformat
from typing import Any

from django.http import HttpRequest
from django.views import debug

# scheme://user:password@ — the password runs to the last "@" before the path, as
# urllib.parse (and so redis-py) reads it; a password without a user (redis://:pw@) too.
_URL_CREDENTIALS = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:@/?#\s]*:)(?P<password>[^/?#\s]*)@")


def cleanse_url_credentials(text: str, substitute: str = "********************") -> str:
    """``redis://user:pass@host`` -> ``redis://user:********************@host``."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['head']}{substitute}@", text)


class SafeExceptionReporterFilter(debug.SafeExceptionReporterFilter):
    """Django's filter, plus passwords inside URLs at any depth (strings, dicts, lists)."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        # Django's implementation recurses into dicts, lists and tuples through this
        # method, so strings at any depth pass through here; request.META does too.
        if isinstance(value, str):
            value = cleanse_url_credentials(value, self.cleansed_substitute)
        return super().cleanse_setting(key, value)

    def get_traceback_frame_variables(self, request: HttpRequest | None,
                                      tb_frame: Any) -> ItemsView[str, Any]:
        """Locals too: a frame holding the URL (or a dict with it) shows on the 500 page.

        The page prints each value with ``pformat``; a value whose printout carries a URL
        password is replaced by that printout, cleansed (any depth, cycles included).
        """
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return {name: _cleansed_printout(value, self.cleansed_substitute)
                for name, value in variables}.items()


class _Printout:
    """Shows as the given text under ``pformat``, as the original value would have."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _cleansed_printout(value: Any, substitute: str) -> Any:
    try:
        text = pformat(value)
    except Exception:  # the page reports unprintable values itself
        return value
    cleansed = cleanse_url_credentials(text, substitute)
    return value if cleansed == text else _Printout(cleansed)
