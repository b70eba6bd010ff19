"""The interview screen in a real browser: Debian's chromium driven by Playwright, hearing
espeak-ng speech through a fake microphone, against the live server, a real qcluster with the
local engine, and the embedded MongoDB."""

import io
import math
import re
import time
import wave

import pytest
import requests
from django.contrib.auth import get_user_model
from django.db import connections
from playwright.sync_api import expect, sync_playwright
from rest_framework.authtoken.models import Token

from sessions_app.delivery import delivery_feedback
from sessions_app.models import InterviewSession
from sessions_app.services import answer_submit, session_create
from tests.engines import release_blocking_engine
from tests.support import (
    ROOT,
    run_queued_jobs,
    speak,
    start_qcluster,
    wait_for,
    word_error_rate,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
]
# Memcached and EXPLAIN leave Whisper unsure of a few words, whatever the question's prompt:
# the results page must mark them.
SAID = (
    "I would measure before optimizing, read the query plan with explain, "
    "add a covering index and put Memcached in front."
)
PASSWORD = "correct horse battery"
SCREENSHOT = ROOT / "var" / "screenshots" / "results.png"
QUESTION_COUNT = 3


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory):
    """Return a wav of SAID followed by two seconds of silence, and the speech's length."""
    folder = tmp_path_factory.mktemp("microphone")
    with wave.open(io.BytesIO(speak(SAID, workdir=folder))) as speech:
        params = speech.getparams()
        frames = speech.readframes(speech.getnframes())
    bytes_per_second = params.sampwidth * params.nchannels * params.framerate
    path = folder / "answer.wav"
    # Chromium plays the file in a loop: the silence keeps the next round out of a recording.
    with wave.open(str(path), "wb") as padded:
        padded.setparams(params)
        padded.writeframes(frames + bytes(2 * bytes_per_second))
    return path, len(frames) / bytes_per_second


@pytest.fixture
def chromium(microphone_wav, monkeypatch):
    """Launch Debian's chromium, its microphone allowed or refused; closed after the test."""
    # Playwright's sync API keeps an event loop in this thread, which Django would take for
    # async code and refuse the test's own database reads; the live server runs in its own thread.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    wav, _ = microphone_wav
    with sync_playwright() as playwright:

        def launch(*, microphone: bool):
            permission = (
                "--use-fake-ui-for-media-stream" if microphone else "--deny-permission-prompts"
            )
            return playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}", permission],
            )

        yield launch
        # With Playwright started, the test's own queries ran in its context (a greenlet), and
        # Django keeps a connection per context: pytest-django closes only the other one. Left
        # open, it outlives the run and PostgreSQL cannot drop the test database.
        connections.close_all()


@pytest.fixture
def candidate(questions):
    return get_user_model().objects.create_user("speaker", password=PASSWORD)


def open_page(browser, errors: list):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.on("pageerror", lambda error: errors.append(error))
    return page


def log_in_and_start(page, live_server, *, question_count: int) -> InterviewSession:
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    page.get_by_label("Username").fill("speaker")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Start an interview")).to_be_visible()
    page.get_by_label("Role you are practising for").fill("databases engineer")
    page.get_by_label("Language you will answer in").select_option("en")
    page.get_by_label("Number of questions").fill(str(question_count))
    page.get_by_role("button", name="Start interview").click()
    expect(page).to_have_url(re.compile(r"/interviews/\d+/$"))
    return InterviewSession.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))


