from datetime import date
from pathlib import Path

import pytest

from services.prescribing.adapters import reference_data

REFERENCE = Path(__file__).resolve().parents[3] / "reference" / "v1"
TODAY = date(2026, 11, 30)


@pytest.fixture(scope="session")
def ref():
    return reference_data.load(REFERENCE)
