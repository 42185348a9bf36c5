"""The benchmark script's smoke mode runs and writes its table (not the committed BENCHMARKS.md)."""

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_bench_quick_writes_a_table(tmp_path):
    out = tmp_path / "bench.md"
    before = (ROOT / "BENCHMARKS.md").read_text() if (ROOT / "BENCHMARKS.md").exists() else None
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--no-lightning",
                           "--threads", "1", "--output", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "torch " in text and "device `" in text  # the machine it ran on
    rows = [line for line in text.splitlines() if line.startswith("| 784-32-10 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "64", "1024", "full"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[3].replace(",", "")) > 0  # bare loop samples/s
        for cell in cells[4:6]:  # trainer and DataLoader: samples/s (ratio to the bare loop)
            assert re.fullmatch(r"[\d,]+ \(\d+\.\d\d\)", cell), cell
        assert cells[6] == "n/a"
    assert ((ROOT / "BENCHMARKS.md").read_text() if before is not None else None) == before
