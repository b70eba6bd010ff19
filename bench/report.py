"""Figures from the raw measurements, and the report: JSON, Markdown and a plot."""

import json
import math
import os
from pathlib import Path

from bench.load import Finish, Upload
from harness import write_atomically

MODES = ("async", "sync")
LABELS = {"async": "async (queue)", "sync": "sync (baseline)"}
BAND = (250_000, 350_000)  # "a 300 KB answer"
TARGET_WAIT = 0.3  # seconds: the async p95 target for a 300 KB answer


def percentile(values: list[float], p: float) -> float | None:
    """Return the p-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float], *, scale: float = 1.0, digits: int = 3) -> dict:
    """Return n, p50, p95, p99, mean and max of ``values``, multiplied by ``scale``."""
    if not values:
        return {"n": 0}

    def fmt(value):
        return round(value * scale, digits)

    return {
        "n": len(values),
        "p50": fmt(percentile(values, 50)),
        "p95": fmt(percentile(values, 95)),
        "p99": fmt(percentile(values, 99)),
        "mean": fmt(sum(values) / len(values)),
        "max": fmt(max(values)),
    }


def release_aware_bound(jobs: list[tuple[float, float]], workers: int) -> float:
    """Return a lower bound on the makespan of jobs (release, duration) on ``workers``.

    No schedule can finish before the longest job released at r ends, nor before the work
    released at or after r is done by all workers from r on (measured from the first release).
    """
    if not jobs:
        return 0.0
    jobs = sorted(jobs)
    first = jobs[0][0]
    bound = max(release + duration for release, duration in jobs) - first
    remaining = sum(duration for _, duration in jobs)
    for release, duration in jobs:
        bound = max(bound, release - first + remaining / workers)
        remaining -= duration
    return bound


def wait_metrics(uploads: list[Upload], server_times: dict[str, list[tuple[int, float]]]) -> dict:
    """The wait per question a load's candidates saw, and the same requests as gunicorn saw."""
    accepted = [upload for upload in uploads if upload.accepted]
    return {
        "uploads": len(uploads),
        "accepted": len(accepted),
        "answer_bytes": summary([u.size for u in accepted], digits=0),
        "wait_s": summary([u.wait for u in accepted]),
        "wait_300kb_s": summary([u.wait for u in accepted if BAND[0] <= u.size <= BAND[1]]),
        # From the worker thread's start to the end of the response.
        "server_time_s": summary(
            [
                times[0][1]
                for u in accepted
                if (times := server_times.get(f"/api/upload-answer/{u.session_id}/{u.question_id}"))
            ]
        ),
    }


def interview_metrics(
    *,
    uploads: list[Upload],
    finishes: list[Finish],
    rows: dict,
    api,
    server_times: dict[str, list[tuple[int, float]]],
    concurrency: int,
    in_request: bool,
) -> dict:
    """Return the candidate-side and pipeline figures of one interview load."""
    engine_seconds = api.engine_seconds
    accepted = [upload for upload in uploads if upload.accepted]
    paired = [
        (u, rows[(u.session_id, u.question_id)])
        for u in accepted
        if (u.session_id, u.question_id) in rows
    ]
    done = [row["transcribed_at"] for _, row in paired if row["transcribed_at"]]
    metrics = wait_metrics(uploads, server_times) | {
        "finish_to_result_s": summary([f.duration for f in finishes if f.status == 200]),
        "analyze_calls": summary([f.polls for f in finishes], digits=1),
    }
    last_transcript = {}
    for _, row in paired:
        if row["transcribed_at"]:
            session = row["session_id"]
            last_transcript[session] = max(last_transcript.get(session, 0), row["transcribed_at"])
    metrics["last_transcript_to_result_s"] = summary(
        [
            f.ended - last_transcript[f.session_id]
            for f in finishes
            if f.session_id in last_transcript
        ]
    )
    if in_request:
        # The transcript is saved before the 202 is sent: nothing happens after it.
        metrics["pickup_s"] = metrics["completed_s"] = None
    else:
        metrics["pickup_s"] = summary(
            [
                row["processing_started_at"] - u.ended
                for u, row in paired
                if row["processing_started_at"]
            ]
        )
        metrics["completed_s"] = summary(
            [row["transcribed_at"] - u.ended for u, row in paired if row["transcribed_at"]]
        )
        metrics["job_outside_engine"] = outside_engine([row for _, row in paired], api)
    jobs = [(u.started, engine_seconds.get(row["pk"], 0.0)) for u, row in paired]
    total = sum(duration for _, duration in jobs)
    if accepted and done:
        makespan = max(done) - min(u.started for u in accepted)
        bound = total / concurrency
        release_bound = release_aware_bound(jobs, concurrency)
        metrics["makespan"] = {
            "seconds": round(makespan, 2),
            "engine_seconds_total": round(total, 1),
            "concurrency": concurrency,
            "bound_total_over_workers_s": round(bound, 2),
            "ratio_to_total_over_workers": round(makespan / bound, 3) if bound else None,
            "bound_release_aware_s": round(release_bound, 2),
            "ratio_to_release_aware": round(makespan / release_bound, 3) if release_bound else None,
        }
    return metrics


