import pytest


@pytest.fixture(autouse=True)
def _fast_and_isolated():
    """Overrides the project-wide fixture (tests/conftest.py): the codecs are pure Python and
    touch no Django settings, cache or database, so their tests need none of its isolation."""
