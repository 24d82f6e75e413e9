"""Which machines dx7lake runs on, said in one line before anything is installed.

The embedded warehouse (pgserver) and the Dexed engine (dexed-py) ship only as binary
wheels, and only for some platforms and Python versions; where one is missing, pip would
try to compile PostgreSQL or JUCE from source and fail pages later. ``make setup`` runs
this file with the system Python first (it needs nothing but the standard library), so an
unsupported machine gets one clear line instead. The table follows the wheels on PyPI:
pgserver 0.1.4 has cp311/cp312 wheels; dexed-py 0.3 has Linux x86_64 (glibc 2.28+) and
macOS arm64 wheels (and Windows, where the Makefile's shell commands do not run).
"""

from __future__ import annotations

import platform
import sys

PYTHONS = ((3, 11), (3, 12))
PLATFORMS = {("Linux", "x86_64"), ("Darwin", "arm64")}
GLIBC = (2, 28)


def unsupported() -> str | None:
    """Why this interpreter cannot run dx7lake, or None when it can."""
    version = sys.version_info[:2]
    if version not in PYTHONS:
        allowed = " or ".join(f"{major}.{minor}" for major, minor in PYTHONS)
        return (
            f"dx7lake needs Python {allowed} (pgserver ships no wheel for "
            f"{version[0]}.{version[1]}): run `make PYTHON=python3.12 ...`"
        )
    system, machine = platform.system(), platform.machine()
    if (system, machine) not in PLATFORMS:
        return f"dx7lake runs on Linux x86_64 and macOS arm64, not {system} {machine} (dexed-py and pgserver wheels)"
    if system == "Linux":
        name, release = platform.libc_ver()
        found = tuple(int(x) for x in release.split(".")[:2]) if name == "glibc" and release else None
        if found is None or found < GLIBC:
            found_text = f"{name} {release}" if name else "none"
            return f"dx7lake needs glibc {GLIBC[0]}.{GLIBC[1]}+ (dexed-py's manylinux_2_28 wheel), found {found_text}"
    return None


if __name__ == "__main__":
    reason = unsupported()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(1)
