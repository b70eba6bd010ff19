"""The alert rules and the Grafana dashboard shipped in ops/ refer only to real metrics."""

import json
import re
import shutil
import subprocess

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT

RULES = ROOT / "ops" / "prometheus-rules.yml"
DASHBOARD = ROOT / "ops" / "grafana-dashboard.json"
KEYWORDS = {"by", "without", "on", "ignoring", "and", "or", "unless", "bool", "offset"}
# Prometheus's own series, not the app's.
PROMETHEUS_SERIES = {"up"}


@pytest.fixture
def exported(settings, db, gridfs) -> set[str]:
    """Every series name /metrics can carry (counters with _total, histograms' parts)."""
    settings.METRICS_TOKEN = "t" * 24
    client = Client()
    client.get("/api/health/live")  # labelled request metrics appear once used
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {'t' * 24}").content.decode()
    names = set()
    for family in text_string_to_metric_families(text):
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
        }.get(family.type, [""])
        names |= {family.name + suffix for suffix in suffixes}
    return names


def metric_names(expr: str) -> set[str]:
    """The series a PromQL expression selects (functions, labels and keywords left out)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # label matchers, ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    return {
        name
        for name in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
        if name not in KEYWORDS and not re.fullmatch(r"[0-9e.]+", name)
    }


def test_alert_rules_pass_promtool_and_name_exported_metrics(exported):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout

    rules = [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
    assert len(rules) >= 6
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported | PROMETHEUS_SERIES, (rule["alert"], names - exported)


def test_every_dashboard_panel_queries_metrics_the_app_exports(exported):
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert {"Queue depth", "Oldest queued answer", "Failure rate"} <= {p["title"] for p in panels}
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
    queries = " ".join(t["expr"] for p in panels for t in p["targets"])
    for needed in [
        "interview_queue_oldest_age_seconds",
        "interview_transcription_upload_to_completed_seconds_bucket",
        "interview_transcription_engine_seconds_total",
        "interview_transcription_audio_seconds_total",
    ]:
        assert needed in queries