def until(page, condition, *, timeout: float = 10, what: str):
    """Poll ``condition`` while Playwright handles the browser's events; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
        page.wait_for_timeout(50)


def test_answers_upload_in_the_background_then_finish_shows_transcripts_and_scores(
    live_server, candidate, gridfs, chromium, microphone_wav, tmp_path, capsys
):
    _, speech_seconds = microphone_wav
    # Stop once the sentence is over and before the file's loop starts it again.
    stop_at_second = math.ceil(speech_seconds + 0.5)
    errors = []
    page = open_page(chromium(microphone=True), errors)
    session = log_in_and_start(page, live_server, question_count=QUESTION_COUNT)
    questions = list(session.ordered_questions())
    assert session.language == "en"
    assert len(questions) == QUESTION_COUNT

    # Every upload is held in flight until the test lets it through.
    held_uploads = []
    page.route("**/api/upload-answer/**", lambda route: held_uploads.append(route))
    progress, question_text = page.locator("#question-progress"), page.locator("#question-text")
    chips = page.locator("#chips > li")

    # Must show 1: each Next shows the following question while the upload is still in flight.
    for index, question in enumerate(questions):
        expect(progress).to_have_text(f"Question {index + 1} of {QUESTION_COUNT}")
        expect(question_text).to_have_text(question.text)
        page.get_by_role("button", name="Record", exact=True).click()
        expect(chips.nth(index)).to_have_text(f"Q{index + 1} recording")
        # Polled from here: the page's Content-Security-Policy forbids the eval that
        # Playwright's wait_for_function would run inside it.
        wait_for(
            lambda: page.evaluate("document.getElementById('level').value") > 0.05,
            what="the level meter to move",
        )
        wait_for(
            lambda: (
                page.evaluate(
                    """() => {
                    const timer = document.getElementById("timer").textContent;
                    const [minutes, seconds] = timer.split(":");
                    return 60 * Number(minutes) + Number(seconds);
                }"""
                )
                >= stop_at_second
            ),
            what=f"the timer to reach {stop_at_second} s",
        )
        page.get_by_role("button", name="Stop", exact=True).click()
        expect(chips.nth(index)).to_have_text(f"Q{index + 1} recorded")

        page.get_by_role("button", name="Next", exact=True).click()
        if index + 1 < QUESTION_COUNT:
            expect(progress).to_have_text(f"Question {index + 2} of {QUESTION_COUNT}")
            expect(question_text).to_have_text(questions[index + 1].text)
            expect(page.get_by_role("button", name="Record", exact=True)).to_be_enabled()
        else:
            expect(page.get_by_role("heading", name="That was the last question")).to_be_visible()
        expect(chips.nth(index)).to_have_text(f"Q{index + 1} uploading")
        until(page, lambda n=index + 1: len(held_uploads) == n, what="the upload request")
        assert held_uploads[index].request.url.endswith(
            f"/api/upload-answer/{session.pk}/{question.pk}"
        )
        assert not session.answers.filter(question=question).exists()

        held_uploads[index].continue_()
        # No worker runs yet, so the answer waits in the queue with its audio in GridFS.
        expect(chips.nth(index)).to_have_text(f"Q{index + 1} queued")

    audio = list(gridfs["fs.files"].find({"metadata.session_id": session.pk}))
    assert len(audio) == QUESTION_COUNT
    assert gridfs["fs.chunks"].count_documents({"files_id": {"$in": [f["_id"] for f in audio]}})

    # Must show 2: Finish says "Analyzing..." while transcriptions are pending, then the results.
    page.get_by_role("button", name="Finish").click()
    status = page.locator("#status")
    expect(status).to_have_text("Analyzing... 3 answers are still being transcribed.")
    cluster = start_qcluster(tmp_path, TRANSCRIBER="local")
    try:
        expect(page.get_by_role("heading", name="Results")).to_be_visible(timeout=240_000)

        # Must show 3: the answers' audio is gone from GridFS.
        file_ids = [file["_id"] for file in audio]
        wait_for(
            lambda: (
                gridfs["fs.files"].count_documents({"metadata.session_id": session.pk}) == 0
                and gridfs["fs.chunks"].count_documents({"files_id": {"$in": file_ids}}) == 0
            ),
            what="the answers' audio to be deleted from GridFS",
        )
    finally:
        cluster.stop()

    session.refresh_from_db()
    assert session.final_score is not None
    final_score = page.locator("#final-score").inner_text()
    assert float(final_score.removesuffix(" / 100")) == session.final_score
    expect(page.locator("#results-summary")).to_have_text("3 of 3 answers scored.")
    results = page.locator("#result-list > li")
    expect(results).to_have_count(QUESTION_COUNT)
    marked = 0
    for index, question in enumerate(questions):
        result = results.nth(index)
        expect(result.get_by_role("heading", level=3)).to_have_text(f"{index + 1}. {question.text}")
        transcript = result.locator(".transcript").inner_text()
        assert word_error_rate(SAID, transcript) <= 0.35, transcript
        answer = session.answers.get(question=question)
        expect(result.locator(".score")).to_have_text(re.compile(r"^Score: [0-9.]+ / 100$"))
        assert float(result.locator(".score").inner_text().split()[1]) == answer.score
        expect(result.locator(".feedback > li")).to_have_text(answer.feedback)
        expect(result.locator(".model-answer")).to_have_text(question.model_answer)
        expect(chips.nth(index)).to_have_text(f"Q{index + 1} completed")

        # Delivery beside the score, and the unsure words marked in the transcript.
        transcription = answer.transcription
        delivery = delivery_feedback(
            words=transcription.words, audio_seconds=transcription.audio_seconds
        )
        panel = result.locator(".delivery")
        expect(panel.get_by_role("heading")).to_have_text("How you said it (not part of the score)")
        expect(panel.locator("dd").nth(1)).to_have_text(
            re.compile(rf"^{delivery['words_per_minute']} words/min: {delivery['pace']} \(aim for ")
        )
        expect(panel.locator(".delivery-notes > li")).to_have_text(delivery["notes"])
        unsure = [word["word"] for word in delivery["low_confidence_words"]]
        expect(result.locator("mark.unsure")).to_have_text(unsure)
        marked += len(unsure)
    assert marked > 0, "no word was marked as heard with low confidence"

    # Must show 5: a screenshot of the results page.
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)
    with capsys.disabled():
        print(f"\nScreenshot of the results page: {SCREENSHOT}")
    assert errors == []


def test_refused_microphone_shows_what_to_do_instead_of_a_broken_page(
    live_server, candidate, chromium
):
    errors = []
    page = open_page(chromium(microphone=False), errors)
    log_in_and_start(page, live_server, question_count=2)

    page.get_by_role("button", name="Record", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"^Microphone access was refused, so your answer cannot be recorded\.")
    )
    expect(page.get_by_role("button", name="Record", exact=True)).to_be_enabled()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_disabled()
    expect(page.locator("#timer")).to_have_text("0:00")
    expect(page.locator("#chips > li").first).to_have_text("Q1 not recorded")

    # The rest of the page still works.
    page.get_by_role("button", name="Next", exact=True).click()
    expect(page.locator("#question-progress")).to_have_text("Question 2 of 2")
    expect(page.get_by_role("alert")).to_have_count(0)
    assert errors == []


def test_an_answer_that_cannot_be_scored_still_shows_the_results(
    settings, live_server, candidate, chromium, gridfs, scripted_engine, spoken
):
    """Issue 9: one answer the scorer fails on leaves the others' results, not a spinner."""
    settings.SCORER = "tests.test_lifecycle.FailsOnOneAnswer"
    session = session_create(user=candidate, question_count=2)
    first, second = session.ordered_questions()
    for question, text in [(first, "an index and a cache"), (second, "unscorable")]:
        audio = scripted_engine.say(spoken(text), text)
        answer_submit(session=session, question=question, audio=audio, content_type="audio/wav")
    run_queued_jobs()
    errors = []
    page = open_page(chromium(microphone=False), errors)
    page.goto(f"{live_server.url}/accounts/login/?next=/interviews/{session.pk}/")
    page.get_by_label("Username").fill("speaker")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    # Every question answered and transcribed: the session was analyzed when the last
    # transcript landed (issue 12), so the page opens on the results, no Finish needed.

    results = page.locator("#result-list > li")
    expect(results).to_have_count(2)
    expect(page.locator("#results-summary")).to_have_text(
        "1 of 2 answers scored, 1 could not be scored."
    )
    expect(results.nth(0).locator(".score")).to_have_text(re.compile(r"^Score: [0-9.]+ / 100$"))
    expect(results.nth(1).locator(".score")).to_have_text("Score: not scored")
    expect(results.nth(1).locator(".score-error")).to_contain_text("could not be scored")
    expect(results.nth(1).locator(".transcript")).to_have_text("unscorable")
    expect(page.get_by_text("Analyzing...")).to_have_count(0)
    assert errors == []


