"""`make bench-events`: the live event stream against polling, and what idle streams cost.

Starts its own stack (embedded MongoDB, a SQLite database in a temporary folder or
DATABASE_URL, the fake transcription API in this process, the Procfile's web command with
one uvicorn worker, a qcluster) and measures, side by side in one run:

1. Finish -> results: candidates upload their answers and press Finish while the engine
   still works; half wait for the ``analysis`` event on the stream, half poll analyze every
   ``retry_after`` as the page does without a stream. The time from the session's last
   transcript commit (its ``transcribed_at``) to the results reaching the client.
2. Idle streams: the upload wait (p50/p95) at a steady pace with no stream open, then with
   ``--streams`` idle streams held by the same web process, and that process's memory.

Writes bench/results/events.json and events.md (events-quick.* with --quick; events-postgresql.*
with DATABASE_URL on PostgreSQL).
"""

import argparse
import asyncio
import io
import json
import math
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from fake_openai import FakeOpenAI
from harness import ROOT, Process, free_port, port_open, rss_kib, wait_for

RESULTS = ROOT / "bench" / "results"


def rss_mib(pid: int) -> float:
    return rss_kib(pid)[0] / 1024


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu_percent(pid: int, seconds: float = 5.0) -> float:
    """The process's CPU use over a few seconds with no request made."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return round((cpu_seconds(pid) - before) / seconds * 100, 1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def tone_wav(seconds: float) -> bytes:
    rate = 16000
    frames = bytearray()
    for i in range(int(rate * seconds)):
        value = int(8000 * math.sin(2 * math.pi * 220 * i / rate))
        frames += value.to_bytes(2, "little", signed=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(bytes(frames))
    return out.getvalue()


class Stack:
    def __init__(self, folder: Path, *, queue_workers: int):
        self.folder = folder
        mongo_port = free_port()
        self.env = os.environ | {
            "DJANGO_DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "interview_site.settings",
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{folder / 'db.sqlite3'}",
            "MONGODB_URI": f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true",
            "MONGODB_DB": "bench_events",
            "TRANSCRIBER": "openai",
            "OPENAI_API_KEY": "bench",
            "UPLOAD_RATE_LIMIT": "1000000/minute",
            "SESSION_RATE_LIMIT": "1000000/minute",
            "MAX_PENDING_PER_USER": "1000000",
            "Q_WORKERS": str(queue_workers),
            "WEB_CONCURRENCY": "1",  # one web process holds every stream and serves the uploads
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        self.processes: list[Process] = []
        self.mongo = self._manage(
            "mongo", "embedded_mongo", f"--port={mongo_port}", f"--path={folder / 'mongo.db'}"
        )
        wait_for(lambda: port_open(mongo_port), timeout=60, what="the embedded MongoDB")

    def _manage(self, name: str, *args: str) -> Process:
        process = Process(
            [sys.executable, "manage.py", *args],
            env=self.env,
            log=self.folder / f"{name}.log",
            name=name,
        )
        self.processes.append(process)
        return process

    def prepare(self, api_url: str) -> None:
        self.env["OPENAI_BASE_URL"] = api_url
        os.environ.update(self.env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("createcachetable", verbosity=0)
        call_command("load_question_bank", verbosity=0)

    def web(self) -> tuple[str, Process]:
        port = free_port()
        command = next(
            line.removeprefix("web:").strip()
            for line in (ROOT / "Procfile").read_text().splitlines()
            if line.startswith("web:")
        )
        process = Process(
            ["bash", "-c", f"exec {command}"],
            env=self.env | {"PORT": str(port), "GUNICORN_CMD_ARGS": "--graceful-timeout 3"},
            log=self.folder / "web.log",
            name="web",
        )
        self.processes.append(process)
        wait_for(lambda: port_open(port) and process.children(), timeout=60, what="the web worker")
        return f"http://127.0.0.1:{port}", process

    def qcluster(self) -> Process:
        cluster = self._manage("qcluster", "qcluster")
        cluster.wait_until("ready for work", timeout=60)
        return cluster

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def make_candidates(count: int) -> list[str]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    users = get_user_model().objects
    return [
        Token.objects.create(user=users.create_user(f"bench-{index}-{time.time_ns()}")).key
        for index in range(count)
    ]


def read_events(response, on_event) -> None:
    fields: dict = {}
    try:
        for line in response.iter_lines(chunk_size=1, decode_unicode=True):
            if line == "":
                if "data" in fields:
                    on_event(fields.get("event"), json.loads(fields["data"]))
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    except (requests.RequestException, AttributeError, ValueError):
        pass


def finish_to_results(url: str, token: str, *, mode: str, questions: int, audio: bytes) -> dict:
    """One candidate: a session, its answers, Finish; when the results reached the client."""
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"
    session = http.post(f"{url}/api/sessions", json={"question_count": questions}, timeout=30)
    session.raise_for_status()
    session = session.json()
    analysis = threading.Event()
    received: dict = {}
    stream = None
    if mode == "stream":
        stream = http.get(
            f"{url}/api/sessions/{session['id']}/events",
            headers={"Accept": "text/event-stream"},
            stream=True,
            timeout=120,
        )
        stream.raise_for_status()

        def on_event(name, data):
            if name == "analysis" and data["answers"] and len(data["answers"]) == questions:
                received.setdefault("at", time.time())
                analysis.set()

        threading.Thread(target=read_events, args=(stream, on_event), daemon=True).start()
    for question in session["questions"]:
        response = http.post(
            f"{url}/api/upload-answer/{session['id']}/{question['id']}",
            files={"audio": ("answer.wav", audio, "audio/wav")},
            timeout=60,
        )
        response.raise_for_status()
    polls = 0
    while True:  # Finish
        try:
            reply = http.post(f"{url}/api/analyze/{session['id']}", timeout=60)
        except requests.ConnectionError:  # a kept-alive connection closed meanwhile
            reply = http.post(f"{url}/api/analyze/{session['id']}", timeout=60)
        polls += 1
        reply.raise_for_status()
        if reply.json()["status"] == "success":
            received.setdefault("at", time.time())
            break
        if mode == "stream":
            if analysis.wait(60):
                break
            continue
        time.sleep(reply.json()["retry_after"])
    if stream is not None:
        stream.close()
    return {"session_id": session["id"], "mode": mode, "at": received["at"], "analyze_calls": polls}


def phase_finish(url: str, *, candidates: int, questions: int, audio: bytes) -> dict:
    from transcription.models import Transcription

    tokens = make_candidates(candidates)
    modes = ["stream" if index % 2 == 0 else "polling" for index in range(candidates)]

    def run(index):
        time.sleep(index * 0.3)  # staggered starts, as candidates are
        return finish_to_results(
            url, tokens[index], mode=modes[index], questions=questions, audio=audio
        )

    with ThreadPoolExecutor(candidates) as pool:
        outcomes = list(pool.map(run, range(candidates)))
    by_mode: dict[str, list[float]] = {"stream": [], "polling": []}
    calls: dict[str, list[int]] = {"stream": [], "polling": []}
    for outcome in outcomes:
        committed = max(
            Transcription.objects.filter(metadata__session_id=outcome["session_id"]).values_list(
                "transcribed_at", flat=True
            )
        )
        by_mode[outcome["mode"]].append((outcome["at"] - committed.timestamp()) * 1000)
        calls[outcome["mode"]].append(outcome["analyze_calls"])
    return {
        mode: {
            "candidates": len(values),
            "p50_ms": round(statistics.median(values)),
            "p95_ms": round(percentile(values, 95)),
            "max_ms": round(max(values)),
            "analyze_calls_mean": round(statistics.fmean(calls[mode]), 2),
        }
        for mode, values in by_mode.items()
    }


def paced_uploads(url: str, token: str, *, count: int, per_second: float, audio: bytes) -> list:
    """Upload ``count`` answers at a steady pace; return each request's wait in ms."""
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"
    waits = []
    lock = threading.Lock()

    def one(index):
        session = http.post(f"{url}/api/sessions", json={"question_count": 1}, timeout=30).json()
        started = time.perf_counter()
        response = http.post(
            f"{url}/api/upload-answer/{session['id']}/{session['questions'][0]['id']}",
            files={"audio": ("answer.wav", audio, "audio/wav")},
            timeout=60,
        )
        wait = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        with lock:
            waits.append(wait)

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        futures = []
        for index in range(count):
            delay = start + index / per_second - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, index))
        for future in futures:
            future.result()
    return waits