def outside_engine(rows: list[dict], api) -> dict:
    """Return how long jobs took beyond the engine's latency, before and after the request.

    Before: claim → the request reaches the API (GridFS read, imports on a worker's first
    job, sending the audio). After: the API's answer → transcript committed.
    """
    before, after = [], []
    for row in rows:
        pk = row["pk"]
        if not (row["transcribed_at"] and row["processing_started_at"]):
            continue
        if pk in api.received_at and pk in api.engine_seconds:
            before.append(api.received_at[pk] - row["processing_started_at"])
            after.append(row["transcribed_at"] - api.received_at[pk] - api.engine_seconds[pk])
    return {
        "total_s": summary([b + a for b, a in zip(before, after, strict=True)]),
        "before_engine_s": summary(before),
        "after_engine_s": summary(after),
    }


def drain_metrics(rows: list[dict], api, workers: int) -> dict:
    """Return the makespan of a backlog that was all queued before the workers started."""
    engine_seconds = api.engine_seconds
    claimed = [row["processing_started_at"] for row in rows if row["processing_started_at"]]
    done = [row["transcribed_at"] for row in rows if row["transcribed_at"]]
    total = sum(engine_seconds.get(row["pk"], 0.0) for row in rows)
    if not claimed or not done:
        return {"jobs": len(rows)}
    makespan = max(done) - min(claimed)
    bound = max(total / workers, max(engine_seconds.get(row["pk"], 0.0) for row in rows))
    return {
        "jobs": len(rows),
        "workers": workers,
        "engine_seconds_total": round(total, 1),
        "makespan_s": round(makespan, 2),
        "bound_s": round(bound, 2),
        "ratio": round(makespan / bound, 3) if bound else None,
        "job_outside_engine": outside_engine(rows, api),
    }


def throughput(uploads: list[Upload]) -> dict:
    accepted = [upload for upload in uploads if upload.accepted]
    if not accepted:
        return {"uploads": len(uploads), "accepted": 0}
    elapsed = max(u.ended for u in accepted) - min(u.started for u in accepted)
    return {
        "uploads": len(uploads),
        "accepted": len(accepted),
        "upload_bytes": accepted[0].size,
        "seconds": round(elapsed, 2),
        "uploads_per_second": round(len(accepted) / elapsed, 1),
        "wait_s": summary([u.wait for u in accepted]),
    }


# --- Output ---------------------------------------------------------------------------


def write_json(report: dict, path: Path) -> None:
    write_atomically(path, (json.dumps(report, indent=2, default=str) + "\n").encode())


def _s(value: float | None) -> str:
    """Format seconds for people: 42 ms, 1.25 s, 12.3 s."""
    if value is None:
        return "—"
    if value >= 10:
        return f"{value:.1f} s"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.0f} ms"


