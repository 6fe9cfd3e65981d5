"""The served browser client is the build of the package's sources, and the protocol names agree.

gateway/static/tickstream.js is committed (the gateway and ``pip install`` serve it without
Node); these fail when it, or clients/js/src/protocol.ts, no longer matches what the sources
(and shared/protocol.py) produce.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conformance.drivers import PACKAGE


@pytest.mark.usefixtures("js_package")
@pytest.mark.parametrize("script", [["bundle.mjs", "--check"], ["gen-protocol.mjs", "--check"]],
                         ids=["static-bundle", "protocol-names"])
def test_generated_files_match_their_sources(script: list[str]) -> None:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run([node, str(PACKAGE / "scripts" / script[0]), *script[1:]], capture_output=True,
                          text=True, timeout=120, check=False, cwd=PACKAGE)
    assert done.returncode == 0, done.stderr
