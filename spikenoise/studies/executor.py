"""Where a study's independent units run: in this process (``serial``) or as Ray tasks (``ray``).

A study describes its work as :class:`Task` objects -- a name that says what it is (``"train cnn
aware2 s0"``), a module-level function and its arguments, and the tasks whose results it needs --
and hands them to an :class:`Executor` together with a callback. The callback runs in the driver
(this process) as each task finishes, so the driver alone writes the result store, checkpoints and
logs, whichever backend ran the task; resuming, the config check and the summaries work as with a
serial run.

Both backends seed Python's, NumPy's and torch's generators from the task's name before running it
(:attr:`Task.seed`), so a task's result does not depend on which tasks ran before it in the same
process: a serial and a Ray run with the same seeds give the same rows (same thread count assumed:
float sums may round differently with other thread counts).

A task that raises a transient error (:data:`TRANSIENT`: out of memory, I/O, an injected fault) or
whose worker dies (Ray) is retried up to ``max_retries`` times; then it is reported by name, the
tasks that need it are not run, every other task still runs, and :meth:`Executor.run` raises
:class:`TaskFailures` (a one-line :class:`~spikenoise.studies.scaffold.StudyError`). Rerunning the
command resumes.

Test hook: ``SPIKENOISE_FAIL_TASK=<task name>`` makes that task fail -- ``SPIKENOISE_FAIL_TIMES=k``
times (default: always), counted in files under ``SPIKENOISE_FAIL_DIR`` (default: the temporary
folder); ``SPIKENOISE_FAIL_MODE=exit`` kills the worker process instead of raising (Ray only).
The variables are read by the driver, so Ray workers need not inherit them.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .scaffold import ENVIRONMENT, StudyError, progress_bar

__all__ = ["Task", "Executor", "SerialExecutor", "RayExecutor", "TaskFailures", "InjectedFault", "TRANSIENT",
           "CheckpointSlot", "add_executor_options", "make_executor", "auto_backend", "BACKENDS"]

BACKENDS = ("serial", "ray")
#: environment variables of the fault-injection test hook
FAIL_TASK, FAIL_TIMES, FAIL_DIR, FAIL_MODE = ("SPIKENOISE_FAIL_TASK", "SPIKENOISE_FAIL_TIMES", "SPIKENOISE_FAIL_DIR",
                                              "SPIKENOISE_FAIL_MODE")


class InjectedFault(RuntimeError):
    """The failure of the ``SPIKENOISE_FAIL_TASK`` test hook (treated as transient)."""


def _transient() -> tuple[type[BaseException], ...]:
    import torch

    return (InjectedFault, MemoryError, OSError, torch.cuda.OutOfMemoryError)


#: exceptions that are retried (a worker killed by the OS or by Ray's memory monitor is retried too)
TRANSIENT = ("InjectedFault", "MemoryError", "OSError", "torch.cuda.OutOfMemoryError")


@dataclass
class Task:
    """One independent unit of a study.

    ``fn(*args, **kwargs, **{kw: result of task deps[kw]})`` runs wherever the backend puts it, so
    ``fn`` must be a module-level function and the arguments picklable (large shared inputs go
    through :meth:`Executor.share`). ``seed`` (default: derived from ``name``) seeds the global
    generators before ``fn`` runs.
    """

    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    deps: dict[str, str] = field(default_factory=dict)
    seed: int | None = None

    def task_seed(self) -> int:
        from spikenoise.train import derive_seed

        return int(self.seed) if self.seed is not None else derive_seed("task", self.name)


class TaskFailures(StudyError):
    """Tasks that failed after their retries (``failed``: name -> error) and those not run
    because they need one (``blocked``: name -> the failed task)."""

    def __init__(self, failed: Mapping[str, str], blocked: Mapping[str, str], total: int, retries: int):
        self.failed, self.blocked = dict(failed), dict(blocked)
        names = list(self.failed)
        shown = "; ".join(f"{n!r} ({self.failed[n]})" for n in names[:4])
        more = f"; and {len(names) - 4} more" if len(names) > 4 else ""
        blk = f"; {len(self.blocked)} task(s) that need them not run" if self.blocked else ""
        super().__init__(f"{len(names)} of {total} task(s) failed after {retries} retr{'y' if retries == 1 else 'ies'}:"
                         f" {shown}{more}{blk}; finished results are kept, rerun the same command to resume",
                         ENVIRONMENT)


@dataclass(frozen=True)
class _Fault:
    name: str
    times: int | None
    counter: str
    mode: str


def _fault_from_env() -> _Fault | None:
    name = os.environ.get(FAIL_TASK)
    if not name:
        return None
    times = os.environ.get(FAIL_TIMES)
    folder = os.environ.get(FAIL_DIR) or tempfile.gettempdir()
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return _Fault(name, int(times) if times else None, str(Path(folder) / f"spikenoise-fault-{safe}.count"),
                  os.environ.get(FAIL_MODE, "raise"))


def _maybe_fail(name: str, fault: _Fault | None) -> None:
    if fault is None or fault.name != name:
        return
    path = Path(fault.counter)
    n = int(path.read_text() or 0) if path.exists() else 0
    if fault.times is not None and n >= fault.times:
        return
    path.write_text(str(n + 1))
    if fault.mode == "exit":
        os._exit(17)  # a killed worker
    raise InjectedFault(f"injected fault in {name!r} (attempt {n + 1})")


def _call(_name: str, _fn, _seed: int, _threads: int | None, _fault: _Fault | None, *args, **kwargs):
    """Run one task: set torch threads, maybe fail (test hook), seed the global generators from
    the task, call it. Arguments are top-level so that Ray resolves the object references in them."""
    import torch

    from spikenoise.train import seed_everything

    if _threads:
        torch.set_num_threads(_threads)
    _maybe_fail(_name, _fault)
    seed_everything(_seed)
    return _fn(*args, **kwargs)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:160]


class Executor:
    """Runs a list of :class:`Task` (in dependency order: a task's deps come before it)."""

    #: True when tasks run in the driver's process (they may then write outputs in place)
    in_process = True
    name = "serial"

    def __init__(self, max_retries: int = 2, threads: int | None = None, progress: bool = True,
                 debug: bool = False):
        if max_retries < 0:
            raise StudyError(f"--max-retries must be >= 0, got {max_retries}")
        self.max_retries, self.threads, self.progress, self.debug = int(max_retries), threads, progress, debug

    def share(self, obj: Any) -> Any:
        """A handle of a large input used by many tasks (Ray: one copy in the object store)."""
        return obj

    def device(self, default: str) -> str:
        """The torch device tasks compute on."""
        return default

    def run(self, tasks: Sequence[Task], on_result: Callable[[Task, Any], None], desc: str = "tasks") -> None:
        """Run ``tasks``; ``on_result(task, result)`` in the driver as each finishes.

        Raises :class:`TaskFailures` at the end if any task failed for good.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor started."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _check(tasks: Sequence[Task]) -> None:
        seen: set[str] = set()
        for t in tasks:
            if t.name in seen:
                raise ValueError(f"two tasks are named {t.name!r}")
            bad = [d for d in t.deps.values() if d not in seen]
            if bad:
                raise ValueError(f"task {t.name!r} needs {bad}, which do not come before it")
            seen.add(t.name)


class SerialExecutor(Executor):
    """Today's behaviour: one task after the other in this process (``debug``: a failing task's
    exception propagates at once, with its traceback)."""

    def run(self, tasks, on_result, desc="tasks"):
        self._check(tasks)
        fault, transient = _fault_from_env(), _transient()
        results: dict[str, Any] = {}
        failed: dict[str, str] = {}
        blocked: dict[str, str] = {}
        bar = progress_bar(total=len(tasks), desc=desc, enabled=self.progress)
        for t in tasks:
            missing = [d for d in t.deps.values() if d not in results]
            if missing:
                blocked[t.name] = missing[0]
                bar.update(1)
                continue
            deps = {k: results[d] for k, d in t.deps.items()}
            for attempt in range(self.max_retries + 1):
                try:
                    value = _call(t.name, t.fn, t.task_seed(), None, fault, *t.args, **t.kwargs, **deps)
                except transient as e:
                    if attempt == self.max_retries:
                        if self.debug:
                            raise
                        failed[t.name] = _short(e)
                except StudyError:
                    raise
                except Exception as e:  # noqa: BLE001 - a task's bug is reported by its name
                    if self.debug:
                        raise
                    failed[t.name] = _short(e)
                    break
                else:
                    results[t.name] = value
                    on_result(t, value)
                    break
            bar.set_postfix_str(t.name, refresh=False)
            bar.update(1)
        bar.close()
        if failed or blocked:
            raise TaskFailures(failed, blocked, len(tasks), self.max_retries)


class RayExecutor(Executor):
    """Each task a Ray task (``num_cpus``/``num_gpus`` per task); the driver collects with ``ray.wait``.

    ``address``: an existing cluster (``ray start --head`` prints it; ``"auto"``: the local one);
    None: reuse a Ray instance this process already started, else start a local one sized to this
    machine (and stop it in :meth:`close`).
    """

    in_process = False
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_task: float = 1, gpus_per_task: float = 0,
                 max_retries: int = 2, threads: int | None = None, progress: bool = True,
                 log_to_driver: bool = True, debug: bool = False):
        super().__init__(max_retries, threads, progress, debug)
        try:
            import ray
        except ImportError:
            raise StudyError("--backend ray needs Ray: pip install 'spikenoise[ray]'", ENVIRONMENT) from None
        self.ray = ray
        self.cpus, self.gpus = cpus_per_task, gpus_per_task
        self.started = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=log_to_driver,
                                      logging_level="warning")
            if address:
                kw["address"] = address
            else:
                kw["num_cpus"] = _usable_cpus()
            try:
                ray.init(**kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise StudyError(f"cannot start or reach Ray (--address {address!r}): {_short(e)}", ENVIRONMENT) \
                    from None
            self.started = True
        total = ray.cluster_resources()
        if gpus_per_task > 0 and total.get("GPU", 0) < gpus_per_task:
            raise StudyError(f"--gpus-per-task {gpus_per_task:g}: the Ray cluster has {total.get('GPU', 0):g} GPU(s)")
        if total.get("CPU", 0) < cpus_per_task:
            raise StudyError(f"--cpus-per-task {cpus_per_task:g}: the Ray cluster has {total.get('CPU', 0):g} CPU(s)")

    def share(self, obj):
        return self.ray.put(obj)

    def device(self, default: str) -> str:
        return "cuda" if self.gpus > 0 else "cpu"

    def run(self, tasks, on_result, desc="tasks"):
        ray = self.ray
        self._check(tasks)
        fault = _fault_from_env()
        remote = ray.remote(_call)
        opts = dict(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.max_retries,
                    retry_exceptions=list(_transient()))
        threads = self.threads or max(1, int(self.cpus))
        refs: dict[str, Any] = {}
        by_ref: dict[Any, Task] = {}
        for t in tasks:
            deps = {k: refs[d] for k, d in t.deps.items()}  # Ray passes the results once they exist
            ref = remote.options(name=t.name, **opts).remote(t.name, t.fn, t.task_seed(), threads, fault, *t.args,
                                                             **t.kwargs, **deps)
            refs[t.name] = ref
            by_ref[ref] = t
        failed: dict[str, str] = {}
        blocked: dict[str, str] = {}
        pending = list(by_ref)
        bar = progress_bar(total=len(tasks), desc=f"{desc} (ray)", enabled=self.progress)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            t = by_ref[done[0]]
            try:
                value = ray.get(done[0])
            except ray.exceptions.RayError as e:
                dead = [d for d in t.deps.values() if d in failed or d in blocked]
                if dead:
                    blocked[t.name] = dead[0]
                else:
                    failed[t.name] = _ray_error(e)
                    if self.debug:  # the remote traceback
                        print(f"task {t.name!r} failed:\n{e}", file=sys.stderr)
            else:
                on_result(t, value)
            bar.set_postfix_str(t.name, refresh=False)
            bar.update(1)
        bar.close()
        if failed or blocked:
            raise TaskFailures(failed, blocked, len(tasks), self.max_retries)

    def close(self):
        if self.started:
            self.ray.shutdown()
            self.started = False


def _ray_error(e: BaseException) -> str:
    """One line for a Ray failure: the task's own exception, or why its worker died."""
    import ray

    if isinstance(e, ray.exceptions.RayTaskError):
        cause = getattr(e, "cause", None)
        return _short(cause) if cause is not None else _short(e)
    if isinstance(e, ray.exceptions.OutOfMemoryError):
        return "out of memory (Ray's memory monitor killed the worker)"
    if isinstance(e, ray.exceptions.WorkerCrashedError):
        return "its worker died (killed, crashed or out of memory)"
    return _short(e)


