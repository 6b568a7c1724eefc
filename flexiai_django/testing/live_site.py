"""The demo site running for real, for browser tests and screenshots.

Two server processes share one SQLite file, one Redis database and one channel layer:

* ``page``: daphne (one process), which serves the admin, its static files and the status
  page's WebSocket to the browser;
* ``api``: gunicorn with uvicorn workers, the "other worker processes" in which a test
  trips a breaker by sending chat requests to a failing fake upstream.

A change made in one process is only seen in the other through Redis and the broadcast,
which is what the status page must show. The users exist before the servers start, made
by ``manage.py`` in the servers' own environment, so the caller never needs the ORM (a
Playwright sync session in the caller's thread makes Django refuse ORM calls there).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from flexiai_django.testing.fake_upstream import FakeUpstream
from flexiai_django.testing.servers import ServerProcess, manage

__all__ = ["FLEXIAI_SETTINGS", "LiveSite", "SiteUser"]

STATIC_ASGI_APP = "flexiai_django.testing.static_asgi:application"
# A breaker that opens after 5 failures and stays open for the whole test: no half-open
# surprises while a browser is watching.
FLEXIAI_SETTINGS: dict[str, Any] = {
    "FAILURE_THRESHOLD": 5, "OPEN_SECONDS": 60, "OPEN_JITTER": 0, "HALF_OPEN_MAX_CALLS": 1,
    "DEGRADED_MESSAGE": None, "CACHE_ENABLED": False,
    # Tests trip breakers with bursts of anonymous requests from loopback.
    "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 0,
    # A test site stops at once: no load balancer needs a drain period to notice.
    "DRAIN_SECONDS": 0,
}

_CREATE_USERS = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
User = get_user_model()
for u in json.loads({users!r}):
    user, _ = User.objects.get_or_create(username=u["username"])
    user.is_staff, user.is_superuser = u["is_staff"], u["is_superuser"]
    user.set_password(u["password"])
    user.save()
    for perm in u["permissions"]:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(
            content_type__app_label=app_label, codename=codename))
"""

_SESSION_FOR = """
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
user = get_user_model().objects.get(username={username!r})
session = import_module(settings.SESSION_ENGINE).SessionStore()
session[SESSION_KEY] = user._meta.pk.value_to_string(user)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.save()
print(settings.SESSION_COOKIE_NAME, session.session_key)
"""


@dataclass(frozen=True)
class SiteUser:
    username: str
    password: str
    is_staff: bool = False
    is_superuser: bool = False
    permissions: tuple[str, ...] = ()


