"""`make run` on a fresh clone: it installs, sets up, and serves the whole product."""

import os
import re
import signal
import socket
import subprocess

import pytest
import requests

from tests.support import ROOT, Process, free_port, wait_for, word_error_rate

pytestmark = pytest.mark.slow

# What the tests' own run sets; the served product must come up on its own defaults.
OWN_SETTINGS = ("DATABASE_URL", "MONGODB_URI", "MONGODB_DB", "TRANSCRIBER", "SCORER")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_make_run_on_a_fresh_clone_serves_the_api(tmp_path, spoken):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    web_port, mongo_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in OWN_SETTINGS}
    server = Process(
        ["make", "run", f"WEB_PORT={web_port}", f"MONGO_PORT={mongo_port}"],
        cwd=clone,
        env=env,
        log=tmp_path / "make-run.log",
        stop_timeout=30,
    )
    base = f"http://127.0.0.1:{web_port}"
    try:
        wait_for(
            lambda: port_open(web_port) or not server.alive(),
            timeout=900,
            what="make run to install and serve",
        )
        output = server.output()
        assert server.alive(), output
        assert f"{base}/" in output
        username = re.search(r"Demo user: (\S+)", output).group(1)
        password = re.search(r"Password:\s+(\S+)", output).group(1)
        printed_token = re.search(r"API token: (\S+)", output).group(1)

        token = requests.post(
            f"{base}/api/auth/token/", data={"username": username, "password": password}, timeout=10
        ).json()["token"]
        assert token == printed_token
        http = requests.Session()
        http.headers["Authorization"] = f"Token {token}"
        created = http.post(f"{base}/api/sessions/", json={"question_count": 1}, timeout=10)
        assert created.status_code == 201
        session_id, question_id = created.json()["id"], created.json()["questions"][0]["id"]
        # Two sentences: on one short one, a phrase misheard under the random question's
        # prompt decides the word error rate alone.
        said = (
            "Caching the results made the page three times faster. "
            "We measured it again after every deploy."
        )
        uploaded = http.post(
            f"{base}/api/upload-answer/{session_id}/{question_id}",
            files={"audio": ("answer.webm", spoken(said, "webm"), "audio/webm")},
            timeout=30,
        )
        assert uploaded.status_code == 202
        analysis = wait_for(
            lambda: (
                (r := http.post(f"{base}/api/analyze/{session_id}", timeout=30)).status_code == 200
                and r.json()
            ),
            timeout=180,
            what="the transcript and the score",
        )
        # Ctrl-C in the terminal: every process in the foreground group gets SIGINT.
        os.killpg(server.popen.pid, signal.SIGINT)
        server.popen.wait(60)
    finally:
        server.stop()

    assert word_error_rate(said, analysis["answers"][0]["transcript"]) <= 0.35
    assert analysis["final_score"] is not None
    # Ctrl-C stopped every process: nothing listens on the ports any more.
    assert not port_open(web_port)
    assert not port_open(mongo_port)