def open_interview(page, server_url: str, session: InterviewSession) -> list[str]:
    """Log in on the interview's page; return the list the page's request URLs go into."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.goto(f"{server_url}/accounts/login/?next=/interviews/{session.pk}/")
    page.get_by_label("Username").fill("speaker")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(rf"/interviews/{session.pk}/$"))
    return seen


def upload_through_api(server_url, session, candidate, spoken):
    token = Token.objects.get_or_create(user=candidate)[0]
    for question in session.ordered_questions():
        response = requests.post(
            f"{server_url}/api/upload-answer/{session.pk}/{question.pk}",
            files={"audio": ("answer.wav", spoken(f"My answer to {question.pk}."))},
            headers={"Authorization": f"Token {token.key}"},
            timeout=30,
        )
        assert response.status_code == 202, response.text


def test_chips_and_results_arrive_over_the_event_stream_without_polling(
    start_web, candidate, gridfs, chromium, spoken, tmp_path
):
    """Issue 12: against the Procfile's ASGI web process and a real qcluster."""
    web = start_web("web")
    session = session_create(user=candidate, question_count=2)
    upload_through_api(web.url, session, candidate, spoken)
    errors = []
    page = open_page(chromium(microphone=False), errors)
    seen = open_interview(page, web.url, session)
    chips = page.locator("#chips > li")
    expect(chips.nth(1)).to_have_text("Q2 queued")
    until(page, lambda: any("/events" in url for url in seen), what="the event stream")
    loaded = len(seen)

    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#status")).to_have_text(
        "Analyzing... 2 answers are still being transcribed."
    )
    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    cluster = start_qcluster(
        tmp_path, TRANSCRIBER="tests.engines.BlockingTranscriber", BLOCKING_ENGINE_DIR=engine_dir
    )
    try:
        expect(chips.nth(0)).to_have_text("Q1 processing", timeout=30_000)
        release_blocking_engine(engine_dir, "pushed")
        expect(page.get_by_role("heading", name="Results")).to_be_visible(timeout=30_000)
    finally:
        cluster.stop()

    expect(chips.nth(0)).to_have_text("Q1 completed")
    expect(chips.nth(1)).to_have_text("Q2 completed")
    expect(page.locator("#result-list .transcript").first).to_contain_text("pushed")
    after_load = seen[loaded:]
    # The chips moved and the results came without a status poll or a second analyze.
    assert [url for url in after_load if "/api/transcription-status/" in url] == []
    assert [url for url in after_load if "/api/analyze/" in url] == [
        f"{web.url}/api/analyze/{session.pk}"
    ]
    assert errors == []


