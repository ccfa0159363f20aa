"""Retake docs/ui.png: run the browser test, which screenshots the page mid-canary on the real stack.

    flock /tmp/ds-heavy.lock .venv/bin/python scripts/ui_screenshot.py [--out docs/ui.png]

Needs Debian's chromium (/usr/bin/chromium) and the `playwright` wheel (dev extras).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ui.png")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DISTILSERVE_UI_SCREENSHOT": str(args.out.resolve())}
    test = "tests/integration/test_ui_browser.py::test_canary_started_from_the_cli_shows_its_steps"
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", test]
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    if code == 0:
        print(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
