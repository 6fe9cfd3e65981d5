"""Fixtures of the conformance suite: the JS package, built from the committed lock file."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conformance.drivers import PACKAGE, ROOT

ENSURE_NODE = ROOT / "scripts" / "ensure-node.sh"


@pytest.fixture(scope="session")
def js_package() -> None:
    """The built package (dist/) from the committed lock file; skipped without Node."""
    if shutil.which("node") is None and shutil.which("apt-get") is None:
        pytest.skip("node is not installed (scripts/ensure-node.sh installs it)")
    done = subprocess.run([str(ENSURE_NODE), "--build"], capture_output=True, text=True, timeout=600,
                          check=False)
    if done.returncode != 0:
        pytest.fail(f"scripts/ensure-node.sh failed: {(done.stderr or done.stdout)[-2000:]}")
    assert (PACKAGE / "dist" / "index.js").exists()