def _percentiles(stats: dict | None, keys=("p50", "p95")) -> str:
    if stats is None:
        return "— (inside the request)"
    if not stats.get("n"):
        return "—"
    return " / ".join(_s(stats[key]) for key in keys)


def _times(fast: float | None, slow: float | None) -> str:
    if not fast or not slow:
        return "—"
    ratio = slow / fast
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×"


def _get(data: dict | None, *keys):
    for key in keys:
        data = (data or {}).get(key)
    return data


def _problems(zero_loss: dict) -> str:
    orphans = (
        zero_loss["orphan_gridfs_files"]
        + zero_loss["orphan_gridfs_chunks"]
        + zero_loss["audio_kept_after_transcript"]
    )
    return (
        f"{zero_loss['lost']} / {zero_loss['duplicate_transcriptions']} / {orphans} "
        f"(of {zero_loss['answers']})"
    )


def _row(label: str, *cells: str) -> str:
    return "| " + " | ".join([label, *cells]) + " |"


def _headline(report: dict) -> list[str]:
    a, s = report["async"], report["sync"]
    ai, si = a["interview"], s["interview"]
    three = ("p50", "p95", "p99")
    wait_ratios = " / ".join(_times(ai["wait_s"].get(k), si["wait_s"].get(k)) for k in three)
    am, sm = ai.get("makespan", {}), si.get("makespan", {})

    def bound(makespan: dict) -> str:
        return (
            f"{makespan.get('ratio_to_total_over_workers')}× ({makespan.get('seconds')} s vs "
            f"{makespan.get('engine_seconds_total')} s ÷ {makespan.get('concurrency')})"
        )

    def memory(large: dict) -> str:
        worst = max(large["workers"], key=lambda w: w["rss_peak_mib"] - w["rss_before_mib"])
        served = worst.get("large_uploads_served")
        return f"{large['peak_rss_mib']} MiB (+{large['peak_growth_mib']} MiB" + (
            f", in the worker serving {served} of them at once)" if served else ")"
        )

    size_mb = a["large_uploads"]["upload_bytes"] / 1e6
    return [
        "| | async (queue) | sync (baseline) | sync ÷ async |",
        "|---|---|---|---|",
        _row(
            "wait per question p50 / p95 / p99",
            _percentiles(ai["wait_s"], three),
            _percentiles(si["wait_s"], three),
            wait_ratios,
        ),
        _row(
            "wait, 250–350 KB answers, p50 / p95",
            _percentiles(ai["wait_300kb_s"]),
            _percentiles(si["wait_300kb_s"]),
            _times(_get(ai, "wait_300kb_s", "p95"), _get(si, "wait_300kb_s", "p95")) + " (p95)",
        ),
        _row(
            "… of which in the gunicorn worker, p50 / p95",
            # Read from gunicorn's access log, which its uvicorn workers never write.
            _percentiles(ai["server_time_s"])
            if (ai["server_time_s"] or {}).get("n") or ai["server_time_s"] is None
            else "— (no access log under uvicorn)",
            _percentiles(si["server_time_s"]),
            "",
        ),
        *(
            [
                _row(
                    f"wait at {high['candidates']} candidates (uploads only) p50 / p95 / p99; "
                    "250–350 KB p95",
                    f"{_percentiles(high['wait_s'], three)}; "
                    f"{_s(_get(high, 'wait_300kb_s', 'p95'))}",
                    "—",
                    "",
                )
            ]
            if (high := a.get("interview_high"))
            else []
        ),
        _row(
            "202 → processing (queue pickup) p50 / p95",
            _percentiles(ai["pickup_s"]),
            _percentiles(si["pickup_s"]),
            "",
        ),
        _row(
            "202 → completed p50 / p95",
            _percentiles(ai["completed_s"]),
            _percentiles(si["completed_s"]),
            "",
        ),
        _row(
            "Finish → analyze result p50 / p95",
            _percentiles(ai["finish_to_result_s"]),
            _percentiles(si["finish_to_result_s"]),
            "",
        ),
        _row(
            "last transcript → analyze result p50 / p95",
            _percentiles(ai["last_transcript_to_result_s"]),
            _percentiles(si["last_transcript_to_result_s"]),
            "",
        ),
        _row(
            "makespan ÷ (engine time ÷ workers)",
            bound(am),
            bound(sm),
            _times(am.get("seconds"), sm.get("seconds")) + " (makespan)",
        ),
        _row(
            "makespan ÷ release-aware bound",
            f"{am.get('ratio_to_release_aware')}×",
            f"{sm.get('ratio_to_release_aware')}×",
            "",
        ),
        _row(
            f"uploads/s, {a['burst']['uploads']} at once, transcription out of the request",
            f"{a['burst'].get('uploads_per_second')} with no worker running (audio piles up); "
            f"{_get(a, 'burst_with_workers', 'uploads_per_second')} with workers running",
            f"{s['burst'].get('uploads_per_second')} (engine latency 0, still in the request)",
            "",
        ),
        _row(
            f"peak RSS of a web worker, {size_mb:.1f} MB uploads",
            memory(a["large_uploads"]),
            memory(s["large_uploads"]),
            "",
        ),
        _row(
            "lost / duplicated / orphaned",
            _problems(a["zero_loss"]),
            _problems(s["zero_loss"]),
            "",
        ),
    ]


