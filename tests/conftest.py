"""Fixture modules shared by the integration and end-to-end tests."""
import os

# The suites' cases carry fixed dates (a prescription of 2026-11-20, a claim of that day) and
# Redis expires keys by its own clock: with the default retention their state would vanish a
# week after those dates, and the suites with it. Every process a test starts inherits this.
# Expiry itself is tested with an explicit retention (tests/integration/test_live_state_expiry.py).
os.environ.setdefault("EPRX_RETENTION_DAYS", "3650")

pytest_plugins = [
    "tests.support.infra_fixtures",
    "tests.support.prescribing_fixtures",
    "tests.support.insurance_fixtures",
    "tests.support.pharmacy_fixtures",
    "tests.support.system",
]
