"""`lab datagen` as a user runs it: a killed build leaves nothing behind for good, and the worker count is no part
of a corpus's identity (its bytes do not depend on it)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from datagen.cli import main

REPO = Path(__file__).resolve().parent.parent
SMALL = ["--preset", "smoke", "--splits", "{train: 300, test: 40}", "--quiet"]


def test_a_killed_build_leaves_a_temp_dir_that_the_next_run_removes(tmp_path):
    out = tmp_path / "corpus"
    # Big enough to still be writing shards when the temp dir appears; killed long before it finishes.
    proc = subprocess.Popen([sys.executable, "-m", "sweeps.cli", "datagen", "--out", str(out), "--preset", "smoke",
                             "--splits", "{train: 2000000}", "--quiet"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".corpus.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    leftovers = list(tmp_path.glob(".corpus.tmp-*"))
    assert leftovers and not out.exists()
    assert main(["--out", str(out), *SMALL]) == 0
    assert not list(tmp_path.glob(".corpus.*")), "temp dir or lock file left behind"
    assert (out / "manifest.json").exists()


def test_another_worker_count_is_the_same_corpus(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["--out", str(out), *SMALL, "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "workers" not in manifest["spec"] and manifest["provenance"]["workers"] == 1
    capsys.readouterr()
    assert main(["--out", str(out), *SMALL, "--workers", "2"]) == 0
    assert "already built with this spec" in capsys.readouterr().out
    assert main(["--out", str(out), *SMALL, "--seed", "1"]) == 2  # a real difference is still refused
    assert "exists with a different spec" in capsys.readouterr().err