def _queue(report: dict) -> list[str]:
    a = report["async"]
    drain, idle, interview = a["drain"], a["idle_pickup"], a["interview"]

    def outside(figures: dict) -> str:
        parts = figures.get("job_outside_engine") or {}
        return (
            f"p50 {_s(_get(parts, 'total_s', 'p50'))}, p95 {_s(_get(parts, 'total_s', 'p95'))} "
            f"(before the engine request p50 {_s(_get(parts, 'before_engine_s', 'p50'))}, "
            f"p95 {_s(_get(parts, 'before_engine_s', 'p95'))}; after its answer "
            f"p50 {_s(_get(parts, 'after_engine_s', 'p50'))}, "
            f"p95 {_s(_get(parts, 'after_engine_s', 'p95'))})"
        )

    return [
        "## Queue",
        "",
        f"- Idle workers, {idle['pickup_s'].get('n', 0)} answers one after another: "
        f"202 → processing p50 {_s(_get(idle, 'pickup_s', 'p50'))}, "
        f"p95 {_s(_get(idle, 'pickup_s', 'p95'))}; 202 → completed "
        f"p50 {_s(_get(idle, 'completed_s', 'p50'))} (engine latency {idle['latency_s']} s).",
        f"- Backlog drain: {drain.get('jobs')} answers queued while no worker ran (the "
        f"burst), then {drain.get('workers')} workers started: makespan "
        f"{drain.get('makespan_s')} s against {drain.get('bound_s')} s of engine time ÷ "
        f"workers = {drain.get('ratio')}×.",
        "- A job's time beyond the engine's latency, from its claim to its committed "
        f"transcript: backlog drain {outside(drain)}; interview load {outside(interview)}. "
        "Before the request: the GridFS read, the status update, a worker's first imports; "
        "after: the transcript's commit.",
        f"- Stopping qcluster (SIGTERM to its leader) took {a.get('qcluster_stop_seconds')} s.",
    ]


def _cpu(report: dict) -> list[str]:
    phases = report.get("cpu") or {}
    names = list(dict.fromkeys(n for usage in phases.values() for n in usage["cores"]))
    lines = [
        f"## CPU by phase (cores used on average; the machine has {report['machine']['cpus']})",
        "",
        "| part | "
        + " | ".join(f"{phase} ({usage['seconds']} s)" for phase, usage in phases.items())
        + " |",
        "|---|" + "---|" * len(phases),
    ]
    for name in names:
        lines.append(_row(name, *[str(usage["cores"].get(name, "—")) for usage in phases.values()]))
    return lines


