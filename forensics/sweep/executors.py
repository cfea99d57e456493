"""Where the analyses run: a local process pool (`--jobs`) or a Dask distributed cluster (`--executor dask`).

Both run `worker.analyse_one` and hand each outcome to `on_done` as it arrives, so the progress bar
moves and a slow run never holds the others back. Either way a run that hangs past its time limit, or
kills its worker (a segfault in a hostile checkpoint, the memory limit), becomes an `error` entry and
the sweep goes on.

Process pool: `concurrent.futures` with the `spawn` context; each worker caps its address space with
`resource.setrlimit(RLIMIT_AS)` and tells the parent its pid when a run starts, so a run past its
deadline is ended by killing that one process. The pool then breaks; the other runs in flight are
innocent and are submitted again to a fresh pool. A pool broken with no deadline passed has an unknown
culprit: its runs in flight are retried one at a time, and the one that dies alone is the error.

Dask: `distributed.Client` on `--scheduler` or on a `LocalCluster(processes=True, threads_per_worker=1)`
whose nannies enforce the memory limit. A run past its deadline is cancelled and its worker restarted
(`Client.restart_workers`); a worker that dies twice on the same run makes it `KilledWorker`.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from forensics.sweep.model import SweepEntry, SweepTask
from forensics.sweep.worker import analyse_one, error_entry, warm_up

Outcome = tuple[SweepEntry, dict[str, str]]
OnDone = Callable[[SweepTask, Outcome], None]
POLL_SECONDS = 0.5
DIED = "the analysis process died (killed by a signal or out of memory) while reading this run"

_started_queue = None  # in a worker process: where it announces (run path, pid) when a run starts


def timed_out_message(timeout: float) -> str:
    return (f"the analysis took longer than --timeout-per-run {timeout:g} s and was stopped; "
            "give a larger --timeout-per-run to let it finish")


def default_memory_limit(workers: int) -> int:
    """The machine's memory shared out between the workers (bytes)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, total // max(1, workers))


def _init_worker(started_queue, memory_bytes: int | None) -> None:
    global _started_queue
    _started_queue = started_queue
    warm_up()  # torch's import is not a run's time
    started_queue.put(("", os.getpid(), time.monotonic()))  # starts the queue's feeder thread before the cap
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _run_in_worker(task: SweepTask) -> Outcome:
    _started_queue.put((task.path, os.getpid(), time.monotonic()))
    return analyse_one(task)


def run_in_processes(tasks: list[SweepTask], jobs: int, timeout: float | None, memory_bytes: int | None,
                     on_done: OnDone) -> None:
    """Every task in local worker processes, at most `jobs` at once."""
    pending = list(tasks)
    while pending:
        suspects = _pool_pass(pending, jobs, timeout, memory_bytes, on_done)
        for task in suspects:  # one of them killed the pool; alone, only the culprit dies again
            if _pool_pass([task], 1, timeout, memory_bytes, on_done):
                on_done(task, (error_entry(task, DIED, 0.0), {}))


