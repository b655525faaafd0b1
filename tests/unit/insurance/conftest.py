import pytest

from services.insurance.adapters import reference_data
from tests.support.members import REFERENCE


@pytest.fixture(scope="session")
def rules():
    return reference_data.load(REFERENCE)
