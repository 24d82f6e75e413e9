"""The one-line platform check that `make setup` runs before installing anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dx7lake import support

SCRIPT = Path(support.__file__)


@pytest.mark.parametrize(
    ("version", "system", "machine", "libc", "expected"),
    [
        ((3, 11), "Linux", "x86_64", ("glibc", "2.36"), None),
        ((3, 12), "Darwin", "arm64", ("", ""), None),
        ((3, 13), "Linux", "x86_64", ("glibc", "2.36"), "needs Python 3.11 or 3.12"),
        ((3, 10), "Linux", "x86_64", ("glibc", "2.36"), "needs Python 3.11 or 3.12"),
        ((3, 12), "Linux", "aarch64", ("glibc", "2.36"), "not Linux aarch64"),
        ((3, 12), "Darwin", "x86_64", ("", ""), "not Darwin x86_64"),
        ((3, 11), "Linux", "x86_64", ("glibc", "2.27"), "needs glibc 2.28+"),
        ((3, 11), "Linux", "x86_64", ("", ""), "needs glibc 2.28+"),  # musl (Alpine)
    ],
)
def test_unsupported_says_why(monkeypatch, version, system, machine, libc, expected):
    monkeypatch.setattr(support.sys, "version_info", (*version, 0, "final", 0))
    monkeypatch.setattr(support.platform, "system", lambda: system)
    monkeypatch.setattr(support.platform, "machine", lambda: machine)
    monkeypatch.setattr(support.platform, "libc_ver", lambda: libc)
    reason = support.unsupported()
    assert reason is None if expected is None else expected in reason


def test_runs_with_the_bare_system_python_and_passes_here():
    # `make setup` runs the file before the venv exists: the standard library must do
    out = subprocess.run([sys.executable, "-I", "-S", str(SCRIPT)], capture_output=True, text=True)
    assert (out.returncode, out.stderr) == (0, "")
