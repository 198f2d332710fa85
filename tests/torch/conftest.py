"""pytest set-up for the torch backend tests (run by meson test, see meson.build here).

A meson test whose every test was skipped (no GPU, no working torchrun) exits 77, so meson
reports SKIP rather than OK.
"""

_outcomes = {"passed": 0, "failed": 0, "skipped": 0}


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _outcomes[report.outcome] = _outcomes.get(report.outcome, 0) + 1


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0 and _outcomes["skipped"] > 0 and _outcomes["passed"] == 0 and _outcomes["failed"] == 0:
        session.exitstatus = 77
