"""Where background work runs: one small interface for local workers and Ray.

The dashboard's monitor (measurements of weight snapshots) and :func:`causal_widgets.sweep`
(whole training runs) hand their work to an :class:`Executor`::

    ex = get_executor("local")            # a pool of local processes
    fut = ex.submit(fn, *args)            # a concurrent.futures.Future
    fut.result()
    ex.shutdown()

Executors
---------
``"serial"`` / :class:`SerialExecutor`
    runs each call at once in the calling thread (the sequential baseline; debugging).
``"thread"`` / :class:`ThreadExecutor`
    a thread pool in this process. The monitor's default (``executor=None``) is one of
    these, with one daemon thread at lowered priority (``initializer=``); measuring in
    this process, it streams each layer's result as soon as it is done.
``"local"`` or ``"process"`` / :class:`ProcessExecutor`
    a pool of local processes (``spawn``: safe with torch and CUDA). Arguments are pickled
    with cloudpickle, so models whose class was defined in a notebook travel too. A worker
    process that dies (killed, out of memory) fails the calls it was running with
    :class:`WorkerLost`; the next :meth:`~Executor.submit` starts a fresh pool.
``"ray"`` / :class:`RayExecutor`
    Ray tasks on a cluster (``address="auto"`` or ``"host:port"``) or on a Ray instance
    started on this machine (``address=None``). Needs ``pip install causal_widgets[ray]``.

Every executor returns :class:`concurrent.futures.Future` objects, so callers wait, poll
and cancel the same way whatever runs the work. Retrying is the caller's decision (the
sweep retries a failed or lost run; the monitor reports a lost snapshot as an error).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import pickle
import queue
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

#: what get_executor accepts as a name
EXECUTOR_NAMES = ("serial", "thread", "local", "process", "ray")

_RAY_INSTALL = (
    "Ray is not installed: install the optional extra with `pip install "
    "'causal_widgets[ray]'` (or `pip install ray`), or use executor='local' (a local "
    "process pool) instead."
)


class WorkerLost(RuntimeError):
    """The process running a call died before the call finished (killed, out of memory)."""


class Executor(ABC):
    """Runs callables somewhere else and hands back ``concurrent.futures.Future`` objects.

    ``workers`` is how many calls may usefully run at once (callers use it to decide how
    many to keep in flight). Executors are context managers (``shutdown`` on exit).
    """

    name: str = "executor"
    workers: int = 1

    @abstractmethod
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Run ``fn(*args, **kwargs)``; its result (or exception) arrives in the future."""

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:  # noqa: B027
        """Release the workers (``cancel=True`` also cancels calls not yet started)."""

    def describe(self) -> dict[str, Any]:
        """What ran the work, for the records (name, workers, and e.g. the Ray address)."""
        return {"executor": self.name, "workers": self.workers}

    def abort(self, futures: Any) -> None:
        """Stop these calls now, running or not (Ctrl-C): cancel what has not started;
        executors that can (processes, Ray) also stop the running ones."""
        for fut in futures:
            fut.cancel()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown(wait=exc[0] is None, cancel=exc[0] is not None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


class SerialExecutor(Executor):
    """Runs every call immediately, in the calling thread (results are ready on return)."""

    name = "serial"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        fut: cf.Future = cf.Future()
        fut.set_running_or_notify_cancel()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - delivered through the future
            if isinstance(err, KeyboardInterrupt):
                raise
            fut.set_exception(err)
        return fut


class ThreadExecutor(Executor):
    """A thread pool in this process (shares the GIL with the caller).

    Parameters
    ----------
    workers:
        threads in the pool (started as calls arrive).
    initializer, initargs:
        ``initializer(*initargs)`` runs once at the start of each thread, e.g. to lower
        its priority (the monitor's worker). If it raises, the calls that thread takes
        fail with a ``RuntimeError`` saying so.
    daemon:
        daemon threads: the interpreter exits without waiting for a call still running
        (a background measurement nobody closed), as for any daemon thread. By default
        (``False``, ``concurrent.futures.ThreadPoolExecutor``) exit waits for them.
    thread_name_prefix:
        the threads are named ``<prefix>_<i>``.
    """

    name = "thread"

    def __init__(
        self,
        workers: int = 1,
        *,
        initializer: Callable[..., Any] | None = None,
        initargs: Sequence[Any] = (),
        daemon: bool = False,
        thread_name_prefix: str = "causal_widgets",
    ) -> None:
        self.workers = _check_workers(workers)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None; got {initializer!r}.")
        self.daemon = bool(daemon)
        pool = _DaemonThreadPool if self.daemon else cf.ThreadPoolExecutor
        self._pool: cf.ThreadPoolExecutor | _DaemonThreadPool = pool(
            self.workers, thread_name_prefix=str(thread_name_prefix),
            initializer=initializer, initargs=tuple(initargs),
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel)


class _DaemonThreadPool:
    """The part of ``concurrent.futures.ThreadPoolExecutor`` ThreadExecutor uses, on daemon
    threads (the standard pool's threads are joined at interpreter exit, whatever they are
    doing). Threads start as calls arrive, up to ``workers``; they hold the queue, not the
    pool, so a pool that is garbage-collected without ``shutdown`` still ends them."""

    def __init__(
        self,
        workers: int,
        *,
        thread_name_prefix: str,
        initializer: Callable[..., Any] | None,
        initargs: tuple[Any, ...],
    ) -> None:
        self._workers = workers
        self._prefix = thread_name_prefix
        self._init = (initializer, initargs)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        weakref.finalize(self, _end_threads, self._queue, self._threads)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            fut: cf.Future = cf.Future()
            self._queue.put((fut, fn, args, kwargs))
            if len(self._threads) < self._workers:
                thread = threading.Thread(
                    target=_daemon_worker, args=(self._queue, *self._init),
                    name=f"{self._prefix}_{len(self._threads)}", daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        _end_threads(self._queue, self._threads)
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()


def _end_threads(work: queue.SimpleQueue, threads: list[threading.Thread]) -> None:
    """One stop sign per thread, queued after the calls already waiting."""
    for _ in threads:
        work.put(None)


def _daemon_worker(
    work: queue.SimpleQueue, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]
) -> None:
    """One _DaemonThreadPool thread: run calls from ``work`` until a stop sign."""
    broken = None
    if initializer is not None:
        try:
            initializer(*initargs)
        except Exception as err:  # noqa: BLE001 - delivered to every call of this thread
            broken = RuntimeError(f"the thread initializer raised {type(err).__name__}: {err}")
    while True:
        item = work.get()
        if item is None:
            return
        fut, fn, args, kwargs = item
        # drop the call before waiting for the next one: a finished call must not keep its
        # arguments (e.g. a bound method of an abandoned Monitor) alive while this is idle
        del item
        if fut.set_running_or_notify_cancel():
            if broken is not None:
                fut.set_exception(broken)
            else:
                try:
                    fut.set_result(fn(*args, **kwargs))
                except BaseException as err:  # noqa: BLE001 - delivered through the future
                    fut.set_exception(err)
        del fut, fn, args, kwargs


def _dumps(obj: Any) -> bytes:
    """cloudpickle: by value for classes defined in ``__main__`` / notebooks (a declared
    dependency, so a notebook's model class reaches a process worker)."""
    import cloudpickle

    return cloudpickle.dumps(obj)


def _call_pickled(payload: bytes) -> Any:
    """Runs in the worker process: unpickle ``(fn, args, kwargs)`` and call it."""
    fn, args, kwargs = pickle.loads(payload)
    return fn(*args, **kwargs)


class ProcessExecutor(Executor):
    """A pool of ``workers`` local processes (``spawn`` start method).

    A worker process that dies fails its calls with :class:`WorkerLost` instead of
    breaking the executor: the next ``submit`` starts a new pool.
    """

    name = "local"

    def __init__(self, workers: int | None = None, *, threads_per_worker: int = 1) -> None:
        self.workers = _check_workers(workers if workers is not None else (os.cpu_count() or 1))
        self.threads_per_worker = _check_workers(threads_per_worker)
        self._lock = threading.Lock()
        self._pool: cf.ProcessPoolExecutor | None = None

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None or getattr(self._pool, "_broken", False):
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = cf.ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(self.threads_per_worker,),
                )
            return self._pool

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        try:
            payload = _dumps((fn, args, kwargs))
        except Exception as err:  # noqa: BLE001 - re-raised with the fix named
            raise TypeError(
                f"could not pickle the work for a local process ({type(err).__name__}: "
                f"{err}); pass picklable arguments, or use executor='thread'."
            ) from err
        inner = self._get_pool().submit(_call_pickled, payload)
        outer: cf.Future = cf.Future()

        def relay(f: cf.Future) -> None:
            if not outer.set_running_or_notify_cancel():
                return  # the caller cancelled the outer future
            if f.cancelled():
                outer.set_exception(cf.CancelledError())
                return
            err = f.exception()
            if isinstance(err, cf.process.BrokenProcessPool):
                outer.set_exception(WorkerLost(
                    "a local worker process died while running this call (killed or out "
                    f"of memory): {err}"
                ))
            elif err is not None:
                outer.set_exception(err)
            else:
                outer.set_result(f.result())

        inner.add_done_callback(relay)
        return outer

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=wait, cancel_futures=cancel)
                self._pool = None

    def abort(self, futures: Any) -> None:
        """Cancel the calls and terminate the worker processes (the next submit starts a
        fresh pool): a run killed this way resumes from its checkpoint next time."""
        super().abort(futures)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()

    def worker_pids(self) -> list[int]:
        """PIDs of the pool's live worker processes (empty before the first submit)."""
        pool = self._pool
        procs = getattr(pool, "_processes", None) or {}
        return [p.pid for p in list(procs.values()) if p.is_alive()]


