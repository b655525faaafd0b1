"""Fixture modules shared by the integration and end-to-end tests."""
pytest_plugins = [
    "tests.integration.infra_fixtures",
    "tests.integration.prescribing_fixtures",
    "tests.integration.insurance_fixtures",
    "tests.integration.pharmacy_fixtures",
]
