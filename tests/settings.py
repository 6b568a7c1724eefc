"""Settings for the test suite: the demo settings, with what they now refuse to guess.

The demo settings read the environment at import and, with DEBUG off (as pytest-django
runs them), refuse to load without a secret key. Defaults go into ``os.environ`` rather
than into this module so that the servers and ``manage.py`` commands the tests start
(which inherit the environment) see the same secret key and options.
"""

import os
import secrets

# A fresh key per run: nothing in the suite may depend on its value.
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
# Many tests call the demo's views from loopback without a key, as `make run` does.
os.environ.setdefault("FLEXIAI_ANONYMOUS_LOOPBACK", "1")

from flexiai_site.settings import *  # noqa: F403

# Anonymous loopback with DEBUG off is what flexiai.W003 warns about: deliberate here.
# Tests of the warning use flexiai_site.settings itself.
SILENCED_SYSTEM_CHECKS = [*globals().get("SILENCED_SYSTEM_CHECKS", []), "flexiai.W003"]

# The suite sends many anonymous requests a minute from loopback on purpose; the limit
# itself is tested with its own settings (tests/test_auth.py).
FLEXIAI = {**FLEXIAI, "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 0}  # noqa: F405
# Tests that open a breaker count the calls its provider gets; the active prober would
# add its own. Its tests turn it on (tests/test_active_probes.py and the multiprocess one).
FLEXIAI.setdefault("ACTIVE_PROBE_SECONDS", None)  # FLEXIAI_JSON (real servers) may set it
FLEXIAI.setdefault("WARMUP_PROBE_SECONDS", None)

# The test client renders admin pages with DEBUG off and without `collectstatic`: plain
# names, found by the finders. The production storage is tested against a real gunicorn
# (tests/multiprocess/test_static_files.py).
STORAGES = {**STORAGES,  # noqa: F405
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
STATIC_ROOT = ""  # nothing collected: WhiteNoise would warn about a missing directory
