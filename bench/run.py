"""`make bench`: the queued upload pipeline against the synchronous baseline, side by side.

    python -m bench.run                    # the standard load, about ten minutes:
                                           # bench/results/latest.*
    python -m bench.run --profile gentle   # candidates speak each answer for its full length
    python -m bench.run --quick            # under two minutes; fails on any lost, duplicated
                                           # or orphaned answer (CI): bench/results/quick.*

It starts every process itself (embedded MongoDB or MONGODB_URI, gunicorn, qcluster), serves
a fake transcription API in this process, drives simulated candidates over HTTP, and stops
everything at the end, also on failure or Ctrl-C. See bench/README.md.
"""

import argparse
import contextlib
import os
import platform
import resource
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from bench import accounting, audio, load, measure, report
from bench.stack import (
    ROOT,
    access_log,
    cpu_seconds,
    embedded_mongo,
    embedded_mongo_version,
    free_port,
    gunicorn,
    machine_busy_seconds,
    manage,
    transcription_api,
    wait_for,
)

RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / "bench" / ".cache"
ANSWER_SECONDS = (20.0, 58.0)

PRESETS = {
    # Candidates speak each answer for a tenth of its length, so their uploads come in a
    # burst and the queue holds a backlog: the load the embedded MongoDB must stay flat under.
    "standard": {
        "candidates": 50,
        # Four times the candidates, their uploads only: the wait at the higher load.
        "high_candidates": 200,
        "questions": 2,
        "queue_workers": 16,
        "web_workers": 2,
        "web_threads": 8,
        "latency": (5.0, 15.0),
        "speak_scale": 0.1,
        "engine": False,
        "burst_per_candidate": 2,
        # Just under the 25 MB limit (the Whisper API's, and MAX_UPLOAD_BYTES).
        "large_bytes": 24_900_000,
        "large_uploads": 2,
        "large_concurrency": 2,
        "idle_probes": 20,
        "breakdown_uploads": 40,
        "gridfs_held_files": (0, 50, 300, 600),
        "answer_clips": 10,
    },
    # The earlier standard: each answer spoken for its whole length, arrivals spread out.
    "gentle": {
        "candidates": 50,
        # Four times the candidates, their uploads only: the wait at the higher load.
        "high_candidates": 200,
        "questions": 2,
        "queue_workers": 16,
        "web_workers": 2,
        "web_threads": 8,
        "latency": (5.0, 15.0),
        "speak_scale": 1.0,
        "engine": True,
        "burst_per_candidate": 2,
        # Just under the 25 MB limit (the Whisper API's, and MAX_UPLOAD_BYTES).
        "large_bytes": 24_900_000,
        "large_uploads": 2,
        "large_concurrency": 2,
        "idle_probes": 20,
        "breakdown_uploads": 40,
        "gridfs_held_files": (0, 50, 300, 600),
        "answer_clips": 10,
    },
    "quick": {
        "candidates": 4,
        "high_candidates": 8,
        "questions": 2,
        "queue_workers": 4,
        "web_workers": 2,
        "web_threads": 2,
        "latency": (0.2, 0.6),
        "speak_scale": 0.02,
        "engine": False,
        "burst_per_candidate": 3,
        "large_bytes": 5_000_000,
        "large_uploads": 2,
        "large_concurrency": 2,
        "idle_probes": 3,
        "breakdown_uploads": 5,
        "gridfs_held_files": (0, 10),
        "answer_clips": 3,
    },
}
IDLE_PROBE_LATENCY = 0.2


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small load, short latency (CI)")
    parser.add_argument(
        "--profile",
        choices=["standard", "gentle"],
        default="standard",
        help="standard: answers spoken for 0.1 × their length (a burst); gentle: full length",
    )
    parser.add_argument("--candidates", type=int, help="concurrent candidates (U)")
    parser.add_argument(
        "--high-candidates", type=int, help="candidates of the higher load (uploads only)"
    )
    parser.add_argument("--questions", type=int, help="answers per candidate (Q)")
    parser.add_argument("--queue-workers", type=int, help="qcluster workers (W, Q_WORKERS)")
    parser.add_argument("--web-workers", type=int, help="gunicorn worker processes (N)")
    parser.add_argument("--web-threads", type=int, help="threads per gunicorn worker")
    parser.add_argument(
        "--web",
        choices=["asgi", "wsgi"],
        default="asgi",
        help="async mode's web: asgi (uvicorn workers, as the Procfile) or wsgi (gthread)",
    )
    parser.add_argument("--latency", type=float, nargs=2, metavar=("MIN", "MAX"))
    parser.add_argument(
        "--speak-scale", type=float, help="each answer is spoken for its length × this"
    )
    engine = parser.add_mutually_exclusive_group()
    engine.add_argument(
        "--engine", action="store_true", default=None, help="measure the local engine's speed"
    )
    engine.add_argument(
        "--no-engine", dest="engine", action="store_false", help="skip the local engine's speed"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", type=Path, help="results prefix (default bench/results/latest)")
    args = parser.parse_args(argv)
    for name, value in PRESETS["quick" if args.quick else args.profile].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    args.out = args.out or RESULTS / ("quick" if args.quick else "latest")
    return args


def machine() -> dict:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(memory_kib / 1024**2),
        "python": platform.python_version(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


class Bench:
    """One run: the stack, the candidates and every measurement."""

    def __init__(self, args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack):
        self.args = args
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.stack = stack
        self.run_id = datetime.now(UTC).strftime("bench%Y%m%d%H%M%S")
        self.errors: list[str] = []
        self.results: dict = {"async": {}, "sync": {}}
        self.processes: dict = {}
        self.cpu: dict[str, dict] = {}

    # --- Setup ------------------------------------------------------------------------

    def prepare(self) -> None:
        args = self.args
        log("Making the spoken answers (espeak-ng, ffmpeg; cached in bench/.cache)")
        low, high = ANSWER_SECONDS
        count = args.answer_clips
        durations = [round(low + (high - low) * i / max(count - 1, 1), 1) for i in range(count)]
        self.clips = audio.answer_clips(CACHE, durations)
        # The burst, the idle probe and the breakdown upload the answer closest to 300 KB.
        self.typical = min(self.clips, key=lambda clip: abs(clip.size - 300_000))
        self.large = audio.large_clip(CACHE, args.large_bytes)
        self.warmup = audio.answer_clips(CACHE, [3.0])[0]
        self.data = {clip.path.name: clip.data for clip in self.clips}

        self.api = transcription_api(latency=tuple(args.latency))
        self.stack.callback(self.api.stop)

        external_db = os.environ.get("DATABASE_URL")
        self.database_url = external_db or f"sqlite:///{self.workdir / 'bench.sqlite3'}"
        self.database_name = "DATABASE_URL" if external_db else "SQLite (WAL) in a temp dir"
        external_mongo = os.environ.get("MONGODB_URI")
        self.mongodb_name = (
            "MONGODB_URI"
            if external_mongo
            else f"the embedded MongoDB (SecantusDB {embedded_mongo_version()}, WiredTiger)"
        )
        mongo_port = free_port()
        self.mongo_uri = (
            external_mongo or f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true"
        )
        self.mongo_db = self.run_id if external_mongo else "bench"
        self.env = os.environ | {
            "DJANGO_SETTINGS_MODULE": "interview_site.settings",
            "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG") or "1",
            "DATABASE_URL": self.database_url,
            "MONGODB_URI": self.mongo_uri,
            "MONGODB_DB": self.mongo_db,
            "TRANSCRIBER": "openai",
            "SCORER": "local",
            "OPENAI_BASE_URL": self.api.base_url,
            "OPENAI_API_KEY": "bench",
            # The product's per-user limits would refuse a load test's traffic.
            "UPLOAD_RATE_LIMIT": "100000/minute",
            "SESSION_RATE_LIMIT": "100000/minute",
            "MAX_PENDING_PER_USER": "100000",
            "Q_WORKERS": str(args.queue_workers),
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        os.environ.update(self.env)
        import django

        django.setup()

        if external_mongo:
            self.stack.callback(self._drop_mongo_database)
        else:
            folder = self.workdir / "mongo"
            folder.mkdir()
            mongo = embedded_mongo(folder, env=self.env, port=mongo_port)
            self.stack.callback(mongo.process.stop)
            self.processes["mongo"] = mongo.process
        from transcription import storage

        wait_for(lambda: _pings(storage), timeout=30, what=f"MongoDB at {self.mongo_uri}")

        log(f"Preparing the database ({'DATABASE_URL' if external_db else 'SQLite in a temp dir'})")
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        call_command("load_question_bank", verbosity=0)

    def _drop_mongo_database(self) -> None:
        from transcription import storage

        storage.get_database().client.drop_database(self.mongo_db)

    def candidates(self, group: str, count: int, base_url: str) -> list[load.Candidate]:
        """Create ``count`` users with API tokens (through the ORM, before they are used)."""
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        result = []
        for index in range(count):
            user = get_user_model()(username=f"{self.run_id}-{group}-{index:03d}")
            user.set_unusable_password()
            user.save()
            result.append(load.Candidate(base_url, Token.objects.create(user=user).key))
        return result

    def web(self, mode: str) -> tuple:
        port = free_port()
        server = gunicorn(
            f"web-{mode}",
            port=port,
            workers=self.args.web_workers,
            threads=self.args.web_threads,
            env=self.env,
            logs=self.logs,
            # The baseline: the same app, its upload's transcription job run in the request
            # by a WSGI thread; the queued pipeline as the Procfile serves it (--web).
            app="bench.sync_wsgi" if mode == "sync" else f"interview_site.{self.args.web}",
            asgi=mode != "sync" and self.args.web == "asgi",
        )
        self.stack.callback(server.stop)
        self.processes["web"] = server
        return server, f"http://127.0.0.1:{port}"

    # --- Phases shared by both modes ----------------------------------------------------

    def large_uploads(self, mode: str, server, base_url: str) -> tuple[dict, list[load.Upload]]:
        args = self.args
        size = self.large.size / 1e6
        log(f"{mode}: {args.large_uploads} uploads of {size:.1f} MB, web workers' memory sampled")
        self.api.latency = 0.0
        candidates = self.candidates(f"{mode}-large", args.large_concurrency, base_url)
        result, uploads = load.large_uploads(
            candidates,
            clip=self.large,
            per_candidate=max(1, args.large_uploads // args.large_concurrency),
            worker_pids=server.children(),
        )
        self._collect(candidates)
        # Which worker served each large upload (they all ran at once).
        served = access_log(self.logs / f"web-{mode}-access.log")
        for worker in result["workers"]:
            worker["large_uploads_served"] = sum(
                pid == worker["pid"]
                for u in uploads
                for pid, _ in served.get(f"/api/upload-answer/{u.session_id}/{u.question_id}", [])
            )
        return result, uploads

    def burst(self, mode: str, base_url: str, *, group="burst") -> tuple[dict, list[load.Upload]]:
        args = self.args
        total = args.candidates * args.burst_per_candidate
        candidates = self.candidates(f"{mode}-{group}", args.candidates, base_url)
        with (
            self.cpu_meter(f"{mode} {group}"),
            self.bar(f"{mode}: {group} of {total} uploads", total) as bar,
        ):
            uploads = load.burst(
                candidates,
                clip=self.typical,
                per_candidate=args.burst_per_candidate,
                tick=lambda: bar.update(1),
            )
        self._collect(candidates)
        return report.throughput(uploads), uploads

    def interviews(
        self, mode: str, base_url: str, *, count: int | None = None, finish: bool = True
    ) -> tuple[list, list]:
        args = self.args
        count = count or args.candidates
        group = "interview" if finish else f"interview-{count}"
        self.api.latency = tuple(args.latency)
        candidates = self.candidates(f"{mode}-{group}", count, base_url)
        total = count * (args.questions + finish)
        what = f"{count} candidates × {args.questions} answers" + (" + Finish" if finish else "")
        with (
            self.cpu_meter(f"{mode} {group}s"),
            self.bar(f"{mode}: {what}", total) as bar,
        ):
            load.run_threads(
                [
                    lambda candidate=candidate, index=index: load.interview(
                        candidate,
                        clips=self.clips,
                        data=self.data,
                        first_clip=index,
                        question_count=args.questions,
                        speak_scale=args.speak_scale,
                        tick=lambda: bar.update(1),
                        finish=finish,
                    )
                    for index, candidate in enumerate(candidates)
                ]
            )
        self._collect(candidates)
        uploads = [upload for candidate in candidates for upload in candidate.uploads]
        finishes = [candidate.finish for candidate in candidates if candidate.finish]
        return uploads, finishes

    @contextlib.contextmanager
    def cpu_meter(self, phase: str):
        """Record the cores each part of the stack used during the block."""
        before = self.cpu_snapshot()
        yield
        self.cpu[phase] = cpu_usage(before, self.cpu_snapshot())

    def cpu_snapshot(self) -> dict[str, float]:
        """Return CPU seconds used so far by each part of the stack, this process and all."""
        snapshot = {
            name: cpu_seconds(process.pid)
            for name, process in self.processes.items()
            if process.alive()
        }
        usage = resource.getrusage(resource.RUSAGE_SELF)
        snapshot["bench (candidates, fake API)"] = usage.ru_utime + usage.ru_stime
        snapshot["machine"] = machine_busy_seconds()
        snapshot["wall"] = time.monotonic()
        return snapshot

    def _collect(self, candidates: list[load.Candidate]) -> None:
        for candidate in candidates:
            self.errors.extend(candidate.errors)

    def bar(self, description: str, total: int):
        log(description)
        return tqdm(total=total, desc=description, unit="req", leave=False, disable=None)

    def settle(self, mode: str, session_ids: set[int], *, timeout: float) -> None:
        from sessions_app.models import Answer

        total = Answer.objects.filter(session_id__in=session_ids).count()
        with tqdm(total=total, desc=f"{mode}: transcripts", leave=False, disable=None) as bar:

            def progress(waiting: int) -> None:
                bar.n = total - waiting
                bar.refresh()

            if not accounting.settle(session_ids, timeout=timeout, progress=progress):
                self.errors.append(f"{mode}: answers still pending after {timeout:.0f}s")

    def zero_loss(self, mode: str, uploads: list[load.Upload], session_ids: set[int]) -> dict:
        rows = accounting.answer_rows(session_ids)
        calls = accounting.engine_calls(self.api.successes())
        result = accounting.zero_loss(uploads, rows, calls, session_ids)
        log(
            f"{mode}: {result['answers']} answers, lost {result['lost']}, failed "
            f"{result['failed']}, duplicated {result['duplicate_transcriptions']}, orphan "
            f"files {result['orphan_gridfs_files']}, orphan chunks "
            f"{result['orphan_gridfs_chunks']}, audio kept {result['audio_kept_after_transcript']}"
        )
        return result

    # --- The two modes ------------------------------------------------------------------

    def run_async(self) -> list[float]:
        args, out = self.args, self.results["async"]
        server, base_url = self.web("async")
        uploads: list[load.Upload] = []

        # No worker yet: what the web tier alone does, and the backlog for the drain.
        out["burst"], burst_uploads = self.burst("async", base_url)
        uploads += burst_uploads

        self.api.latency = tuple(args.latency)
        log(f"async: starting qcluster with {args.queue_workers} workers")
        cluster = manage("qcluster", "qcluster", env=self.env, logs=self.logs, stop_timeout=20)
        self.stack.callback(cluster.stop)
        self.processes["qcluster"] = cluster
        wait_for(
            lambda: (
                cluster.output().count("ready for work") >= args.queue_workers
                or not cluster.alive()
            ),
            timeout=120,
            what="qcluster's workers",
        )
        if not cluster.alive():
            raise RuntimeError(f"qcluster exited early:\n{cluster.output()[-3000:]}")
        backlog = {u.session_id for u in uploads}
        with self.cpu_meter("async backlog drain"):
            self.settle("async (backlog drain)", backlog, timeout=600)
        out["drain"] = report.drain_metrics(
            list(accounting.answer_rows(backlog).values()), self.api, args.queue_workers
        )

        out["idle_pickup"], probe_uploads = self.idle_probe(base_url)
        uploads += probe_uploads

        # The web tier again, its audio now transcribed (engine latency 0) and deleted at once.
        self.api.latency = 0.0
        out["burst_with_workers"], burst_uploads = self.burst(
            "async", base_url, group="burst with workers"
        )
        uploads += burst_uploads
        self.settle("async (burst)", {u.session_id for u in burst_uploads}, timeout=300)

        interview_uploads, finishes = self.interviews("async", base_url)
        uploads += interview_uploads
        sessions = {u.session_id for u in interview_uploads}
        self.settle("async", sessions, timeout=600)
        out["interview"] = report.interview_metrics(
            uploads=interview_uploads,
            finishes=finishes,
            rows=accounting.answer_rows(sessions),
            api=self.api,
            server_times=access_log(self.logs / "web-async-access.log"),
            concurrency=args.queue_workers,
            in_request=False,
        )

        # The higher load: its uploads' wait, the queue's workers running at the engine's
        # latency meanwhile; then what is queued is transcribed at once and checked below.
        high_uploads, _ = self.interviews(
            "async", base_url, count=args.high_candidates, finish=False
        )
        uploads += high_uploads
        self.api.latency = 0.0
        self.settle("async (higher load)", {u.session_id for u in high_uploads}, timeout=600)
        out["interview_high"] = report.wait_metrics(
            high_uploads, access_log(self.logs / "web-async-access.log")
        ) | {"candidates": args.high_candidates}

        log(f"async: upload breakdown, {args.breakdown_uploads} uploads in-process")
        self.api.latency = 0.0
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.get(username=f"{self.run_id}-async-interview-000")
        out["breakdown"] = measure.upload_breakdown(
            user=user, clip=self.typical, count=args.breakdown_uploads
        )
        # Last: audio waiting in the embedded MongoDB slows every GridFS operation after it.
        out["large_uploads"], large_uploads = self.large_uploads("async", server, base_url)
        uploads += large_uploads
        all_sessions = {u.session_id for u in uploads} | set(out["breakdown"]["session_ids"])
        self.settle("async (all)", all_sessions, timeout=300)
        out["zero_loss"] = self.zero_loss("async", uploads, all_sessions)

        out["qcluster_stop_seconds"] = round(cluster.stop(), 1)
        server.stop()
        log("async: GridFS cost against the audio the embedded MongoDB holds")
        out["gridfs_scaling"] = measure.gridfs_scaling(
            self.typical, held_files=args.gridfs_held_files
        )
        return [u.wait for u in interview_uploads if u.accepted]

    def idle_probe(self, base_url: str) -> tuple[dict, list[load.Upload]]:
        """Upload answers one at a time to idle workers; time 202 → processing → completed."""
        count = self.args.idle_probes
        self.api.latency = IDLE_PROBE_LATENCY
        (candidate,) = self.candidates("async-probe", 1, base_url)
        with self.bar(f"async: idle pickup, {count} answers one at a time", count) as bar:
            while len(candidate.uploads) < count:
                session_id, question_ids = candidate.create_session(
                    min(count - len(candidate.uploads), 18)
                )
                for question_id in question_ids:
                    upload = candidate.upload(
                        session_id, question_id, self.typical, self.typical.data
                    )
                    if upload.accepted:
                        accounting.wait_until_completed(session_id, question_id, timeout=60)
                    bar.update(1)
        self._collect([candidate])
        rows = accounting.answer_rows({u.session_id for u in candidate.uploads})
        paired = [(u, rows[(u.session_id, u.question_id)]) for u in candidate.uploads if u.accepted]
        return {
            "latency_s": IDLE_PROBE_LATENCY,
            "pickup_s": report.summary(
                [row["processing_started_at"] - u.ended for u, row in paired]
            ),
            "completed_s": report.summary([row["transcribed_at"] - u.ended for u, row in paired]),
            "wait_s": report.summary([u.wait for u, _ in paired]),
        }, candidate.uploads

    def run_sync(self) -> list[float]:
        args, out = self.args, self.results["sync"]
        server, base_url = self.web("sync")
        uploads: list[load.Upload] = []
        self.api.latency = 0.0
        out["burst"], burst_uploads = self.burst("sync", base_url)
        uploads += burst_uploads
        interview_uploads, finishes = self.interviews("sync", base_url)
        uploads += interview_uploads
        out["large_uploads"], large_uploads = self.large_uploads("sync", server, base_url)
        uploads += large_uploads
        sessions = {u.session_id for u in interview_uploads}
        out["interview"] = report.interview_metrics(
            uploads=interview_uploads,
            finishes=finishes,
            rows=accounting.answer_rows(sessions),
            api=self.api,
            server_times=access_log(self.logs / "web-sync-access.log"),
            concurrency=args.web_workers * args.web_threads,
            in_request=True,
        )
        all_sessions = {u.session_id for u in uploads}
        self.settle("sync (all)", all_sessions, timeout=120)
        out["zero_loss"] = self.zero_loss("sync", uploads, all_sessions)
        server.stop()
        return [u.wait for u in interview_uploads if u.accepted]

    def engine(self) -> dict:
        # The full run measures a mid-length answer, the quick one the shortest.
        clip = self.clips[0 if self.args.quick else len(self.clips) // 2]
        log(f"Local engine speed on {clip.seconds} s of speech, beam sizes 1 and 5")
        return measure.engine_speed(clip, warmup=self.warmup)


def cpu_usage(before: dict, after: dict) -> dict:
    """Return the cores each part used on average between two snapshots."""
    wall = after["wall"] - before["wall"]
    used = {
        name: after[name] - before.get(name, 0.0)
        for name in after
        if name not in ("wall", "machine")
    }
    used["other processes on the machine"] = (
        after["machine"] - before["machine"] - sum(used.values())
    )
    return {
        "seconds": round(wall, 1),
        "cores": {name: round(seconds / wall, 2) for name, seconds in used.items()},
    }


def _pings(storage) -> bool:
    try:
        storage.ping()
    except storage.StorageUnavailable:
        return False
    return True


def wait_target(limit: float, candidates: int, band_p95, all_p95) -> dict:
    return {
        "target": f"async wait p95 at most {limit * 1000:.0f} ms for 250–350 KB answers at "
        f"{candidates} concurrent candidates",
        "measured": f"{band_p95 * 1000:.0f} ms (all answers: {all_p95 * 1000:.0f} ms)"
        if band_p95 and all_p95
        else "—",
        "met": bool(band_p95 is not None and band_p95 <= limit),
    }


def targets(results: dict, args) -> list[dict]:
    """The issue's targets (issue 10), each with what this run measured."""
    a, s = results["async"], results["sync"]
    a_p95 = a["interview"]["wait_s"].get("p95")
    s_p95 = s["interview"]["wait_s"].get("p95")
    band_p95 = a["interview"]["wait_300kb_s"].get("p95")
    high = a.get("interview_high", {})
    high_p95, high_all_p95 = (high.get(k, {}).get("p95") for k in ("wait_300kb_s", "wait_s"))
    idle_p50 = a["idle_pickup"]["pickup_s"].get("p50")
    drain_ratio = a["drain"].get("ratio")
    release_ratio = a["interview"].get("makespan", {}).get("ratio_to_release_aware")
    losses = {mode: accounting.problems(results[mode]["zero_loss"]) for mode in ("async", "sync")}
    writes = [level["write_ms"] for level in a.get("gridfs_scaling", {}).get("levels", [])]
    return [
        {
            "target": "sync ÷ async at p95 at least 100×",
            "measured": f"{s_p95 / a_p95:.0f}× ({a_p95 * 1000:.0f} ms vs {s_p95:.1f} s)"
            if a_p95 and s_p95
            else "—",
            "met": bool(a_p95 and s_p95 and s_p95 / a_p95 >= 100),
        },
        wait_target(0.15, args.candidates, band_p95, a_p95),
        wait_target(0.3, args.high_candidates, high_p95, high_all_p95),
        {
            "target": "queue pickup p50 at most 250 ms when workers are idle",
            "measured": f"{idle_p50 * 1000:.0f} ms" if idle_p50 is not None else "—",
            "met": bool(idle_p50 is not None and idle_p50 <= 0.25),
        },
        {
            "target": "backlog drain makespan at most 1.15× its bound (engine time ÷ W)",
            "measured": f"{drain_ratio}×",
            "met": bool(drain_ratio and drain_ratio <= 1.15),
        },
        {
            "target": "interview makespan within 1.25× its release-aware bound",
            "measured": f"{release_ratio}×",
            "met": bool(release_ratio and release_ratio <= 1.25),
        },
        {
            "target": "store_audio of one answer: median at most 20 ms at every amount held "
            f"({', '.join(str(n) for n in args.gridfs_held_files)} files)",
            "measured": " / ".join(f"{ms} ms" for ms in writes) or "—",
            "met": bool(writes) and max(writes) <= 20,
        },
        {
            "target": "zero lost, failed, duplicated or orphaned answers",
            "measured": f"async {losses['async']}, sync {losses['sync']}",
            "met": losses["async"] == 0 and losses["sync"] == 0,
        },
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="interview-bench-"))
    ok = False
    try:
        with contextlib.ExitStack() as stack:
            bench = Bench(args, workdir, stack)
            info = machine()
            bench.prepare()
            waits = {"async": bench.run_async(), "sync": bench.run_sync()}
            engine = bench.engine() if args.engine else None
        # Every process has stopped here.
        results = bench.results
        full = {
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick,
            "run_seconds": round(time.monotonic() - started, 1),
            "machine": info | {"load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
            "config": {
                "candidates": args.candidates,
                "high_candidates": args.high_candidates,
                "questions": args.questions,
                "queue_workers": args.queue_workers,
                "web_workers": args.web_workers,
                "web_threads": args.web_threads,
                "web": args.web,
                "latency_s": list(args.latency),
                "profile": "quick" if args.quick else args.profile,
                "speak_scale": args.speak_scale,
                "burst_per_candidate": args.burst_per_candidate,
                "database": bench.database_name,
                "mongodb": bench.mongodb_name,
                "django_debug": bench.env["DJANGO_DEBUG"],
            },
            "clips": {
                "answer_seconds": f"{bench.clips[0].seconds:.0f}–{bench.clips[-1].seconds:.0f} s",
                "answer_kb": f"{bench.clips[0].size / 1000:.0f}–{bench.clips[-1].size / 1000:.0f}",
                "typical": {"name": bench.typical.path.name, "bytes": bench.typical.size},
                "large": {"name": bench.large.path.name, "bytes": bench.large.size},
            },
            "async": results["async"],
            "sync": results["sync"],
            "engine": engine,
            "cpu": bench.cpu,
            "errors": bench.errors[:50],
            "error_count": len(bench.errors),
            "raw": {
                "wait_s": {mode: [round(w, 4) for w in values] for mode, values in waits.items()}
            },
        }
        full["targets"] = targets(results, args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report.write_json(full, args.out.with_suffix(".json"))
        markdown = report.markdown(full)
        report.write_atomically(args.out.with_suffix(".md"), markdown.encode())
        report.plot(full, waits, args.out.with_suffix(".png"))
        print(markdown)
        log(f"Wrote {args.out.with_suffix('.json')}, .md and .png in {full['run_seconds']:.0f} s")
        losses = sum(accounting.problems(results[mode]["zero_loss"]) for mode in ("async", "sync"))
        if losses or bench.errors:
            for error in bench.errors[:20]:
                log(f"error: {error}")
            log(f"FAILED: {losses} lost/failed/duplicated/orphaned, {len(bench.errors)} errors")
            return 1
        ok = True
        return 0
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"Logs and data kept in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