def _init_worker(threads: int) -> None:
    """Each worker process uses ``threads`` torch threads, so workers don't oversubscribe."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)


class RayExecutor(Executor):
    """Ray tasks: on the cluster at ``address`` (``"auto"``, ``"host:port"``,
    ``"ray://host:10001"``) or, with ``address=None``, a Ray instance on this machine.

    Parameters
    ----------
    address:
        passed to ``ray.init``; ignored when Ray is already initialised in this process.
    num_cpus, num_gpus:
        resources each task asks for. ``num_gpus="auto"``: 1 when the cluster has GPUs,
        else 0 (a fraction such as 0.25 lets four measurement tasks share one GPU).
    max_retries:
        Ray's own retries of a task whose worker died (the sweep retries on its own too).
    runtime_env:
        passed to ``ray.init`` (e.g. ``{"pip": ["causal_widgets"]}`` for a remote cluster
        whose nodes lack the package).
    init_kwargs:
        anything else for ``ray.init`` (e.g. ``num_cpus=`` for a local instance).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1,
        num_gpus: float | str = "auto",
        max_retries: int = 0,
        runtime_env: dict[str, Any] | None = None,
        **init_kwargs: Any,
    ) -> None:
        ray = import_ray()
        if not isinstance(num_cpus, (int, float)) or num_cpus < 0:
            raise ValueError(f"num_cpus must be a number >= 0 (CPUs per task); got {num_cpus!r}.")
        if num_gpus != "auto" and (not isinstance(num_gpus, (int, float)) or num_gpus < 0):
            raise ValueError(
                f"num_gpus must be 'auto' or a number >= 0 (GPUs per task); got {num_gpus!r}."
            )
        self._owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                      "include_dashboard": False}
            if runtime_env is not None:
                kwargs["runtime_env"] = runtime_env
            kwargs.update(init_kwargs)
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as err:
                raise ConnectionError(
                    f"could not connect to a Ray cluster at {address!r}: {err}. Start one "
                    "(`ray start --head`), pass its address (host:port), or use "
                    "executor='local'."
                ) from err
            self._owns = True
        self._ray = ray
        resources = ray.cluster_resources()
        if num_gpus == "auto":
            num_gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        self.num_cpus, self.num_gpus = float(num_cpus), float(num_gpus)
        self.max_retries = int(max_retries)
        slots_cpu = resources.get("CPU", 1) / self.num_cpus if self.num_cpus else float("inf")
        slots_gpu = resources.get("GPU", 0) / self.num_gpus if self.num_gpus else float("inf")
        slots = min(slots_cpu, slots_gpu)
        self.workers = max(1, int(slots if slots != float("inf") else 1))
        self.address = ray.get_runtime_context().gcs_address
        self._remote: Any = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        if self._remote is None:
            # one remote trampoline for every callable (builtins and methods included)
            self._remote = self._ray.remote(
                num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.max_retries
            )(_invoke)
        ref = self._remote.remote(fn, *args, **kwargs)
        fut = ref.future()
        fut.ray_ref = ref  # so a caller can ray.cancel it
        return fut

    def abort(self, futures: Any) -> None:
        """Cancel the tasks on the cluster, force-stopping the running ones."""
        for fut in futures:
            ref = getattr(fut, "ray_ref", None)
            if ref is not None:
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone
                    pass
            fut.cancel()

    def put(self, value: Any) -> Any:
        """Store ``value`` in Ray's object store once; pass the ref to many tasks."""
        return self._ray.put(value)

    def shutdown(self, wait: bool = True, *, cancel: bool = False,
                 stop_ray: bool = False) -> None:
        """Ray stays up for other users in this process (two dashboards may share it);
        ``stop_ray=True`` shuts down the Ray instance this executor started."""
        if stop_ray and self._owns and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns = False

    def describe(self) -> dict[str, Any]:
        return {"executor": "ray", "workers": self.workers, "address": self.address,
                "num_cpus": self.num_cpus, "num_gpus": self.num_gpus}


