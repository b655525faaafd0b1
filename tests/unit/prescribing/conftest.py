from datetime import date

import pytest

from services.prescribing.adapters import reference_data

from tests.support.members import REFERENCE
TODAY = date(2026, 11, 30)


@pytest.fixture(scope="session")
def ref():
    return reference_data.load(REFERENCE)
