"""`make bench-scaling`: how the cost grows with the work, and which part saturates first.

    python -m bench.scaling                 # SQLite, then PostgreSQL: about eight minutes
    python -m bench.scaling --quick         # a small version of every curve
    python -m bench.scaling --databases sqlite

For each database, a fresh stack (the embedded MongoDB, gunicorn, qcluster, the fake
transcription API) and:

- **Candidates** 25, 50, 100, 200 (2 web workers × 8 threads): the wait per question when
  each candidate speaks its answers for 0.1 × their length (the standard profile's
  arrivals), and the uploads per second when every candidate uploads its 2 answers at once
  (a burst). No queue worker runs meanwhile: under the standard profile the workers spend
  their time waiting for the engine (0.1–0.2 cores), and here the audio of every level
  piles up in GridFS (about 1,500 answers, 400 MB by the last level), the case the embedded
  MongoDB must stay flat under. A qcluster then transcribes them all, and every answer is
  checked.
- **Web workers** 1, 2, 4 (× 8 threads) at 100 candidates, the same two measurements.
- **Clusters** 1, 2, 4 (8 workers each, engine latency 0.5 s): a backlog of uploaded answers
  drained, in answers per second once every cluster is ready, against the engine's bound
  (workers ÷ latency).

Around each measurement, the cores used by every process (MongoDB, gunicorn, each qcluster,
this process) and by the rest of the machine. Writes bench/results/scaling.json, .md, .png.
PostgreSQL: DATABASE_URL for it comes from --postgres (default BENCH_POSTGRES_URL or
postgres://postgres@127.0.0.1:5432/interview_bench); the database is created if missing.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import accounting, load, report
from bench.stack import ROOT, manage, wait_for

RESULTS = ROOT / "bench" / "results"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/interview_bench"
CLUSTER_WORKERS = 8
CLUSTER_LATENCY = 0.5
LEVELS = {
    "full": {"candidates": (25, 50, 100, 200), "web_workers": (1, 2, 4), "clusters": (1, 2, 4)},
    "quick": {"candidates": (5, 10), "web_workers": (1, 2), "clusters": (1, 2)},
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument(
        "--postgres", default=os.environ.get("BENCH_POSTGRES_URL") or DEFAULT_POSTGRES
    )
    parser.add_argument("--one", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    parser.add_argument("--part", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--replot", action="store_true", help="redraw the plot and the summary from the JSON"
    )
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / ("scaling-quick" if args.quick else "scaling")
    return args


# --- One database, in a process of its own (Django is set up once per process) -----------


class Scaling:
    def __init__(self, args, workdir: Path, stack: contextlib.ExitStack):
        from bench.run import Bench
        from bench.run import parse_args as bench_args

        self.args = args
        self.levels = LEVELS["quick" if args.quick else "full"]
        bench_argv = ["--quick"] if args.quick else []
        self.bench = Bench(bench_args(bench_argv + ["--queue-workers=16"]), workdir, stack)
        self.stack = stack
        self.results: dict = {}

    def run(self) -> dict:
        bench = self.bench
        bench.prepare()
        if "postgres" in bench.database_url:
            measure = bench.cpu_snapshot
            bench.cpu_snapshot = lambda: (
                measure() | {"postgres (server, all its clients)": postgres_cpu_seconds()}
            )
        bench.api.latency = 0.0
        self.uploads: list = []
        candidates = {}
        server, base_url = self.web(2)
        for count in self.levels["candidates"]:
            candidates[count] = self.level(f"{count} candidates", base_url, count)
        self.results["candidates"] = candidates
        server.stop()
        middle = self.levels["candidates"][len(self.levels["candidates"]) // 2]
        web = {}
        for web_workers in self.levels["web_workers"]:
            if web_workers == 2:
                web[web_workers] = candidates[middle]
                continue
            server, base_url = self.web(web_workers)
            web[web_workers] = self.level(f"{web_workers} web workers", base_url, middle)
            server.stop()
        self.results["web_workers"] = {"candidates": middle, "levels": web}
        # Every answer of those levels is transcribed, then checked.
        cluster = self.cluster("qcluster", workers=16)
        sessions = {u.session_id for u in self.uploads}
        with bench.cpu_meter("backlog of every level: drain"):
            bench.settle("every level", sessions, timeout=900)
        zero_loss = bench.zero_loss("every level", self.uploads, sessions)
        self.results["levels_zero_loss"] = zero_loss
        self.results["levels_problems"] = accounting.problems(zero_loss)
        cluster.stop()
        del bench.processes["qcluster"]
        self.results["clusters"] = self.clusters(middle)
        return self.results

    def web(self, workers: int):
        bench = self.bench
        bench.args.web_workers = workers
        bench.args.web_threads = 8
        return bench.web(f"async-{workers}w")

    def cluster(self, name: str, *, workers: int):
        bench = self.bench
        env = bench.env | {"Q_WORKERS": str(workers)}
        cluster = manage(name, "qcluster", env=env, logs=bench.logs, stop_timeout=20)
        self.stack.callback(cluster.stop)
        bench.processes[name] = cluster
        return cluster

    def wait_ready(self, clusters: list, workers: int) -> None:
        wait_for(
            lambda: all(
                c.output().count("ready for work") >= workers or not c.alive() for c in clusters
            ),
            timeout=180,
            what="the clusters' workers",
        )
        for c in clusters:
            if not c.alive():
                raise RuntimeError(f"{c.name} exited early:\n{c.output()[-3000:]}")

    def level(self, label: str, base_url: str, count: int) -> dict:
        """The wait per question under spoken arrivals, then uploads/s in a burst."""
        bench = self.bench
        people = bench.candidates(f"{label}-speak".replace(" ", "-"), count, base_url)
        with bench.cpu_meter(f"{label}: spoken"):
            started = time.time()
            load.run_threads(
                [
                    lambda c=c, i=i: speak_and_upload(c, bench.clips, bench.data, i)
                    for i, c in enumerate(people)
                ]
            )
            spoken_seconds = time.time() - started
        bench._collect(people)
        uploads = [u for c in people for u in c.uploads]
        accepted = [u for u in uploads if u.accepted]
        band = [u.wait for u in accepted if 250_000 <= u.size <= 350_000]
        burst_people = bench.candidates(f"{label}-burst".replace(" ", "-"), count, base_url)
        with bench.cpu_meter(f"{label}: burst"):
            burst = load.burst(burst_people, clip=bench.typical, per_candidate=2, tick=lambda: 0)
        bench._collect(burst_people)
        self.uploads += uploads + burst
        log(
            f"{label}: wait p50/p95 {report.summary([u.wait for u in accepted])}, "
            f"burst {report.throughput(burst).get('uploads_per_second')}/s"
        )
        return {
            "candidates": count,
            "wait_s": report.summary([u.wait for u in accepted]),
            "wait_300kb_s": report.summary(band),
            "spoken_seconds": round(spoken_seconds, 1),
            "burst": report.throughput(burst),
            "cpu_spoken": bench.cpu[f"{label}: spoken"],
            "cpu_burst": bench.cpu[f"{label}: burst"],
            "rejected": sum(not u.accepted for u in uploads + burst),
        }

    def clusters(self, count: int) -> dict:
        """Drain a backlog with 1, 2, 4 clusters; answers/s once every cluster is ready."""
        bench = self.bench
        bench.api.latency = CLUSTER_LATENCY
        server, base_url = self.web(2)
        out = {}
        for k in self.levels["clusters"]:
            people = bench.candidates(f"backlog-{k}", count, base_url)
            burst = load.burst(people, clip=bench.typical, per_candidate=2, tick=lambda: 0)
            bench._collect(people)
            sessions = {u.session_id for u in burst}
            clusters = [
                self.cluster(f"qcluster-{k}-{i}", workers=CLUSTER_WORKERS) for i in range(k)
            ]
            with bench.cpu_meter(f"{k} clusters: drain"):
                self.wait_ready(clusters, CLUSTER_WORKERS)
                ready_at = time.time()
                bench.settle(f"{k} clusters", sessions, timeout=600)
            rows = list(accounting.answer_rows(sessions).values())
            after = [r["transcribed_at"] for r in rows if r["transcribed_at"] >= ready_at]
            seconds = max(after) - ready_at if after else None
            zero_loss = bench.zero_loss(f"{k} clusters", burst, sessions)
            for c in clusters:
                c.stop()
                del bench.processes[c.name]
            rate = round(len(after) / seconds, 1) if seconds else None
            bound = k * CLUSTER_WORKERS / CLUSTER_LATENCY
            log(f"{k} clusters: {rate} answers/s (engine bound {bound:.0f}/s)")
            out[k] = {
                "clusters": k,
                "workers": k * CLUSTER_WORKERS,
                "answers": len(rows),
                "measured_answers": len(after),
                "answers_per_second": rate,
                "engine_bound_per_second": bound,
                "cpu": bench.cpu[f"{k} clusters: drain"],
                "problems": accounting.problems(zero_loss),
            }
        server.stop()
        return {"latency_s": CLUSTER_LATENCY, "workers_per_cluster": CLUSTER_WORKERS, "levels": out}


def postgres_cpu_seconds() -> float:
    """CPU seconds of every PostgreSQL server process on the machine (all its clients')."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, rest = stat.read_text().partition(") ")
        except OSError:
            continue
        if head.endswith("(postgres"):
            fields = rest.split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def speak_and_upload(candidate, clips, data, first: int, questions: int = 2) -> None:
    """One candidate of the standard profile: speak each answer 0.1 × its length, upload it."""
    try:
        session_id, question_ids = candidate.create_session(questions)
    except Exception as exc:  # noqa: BLE001 - reported with the run's errors
        candidate.errors.append(f"session: {exc!r}")
        return
    for index, question_id in enumerate(question_ids):
        clip = clips[(first + index) % len(clips)]
        time.sleep(clip.seconds * 0.1)
        candidate.upload(session_id, question_id, clip, data[clip.path.name])


def run_one(args) -> int:
    workdir = Path(tempfile.mkdtemp(prefix=f"interview-scaling-{args.one}-"))
    ok = False
    try:
        with contextlib.ExitStack() as stack:
            scaling = Scaling(args, workdir, stack)
            results = scaling.run()
            results["database"] = scaling.bench.database_name
            results["mongodb"] = scaling.bench.mongodb_name
            results["errors"] = scaling.bench.errors[:20]
            results["error_count"] = len(scaling.bench.errors)
        args.part.write_text(json.dumps(results, indent=1, default=str))
        ok = True
        return 0
    finally:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"Logs and data kept in {workdir}", file=sys.stderr)