async def hold_streams(url: str, token: str, session_ids: list[int], opened, stop):
    """Open one idle stream per session id and keep them open until ``stop`` is set."""
    host, port = url.removeprefix("http://").split(":")

    semaphore = asyncio.Semaphore(50)  # connections being opened at once

    async def one(session_id):
        async with semaphore:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                f"GET /api/sessions/{session_id}/events HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Token {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            await writer.drain()
            head = await reader.readuntil(b"retry:")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(head[:200])
        with opened.get_lock():
            opened.value += 1
        while await reader.read(4096):  # keep-alive comments, until the server ends it
            pass
        with opened.get_lock():
            opened.value -= 1

    tasks = [asyncio.create_task(one(session_id)) for session_id in session_ids]
    while not stop.is_set():
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def hold_streams_process(url, token, session_ids, opened, stop):
    """In a process of its own, so that holding the streams takes nothing from the timing."""
    asyncio.run(hold_streams(url, token, session_ids, opened, stop))


def phase_idle_streams(
    url: str, web: Process, *, streams: int, uploads: int, pace: float, audio: bytes
) -> dict:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from sessions_app.services import session_create

    (worker,) = web.children()
    user = get_user_model().objects.create_user(f"bench-streams-{time.time_ns()}")
    token = Token.objects.create(user=user).key
    uploader = make_candidates(1)[0]
    paced_uploads(url, uploader, count=5, per_second=pace, audio=audio)  # warm up
    rss_before = rss_mib(worker)
    threads_before = thread_count(worker)
    idle_before = idle_cpu_percent(worker)
    cpu = cpu_seconds(worker)
    without = paced_uploads(url, uploader, count=uploads, per_second=pace, audio=audio)
    cpu_without = cpu_seconds(worker) - cpu
    session_ids = [session_create(user=user, question_count=1).pk for _ in range(streams)]

    spawn = multiprocessing.get_context("spawn")
    opened, stop = spawn.Value("i", 0), spawn.Event()
    holder = spawn.Process(
        target=hold_streams_process, args=(url, token, session_ids, opened, stop), daemon=True
    )
    holder.start()
    wait_for(lambda: opened.value == streams, timeout=300, what=f"{streams} streams to open")
    time.sleep(2)
    rss_with = rss_mib(worker)
    threads_with = thread_count(worker)
    idle_with = idle_cpu_percent(worker)
    cpu = cpu_seconds(worker)
    with_streams = paced_uploads(url, uploader, count=uploads, per_second=pace, audio=audio)
    cpu_with = cpu_seconds(worker) - cpu
    still_open = opened.value
    rss_after = rss_mib(worker)
    stop.set()
    holder.join(30)
    if holder.is_alive():
        holder.kill()
    p95_without, p95_with = percentile(without, 95), percentile(with_streams, 95)
    return {
        "streams": streams,
        "streams_open_at_end": still_open,
        "uploads_each": uploads,
        "pace_per_second": pace,
        "upload_ms_without_streams": {
            "p50": round(statistics.median(without), 1),
            "p95": round(p95_without, 1),
        },
        "upload_ms_with_streams": {
            "p50": round(statistics.median(with_streams), 1),
            "p95": round(p95_with, 1),
        },
        "p95_ratio": round(p95_with / p95_without, 2),
        "web_cpu_idle_percent": {"without_streams": idle_before, "with_streams": idle_with},
        "web_cpu_ms_per_upload": {
            "without_streams": round(cpu_without * 1000 / uploads, 1),
            "with_streams": round(cpu_with * 1000 / uploads, 1),
        },
        "machine_load_average": os.getloadavg()[0],
        "web_threads": {"without_streams": threads_before, "with_streams": threads_with},
        "web_rss_mib": {
            "without_streams": round(rss_before, 1),
            "with_streams": round(rss_with, 1),
            "after_uploads": round(rss_after, 1),
            "per_stream_kib": round((rss_with - rss_before) * 1024 / streams, 1),
        },
    }