class CheckpointSlot:
    """Where a training task writes its checkpoint.

    In the driver's process (serial backend) that is the output file itself, written after every
    epoch as :func:`spikenoise.train.fit` does. In a Ray worker it is a temporary file (started from
    ``partial``, the bytes of an unfinished checkpoint of an earlier run, if any); the task returns
    :meth:`payload` and the driver writes it with :meth:`commit`.
    """

    def __init__(self, path: str | os.PathLike, in_place: bool, partial: bytes | None = None):
        self.path, self.in_place, self.partial = Path(path), bool(in_place), partial
        self._bytes: bytes | None = None

    @classmethod
    def for_executor(cls, path: str | os.PathLike, executor: Executor) -> "CheckpointSlot":
        """In place in-process; else carrying the unfinished checkpoint at ``path`` if there is one."""
        path = Path(path)
        partial = path.read_bytes() if not executor.in_process and path.exists() else None
        return cls(path, executor.in_process, partial)

    @contextlib.contextmanager
    def open(self) -> Iterator[Path]:
        """The path to train into; on leaving (remote) the checkpoint's bytes are kept for :meth:`payload`."""
        if self.in_place:
            yield self.path
            return
        with tempfile.TemporaryDirectory(prefix="spikenoise-task-") as tmp:
            path = Path(tmp) / self.path.name
            if self.partial is not None:
                path.write_bytes(self.partial)
            yield path
            self._bytes = path.read_bytes() if path.exists() else None

    def payload(self) -> bytes | None:
        """The checkpoint for the driver to write (None: already in place)."""
        return self._bytes

    def commit(self, payload: bytes | None) -> None:
        """Driver side: write a returned checkpoint atomically (nothing for None)."""
        if payload is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, self.path)


