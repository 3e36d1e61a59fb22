"""A skipped test is a failed test, unless it is on :data:`ALLOWED_SKIPS` with its reason.

``make test`` installs everything the tests need (chromium, espeak-ng, sox, the llama.cpp server,
Chroma, the bundled models), so a skip means something is missing or broken, and a green run that
quietly skipped it would claim what it never checked. The hooks below (imported by
``tests/conftest.py``, so they hold for ``make test``, CI and any ``pytest`` run alike) turn every
skip (a ``skipif`` marker, ``pytest.skip`` in a test or a fixture, a module skipped at import) into a
failure naming the test and the reason, unless the test's id matches a pattern listed here.
``xfail`` is left as it is.
"""

from __future__ import annotations

from collections.abc import Generator
from fnmatch import fnmatchcase

import pytest

# Test-id pattern (fnmatch, relative to the repository root, matched against the id with and without
# its ``[parameters]``, so ``path::test`` covers every parametrization) -> why it may skip.
# Keep this short: each entry is a check that some runs do not make.
ALLOWED_SKIPS: dict[str, str] = {
    "tests/reliability/test_crash.py::test_sigkill_of_ambient_run_with_the_tiny_model": (
        "opt-in (AMBIENT_SLOW_TESTS=1): each start of `ambient run` loads torch, about 30 s a kill "
        "point on 2 cores; test_sigkill_while_storing_loses_nothing_acknowledged covers the same "
        "kill points on every run with the fake sampler"
    ),
    "tests/reliability/test_disk.py::*": (
        "mounting a size-limited tmpfs as AMBIENT_HOME needs root or CAP_SYS_ADMIN, which a "
        "developer's `make test` as an ordinary user or an unprivileged container lacks; it runs "
        "wherever the tests run as root"
    ),
}

HOW_TO_ALLOW = (
    "A skipped test fails `make test`: make it run (`make test` installs what the tests need), or, "
    "if it must skip by design, add a pattern for its id to ALLOWED_SKIPS in tests/skips.py with "
    "the reason."
)


def allowed_reason(nodeid: str) -> str | None:
    """Why ``nodeid`` may skip, or None if it may not."""
    unparametrized = nodeid.partition("[")[0]
    for pattern, reason in ALLOWED_SKIPS.items():
        if fnmatchcase(nodeid, pattern) or fnmatchcase(unparametrized, pattern):
            return reason
    return None


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason a skip report gives (``pytest.skip``'s message or the marker's ``reason``)."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, lineno, message = longrepr
        return f"{message.removeprefix('Skipped: ')} ({path}:{lineno})"
    return str(longrepr)


def fail_unless_allowed(report: pytest.TestReport | pytest.CollectReport) -> None:
    if allowed_reason(report.nodeid) is not None:
        return
    reason = skip_reason(report)
    report.outcome = "failed"
    report.longrepr = f"{report.nodeid} was skipped: {reason}\n{HOW_TO_ALLOW}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A skip in setup, call or teardown becomes a failure (an error in setup) unless allowed."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        fail_unless_allowed(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A module skipped as a whole (``allow_module_level=True``, ``importorskip``) is a collection error."""
    report = yield
    if report.skipped:
        fail_unless_allowed(report)
    return report
