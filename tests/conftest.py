import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty directory, so that `runs/` is created there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
