"""The interview screen's HTML pages, without a browser: login, ownership, static files."""

import re
import socket
import subprocess
import sys

import pytest
import requests
from django.contrib.auth import get_user_model

from sessions_app.services import session_create
from tests.support import ROOT, Process, database_url, free_port, process_env, wait_for

STATIC_URL = re.compile(r'(?:href|src)="(/static/interview/[^"]+)"')


def test_pages_redirect_to_the_login_page_when_logged_out(client, interview):
    for url in ["/", f"/interviews/{interview.pk}/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response.url == f"/accounts/login/?next={url}"
    assert client.get("/accounts/login/").status_code == 200


def test_another_users_interview_page_is_not_found(client, interview, other_user):
    client.force_login(other_user)
    assert client.get(f"/interviews/{interview.pk}/").status_code == 404
    client.force_login(interview.user)
    assert client.get(f"/interviews/{interview.pk}/").status_code == 200


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class BehindTheRouter(requests.Session):
    """Call a plain-HTTP gunicorn as the PaaS router that terminates TLS for it does.

    Production redirects plain HTTP to HTTPS unless X-Forwarded-Proto says https, and its
    cookies are Secure, which requests would keep from a plain-HTTP URL: send them by hand.
    """

    def request(self, method, url, **kwargs):
        cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.cookies)
        headers = {"X-Forwarded-Proto": "https", "Cookie": cookies} | kwargs.pop("headers", {})
        kwargs["allow_redirects"] = False  # a redirect would drop the hand-made Cookie header
        return super().request(method, url, headers=headers, **kwargs)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_gunicorn_with_debug_off_serves_the_pages_static_files_through_whitenoise(
    questions, tmp_path
):
    """Production as the Procfile runs it: collectstatic at release, then gunicorn."""
    get_user_model().objects.create_user("speaker", password="correct horse battery")
    env = process_env(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="only-for-this-test",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
        DATABASE_URL=database_url(),
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = Process(
        [
            *[sys.executable, "-m", "gunicorn", "interview_site.asgi", f"--bind=127.0.0.1:{port}"],
            "--worker-class=uvicorn_worker.UvicornWorker",  # as the Procfile runs it
        ],
        log=tmp_path / "gunicorn.log",
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_open(port) or not server.alive(), what="gunicorn to listen")
        assert server.alive(), server.output()
        browser = BehindTheRouter()
        login_page = browser.get(f"{base}/accounts/login/", timeout=10)
        assert login_page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)[1]
        logged_in = browser.post(
            f"{base}/accounts/login/",
            data={"username": "speaker", "password": "correct horse battery", "next": ""},
            headers={"X-CSRFToken": token, "Referer": f"https://127.0.0.1:{port}/accounts/login/"},
            timeout=10,
        )
        assert (logged_in.status_code, logged_in.headers["Location"]) == (302, "/")
        start_page = browser.get(f"{base}/", timeout=10)
        assert start_page.status_code == 200
        interview = session_create(user=get_user_model().objects.get(), question_count=2)
        interview_page = browser.get(f"{base}/interviews/{interview.pk}/", timeout=10)
        assert interview_page.status_code == 200

        static_urls = set()
        for page in (login_page, start_page, interview_page):
            static_urls |= set(STATIC_URL.findall(page.text))
        names = {re.sub(r"\.[0-9a-f]{12}\.", ".", url.rsplit("/", 1)[1]) for url in static_urls}
        assert names == {"interview.css", "api.js", "start.js", "interview.js"}
        for url in static_urls:
            response = browser.get(f"{base}{url}", headers={"Accept-Encoding": "gzip"}, timeout=10)
            assert response.status_code == 200, url
            assert response.headers["Content-Type"].startswith(("text/css", "text/javascript"))
            # WhiteNoise: a hashed name is cached for good, and sent compressed.
            assert "immutable" in response.headers["Cache-Control"]
            assert response.headers["Content-Encoding"] == "gzip"
    finally:
        server.stop()
