import pytest


@pytest.fixture(autouse=True)
def _fresh_state(flexiai_reset: None) -> None:
    """Every test starts with no breakers, no cached providers and an empty answer cache."""
