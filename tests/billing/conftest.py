import pytest

from generation import routing
from tests.factories import funded_catalogue


@pytest.fixture
def groups(world, settings):
    """The demo catalogue (its routing groups by slug) and 50 credits in the world's wallet."""
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    routing.forget()
    yield funded_catalogue(world.account, 50)
    routing.forget()
