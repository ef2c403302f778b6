"""Long work as generators: progress reports, cancel, and the drivers that run them.

Free of numpy and torch, shared by both engines, the video animation and the CLI: a job is a
generator that yields :class:`Progress` and returns its result; scripts drive it with
:func:`run` (or :func:`drive` for a progress bar), napari wraps the same generator in a
``thread_worker``.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass


class Cancelled(Exception):
    """The run was cancelled; nothing was returned or written."""


@dataclass(frozen=True)
class Progress:
    """Progress of a run: ``done`` of ``total`` steps, and what is happening."""

    done: int
    total: int
    message: str = ""


def run(gen: Generator[Progress, None, object], progress=None):
    """Drive a work generator to its end; ``progress`` (a callable) receives each Progress.
    An exception raised outside the generator (in ``progress``, a signal handler, Ctrl-C)
    closes it at once, so its clean-up (e.g. removing a half-written file) runs now."""
    try:
        while True:
            p = next(gen)
            if progress is not None:
                progress(p)
    except StopIteration as stop:
        return stop.value
    finally:
        gen.close()


def drive(gen, progress=False, *, desc: str, unit: str):
    """Run a job's generator to its result: ``progress`` True shows a bar on stderr, a callable
    receives each Progress, anything false runs silently."""
    if progress is True:
        return run_with_bar(gen, desc=desc, unit=unit)
    return run(gen, progress or None)


def run_with_bar(gen: Generator[Progress, None, object], *, desc: str, unit: str):
    """Drive a work generator with a tqdm progress bar; messages without a count (model
    loading, an out-of-memory retry) are printed.

    The bar appears at the first counted step, which a generator reports only once that step's
    work is done. Its clock is set back to when that work began (the start, or the last message
    without a count), so the first rate shown is a measured one, not one step in no time
    (which tqdm showed as some 100000 tiles/s), and the elapsed time includes the first step.
    """
    from tqdm.auto import tqdm

    bar = None
    began = time.monotonic()  # when the counted work began

    def update(p: Progress) -> None:
        nonlocal bar, began
        if p.total:
            if bar is None or bar.total != p.total or p.done < bar.n:  # first count, or a retry
                if bar is None:
                    bar = tqdm(total=p.total, unit=unit, desc=desc)
                else:
                    bar.reset(total=p.total)
                if not bar.disable:  # (a disabled bar, TQDM_DISABLE=1, keeps no clock)
                    bar.start_t -= time.monotonic() - began
            bar.n = p.done
            bar.refresh()
        elif p.message:
            (bar.write if bar is not None else print)(p.message)
            began = time.monotonic()

    try:
        return run(gen, update)
    finally:
        if bar is not None:
            bar.close()