# ----------------------------------------------------------------------------------------------
# command line

def add_executor_options(p: argparse.ArgumentParser) -> None:
    """``--backend --address --cpus-per-task --gpus-per-task --max-retries``."""
    g = p.add_argument_group("execution")
    g.add_argument("--backend", choices=BACKENDS, default=None,
                   help="serial: one task after the other in this process; ray: every training and sweep cell a "
                        "Ray task (needs spikenoise[ray]); default serial, or the preset's choice where it has one")
    g.add_argument("--address", default=None,
                   help="Ray cluster to join (as printed by 'ray start --head'; 'auto': the local one); "
                        "default: start a local Ray instance sized to this machine")
    g.add_argument("--cpus-per-task", type=float, default=None, help="CPUs per Ray task (default 1)")
    g.add_argument("--gpus-per-task", type=float, default=None,
                   help="GPUs per Ray task, fractions allowed (0.25: four tasks share a GPU; >0 computes on cuda)")
    g.add_argument("--max-retries", type=int, default=2,
                   help="retries of a task whose worker died or that hit a transient error (default 2)")


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_backend() -> str:
    """``"ray"`` where Ray is installed and this process may use two CPUs or more (a local Ray
    instance then runs one task per core), else ``"serial"``. Tasks of the small models use one
    core badly (per-timestep work), so running two at once is faster than two threads per task."""
    import importlib.util

    return "ray" if _usable_cpus() >= 2 and importlib.util.find_spec("ray") is not None else "serial"