def _gridfs(scaling: dict) -> list[str]:
    lines = [
        f"## The embedded MongoDB: cost of one {scaling['upload_bytes'] / 1000:.0f} KB answer "
        "against the audio it already holds",
        "",
        "The app's own `store_audio` (chunks streamed, files document last and journaled, "
        "indexes made once per process), `get_audio` and `delete_audio`, one at a time on an "
        f"idle server, median of {scaling['repeats']}; beside them pymongo's "
        "`GridFSBucket.upload_from_stream` (the app's write before: an index check per upload, "
        "chunks collected first):",
        "",
        "| files held | audio held | store_audio | p90 | get_audio | delete_audio "
        "| driver's upload_from_stream |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        _row(
            str(level.get("held_files", "—")),
            f"{level['held_mb']} MB",
            f"{level['write_ms']} ms",
            f"{level.get('write_p90_ms', '—')} ms",
            f"{level['read_ms']} ms",
            f"{level['delete_ms']} ms",
            f"{level.get('driver_write_ms', '—')} ms",
        )
        for level in scaling["levels"]
    ]
    return lines


def _breakdown(breakdown: dict) -> list[str]:
    lines = [
        f"## Where an upload's time goes ({breakdown['upload_bytes'] / 1000:.0f} KB answer, "
        f"{breakdown['uploads']} uploads one at a time, in-process)",
        "",
        "Django's test client against the same database and embedded MongoDB, each step of "
        "the view timed by wrapping its function (time in nested steps excluded). Per upload: "
        f"median {breakdown['total_median_ms']} ms, mean {breakdown['total_mean_ms']} ms.",
        "",
        "| step | median | mean | share of mean |",
        "|---|---|---|---|",
    ]
    lines += [
        _row(
            step["step"],
            f"{step['median_ms']} ms",
            f"{step['mean_ms']} ms",
            f"{step['share'] * 100:.0f}%",
        )
        for step in breakdown["steps"]
    ]
    if breakdown["not_measured"]:
        lines += [
            "",
            f"Not found to wrap, so not measured: {', '.join(breakdown['not_measured'])}.",
        ]
    return lines


def _engine(engine: dict) -> list[str]:
    lines = [
        f"## Local engine ({engine['model']})",
        "",
        f"{engine['clip']}: {engine['runs'][0]['audio_seconds']} s of espeak-ng speech, "
        f"language detected, `WHISPER_CPU_THREADS={engine['cpu_threads_setting']}`. The first "
        f"call (model load and a {engine['first_call_audio_seconds']} s clip) took "
        f"{engine['first_call_seconds']} s.",
        "",
        "| beam size | wall time | seconds of audio per second |",
        "|---|---|---|",
    ]
    for run in engine["runs"]:
        default = " (default)" if run["beam_size"] == engine["default_beam_size"] else ""
        lines.append(
            _row(
                f"{run['beam_size']}{default}",
                f"{run['wall_seconds']} s",
                str(run["audio_seconds_per_second"]),
            )
        )
    return lines


