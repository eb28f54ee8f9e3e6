import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def bin_dir():
    d = pathlib.Path(os.environ.get("DSV4_BIN_DIR", ROOT / "build" / "release" / "tools"))
    if not (d / "dsv4-gguf-info").exists():
        pytest.fail(f"dsv4-gguf-info not built in {d} (set DSV4_BIN_DIR)")
    return d


@pytest.fixture(scope="session")
def fixtures_dir():
    return ROOT / "tests" / "fixtures"
