"""Shared fixtures: one micro world built per test session (seconds), never the hub."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the reference vocabulary's file cache (alignray.vocabulary) goes to a directory of this session, not ~/.cache;
# Ray workers the tests start inherit it
os.environ.setdefault("ALIGNRAY_CACHE", tempfile.mkdtemp(prefix="alignray-test-cache-"))


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory):
    """A world built by the real builder at the ``micro`` size: ``<dir>/policy`` and ``<dir>/reward``."""
    from alignray.world_build import BUILDS, build_world

    out = tmp_path_factory.mktemp("micro-world")
    card = build_world(BUILDS["micro"], out, name="micro")
    return out, card