def make_executor(args: argparse.Namespace) -> Executor:
    """The executor of ``args`` (validated; a :class:`StudyError` names the bad option)."""
    backend = getattr(args, "backend", "serial") or "serial"
    progress, debug = getattr(args, "progress", True), bool(getattr(args, "debug", False))
    retries = getattr(args, "max_retries", 2)
    retries = 2 if retries is None else retries
    if retries < 0:
        raise StudyError(f"--max-retries must be >= 0, got {retries}")
    cpus, gpus, address = (getattr(args, "cpus_per_task", None), getattr(args, "gpus_per_task", None),
                           getattr(args, "address", None))
    if backend == "serial":
        for flag, v in (("--address", address), ("--cpus-per-task", cpus), ("--gpus-per-task", gpus)):
            if v is not None:
                raise StudyError(f"{flag} applies to --backend ray, not serial")
        return SerialExecutor(retries, getattr(args, "threads", None), progress, debug)
    if backend != "ray":
        raise StudyError(f"unknown --backend {backend!r}; choose one of {list(BACKENDS)}")
    cpus = 1 if cpus is None else cpus
    gpus = 0 if gpus is None else gpus
    if not (math.isfinite(cpus) and cpus > 0):
        raise StudyError(f"--cpus-per-task must be > 0, got {cpus!r}")
    if not (math.isfinite(gpus) and gpus >= 0):
        raise StudyError(f"--gpus-per-task must be >= 0, got {gpus!r}")
    return RayExecutor(address, cpus, gpus, retries, getattr(args, "threads", None), progress, debug=debug)