def _pool_pass(pending: list[SweepTask], jobs: int, timeout: float | None, memory_bytes: int | None,
               on_done: OnDone) -> list[SweepTask]:
    """Take tasks from `pending` until it is empty or the pool breaks.

    Returns the tasks lost to a break nobody caused on purpose (the ones in flight then); tasks lost to
    a deadline kill go back to the front of `pending`.
    """
    # spawn, not fork: the parent may already run torch's thread pools, which do not survive a fork.
    context = multiprocessing.get_context("spawn")
    started_queue = context.Queue()
    started: dict[str, tuple[int, float]] = {}
    killed: set[str] = set()
    suspects: list[SweepTask] = []
    innocent: list[SweepTask] = []
    with ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=context, initializer=_init_worker,
                             initargs=(started_queue, memory_bytes)) as pool:
        in_flight: dict = {}
        broken = False
        while pending or in_flight:
            while pending and len(in_flight) < jobs and not broken:
                task = pending.pop(0)
                in_flight[pool.submit(_run_in_worker, task)] = task
            if not in_flight:
                break
            done, _ = wait(in_flight, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            _drain(started_queue, started)
            for future in done:
                task = in_flight.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    broken = True
                    if task.path in killed:
                        on_done(task, (error_entry(task, timed_out_message(timeout), timeout), {}))
                    elif killed:
                        innocent.append(task)
                    else:
                        suspects.append(task)
                    continue
                except Exception as error:  # noqa: BLE001 - raised in the worker outside the analysis (memory cap)
                    message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
                    outcome = (error_entry(task, f"the worker failed around the analysis ({message})", 0.0), {})
                on_done(task, outcome)
            if timeout is not None and not broken:
                _kill_overdue(in_flight.values(), started, timeout, killed)
    pending[:0] = innocent
    return suspects


def _drain(started_queue, started: dict) -> None:
    while True:
        try:
            path, pid, at = started_queue.get_nowait()
        except (queue_module.Empty, OSError, ValueError):
            return
        started[path] = (pid, at)


def _kill_overdue(tasks, started: dict, timeout: float, killed: set[str]) -> None:
    now = time.monotonic()
    for task in list(tasks):
        if task.path in started and task.path not in killed and now - started[task.path][1] > timeout:
            killed.add(task.path)
            try:
                os.kill(started[task.path][0], signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_on_dask(tasks: list[SweepTask], scheduler: str | None, workers: int, timeout: float | None,
                memory_bytes: int | None, on_done: OnDone) -> None:
    """Every task on a Dask cluster: `scheduler`'s, or a LocalCluster of `workers` processes."""
    import logging

    import dask
    from distributed import Client, LocalCluster
    from distributed import wait as dask_wait

    if scheduler is None:  # our own cluster: its restart and shutdown notices are not the user's business
        logging.getLogger("distributed").setLevel(logging.ERROR)

    # A worker that dies while running a run is retried once elsewhere, then the run is KilledWorker.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = None if scheduler else LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            memory_limit=memory_bytes or "auto")
        try:
            with Client(scheduler or cluster) as client:
                client.run(warm_up)
                futures = {client.submit(analyse_one, task, key=f"forensics-sweep-{index}-{task.file_stem}",
                                         pure=False): task for index, task in enumerate(tasks)}
                running_since: dict[str, float] = {}
                while futures:
                    try:
                        dask_wait(list(futures), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
                    except TimeoutError:
                        pass
                    for future in [item for item in futures if item.done()]:
                        task = futures.pop(future)
                        try:
                            outcome = future.result()
                        except Exception as error:  # noqa: BLE001 - KilledWorker, a lost worker: an error entry
                            message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
                            outcome = (error_entry(task, f"{DIED} ({message})", 0.0), {})
                        on_done(task, outcome)
                    if timeout is not None and futures:
                        _stop_overdue_on_dask(client, futures, running_since, timeout, on_done)
        finally:
            if cluster is not None:
                cluster.close()


def _stop_overdue_on_dask(client, futures: dict, running_since: dict[str, float], timeout: float,
                          on_done: OnDone) -> None:
    """Cancel runs executing past the deadline and restart the workers stuck in them."""

    def executing(dask_worker) -> list[str]:
        return [str(key) for key, state in dask_worker.state.tasks.items() if state.state == "executing"]

    try:
        by_worker = client.run(executing)
    except Exception:  # noqa: BLE001 - a worker restarting now answers next time
        return
    now = time.monotonic()
    for worker, keys in by_worker.items():
        for key in keys:
            running_since.setdefault(key, now)
            if now - running_since[key] <= timeout:
                continue
            future = next((item for item in futures if str(item.key) == key), None)
            if future is None:
                continue
            task = futures.pop(future)
            client.cancel(future)
            try:
                client.restart_workers([worker])
            except Exception:  # noqa: BLE001 - a worker without a nanny cannot be restarted; the run is still stopped
                pass
            on_done(task, (error_entry(task, timed_out_message(timeout), timeout), {}))