def test_with_the_event_stream_blocked_the_page_finishes_by_polling(
    start_web, candidate, gridfs, chromium, spoken, tmp_path
):
    web = start_web("web")
    session = session_create(user=candidate, question_count=2)
    upload_through_api(web.url, session, candidate, spoken)
    errors = []
    page = open_page(chromium(microphone=False), errors)
    page.route("**/events", lambda route: route.abort())
    seen = open_interview(page, web.url, session)
    expect(page.locator("#chips > li").nth(1)).to_have_text("Q2 queued")

    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#status")).to_have_text(
        "Analyzing... 2 answers are still being transcribed."
    )
    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    release_blocking_engine(engine_dir, "polled")
    cluster = start_qcluster(
        tmp_path, TRANSCRIBER="tests.engines.BlockingTranscriber", BLOCKING_ENGINE_DIR=engine_dir
    )
    try:
        expect(page.get_by_role("heading", name="Results")).to_be_visible(timeout=60_000)
    finally:
        cluster.stop()
    expect(page.locator("#result-list .transcript").first).to_contain_text("polled")
    # It got there by polling, and said nothing alarming about the stream.
    assert len([url for url in seen if "/api/analyze/" in url]) >= 2
    assert len([url for url in seen if "/api/transcription-status/" in url]) >= 2
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.locator("#finish-error")).to_be_hidden()
    assert errors == []
