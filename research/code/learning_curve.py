"""Validation PSNR gain over the blurry baseline against CPU-hours, from training logs.

    .venv/bin/python research/code/learning_curve.py LOG1.jsonl [LOG2.jsonl ...] \
        [--start-minutes 11.5] [--png curve.png] [--json curve.json]

(or copies named X_log.jsonl beside X_config.json, as in research/logs and docs/training).
Logs are read in order as consecutive stages of one model (a later stage started from an earlier
one's weights). The wall time of each stage is rebuilt from its step records (``log_every``
steps of ``batch`` windows at the logged ``samples_per_s``, validation included), and
``--start-minutes`` adds time spent before the first step (e.g. synthesizing the window cache).
An interval logged ``--pause-factor`` (10) times slower than its stage's median (the process was
stopped with SIGSTOP meanwhile) is counted at the median, and named.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _config_of(log: Path) -> Path:
    """The run's config.json beside its log.jsonl, or X_config.json beside a copy X_log.jsonl."""
    if log.name.endswith("_log.jsonl"):
        return log.with_name(log.name[: -len("_log.jsonl")] + "_config.json")
    return log.parent / "config.json"


def curve(
    logs: list[Path], start_minutes: float = 0.0, pause_factor: float = 10.0, paused=None
) -> list[dict]:
    """Validation rows with CPU-hours. An interval logged ``pause_factor`` times slower than the
    stage's median rate is counted at the median (the run was paused, not computing); its
    (stage, step) goes to ``paused``."""
    paused = [] if paused is None else paused
    rows, offset_s, stage_step0 = [], start_minutes * 60, 0
    for stage, log in enumerate(logs):
        config = json.loads(_config_of(log).read_text())
        batch = config["data"]["batch_size"]
        records = [json.loads(line) for line in log.read_text().splitlines()]
        rates = sorted(r["samples_per_s"] for r in records if r.get("samples_per_s", 0) > 0)
        typical = rates[len(rates) // 2] if rates else 1.0
        elapsed, last = 0.0, 0
        for r in records:
            if "samples_per_s" in r and r["samples_per_s"] > 0:
                rate = r["samples_per_s"]
                if rate < typical / pause_factor:  # the process was stopped (SIGSTOP) meanwhile
                    paused.append((stage + 1, r["step"]))
                    rate = typical
                elapsed += (r["step"] - last) * batch / rate
                last = r["step"]
            if "val_psnr" in r:
                rows.append(
                    {
                        "stage": stage + 1,
                        "step": stage_step0 + r["step"],
                        "cpu_hours": round((offset_s + elapsed) / 3600, 3),
                        "psnr": round(r["val_psnr"], 3),
                        "gain_db": round(r["val_psnr"] - r["val_baseline_psnr"], 3),
                        "gain_agnostic_db": round(
                            r["val_psnr_agnostic"] - r["val_baseline_psnr_agnostic"], 3
                        ),
                        "motion_epe_px": round(r["val_motion_epe"], 3)
                        if "val_motion_epe" in r
                        else None,
                    }
                )
        offset_s += elapsed
        stage_step0 += last
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("logs", type=Path, nargs="+")
    p.add_argument("--start-minutes", type=float, default=0.0)
    p.add_argument("--png", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--pause-factor", type=float, default=10.0)
    args = p.parse_args(argv)
    paused: list = []
    rows = curve(args.logs, args.start_minutes, args.pause_factor, paused)
    if paused:
        print(f"counted at the median rate (the run was paused): intervals ending at {paused}")
    print("stage   step  CPU-h    PSNR   gain  gain(agn.)  motion EPE")
    for r in rows:
        epe = "" if r["motion_epe_px"] is None else f"{r['motion_epe_px']:.2f} px"
        print(
            f"{r['stage']:5d} {r['step']:6d} {r['cpu_hours']:6.2f} {r['psnr']:7.2f} "
            f"{r['gain_db']:+6.2f} {r['gain_agnostic_db']:+11.2f}  {epe}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.png:
        from napari_afb.training.plot import _panel

        minutes = [round(60 * r["cpu_hours"]) for r in rows]
        series = {
            "gain (dB)": (minutes, [r["gain_db"] for r in rows], (31, 119, 180)),
            "shipping bar +1.5 dB": (minutes, [1.5] * len(rows), (214, 39, 40)),
        }
        title = "validation PSNR gain over blurry (dB); x axis: CPU-minutes, not steps"
        _panel(title, series, hline=0.0).save(args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
