"""The study executor without Ray: dependency order, per-task seeds, retries, failures by name, options."""
from __future__ import annotations

import argparse
import random
import sys

import pytest
import torch

from spikenoise.studies.executor import (CheckpointSlot, InjectedFault, SerialExecutor, Task, TaskFailures,
                                         add_executor_options, make_executor)
from spikenoise.studies.scaffold import StudyError


def _draw(tag):
    """A task whose result depends only on the global generators at its start."""
    return tag, random.random(), float(torch.rand(()))


def _plus(x, dep=None):
    return x + (dep or 0)


_calls: dict[str, int] = {}


def _flaky(name, times, exc=OSError):
    _calls[name] = _calls.get(name, 0) + 1
    if _calls[name] <= times:
        raise exc(f"{name} failed (call {_calls[name]})")
    return name


def _run(tasks, **kw):
    got = {}
    SerialExecutor(progress=False, **kw).run(tasks, lambda t, v: got.__setitem__(t.name, v))
    return got


def test_tasks_are_seeded_from_their_names_not_from_what_ran_before():
    a = [Task("a", _draw, ("a",)), Task("b", _draw, ("b",))]
    first = _run(a)
    random.seed(123)
    torch.manual_seed(123)
    second = _run(a[::-1])  # other order, other global state before
    assert first == second
    assert first["a"][1:] != first["b"][1:]  # different names, different streams
    assert _run([Task("a", _draw, ("a",), seed=7)])["a"] != first["a"]


def test_dependencies_pass_results_and_must_come_first():
    got = _run([Task("one", _plus, (1,)), Task("two", _plus, (2,), deps={"dep": "one"})])
    assert got == {"one": 1, "two": 3}
    with pytest.raises(ValueError, match="'two' needs \\['one'\\]"):
        _run([Task("two", _plus, (2,), deps={"dep": "one"}), Task("one", _plus, (1,))])
    with pytest.raises(ValueError, match="two tasks are named 'one'"):
        _run([Task("one", _plus, (1,)), Task("one", _plus, (1,))])


def test_transient_errors_are_retried_a_bounded_number_of_times():
    _calls.clear()
    got = _run([Task("flaky", _flaky, ("flaky", 2))], max_retries=2)
    assert got == {"flaky": "flaky"} and _calls["flaky"] == 3
    _calls.clear()
    with pytest.raises(TaskFailures) as e:
        _run([Task("flaky", _flaky, ("flaky", 3))], max_retries=2)
    assert _calls["flaky"] == 3 and "'flaky' (OSError: flaky failed (call 3))" in str(e.value)


def test_a_failed_task_is_named_its_dependents_skipped_and_the_rest_kept():
    _calls.clear()
    tasks = [Task("bad", _flaky, ("bad", 99, ValueError)), Task("needs bad", _plus, (1,), deps={"dep": "bad"}),
             Task("fine", _plus, (5,))]
    got = {}
    with pytest.raises(TaskFailures) as e:
        SerialExecutor(max_retries=3, progress=False).run(tasks, lambda t, v: got.__setitem__(t.name, v))
    assert _calls["bad"] == 1  # not transient: no retry
    assert got == {"fine": 5}
    err = e.value
    assert err.failed == {"bad": "ValueError: bad failed (call 1)"} and err.blocked == {"needs bad": "bad"}
    assert err.exit_code == 1 and "1 of 3 task(s) failed" in str(err) and "rerun the same command" in str(err)
    assert "\n" not in str(err)


def test_fault_injection_hook(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKENOISE_FAIL_TASK", "one")
    monkeypatch.setenv("SPIKENOISE_FAIL_DIR", str(tmp_path))
    monkeypatch.setenv("SPIKENOISE_FAIL_TIMES", "1")
    assert _run([Task("one", _plus, (1,)), Task("two", _plus, (2,))], max_retries=1) == {"one": 1, "two": 2}
    assert [p.read_text() for p in tmp_path.iterdir()] == ["1"]
    monkeypatch.delenv("SPIKENOISE_FAIL_TIMES")  # always
    with pytest.raises(TaskFailures, match=f"'one' \\({InjectedFault.__name__}: injected fault"):
        _run([Task("one", _plus, (1,)), Task("two", _plus, (2,))], max_retries=1)


def test_checkpoint_slot_in_place_and_remote(tmp_path):
    final = tmp_path / "ck" / "m.pt"
    slot = CheckpointSlot(final, in_place=True)
    with slot.open() as p:
        assert p == final
    assert slot.payload() is None
    remote = CheckpointSlot(final, in_place=False, partial=b"half")
    with remote.open() as p:
        assert p != final and p.read_bytes() == b"half"  # resumes from the driver's unfinished file
        p.write_bytes(b"done")
    assert not final.exists()  # a worker never writes the output folder
    remote.commit(remote.payload())
    assert final.read_bytes() == b"done"


def _args(*argv):
    p = argparse.ArgumentParser()
    add_executor_options(p)
    p.add_argument("--threads", type=int)
    return p.parse_args(list(argv))


@pytest.mark.parametrize("argv, message", [
    (["--address", "auto"], "--address applies to --backend ray"),
    (["--gpus-per-task", "0.5"], "--gpus-per-task applies to --backend ray"),
    (["--max-retries", "-1"], "--max-retries must be >= 0, got -1"),
])
def test_bad_executor_options(argv, message):
    with pytest.raises(StudyError, match=message.replace("(", "\\(")):
        make_executor(_args(*argv))


def test_backend_ray_without_ray_names_the_extra(monkeypatch, tmp_path, capsys):
    from spikenoise import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc = cli.main(["compare", "--preset", "smoke", "--out", str(tmp_path / "o"), "--no-progress", "--backend", "ray"])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip() == "spikenoise compare: error: --backend ray needs Ray: pip install 'spikenoise[ray]'"
    assert not (tmp_path / "o").exists()


def test_auto_backend_is_ray_only_with_ray_installed_and_two_cpus(monkeypatch):
    import importlib.util

    from spikenoise.studies import executor

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "ray" else real(name, *a))
    monkeypatch.setattr(executor, "_usable_cpus", lambda: 2)
    assert executor.auto_backend() == "ray"
    monkeypatch.setattr(executor, "_usable_cpus", lambda: 1)
    assert executor.auto_backend() == "serial"
    monkeypatch.setattr(executor, "_usable_cpus", lambda: 2)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert executor.auto_backend() == "serial"
