"""A skipped test fails the run unless tests/skips.py allows it: a real pytest run over a small test file."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.skips import ALLOWED_SKIPS, allowed_reason

REPO = Path(__file__).resolve().parents[1]

SAMPLE = """
import pytest


@pytest.fixture
def missing_tool():
    pytest.skip("the frobnicator is not installed")


def test_passes():
    assert True


def test_skip_call():
    pytest.skip("no widget here")


@pytest.mark.skipif(True, reason="needs a marker-only thing")
def test_skipif_marker():
    pass


def test_skip_in_fixture(missing_tool):
    pass


def test_allowed():
    pytest.skip("skipped by design")


@pytest.mark.parametrize("n", [1, 2])
def test_allowed_param(n):
    pytest.skip("skipped by design too")


@pytest.mark.xfail(reason="a known bug", strict=True)
def test_xfail():
    raise ValueError("the known bug")
"""

MODULE_SKIPPED = """
import pytest

pytest.skip("this whole module is off", allow_module_level=True)


def test_never_collected():
    pass
"""

# The subprocess's conftest puts two of SAMPLE's tests on the allow-list in place of the real one.
CONFTEST = """
from tests import skips

skips.ALLOWED_SKIPS.clear()
skips.ALLOWED_SKIPS.update({
    "test_sample.py::test_allowed": "by design, for this test",
    "test_sample.py::test_allowed_param": "by design, every parametrization",
})
"""


def run_sample(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run pytest (with only tests.skips as a plugin) on SAMPLE; each test id -> its outcome."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "test_module_skipped.py").write_text(MODULE_SKIPPED)
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "COLUMNS": "80"}
    for var in ("CI", "BUILD_NUMBER"):  # under CI pytest prints the short summary in full: the counts differ
        env.pop(var, None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.skips", "-p", "no:cacheprovider", "-rA",
         "--continue-on-collection-errors", f"--junitxml={junit}", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[name] = kinds[0] if kinds else "passed"
    return done, outcomes


def test_a_skip_fails_and_an_allowed_one_passes(tmp_path: Path) -> None:
    done, outcomes = run_sample(tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert outcomes == {
        "test_sample::test_passes": "passed",
        "test_sample::test_skip_call": "failure",
        "test_sample::test_skipif_marker": "error",  # a skip in setup: an error at setup
        "test_sample::test_skip_in_fixture": "error",
        "test_sample::test_allowed": "skipped",
        "test_sample::test_allowed_param[1]": "skipped",
        "test_sample::test_allowed_param[2]": "skipped",
        "test_sample::test_xfail": "skipped",  # junit's word for xfailed: xfail is left as it is
        "::test_module_skipped": "error",  # skipped at import: a collection error
    }, output
    for test, reason in [
        ("test_skip_call", "no widget here"),
        ("test_skipif_marker", "needs a marker-only thing"),
        ("test_skip_in_fixture", "the frobnicator is not installed"),
    ]:
        assert f"test_sample.py::{test} was skipped: {reason}" in output, output
    assert "test_module_skipped.py was skipped: this whole module is off" in output, output
    assert output.count("add a pattern for its id to ALLOWED_SKIPS in tests/skips.py") == 4, output
    assert "1 xfailed" in output and "3 skipped" in output, output


def test_allowed_reason_matches_ids_and_parametrizations() -> None:
    crash = "tests/reliability/test_crash.py::test_sigkill_of_ambient_run_with_the_tiny_model"
    assert allowed_reason(crash) is not None and "AMBIENT_SLOW_TESTS=1" in (allowed_reason(crash) or "")
    assert allowed_reason(crash + "[x]") == allowed_reason(crash)
    assert allowed_reason(crash + "_and_more") is None
    light = "tests/reliability/test_crash.py::test_sigkill_while_storing_loses_nothing_acknowledged"
    assert allowed_reason(light) is None
    assert allowed_reason("tests/test_web.py::test_search_opens_a_result_in_its_tree") is None


def test_every_allowed_pattern_names_a_real_test_and_a_reason() -> None:
    """A stale entry (a renamed test, a moved file) would allow a skip to some test that is not meant."""
    for pattern, reason in ALLOWED_SKIPS.items():
        assert len(reason) > 40, (pattern, reason)
        path, _, name = pattern.partition("::")
        source = REPO / path
        assert source.is_file(), pattern
        tests = {
            node.name
            for node in ast.walk(ast.parse(source.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        }
        assert (name == "*" and tests) or name in tests, (pattern, sorted(tests))
