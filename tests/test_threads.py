"""OpenMP threads sleep instead of spinning (issue 23, item 5): importing napari_afb before torch
sets OMP_WAIT_POLICY=PASSIVE for the CLI, the API and the plugin, unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import os, napari_afb, torch; "
    "print(os.environ.get('OMP_WAIT_POLICY')); print(torch.get_num_threads())"
)


def _run(**env) -> list[str]:
    drop = ("OMP_WAIT_POLICY", "NAPARI_AFB_KEEP_OMP")
    base = {k: v for k, v in os.environ.items() if k not in drop}
    res = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env={**base, **env},
        timeout=120, check=True,
    )  # fmt: skip
    return res.stdout.split()


def test_import_sets_passive_before_torch_loads():
    policy, threads = _run()
    assert policy == "PASSIVE" and int(threads) >= 1  # the threads themselves are kept


@pytest.mark.parametrize("env, expected", [
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
    ({"NAPARI_AFB_KEEP_OMP": "1"}, "None"),
])  # fmt: skip
def test_the_users_choice_wins(env, expected):
    assert _run(**env)[0] == expected


def test_the_cli_runs_with_passive_threads(tmp_path):
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import sys; from napari_afb import cli; import os; print(os.environ['OMP_WAIT_POLICY'])"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=base,
                         timeout=120, check=True)  # fmt: skip
    assert res.stdout.strip() == "PASSIVE"
