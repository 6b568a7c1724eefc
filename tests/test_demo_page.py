"""The demo page: the right fault command, a CSRF token for its fetch, a login hint on 401/403."""

import json
import re
import shutil
import subprocess

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(client):
    response = client.get("/")
    assert response.status_code == 200
    return response


def script_of(page):
    return re.search(r"<script>(.*?)</script>", page.content.decode(), re.S).group(1)


def test_the_fault_command_names_the_seeded_scope(page):
    html = page.content.decode()
    assert """/_fault -d '{"scope": "demo-primary", "status": 500}'""" in html
    assert '"scope": "primary"' not in html


def test_the_page_sets_the_csrf_cookie_and_carries_a_valid_token():
    """The token in the page, sent as X-CSRFToken with the cookie, passes CSRF checks."""
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/")
    assert "csrftoken" in page.cookies
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">',
                      page.content.decode()).group(1)
    # Any CSRF-protected POST tells a good token from a bad one: the admin login is one.
    good = browser.post("/admin/login/", {"username": "x", "password": "y"},
                        headers={"x-csrftoken": token})
    assert good.status_code == 200  # the form again, with "wrong password"
    bad = browser.post("/admin/login/", {"username": "x", "password": "y"},
                       headers={"x-csrftoken": "x" * 64})
    assert bad.status_code == 403


def test_the_fetch_sends_the_token_and_the_page_links_to_the_login(page):
    script = script_of(page)
    assert '"X-CSRFToken": csrfToken' in script
    assert 'href="/admin/login/?next=/"' in page.content.decode()


NODE = shutil.which("node")
HARNESS = """
const script = require("fs").readFileSync(process.argv[2], "utf8");
const [status, statusText, body] = JSON.parse(process.argv[3]);
const elements = {ask: {addEventListener: (type, f) => { elements.submit = f; }},
                  out: {textContent: ""}, login: {hidden: true}};
const calls = [];
globalThis.document = {getElementById: (id) => elements[id],
                       querySelector: () => ({content: "page-token"})};
globalThis.FormData = class { get() { return "hi"; } };
globalThis.fetch = async (url, options) => {
  calls.push({url, options});
  return {status, statusText, text: async () => body};
};
eval(script);
elements.submit({preventDefault() {}, target: {}}).then(() => console.log(JSON.stringify(
  {hidden: elements.login.hidden, out: elements.out.textContent, calls})));
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed: the page's script is not run")
@pytest.mark.parametrize(("status", "text", "body", "hint"), [
    (200, "OK", '{"content": "answer"}', False),
    (401, "Unauthorized", '{"error": {"message": "Authentication required."}}', True),
    (403, "Forbidden", "<h1>Forbidden (403)</h1><p>CSRF verification failed.</p>", True),
    (503, "Service Unavailable", '{"error": {"message": "busy"}}', False),
])
def test_the_page_script_shows_the_login_hint_on_401_and_403(page, tmp_path, status, text,
                                                              body, hint):
    """The page's own script, run by node against a stand-in DOM and fetch."""
    (tmp_path / "page.js").write_text(script_of(page))
    (tmp_path / "harness.js").write_text(HARNESS)
    result = subprocess.run([NODE, str(tmp_path / "harness.js"), str(tmp_path / "page.js"),
                             json.dumps([status, text, body])],
                            capture_output=True, text=True, timeout=30, check=True)
    seen = json.loads(result.stdout)
    assert seen["hidden"] is (not hint)
    (call,) = seen["calls"]
    assert call["url"] == "/chat/direct"
    assert call["options"]["headers"]["X-CSRFToken"] == "page-token"
    assert call["options"]["credentials"] == "same-origin"
    assert json.loads(call["options"]["body"]) == {"message": "hi"}
    if body.startswith("{"):
        assert json.loads(seen["out"]) == json.loads(body)
    else:
        assert seen["out"] == f"{status} {text}"
