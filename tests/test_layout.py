"""Who may import whom: the product never imports the tests' or the benchmark's code, the
benchmark never imports tests/, and the shared harness needs no Django."""

import ast

import pytest

from harness import ROOT

PRODUCT = ["interview_site", "sessions_app", "transcription"]


def imported(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def files(*places: str):
    for place in places:
        path = ROOT / place
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


@pytest.mark.parametrize("path", list(files(*PRODUCT)), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_product_imports_neither_the_tests_nor_the_benchmark(path):
    assert not imported(path) & {"tests", "bench", "harness", "fake_openai"}


@pytest.mark.parametrize(
    "path", list(files("bench", "harness.py", "fake_openai.py")), ids=lambda p: p.name
)
def test_the_benchmark_and_the_shared_modules_never_import_tests(path):
    assert "tests" not in imported(path)


@pytest.mark.parametrize("path", ["harness.py", "fake_openai.py"])
def test_the_shared_modules_need_no_django(path):
    assert not imported(ROOT / path) & {"django", "rest_framework", "django_q", "pytest"}
