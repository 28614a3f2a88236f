"""The real local model: SmolLM2-135M-Instruct run by llama-cpp-python (the 'local' extra).

Without the extra these tests skip and say how to install it; CI installs it and exports REQUIRE_LOCAL_MODEL=1,
which turns the skip into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chat.local_model import installed as local_model_installed


@pytest.fixture(autouse=True)
def local_model_extra() -> None:
    if not local_model_installed():
        reason = "the 'local' extra is not installed: pip install -e '.[local]'"
        if os.environ.get('REQUIRE_LOCAL_MODEL') == '1':
            pytest.fail(f'{reason} (REQUIRE_LOCAL_MODEL=1: failing instead of skipping)', pytrace=False)
        pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is marked `local_model` (`pytest -m "not local_model"` leaves them out)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.local_model)
