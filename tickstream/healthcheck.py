"""``python -m tickstream.healthcheck [URL]``: exit 0 when URL answers 200, else 1.

For container ``HEALTHCHECK``s: standard library only (it starts in a few tens of ms and needs
no curl in the image), no proxy, a short timeout. Without an argument the URL is
``$HEALTHCHECK_URL``, else ``http://127.0.0.1:$PORT/readyz`` (``PORT`` defaults to 8080, the
gateway's port).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence


def default_url(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("HEALTHCHECK_URL") or f"http://127.0.0.1:{env.get('PORT') or '8080'}/readyz"


def check(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, str(getattr(exc, "reason", exc))
    return status == 200, f"HTTP {status}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    url = args[0] if args else default_url()
    try:
        timeout = float(os.environ.get("HEALTHCHECK_TIMEOUT", "3"))
    except ValueError:
        timeout = 3.0
    ok, detail = check(url, timeout)
    if not ok:
        print(f"healthcheck {url}: {detail}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
