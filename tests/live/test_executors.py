"""Executors: one interface (submit -> Future) for serial, thread, process and Ray workers."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
import torch

from causal_widgets.live.executors import (
    Executor,
    ProcessExecutor,
    SerialExecutor,
    ThreadExecutor,
    WorkerLost,
    get_executor,
)
from causal_widgets.live.monitor import Monitor


def _square(x: int) -> int:
    return x * x


def _fail(message: str) -> None:
    raise ValueError(message)


def _sleep_then(pid_file: str, seconds: float) -> int:
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@pytest.mark.parametrize("name", ["serial", "thread"])
def test_in_process_executors_return_futures(name):
    with get_executor(name) as ex:
        assert isinstance(ex, Executor)
        assert ex.submit(_square, 7).result() == 49
        err = ex.submit(_fail, "boom").exception()
        assert isinstance(err, ValueError) and "boom" in str(err)


def test_process_executor_runs_elsewhere_and_ships_closures():
    offset = 5
    with ProcessExecutor(workers=1) as ex:
        # a closure is not picklable by the standard pickle: cloudpickle ships it
        assert ex.submit(lambda v: v + offset, 1).result(timeout=120) == 6
        pid = ex.submit(os.getpid).result(timeout=60)
        assert pid != os.getpid()
        assert ex.describe() == {"executor": "local", "workers": 1}


def test_process_executor_reports_a_killed_worker_and_recovers(tmp_path):
    pid_file = tmp_path / "pid"
    with ProcessExecutor(workers=1) as ex:
        fut = ex.submit(_sleep_then, str(pid_file), 60.0)
        deadline = time.monotonic() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        err = fut.exception(timeout=60)
        assert isinstance(err, WorkerLost)
        assert "died" in str(err)
        # the executor is usable again: a fresh pool is started
        assert ex.submit(_square, 3).result(timeout=120) == 9


def test_get_executor_rejects_unknown_names():
    with pytest.raises(ValueError, match="not one of"):
        get_executor("gpu-farm")
    ex = SerialExecutor()
    assert get_executor(ex) is ex
    with pytest.raises(ValueError, match="workers must be an int"):
        ThreadExecutor(workers=0)


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'causal_widgets\[ray\]'"):
        get_executor("ray")
    with pytest.raises(ImportError, match="causal_widgets\\[ray\\]"):
        Monitor(torch.nn.Linear(2, 2), torch.rand(4, 2), in_range=(0, 1), executor="ray")


def test_monitor_rejects_a_serial_executor():
    with pytest.raises(ValueError, match="cannot run a monitor"):
        Monitor(torch.nn.Linear(2, 2), torch.rand(4, 2), in_range=(0, 1),
                executor=SerialExecutor())


def test_unpicklable_work_for_a_process_names_the_fix():
    import threading

    lock = threading.Lock()  # not picklable, not even by cloudpickle
    with ProcessExecutor(workers=1) as ex:
        with pytest.raises(TypeError, match="could not pickle the work.*executor='thread'"):
            ex.submit(lambda: lock.locked())


def test_ray_executor_rejects_impossible_resources_before_starting_ray():
    pytest.importorskip("ray")
    from causal_widgets.live.executors import RayExecutor

    with pytest.raises(ValueError, match="num_cpus must be a number >= 0"):
        RayExecutor(num_cpus=-1)
    with pytest.raises(ValueError, match="num_gpus must be 'auto' or a number >= 0"):
        RayExecutor(num_gpus="many")
