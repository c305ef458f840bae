"""emoreg.heap: freed heap memory goes back to the system (glibc)."""

import json
import subprocess
import sys

import pytest

# In a fresh process, so that the heap holds what this sets up and nothing earlier tests left.
FRAGMENT = """
import json, re
from pathlib import Path
from emoreg import heap

def anon():
    return int(re.search(r"^RssAnon:\\s+(\\d+)", Path("/proc/self/status").read_text(), re.M).group(1)) / 1024

blocks, keep = [], []
for _ in range(2000):
    blocks.append(bytearray(100_000))  # under glibc's mmap threshold: from the heap
    keep.append(bytearray(600))  # a small survivor after every block
before = anon()
del blocks
freed = anon()
trimmed = heap.trim()
print(json.dumps({"before": before, "freed": freed, "after": anon(), "trimmed": trimmed, "kept": len(keep)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux's")
def test_trim_returns_a_fragmented_heap_s_free_pages():
    """Large blocks freed between small ones that stay (a fragmented heap) stay resident until trimmed."""
    out = json.loads(subprocess.run([sys.executable, "-c", FRAGMENT], capture_output=True, text=True,
                                    check=True).stdout)
    assert out["trimmed"] is True and out["kept"] == 2000
    # ~190 MB freed: kept by the allocator, then returned by trim
    assert out["before"] - out["freed"] < 50 < out["freed"] - out["after"], out
