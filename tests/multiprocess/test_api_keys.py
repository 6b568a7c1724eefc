"""A key's rate limit holds across worker processes: one budget, not one per worker."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from flexiai_django.testing.servers import manage

from .conftest import site_env, start

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_two_workers_share_one_keys_budget(seeded, fake_upstream):
    env = site_env(seeded)
    token = manage("shell", "-c",
                   "from flexiai_django.models import ApiKey; k = ApiKey(name='shared', "
                   "rate_limit_per_minute=6); t = k.issue(); k.save(); print(t)",
                   env=env).strip().splitlines()[-1]
    site = start("uvicorn", seeded, workers=2, FLEXIAI_ANONYMOUS_LOOPBACK="0")
    try:
        def call(_):
            response = httpx.post(
                f"{site.url}/v1/chat/completions", timeout=15,
                headers={"authorization": f"Bearer {token}", "connection": "close"},
                json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
            return response.status_code, response.headers.get("x-flexiai-worker")

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(call, range(20)))
        statuses = [status for status, _ in results]
        workers = {worker for _, worker in results}
        assert statuses.count(200) == 6 and statuses.count(429) == 14
        assert len(workers) == 2, "both workers answered"
        anonymous = httpx.post(f"{site.url}/v1/chat/completions", json={"messages": []})
        assert anonymous.status_code == 401
    finally:
        site.stop()