class LiveSite:
    """``with LiveSite(tmp_dir, upstream) as site:`` — ``site.page.url``, ``site.api.url``.

    ``settings`` defaults to the caller's ``$DJANGO_SETTINGS_MODULE`` (pytest-django sets
    it), else the demo site's. Users: ``site.users["admin"]`` (superuser), ``["operator"]``
    (staff who may view and change providers), ``["staff"]`` (staff, no permissions),
    ``["member"]`` (active, not staff). ``env`` adds to (or overrides) the servers'
    environment, e.g. ``{"DJANGO_ALLOWED_HOSTS": "*"}``.
    """

    def __init__(self, directory: Path, upstream: FakeUpstream, *,
                 redis_url: str | None = None, flexiai: dict[str, Any] | None = None,
                 api_workers: int = 2, settings: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.upstream = upstream
        self.env = {
            "DJANGO_SETTINGS_MODULE": settings or os.environ.get("DJANGO_SETTINGS_MODULE",
                                                                 "flexiai_site.settings"),
            "FLEXIAI_DB": str(directory / "site.sqlite3"),
            "FLEXIAI_VAR_DIR": str(directory),
            "DJANGO_STATIC_ROOT": str(directory / "static"),
            "REDIS_URL": redis_url or os.environ["REDIS_URL"],
            "FLEXIAI_JSON": json.dumps({**FLEXIAI_SETTINGS, **(flexiai or {})}),
            "DJANGO_DEBUG": "0",
            # Production settings need a secret; a test site is driven from loopback.
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
            "FLEXIAI_ANONYMOUS_LOOPBACK": "1",
            "OPENAI_API_KEY": "",
            "ANTHROPIC_API_KEY": "",
            **(env or {}),
        }
        self.users = {
            "admin": SiteUser("admin", secrets.token_urlsafe(12), True, True),
            "operator": SiteUser("operator", secrets.token_urlsafe(12), True, False,
                                 ("flexiai_django.view_provider",
                                  "flexiai_django.change_provider")),
            "staff": SiteUser("staff", secrets.token_urlsafe(12), True, False),
            "member": SiteUser("member", secrets.token_urlsafe(12), False, False),
        }
        self.page = ServerProcess("daphne", self.env, asgi_app=STATIC_ASGI_APP)
        self.api = ServerProcess("uvicorn", self.env, workers=api_workers)

    def manage(self, *args: str) -> str:
        """``manage.py`` in the servers' environment (their database and Redis)."""
        return manage(*args, env=self.env)

    def start(self) -> LiveSite:
        self.manage("migrate", "--noinput", "-v0")
        if self._needs_collectstatic():
            self.manage("collectstatic", "--noinput", "-v0")
        self.manage("flexiai_seed_demo", "--upstream", self.upstream.url)
        users = json.dumps([vars(u) for u in self.users.values()])
        self.manage("shell", "-c", _CREATE_USERS.format(users=users))
        try:
            self.page.start()
            self.api.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _needs_collectstatic(self) -> bool:
        """Hashed static names (the demo settings, DEBUG off) need ``collectstatic``'s
        manifest; when the servers share the caller's settings, those tell at no cost."""
        if self.env["DJANGO_SETTINGS_MODULE"] != os.environ.get("DJANGO_SETTINGS_MODULE"):
            return True
        from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage

        return isinstance(staticfiles_storage, ManifestFilesMixin)

    def stop(self) -> None:
        self.page.stop()
        self.api.stop()

    def __enter__(self) -> LiveSite:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def session_cookie(self, username: str) -> dict[str, str]:
        """A logged-in session for any user, as a Playwright cookie.

        The admin login form only accepts staff, so this is how a test acts as a
        non-staff user (like Django's ``Client.force_login``).
        """
        out = self.manage("shell", "-v0", "-c", _SESSION_FOR.format(username=username))
        name, value = out.strip().splitlines()[-1].split()
        return {"name": name, "value": value, "url": self.page.url}

    def edit_provider(self, name: str, **fields: Any) -> None:
        """Change a provider row as an admin would: a saved model in another process."""
        assignments = "; ".join(f"p.{key} = {value!r}" for key, value in fields.items())
        self.manage("shell", "-c", "from flexiai_django.models import Provider; "
                    f"p = Provider.objects.get(name={name!r}); {assignments}; p.save()")

    def breaker(self, provider: str, server: ServerProcess | None = None) -> dict[str, Any]:
        """The shared breaker state of a provider, as ``GET /circuit-breakers`` reports it."""
        url = (server or self.api).url
        body = httpx.get(f"{url}/circuit-breakers", headers={"connection": "close"},
                         timeout=5).json()
        state: dict[str, Any] = body["breakers"].get(f"llm:{provider}", {"state": "closed"})
        return state

    def force(self, provider: str, state: str) -> None:
        """Force a breaker (``closed``, ``forced_open``, ``disabled``) from a third process,
        as an operator's shell would; the change is broadcast to both servers."""
        self.manage("shell", "-c",
                    "from flexiai_django.breakers import get_store; "
                    "from flexiai_django.breakers.state import State; "
                    f"get_store().force('llm:{provider}', State({state!r}))")

    def wait_until_every_worker_sees(self, provider: str, state: str,
                                     timeout: float = 10.0) -> None:
        """Poll ``/circuit-breakers`` on fresh connections until each worker of both servers
        holds ``state`` in its own (pre-read) snapshot, or has none yet."""
        expected = 1 + self.api.workers
        latest: dict[str, str | None] = {}
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5, headers={"connection": "close"}) as client:
            while time.monotonic() < deadline:
                for server in (self.page, self.api):
                    body = client.get(f"{server.url}/circuit-breakers").json()
                    local = body["breakers"].get(f"llm:{provider}", {}).get("local")
                    latest[body["worker_id"]] = local and local["state"]
                if len(latest) >= expected and all(s in (None, state)
                                                   for s in latest.values()):
                    return
        raise AssertionError(f"workers did not all see {provider} {state} within "
                             f"{timeout}s: {latest}")

    def chat(self, message: str = "hi", timeout: float = 15.0) -> httpx.Response:
        """One chat request to the ``api`` server (the demo's fallback chain)."""
        return httpx.post(f"{self.api.url}/chat/direct", json={"message": message},
                          headers={"connection": "close"}, timeout=timeout)

    def trip(self, provider: str, timeout: float = 20.0) -> dict[str, Any]:
        """Open ``provider``'s breaker from the ``api`` workers: its upstream answers 500
        until enough chat requests have failed there. Returns the shared state."""
        self.upstream.set_fault(provider, status=500)
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self.chat()
            state = self.breaker(provider)
            if state["state"] == "open":
                return state
        raise AssertionError(f"{provider}'s breaker did not open within {timeout}s: {state}")