def ensure_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if not exists.fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


# --- The report ---------------------------------------------------------------------------


def busiest(cpu: dict) -> str:
    cores = {k: v for k, v in cpu["cores"].items() if k != "other processes on the machine"}
    name, value = max(cores.items(), key=lambda item: item[1])
    return f"{name} {value}"


def cpu_cell(cpu: dict) -> str:
    cores = cpu["cores"]
    parts = [f"{k.split(' ')[0]} {v}" for k, v in cores.items() if v >= 0.05]
    return ", ".join(parts)


def markdown(full: dict) -> str:
    lines = [
        "# Benchmark: how the cost grows with the work" + (" (quick)" if full["quick"] else ""),
        "",
        f"{full['generated_at']}, {full['machine']}; run time {full['run_seconds']:.0f} s. "
        "The machine is shared (2 cores, other sessions' test suites run on it): the column "
        "'other' is the CPU the rest of the machine used meanwhile.",
        "",
    ]
    for name, part in full["databases"].items():
        lines += [f"## {name}: {part['database']}, {part['mongodb']}", ""]
        lines += [
            "### Candidates (2 web workers × 8 threads; no queue worker: the audio piles up)",
            "",
            "| candidates | wait p50 | wait p95 | p95, 250–350 KB | uploads/s (burst) "
            "| burst wait p95 | cores while spoken (by part) | cores in the burst (by part) "
            "| refused |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for count, level in part["candidates"].items():
            lines.append(level_row(str(count), level))
        web = part["web_workers"]
        lines += [
            "",
            f"### Web workers ({web['candidates']} candidates, 8 threads each)",
            "",
            "| web workers | wait p50 | wait p95 | p95, 250–350 KB | uploads/s (burst) "
            "| burst wait p95 | cores while spoken (by part) | cores in the burst (by part) "
            "| refused |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for workers, level in web["levels"].items():
            lines.append(level_row(str(workers), level))
        drained = part["levels_zero_loss"]
        lines += [
            "",
            f"Then one qcluster (16 workers) transcribed all {drained['answers']} answers of "
            f"these levels: lost {drained['lost']}, failed {drained['failed']}, duplicated "
            f"{drained['duplicate_transcriptions']}, orphan files "
            f"{drained['orphan_gridfs_files']}, orphan chunks {drained['orphan_gridfs_chunks']}.",
        ]
        clusters = part["clusters"]
        lines += [
            "",
            f"### Transcription throughput (a backlog drained; {clusters['workers_per_cluster']} "
            f"workers per cluster, engine latency {clusters['latency_s']} s)",
            "",
            "| clusters | answers/s | engine bound | busiest part | cores by part "
            "| lost/dup/orphan |",
            "|---|---|---|---|---|---|",
        ]
        for k, level in clusters["levels"].items():
            lines.append(
                f"| {k} | {level['answers_per_second']} | {level['engine_bound_per_second']:.0f}"
                f" | {busiest(level['cpu'])} | {cpu_cell(level['cpu'])} | {level['problems']} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def level_row(label: str, level: dict) -> str:
    def ms(stats: dict, key: str) -> str:
        value = stats.get(key)
        return f"{value * 1000:.0f} ms" if value is not None else "—"

    burst = level["burst"]
    return (
        f"| {label} | {ms(level['wait_s'], 'p50')} | {ms(level['wait_s'], 'p95')} "
        f"| {ms(level['wait_300kb_s'], 'p95')} | {burst.get('uploads_per_second', '—')} "
        f"| {ms(burst.get('wait_s', {}), 'p95')} | {cpu_cell(level['cpu_spoken'])} "
        f"| {cpu_cell(level['cpu_burst'])} | {level['rejected']} |"
    )


def plot(full: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (waits, rates, drains) = plt.subplots(1, 3, figsize=(15, 4.5))
    for name, part in full["databases"].items():
        counts = [int(c) for c in part["candidates"]]
        levels = list(part["candidates"].values())
        for key, style in (("p50", "o-"), ("p95", "s--")):
            waits.plot(
                counts, [lv["wait_s"][key] * 1000 for lv in levels], style, label=f"{name} {key}"
            )
        rates.plot(
            counts,
            [lv["burst"].get("uploads_per_second") for lv in levels],
            "o-",
            label=f"{name}, 2 web workers",
        )
        web = part["web_workers"]["levels"]
        rates.scatter(
            [part["web_workers"]["candidates"]] * len(web),
            [lv["burst"].get("uploads_per_second") for lv in web.values()],
            marker="x",
        )
        for workers, lv in web.items():
            rates.annotate(
                f"{workers}w",
                (part["web_workers"]["candidates"], lv["burst"].get("uploads_per_second") or 0),
                fontsize=7,
            )
        clusters = part["clusters"]["levels"]
        ks = [int(k) for k in clusters]
        drains.plot(ks, [lv["answers_per_second"] for lv in clusters.values()], "o-", label=name)
    drains.plot(
        ks,
        [lv["engine_bound_per_second"] for lv in clusters.values()],
        ":",
        color="grey",
        label="engine bound",
    )
    waits.axhline(300, color="red", linewidth=0.8, linestyle=":", label="300 ms")
    waits.axhline(150, color="orange", linewidth=0.8, linestyle=":", label="150 ms")
    waits.set(xlabel="candidates at once", ylabel="wait per question (ms)", yscale="log")
    waits.set_title("Upload wait, answers spoken 0.1× length")
    rates.set(xlabel="candidates at once (x: 1/2/4 web workers)", ylabel="uploads/s")
    rates.set_title("Uploads per second in a burst")
    drains.set(xlabel="qcluster processes", ylabel="answers/s", xticks=ks)
    drains.set_title(f"Backlog drain, engine latency {CLUSTER_LATENCY} s")
    for axis in (waits, rates):
        axis.set_xticks(counts)
    for axis in (waits, rates, drains):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        full = json.loads(args.out.with_suffix(".json").read_text())
        plot(full, args.out.with_suffix(".png"))
        report.write_atomically(args.out.with_suffix(".md"), markdown(full).encode())
        return 0
    # SIGTERM unwinds like Ctrl-C: every process this run started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.one:
        return run_one(args)
    started = time.monotonic()
    databases = {}
    failed = False
    for name in args.databases.split(","):
        env = os.environ | {"DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG") or "1"}
        env.pop("DATABASE_URL", None)
        if name == "postgres":
            ensure_postgres_database(args.postgres)
            env["DATABASE_URL"] = args.postgres
        part = Path(tempfile.mkstemp(prefix=f"scaling-{name}-", suffix=".json")[1])
        log(f"{name}: a stack of its own")
        command = [sys.executable, "-m", "bench.scaling", f"--one={name}", f"--part={part}"]
        child = subprocess.Popen(command + (["--quick"] if args.quick else []), env=env, cwd=ROOT)
        try:
            returncode = child.wait()
        finally:
            if child.poll() is None:
                child.terminate()  # it stops its own stack
                child.wait(60)
        if returncode:
            failed = True
            continue
        databases[name] = json.loads(part.read_text())
        part.unlink()
    from bench.run import machine

    info = machine()
    full = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "run_seconds": round(time.monotonic() - started, 1),
        "machine": f"{info['cpus']} cores ({info['cpu_model']}), Python {info['python']}, "
        f"load average {os.getloadavg()[0]:.2f} at the end",
        "databases": databases,
    }
    if databases:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report.write_json(full, args.out.with_suffix(".json"))
        text = markdown(full)
        report.write_atomically(args.out.with_suffix(".md"), text.encode())
        plot(full, args.out.with_suffix(".png"))
        print(text)
    problems = sum(
        part["levels_problems"] + sum(lv["problems"] for lv in part["clusters"]["levels"].values())
        for part in databases.values()
    )
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