def markdown(report: dict) -> str:
    """Return the Markdown summary of a run."""
    machine, config, clips = report["machine"], report["config"], report["clips"]
    threads = config["web_workers"] * config["web_threads"]
    lines = [
        "# Benchmark: queued transcription against the synchronous baseline"
        + (" (quick)" if report["quick"] else ""),
        "",
        f"{report['generated_at']}, {machine['cpus']} cores ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, Python {machine['python']}, load average "
        f"{machine['load_average_at_start'][0]} at the start and "
        f"{machine['load_average_at_end'][0]} at the end; {config['database']}, "
        f"{config['mongodb']}; run time {report['run_seconds']:.0f} s.",
        "",
        f"Load ({config.get('profile', 'standard')} profile): "
        f"{config['candidates']} candidates at once, {config['questions']} answers each "
        f"({clips['answer_seconds']}, {clips['answer_kb']} KB webm/opus), each answer spoken "
        f"for its length × {config['speak_scale']} before its upload, then Finish (async also "
        f"{config.get('high_candidates')} candidates the same way, without Finish: the wait "
        "at the higher load); "
        f"transcription API latency uniform {config['latency_s'][0]}–{config['latency_s'][1]} s. "
        + (
            f"Async: gunicorn as the Procfile runs it ({config['web_workers']} uvicorn workers, "
            f"at most {config['web_threads']} views at once each)"
            if config.get("web", "wsgi") == "asgi"
            else f"Async: gunicorn with {config['web_workers']} workers × "
            f"{config['web_threads']} threads"
        )
        + f", and qcluster with {config['queue_workers']} workers. Sync: gunicorn with "
        f"{config['web_workers']} workers × {config['web_threads']} threads serves "
        "`bench.sync_wsgi`, which runs each accepted upload's transcription job in the "
        f"request before answering, so its {threads} request threads are its transcription "
        "workers.",
        "",
        *_headline(report),
        "",
        *_queue(report),
        "",
        *_cpu(report),
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *[
            _row(t["target"], t["measured"], "yes" if t["met"] else "**no**")
            for t in report["targets"]
        ],
        "",
        *_breakdown(report["async"]["breakdown"]),
        "",
        *_gridfs(report["async"]["gridfs_scaling"]),
    ]
    if report.get("engine"):
        lines += ["", *_engine(report["engine"])]
    return "\n".join(lines) + "\n"


def _tick(value: float, _position) -> str:
    return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"


def plot(report: dict, waits: dict[str, list[float]], path: Path) -> None:
    """Plot the wait per question of both modes on log axes: histogram and cumulative share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"async": "#1f77b4", "sync": "#d62728"}
    everything = [w for values in waits.values() for w in values if w > 0]
    if not everything:
        return
    low, high = min(everything) / 1.5, max(everything) * 1.5
    bins = [low * (high / low) ** (i / 60) for i in range(61)]
    figure, (histogram, cumulative) = plt.subplots(1, 2, figsize=(12, 4.8))
    for mode in MODES:
        values = sorted(w for w in waits.get(mode, []) if w > 0)
        if not values:
            continue
        p50, p95 = percentile(values, 50), percentile(values, 95)
        label = f"{LABELS[mode]}: p50 {_s(p50)}, p95 {_s(p95)} (n={len(values)})"
        histogram.hist(values, bins=bins, color=colors[mode], alpha=0.6, label=label)
        cumulative.step(
            values,
            [(i + 1) / len(values) for i in range(len(values))],
            where="post",
            color=colors[mode],
            label=LABELS[mode],
        )
        for axis in (histogram, cumulative):
            axis.axvline(p95, color=colors[mode], linestyle="--", linewidth=1)
    for axis in (histogram, cumulative):
        axis.axvline(TARGET_WAIT, color="grey", linestyle=":", linewidth=1.5)
    histogram.annotate(
        "target 300 ms",
        xy=(TARGET_WAIT, 0.55),
        xycoords=("data", "axes fraction"),
        ha="right",
        va="center",
        rotation=90,
        fontsize=8,
        color="grey",
    )
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis in (histogram, cumulative):
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
        axis.xaxis.set_major_formatter(FuncFormatter(_tick))
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("wait per question: upload request latency (log scale)")
        axis.grid(True, which="both", alpha=0.3)
    histogram.set_ylabel("uploads")
    histogram.legend(loc="upper center", fontsize=8)
    cumulative.set_ylabel("share of uploads at or below")
    cumulative.legend(loc="lower right", fontsize=8)
    config = report["config"]
    figure.suptitle(
        f"Wait per question, {config['candidates']} concurrent candidates × "
        f"{config['questions']} answers, engine {config['latency_s'][0]}–"
        f"{config['latency_s'][1]} s (dashed: p95; dotted: the 300 ms target)"
    )
    figure.tight_layout()
    partial = path.with_name(path.name + ".tmp")
    figure.savefig(partial, dpi=110, format="png")
    plt.close(figure)
    os.replace(partial, path)