def _invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs in a Ray worker: call ``fn`` (Ray has resolved any ObjectRef arguments)."""
    return fn(*args, **kwargs)


def import_ray() -> Any:
    """``ray``, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(_RAY_INSTALL) from err
    return ray


class LocalRayCluster:
    """A one-node Ray cluster on this machine, started with ``ray start --head`` on
    127.0.0.1 (its own GCS, raylet and worker processes), for tests and benchmarks::

        with LocalRayCluster(num_cpus=2) as address:
            ex = RayExecutor(address=address)
            ...

    Token authentication is turned off for this throwaway loopback cluster (Ray enables
    it by default and keeps the token in the home directory). On exit the driver
    disconnects and ``ray stop --force`` ends the cluster's processes.
    """

    def __init__(self, num_cpus: int = 2, *, object_store_bytes: int = 200_000_000) -> None:
        self.num_cpus, self.object_store_bytes = int(num_cpus), int(object_store_bytes)
        self.address: str | None = None
        self._saved_env: dict[str, str | None] = {}

    @staticmethod
    def _cli() -> str:
        import shutil
        import sys
        from pathlib import Path

        here = Path(sys.executable).parent / "ray"
        return str(here) if here.exists() else (shutil.which("ray") or "ray")

    def __enter__(self) -> str:
        import socket
        import subprocess

        import_ray()
        for key, value in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0")):
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        start = subprocess.run(
            [self._cli(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
             f"--num-cpus={self.num_cpus}", "--num-gpus=0", "--include-dashboard=false",
             f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats"],
            capture_output=True, text=True, timeout=300,
        )
        if start.returncode != 0:
            self._restore_env()
            raise RuntimeError(f"`ray start --head` failed:\n{start.stdout}\n{start.stderr}")
        self.address = f"127.0.0.1:{port}"
        return self.address

    def __exit__(self, *exc: Any) -> None:
        import subprocess

        ray = import_ray()
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([self._cli(), "stop", "--force"], capture_output=True, timeout=300)
        self._restore_env()

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def ray_lost(err: BaseException) -> bool:
    """Whether ``err`` says a Ray worker or node died (rather than the task raising)."""
    try:
        import ray.exceptions as rex
    except ImportError:  # pragma: no cover - no Ray, no Ray errors
        return False
    lost = tuple(
        getattr(rex, n) for n in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                  "LocalRayletDiedError", "TaskUnschedulableError")
        if hasattr(rex, n)
    )
    return isinstance(err, lost)


def _check_workers(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"workers must be an int >= 1; got {n!r}.")
    return n


def get_executor(spec: Any = "local", *, workers: int | None = None) -> Executor:
    """An :class:`Executor` from a name (see :data:`EXECUTOR_NAMES`) or an executor itself.

    >>> get_executor("serial").submit(pow, 2, 10).result()
    1024
    """
    if isinstance(spec, Executor):
        return spec
    if not isinstance(spec, str) or spec not in EXECUTOR_NAMES:
        raise ValueError(
            f"executor={spec!r} is not one of {', '.join(map(repr, EXECUTOR_NAMES))} or an "
            "Executor (e.g. causal_widgets.RayExecutor(address='auto'))."
        )
    if spec == "serial":
        return SerialExecutor()
    if spec == "thread":
        return ThreadExecutor(workers or 1)
    if spec in ("local", "process"):
        return ProcessExecutor(workers)
    return RayExecutor()


__all__ = [
    "EXECUTOR_NAMES",
    "Executor",
    "LocalRayCluster",
    "ProcessExecutor",
    "RayExecutor",
    "SerialExecutor",
    "ThreadExecutor",
    "WorkerLost",
    "get_executor",
    "import_ray",
]
