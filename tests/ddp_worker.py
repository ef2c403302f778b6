"""Run by tests/test_training.py under torchrun: trains from a config and writes this rank's
parameter digest, so the test can check that the ranks stayed in sync."""

import os
import sys
from pathlib import Path

from napari_afb.training.config import load_config
from napari_afb.training.train import train

cfg = load_config(sys.argv[1])
result = train(cfg, device="cpu", progress=False)
rank = os.environ["RANK"]
Path(sys.argv[2], f"digest_rank{rank}.txt").write_text(f"{result.step} {result.param_digest}")