def report(results: dict) -> str:
    finish, idle = results["finish_to_results"], results["idle_streams"]
    lines = [
        "# make bench-events",
        "",
        f"{results['when']}, {results['database']}, {results['cpus']} CPUs, "
        f"load average {results['idle_streams']['machine_load_average']:.1f} at the end.",
        "",
        "## Finish -> results (last transcript's commit to the results at the client)",
        "",
        "| mode | candidates | p50 | p95 | max | analyze calls each |",
        "|---|---|---|---|---|---|",
    ]
    for mode in ("stream", "polling"):
        row = finish[mode]
        lines.append(
            f"| {mode} | {row['candidates']} | {row['p50_ms']} ms | {row['p95_ms']} ms "
            f"| {row['max_ms']} ms | {row['analyze_calls_mean']} |"
        )
    lines += [
        "",
        f"## {idle['streams']} idle streams on one web process (one uvicorn worker)",
        "",
        "| | upload p50 | upload p95 | web worker RSS | its threads | its CPU idle "
        "| its CPU per upload |",
        "|---|---|---|---|---|---|---|",
        f"| no stream open | {idle['upload_ms_without_streams']['p50']} ms "
        f"| {idle['upload_ms_without_streams']['p95']} ms "
        f"| {idle['web_rss_mib']['without_streams']} MiB "
        f"| {idle['web_threads']['without_streams']} "
        f"| {idle['web_cpu_idle_percent']['without_streams']} % "
        f"| {idle['web_cpu_ms_per_upload']['without_streams']} ms |",
        f"| {idle['streams']} streams open | {idle['upload_ms_with_streams']['p50']} ms "
        f"| {idle['upload_ms_with_streams']['p95']} ms "
        f"| {idle['web_rss_mib']['with_streams']} MiB "
        f"| {idle['web_threads']['with_streams']} "
        f"| {idle['web_cpu_idle_percent']['with_streams']} % "
        f"| {idle['web_cpu_ms_per_upload']['with_streams']} ms |",
        "",
        f"Upload p95 ratio with/without: {idle['p95_ratio']} (target <= 1.2); "
        f"{idle['web_rss_mib']['per_stream_kib']} KiB per stream; "
        f"{idle['streams_open_at_end']} of {idle['streams']} streams still open at the end.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (CI)")
    parser.add_argument("--candidates", type=int, help="Finish -> results: candidates (20)")
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument("--streams", type=int, help="idle streams held open (1000)")
    parser.add_argument("--uploads", type=int, help="uploads each side (60)")
    parser.add_argument("--pace", type=float, default=3.0, help="uploads per second")
    parser.add_argument(
        "--latency", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN", "MAX")
    )
    args = parser.parse_args()
    candidates = args.candidates or (6 if args.quick else 20)
    streams = args.streams or (200 if args.quick else 1000)
    uploads = args.uploads or (20 if args.quick else 60)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * streams + 1024)), hard))

    api = FakeOpenAI(latency=tuple(args.latency), keep_requests=False).start()
    folder = Path(tempfile.mkdtemp(prefix="bench-events-"))
    stack = Stack(folder, queue_workers=4)
    try:
        stack.prepare(api.base_url)
        url, web = stack.web()
        cluster = stack.qcluster()
        audio = tone_wav(3)
        print(f"Finish -> results: {candidates} candidates, half stream, half polling...")
        finish = phase_finish(url, candidates=candidates, questions=args.questions, audio=audio)
        cluster.stop()
        print(f"Idle streams: {streams}, {uploads} uploads without and with them...")
        idle = phase_idle_streams(
            url, web, streams=streams, uploads=uploads, pace=args.pace, audio=audio
        )
    finally:
        stack.stop()
        api.stop()
    from django.db import connection

    results = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "database": connection.vendor,
        "cpus": os.cpu_count(),
        "engine_latency_s": list(args.latency),
        "finish_to_results": finish,
        "idle_streams": idle,
    }
    name = "events-quick" if args.quick else "events"
    if connection.vendor != "sqlite":  # the default database keeps the plain name
        name += f"-{connection.vendor}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    print(f"Logs: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
