"""shears.utils.peak_memory: the peak of this process, not of the one that started it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shears.utils import peak_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_child_does_not_inherit_the_parents_peak():
    ballast = bytearray(400 * 2**20)  # the parent's peak grows by 400 MiB
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page
    parent = peak_memory()["peak_rss_mib"]
    code = "from shears.utils import peak_memory; print(peak_memory()['peak_rss_mib'])"
    child = float(subprocess.check_output([sys.executable, "-c", code], text=True).strip())
    assert parent > 400 and child < parent - 300, (parent, child)
    del ballast
