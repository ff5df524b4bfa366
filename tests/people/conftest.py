"""People's fixtures: the test project with this process's login as alice, and the same with
a site whose releases need two distinct approvers."""

from __future__ import annotations

import pytest

from people._helpers import LOGIN, edit_config
from shipyard.config import Project


@pytest.fixture
def shop(project: Project) -> Project:
    """The test project (every test person in every role), where this login is alice."""
    return edit_config(project, "[people.alice]\n", f'[people.alice]\nos_users = ["{LOGIN}"]\n')


@pytest.fixture
def two_approvals(shop: Project) -> Project:
    """The shop with a high-risk production site: each page needs two distinct approvers."""
    old = 'environment = "production"\nrisk = "medium"'
    return edit_config(shop, old, 'environment = "production"\nrisk = "high"')
