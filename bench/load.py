"""Simulated candidates over real HTTP: interview sessions, upload bursts, large uploads."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from bench.audio import Clip
from bench.stack import reset_peak_rss, rss_kib

UPLOAD_TIMEOUT = 600  # a baseline upload waits for the engine, behind others
ANALYZE_DEADLINE = 900


@dataclass
class Upload:
    """One answer upload as the candidate saw it (times are time.time(), seconds)."""

    session_id: int
    question_id: int
    size: int
    audio_seconds: float
    started: float
    ended: float
    status: int
    transcription_status: str = ""
    error: str = ""

    @property
    def wait(self) -> float:
        return self.ended - self.started

    @property
    def accepted(self) -> bool:
        return self.status == 202


@dataclass
class Finish:
    """A candidate's Finish: analyze, retried as the API asks, until the result."""

    session_id: int
    started: float
    ended: float = 0.0
    polls: int = 0
    status: int = 0
    scored_count: int = 0
    failed_count: int = 0
    final_score: float | None = None
    error: str = ""

    @property
    def duration(self) -> float:
        return self.ended - self.started


@dataclass
class Candidate:
    """One simulated candidate: a user with an API token."""

    base_url: str
    token: str
    uploads: list[Upload] = field(default_factory=list)
    finish: Finish | None = None
    errors: list[str] = field(default_factory=list)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def create_session(self, question_count: int) -> tuple[int, list[int]]:
        response = requests.post(
            f"{self.base_url}/api/sessions/",
            json={"question_count": question_count},
            headers=self._headers(),
            timeout=60,
        )
        response.raise_for_status()
        body = response.json()
        return body["id"], [question["id"] for question in body["questions"]]

    def upload(self, session_id: int, question_id: int, clip: Clip, data: bytes) -> Upload:
        """Upload one answer, the way the interview screen does, and time the request."""
        started = time.time()
        status, transcription_status, error = 0, "", ""
        try:
            response = requests.post(
                f"{self.base_url}/api/upload-answer/{session_id}/{question_id}",
                files={"audio": (clip.path.name, data, clip.content_type)},
                headers=self._headers(),
                timeout=UPLOAD_TIMEOUT,
            )
            status = response.status_code
            if status == 202:
                transcription_status = response.json().get("transcription_status", "")
            else:
                error = response.text[:300]
        except requests.RequestException as exc:
            error = repr(exc)
        ended = time.time()
        upload = Upload(
            session_id, question_id, len(data), clip.seconds, started, ended, status,
            transcription_status, error,
        )  # fmt: skip
        self.uploads.append(upload)
        if error:
            self.errors.append(f"upload {session_id}/{question_id}: {status} {error}")
        return upload

    def analyze(self, session_id: int) -> Finish:
        """Press Finish: call analyze, sleeping retry_after between tries, until a result."""
        finish = Finish(session_id, started=time.time())
        deadline = time.monotonic() + ANALYZE_DEADLINE
        while True:
            finish.polls += 1
            try:
                response = requests.post(
                    f"{self.base_url}/api/analyze/{session_id}", headers=self._headers(), timeout=60
                )
            except requests.RequestException as exc:
                finish.error = repr(exc)
                break
            finish.status = response.status_code
            body = response.json()
            if response.status_code == 202 and time.monotonic() < deadline:
                retry_after = body.get("retry_after") or response.headers.get("Retry-After") or 5
                time.sleep(float(retry_after))
                continue
            if response.status_code == 200:
                finish.scored_count = body["scored_count"]
                finish.failed_count = body["failed_count"]
                finish.final_score = body["final_score"]
            else:
                finish.error = str(body)[:300]
            break
        finish.ended = time.time()
        self.finish = finish
        if finish.error or finish.status != 200:
            self.errors.append(f"analyze {session_id}: {finish.status} {finish.error}")
        return finish


def interview(
    candidate: Candidate,
    *,
    clips: list[Clip],
    data: dict[str, bytes],
    first_clip: int,
    question_count: int,
    speak_scale: float,
    tick: Callable[[], None],
    finish: bool = True,
) -> None:
    """Run one candidate's interview: speak and upload each answer, then Finish."""
    try:
        session_id, question_ids = candidate.create_session(question_count)
    except requests.RequestException as exc:
        candidate.errors.append(f"session: {exc!r}")
        return
    for index, question_id in enumerate(question_ids):
        clip = clips[(first_clip + index) % len(clips)]
        # The candidate speaks the answer before the screen can upload it.
        time.sleep(clip.seconds * speak_scale)
        candidate.upload(session_id, question_id, clip, data[clip.path.name])
        tick()
    if finish:
        candidate.analyze(session_id)
        tick()


def run_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def burst(
    candidates: list[Candidate], *, clip: Clip, per_candidate: int, tick: Callable[[], None]
) -> list[Upload]:
    """Every candidate uploads ``per_candidate`` answers back to back, all starting together."""
    data = clip.data
    sessions = [candidate.create_session(per_candidate) for candidate in candidates]
    start = threading.Barrier(len(candidates))

    def run(candidate: Candidate, session_id: int, question_ids: list[int]) -> None:
        start.wait()
        for question_id in question_ids:
            candidate.upload(session_id, question_id, clip, data)
            tick()

    run_threads(
        [
            lambda c=candidate, s=session: run(c, *s)
            for candidate, session in zip(candidates, sessions, strict=True)
        ]
    )
    return [upload for candidate in candidates for upload in candidate.uploads]


def large_uploads(
    candidates: list[Candidate], *, clip: Clip, per_candidate: int, worker_pids: list[int]
) -> tuple[dict, list[Upload]]:
    """Upload large answers concurrently while sampling the web workers' resident memory."""
    data = clip.data
    sessions = [candidate.create_session(per_candidate) for candidate in candidates]
    peak_reset = all(reset_peak_rss(pid) for pid in worker_pids)
    before = {pid: rss_kib(pid)[0] for pid in worker_pids}
    sampled = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in worker_pids:
                sampled[pid] = max(sampled[pid], rss_kib(pid)[0])
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.time()

    def run(candidate: Candidate, session_id: int, question_ids: list[int]) -> None:
        for question_id in question_ids:
            candidate.upload(session_id, question_id, clip, data)

    try:
        run_threads(
            [
                lambda c=candidate, s=session: run(c, *s)
                for candidate, session in zip(candidates, sessions, strict=True)
            ]
        )
    finally:
        done.set()
        sampler.join()
    elapsed = time.time() - started
    peaks = {pid: max(sampled[pid], rss_kib(pid)[1] if peak_reset else 0) for pid in worker_pids}
    uploads = [upload for candidate in candidates for upload in candidate.uploads]
    worst = max(worker_pids, key=lambda pid: peaks[pid] - before[pid])
    return {
        "upload_bytes": clip.size,
        "uploads": len(uploads),
        "concurrent": len(candidates),
        "statuses": sorted({upload.status for upload in uploads}),
        "seconds": round(elapsed, 2),
        "peak_counter_reset": peak_reset,
        "workers": [
            {
                "pid": pid,
                "rss_before_mib": round(before[pid] / 1024, 1),
                "rss_peak_mib": round(peaks[pid] / 1024, 1),
            }
            for pid in worker_pids
        ],
        "peak_rss_mib": round(peaks[worst] / 1024, 1),
        "peak_growth_mib": round((peaks[worst] - before[worst]) / 1024, 1),
    }, uploads
