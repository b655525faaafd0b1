"""Fixture modules shared by the integration and end-to-end tests."""
pytest_plugins = [
    "tests.support.infra_fixtures",
    "tests.support.prescribing_fixtures",
    "tests.support.insurance_fixtures",
    "tests.support.pharmacy_fixtures",
    "tests.support.system",
]
