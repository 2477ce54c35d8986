from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.instancekit import Cli
from tests.support import UserSession


@pytest.fixture
def run(cli: Any, user: UserSession) -> Iterator[Cli]:
    """The CLI as a fresh user; whatever the test leaves running is deleted after it."""
    yield cli
    for instance in user.client.instances.list():
        user.client.instances.delete(instance.id, missing_ok=True)
