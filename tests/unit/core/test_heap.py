"""The C heap's arena cap, observed in glibc's own report of a fresh process's arenas."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from app.core.heap import HEAP_ARENAS

# A fresh interpreter: optionally caps the arenas, then 8 threads each allocate and
# keep blocks past pymalloc's 512-byte limit (so they come from malloc) while the
# others run, and glibc's malloc_info writes one <heap nr=...> per arena.
PROGRAM = """
import ctypes, sys, threading
from app.core.heap import limit_heap_arenas, _libc
if sys.argv[1] == "capped":
    assert limit_heap_arenas()
kept = []
barrier = threading.Barrier(8)
def allocate():
    barrier.wait()
    kept.append([bytes(2000) for _ in range(2000)])
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = _libc()
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
out = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, out)
libc.fclose(out)
"""


def _arenas(mode: str, report: Path) -> int:
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", PROGRAM, mode, str(report)], check=True, cwd=root)
    return len(re.findall(r"<heap nr=", report.read_text()))


def test_threads_share_the_capped_arenas(tmp_path: Path) -> None:
    # without the cap the same threads make arenas of their own: the test can tell
    assert _arenas("default", tmp_path / "default.xml") > HEAP_ARENAS
    assert _arenas("capped", tmp_path / "capped.xml") <= HEAP_ARENAS
