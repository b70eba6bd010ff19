"""Does prompting the engine with the question and its topic's words help? Measure it.

Speaks answers full of technical terms (on the question bank's own topics) with espeak-ng,
in two voices at two speeds, and transcribes each with the local engine three ways: no
prompt, the prompt as ``initial_prompt``, and the prompt as ``initial_prompt`` + ``hotwords``.
Reports the overall word error rate and the technical-term error rate of each way, and the
verdict of the keep rule: a way is kept only if it lowers the term error rate without
raising the overall one. Writes bench/results/prompt_wer.json and .md (the README's table).

    python -m bench.prompt_wer            # every sentence, minutes on two cores
    python -m bench.prompt_wer --quick    # a few sentences, one voice, to try it out
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jiwer

RESULTS = Path(__file__).resolve().parent / "results"
BANK = Path(__file__).resolve().parent.parent / "sessions_app" / "question_bank.json"

# (question slug, spoken answer, its technical terms as spoken in it)
SENTENCES = [
    (
        "list-versus-tuple",
        "A tuple is immutable, so it is hashable and can be a dict key, but a list is mutable.",
        ["tuple", "immutable", "hashable", "dict", "mutable"],
    ),
    (
        "list-versus-tuple",
        "In CPython a tuple uses a little less memory than a list of the same length.",
        ["CPython", "tuple"],
    ),
    (
        "generators",
        "A generator uses yield to hand back one value at a time and keeps its state lazily.",
        ["generator", "yield", "lazily"],
    ),
    (
        "generators",
        "Every generator is an iterator, so a for loop can consume it without a list in memory.",
        ["generator", "iterator"],
    ),
    (
        "global-interpreter-lock",
        "The GIL lets only one thread run Python bytecode at a time in CPython.",
        ["GIL", "bytecode", "CPython"],
    ),
    (
        "global-interpreter-lock",
        "For CPU-bound work I use multiprocessing, and for I/O-bound work threading or asyncio.",
        ["CPU-bound", "multiprocessing", "I/O-bound", "threading", "asyncio"],
    ),
    (
        "what-happens-when-you-load-a-url",
        "The browser asks DNS for the address, opens a TCP connection and does a TLS handshake.",
        ["DNS", "TCP", "TLS", "handshake"],
    ),
    (
        "what-happens-when-you-load-a-url",
        "Then it sends an HTTP GET request, and a CDN may answer from its cache.",
        ["HTTP", "GET", "CDN", "cache"],
    ),
    (
        "idempotent-http-methods",
        "PUT and DELETE are idempotent, so a client can retry them safely after a timeout.",
        ["PUT", "DELETE", "idempotent", "retry"],
    ),
    (
        "idempotent-http-methods",
        "POST is not idempotent, so payment APIs ask for an idempotency key.",
        ["POST", "idempotent", "idempotency"],
    ),
    (
        "cross-site-request-forgery",
        "CSRF tricks a logged in browser into sending a request with its session cookie.",
        ["CSRF", "cookie"],
    ),
    (
        "cross-site-request-forgery",
        "A CSRF token in the form and SameSite cookies block the forged request.",
        ["CSRF", "token", "SameSite", "cookies"],
    ),
    (
        "slow-database-query",
        "I run EXPLAIN ANALYZE in PostgreSQL to read the query plan and find a sequential scan.",
        ["EXPLAIN", "ANALYZE", "PostgreSQL", "query", "sequential"],
    ),
    (
        "slow-database-query",
        "An ORM loop often causes N plus one queries, which select related fixes with a join.",
        ["ORM", "queries", "join"],
    ),
    (
        "transactions-and-acid",
        "ACID stands for atomicity, consistency, isolation and durability.",
        ["ACID", "atomicity", "consistency", "isolation", "durability"],
    ),
    (
        "transactions-and-acid",
        "If any statement fails the transaction does a rollback, otherwise it does a commit.",
        ["transaction", "rollback", "commit"],
    ),
    (
        "normalization-and-denormalization",
        "Normalization removes duplicated data by splitting tables linked by a foreign key.",
        ["Normalization", "foreign", "key"],
    ),
    (
        "normalization-and-denormalization",
        "I denormalize a read heavy table when the joins become too slow for the dashboard.",
        ["denormalize", "joins"],
    ),
    (
        "design-a-url-shortener",
        "I would hash the long URL or use a counter encoded in base62 as the short code.",
        ["hash", "URL", "base62"],
    ),
    (
        "design-a-url-shortener",
        "The mapping lives in a key value store like Redis, with a cache in front of it.",
        ["key", "value", "Redis", "cache"],
    ),
    (
        "design-a-rate-limiter",
        "A token bucket per API key in Redis allows short bursts but limits the average rate.",
        ["token", "bucket", "API", "Redis"],
    ),
    (
        "design-a-rate-limiter",
        "A sliding window counter at the API gateway returns status four twenty nine.",
        ["sliding", "window", "API", "gateway"],
    ),
    (
        "slow-work-in-the-background",
        "The upload goes to S3 and a Celery worker picks the transcoding job from a queue.",
        ["S3", "Celery", "worker", "transcoding", "queue"],
    ),
    (
        "slow-work-in-the-background",
        "On Kubernetes the workers scale with the queue length and report back by webhook.",
        ["Kubernetes", "workers", "queue", "webhook"],
    ),
    (
        "when-to-mock",
        "I mock the payment API in a unit test, but a pytest fixture runs the real database.",
        ["mock", "API", "unit", "pytest", "fixture"],
    ),
    (
        "flaky-test",
        "A flaky test usually hides a race condition, so I rerun it in CI with a fixed seed.",
        ["flaky", "race", "CI", "seed"],
    ),
]
# Two espeak-ng voices, each at two speeds (words per minute).
RENDITIONS = [("en-us", 140), ("en-us", 180), ("en-gb-x-rp", 140), ("en-gb-x-rp", 180)]
WAYS = {
    "none": {"prompt": False, "hotwords": False, "repetition_penalty": 1.0},
    "initial_prompt": {"prompt": True, "hotwords": False, "repetition_penalty": 1.0},
    "initial_prompt+hotwords": {"prompt": True, "hotwords": True, "repetition_penalty": 1.0},
    # A prompted Whisper base sometimes loops ("..., but a list is mutable. A tuple is
    # immutable, but a list is mutable, ...") or echoes the question: penalise repeats.
    "initial_prompt+repetition_penalty": {
        "prompt": True,
        "hotwords": False,
        "repetition_penalty": 1.1,
    },
    # What the product engine does: the prompt, but a transcript that repeats a run of six
    # words or says six words of the prompt back is transcribed again without it. Not
    # measured separately: derived from the "initial_prompt" and "none" transcripts of the
    # same recording (the engine's second pass is exactly the "none" call).
    "initial_prompt+fallback": {
        "prompt": True,
        "hotwords": False,
        "repetition_penalty": 1.0,
        "derived": True,
    },
}
# hotwords made Whisper repeat the prompt and loop (slowly) in a first trial: it is measured
# on every third sentence of the first rendition, and compared with "none" on that audio.
EVERY_RENDITION = ("none", "initial_prompt", "initial_prompt+repetition_penalty")
SAMPLED_EVERY = 3

# Lower case, no punctuation ("I/O-bound" and "I O bound" both become "io bound"... the
# hyphen and slash are removed, then words split on spaces).
NORMALISE = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.SubstituteRegexes({r"[-/]": ""}),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


def normalised_words(text: str) -> list[str]:
    return NORMALISE(text)[0] if text.strip() else []


def scores(rows: list[dict]) -> dict:
    """Overall WER and technical-term WER over ``rows`` ({reference, terms, hypothesis}).

    Term WER: of the reference words that are technical terms, the share the alignment
    finds substituted or deleted (insertions belong to no reference word).
    """
    references = [" ".join(normalised_words(row["reference"])) for row in rows]
    hypotheses = [" ".join(normalised_words(row["hypothesis"])) or "<empty>" for row in rows]
    output = jiwer.process_words(references, hypotheses)
    term_words = term_errors = 0
    for row, reference, alignment in zip(rows, output.references, output.alignments, strict=True):
        terms = {word for term in row["terms"] for word in normalised_words(term)}
        wrong = set()
        for chunk in alignment:
            if chunk.type in ("substitute", "delete"):
                wrong.update(range(chunk.ref_start_idx, chunk.ref_end_idx))
        for index, word in enumerate(reference):
            if word in terms:
                term_words += 1
                term_errors += index in wrong
    return {
        "wer": round(output.wer, 4),
        "term_wer": round(term_errors / term_words, 4),
        "words": sum(len(reference) for reference in output.references),
        "term_words": term_words,
    }


def keeps(way: dict, baseline: dict) -> bool:
    """The keep rule: fewer technical-term errors, and no more errors overall."""
    return way["term_wer"] < baseline["term_wer"] and way["wer"] <= baseline["wer"]


def verdict(comparisons: dict) -> str:
    """The way to ship: of the ways the keep rule keeps, the fewest errors overall; else "none"."""
    kept = [name for name, c in comparisons.items() if keeps(c[name], c["none"])]
    return min(kept, key=lambda name: comparisons[name][name]["wer"], default="none")


def speak(text: str, voice: str, speed: int, folder: Path) -> bytes:
    path = folder / "answer.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path.read_bytes()


def measure(sentences, renditions, ways=tuple(WAYS)) -> dict:
    from django.test import override_settings

    from sessions_app.prompt import prompt_text
    from transcription.backends.local import LocalWhisperTranscriber

    # Prompts are built from the bank file itself: no database needed.
    bank = {question["slug"]: question for question in json.loads(BANK.read_text())}
    assert {slug for slug, _, _ in sentences} <= set(bank), "a sentence names an unknown question"
    engine = LocalWhisperTranscriber()
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for voice, speed in renditions:
            for number, (slug, reference, terms) in enumerate(sentences):
                audio = speak(reference, voice, speed, Path(folder))
                question = bank[slug]
                prompt = prompt_text(question_text=question["text"], category=question["category"])
                for name, way in WAYS.items():
                    if name not in ways or way.get("derived"):
                        continue
                    sampled = (voice, speed) == renditions[0] and number % SAMPLED_EVERY == 0
                    if name not in EVERY_RENDITION and not sampled:
                        continue
                    with override_settings(
                        WHISPER_HOTWORDS=way["hotwords"],
                        WHISPER_REPETITION_PENALTY=way["repetition_penalty"],
                    ):
                        # The engine's single pass, without its no-loop fallback.
                        transcript = engine._transcribe(
                            audio, language="en", prompt=prompt if way["prompt"] else ""
                        )
                    rows.append(
                        {
                            "voice": voice,
                            "speed": speed,
                            "slug": slug,
                            "way": name,
                            "reference": reference,
                            "terms": terms,
                            "hypothesis": transcript.text,
                        }
                    )
                print(f"{voice} {speed} {slug}", file=sys.stderr)
    return {"rows": rows, "seconds": round(time.perf_counter() - started)}


def with_fallback(rows: list[dict]) -> list[dict]:
    """Add the "initial_prompt+fallback" rows: the prompted transcript, or, where it loops or
    echoes the prompt, the unprompted one of the same recording."""
    from sessions_app.prompt import prompt_text
    from transcription.backends.local import loops_or_echoes

    bank = {question["slug"]: question for question in json.loads(BANK.read_text())}
    plain = {(r["voice"], r["speed"], r["reference"]): r for r in rows if r["way"] == "none"}
    derived = []
    for row in rows:
        if row["way"] != "initial_prompt":
            continue
        question = bank[row["slug"]]
        prompt = prompt_text(question_text=question["text"], category=question["category"])
        fallback = loops_or_echoes(row["hypothesis"], prompt)
        source = plain[(row["voice"], row["speed"], row["reference"])] if fallback else row
        derived.append(row | {"way": "initial_prompt+fallback", "hypothesis": source["hypothesis"]})
    return [r for r in rows if r["way"] != "initial_prompt+fallback"] + derived


def summarise(rows: list[dict]) -> dict:
    """Each way against "none" on the same audio, over all of it and by rendition."""
    rows = with_fallback(rows)
    comparisons = {}
    for name in WAYS:
        if name == "none":
            continue
        audio = {(r["voice"], r["speed"], r["reference"]) for r in rows if r["way"] == name}
        comparisons[name] = {
            "renditions": sorted({f"{voice} {speed} wpm" for voice, speed, _ in audio}),
            "sentences": len(audio),
            "none": scores(
                [
                    r
                    for r in rows
                    if r["way"] == "none" and (r["voice"], r["speed"], r["reference"]) in audio
                ]
            ),
            name: scores([r for r in rows if r["way"] == name]),
        }
    by_rendition = {}
    for voice, speed in sorted({(row["voice"], row["speed"]) for row in rows}):
        by_rendition[f"{voice} {speed} wpm"] = {
            name: scores(chosen)
            for name in WAYS
            if (
                chosen := [
                    r
                    for r in rows
                    if r["way"] == name and (r["voice"], r["speed"]) == (voice, speed)
                ]
            )
        }
    return {
        "comparisons": comparisons,
        "by_rendition": by_rendition,
        "verdict": verdict(comparisons),
    }


def markdown(result: dict) -> str:
    lines = ["| audio | way | WER | technical-term WER |", "|---|---|---:|---:|"]
    for label, summary in result["by_rendition"].items():
        for name, figures in summary.items():
            lines.append(f"| {label} | {name} | {figures['wer']:.1%} | {figures['term_wer']:.1%} |")
    lines += [
        "",
        "| way | on | WER: none → way | term WER: none → way | kept |",
        "|---|---|---|---|---|",
    ]
    for name, c in result["comparisons"].items():
        lines.append(
            f"| {name} | {c['sentences']} recordings | "
            f"{c['none']['wer']:.1%} → {c[name]['wer']:.1%} | "
            f"{c['none']['term_wer']:.1%} → {c[name]['term_wer']:.1%} | "
            f"{'yes' if keeps(c[name], c['none']) else 'no'} |"
        )
    sentences = {row["reference"] for row in result["rows"]}
    lines += [
        "",
        f"{len(sentences)} sentences, {len(result['by_rendition'])} renditions, "
        f"{result['engine']}, {result['seconds']} s; verdict: **{result['verdict']}**.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="6 sentences, one rendition")
    parser.add_argument("--out", type=Path, default=RESULTS / "prompt_wer")
    parser.add_argument(
        "--add-way",
        choices=[name for name in WAYS if name != "none"],
        help="measure only this way and add it to the result already in --out",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "interview_site.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django

    django.setup()
    from django.conf import settings

    sentences, renditions = (
        (SENTENCES[::4], RENDITIONS[:1]) if args.quick else (SENTENCES, RENDITIONS)
    )
    earlier = []
    if args.add_way:
        earlier = json.loads(args.out.with_suffix(".json").read_text())["rows"]
        earlier = [row for row in earlier if row["way"] != args.add_way]
    measured = measure(sentences, renditions, (args.add_way,) if args.add_way else tuple(WAYS))
    measured["rows"] = earlier + measured["rows"]
    if args.add_way:
        measured["seconds"] += json.loads(args.out.with_suffix(".json").read_text())["seconds"]
    result = {
        "engine": f"faster-whisper {settings.WHISPER_MODEL} {settings.WHISPER_COMPUTE_TYPE}, "
        f"beam {settings.WHISPER_BEAM_SIZE}, VAD {'on' if settings.WHISPER_VAD else 'off'}",
        "seconds": measured["seconds"],
        "rows": measured["rows"],
        **summarise(measured["rows"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
