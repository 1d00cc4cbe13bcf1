"""A process pool whose workers die with their parent and leave Ctrl-C to it.

``ProcessPoolExecutor``'s workers wait on their task queue forever when the parent is killed
(SIGKILL, an OOM kill, a closed terminal), and each prints a ``KeyboardInterrupt`` traceback on
Ctrl-C. Here each worker asks Linux to kill it when its parent dies (``prctl(PR_SET_PDEATHSIG)``)
and, on every platform, watches its parent's pid from a daemon thread; it ignores SIGINT, which the
parent handles by terminating the workers (``pool``).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

T = TypeVar("T")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_SECONDS = 1.0  # how often a worker checks that its parent is alive (the portable fallback)


def init_worker(parent_pid: int) -> None:
    """Pool initializer: ignore Ctrl-C (the parent stops the pool) and exit when the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # the watcher below still ends the worker
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # an orphan is re-parented (to init or a subreaper)
        time.sleep(WATCH_SECONDS)
    os._exit(1)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT meanwhile (in the main thread): processes started then inherit the ignored
    signal, so a Ctrl-C before a worker's initializer runs (it imports for seconds) cannot give it
    a ``KeyboardInterrupt`` traceback; Python keeps an inherited ignore."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def pool(fn: Callable[[T], Any], items: Iterable[T], workers: int) -> Iterator[tuple[T, Any]]:
    """Yield ``(item, fn(item))`` as the calls finish on ``workers`` spawned processes.

    When the consumer stops early (an exception, Ctrl-C, ``close()``) the workers are terminated
    at once instead of finishing their current calls; a worker whose parent dies exits too.
    """
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"), initializer=init_worker, initargs=(os.getpid(),)
    )
    finished = False
    try:
        with _sigint_ignored():  # the workers start here: born ignoring Ctrl-C, even while importing
            futures = {executor.submit(fn, item): item for item in items}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
        finished = True
    finally:
        if not finished:
            for process in list((getattr(executor, "_processes", None) or {}).values()):
                process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)


__all__ = ["init_worker", "pool"]
