"""The one process pool of the harness: ``[function(job) for job in jobs]`` with a tqdm progress bar.

- Workers are *spawned*, not forked: the caller may be an nnU-Net trainer with torch threads running.
- Results come back in the order of ``jobs``; the first error is raised once the jobs before it are
  done, and the jobs not yet started are cancelled.
- Small batches run in this process (``min_jobs_per_worker``): a spawned worker costs about as much to
  start as several full-size BraTS cases take to convert or score.
- Worker processes end with their parent: on Linux each asks the kernel for SIGKILL when the process
  that started it dies (``prctl(PR_SET_PDEATHSIG)``), so a killed command leaves no workers behind.

Example::

    from nnunetv2_druwas.parallel import parallel_map

    sizes = parallel_map(os.path.getsize, paths, num_processes=2, desc="size", unit="file")
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_PR_SET_PDEATHSIG = 1   # from <linux/prctl.h>


def parallel_map(function: Callable[[T], R], jobs: Sequence[T], num_processes: int = 2, *, desc: str = "",
                 unit: str = "case", progress: bool = True, min_jobs_per_worker: int = 1) -> list[R]:
    """``[function(j) for j in jobs]`` over spawned worker processes, in order, with a tqdm bar.

    Args:
        function: a module-level function (it is pickled to the workers).
        jobs: its arguments, one per call (picklable).
        num_processes: the most worker processes; 0 or 1 runs every job in this process.
        desc: label of the progress bar.
        unit: what one job is, for the progress bar (``case``, ``file``).
        progress: show the progress bar (on stderr).
        min_jobs_per_worker: each worker gets at least this many jobs; fewer workers are started
            when there are fewer jobs, and none (this process does the work) when only one would be.

    Returns:
        The results, in the order of ``jobs``.
    """
    from tqdm import tqdm

    workers = min(num_processes, len(jobs) // max(1, min_jobs_per_worker))
    results: list[R] = []
    with tqdm(total=len(jobs), desc=desc, disable=not progress, unit=unit) as bar:
        if workers <= 1:
            for job in jobs:
                results.append(function(job))
                bar.update()
            return results
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_end_with_parent,
                                   initargs=(os.getpid(),))
        try:
            futures = [pool.submit(function, job) for job in jobs]
            for future in futures:
                results.append(future.result())
                bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return results


def _end_with_parent(parent: int) -> None:
    """Worker initializer: die with the parent process (Linux), or at once if it is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:   # the parent died before the line above took effect
        os._exit(1)
