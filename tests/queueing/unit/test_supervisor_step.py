"""Supervisor.step (queueing/supervisor.py): replicas, stopping extras, restarting crashed workers
with a growing delay, replacing hung ones. The children are real processes, but of a few-line
script standing for manage.py (it starts in milliseconds), so no Django or database is involved."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from queueing.health import HangPolicy
from queueing.supervisor import CLUSTER, MAX_RESTART_DELAY, Supervisor, TypeState
from queueing.worker import WORKER_CLASSES
from tests.helpers import wait_for

pytestmark = pytest.mark.unit

# Stands for manage.py: records its arguments, then does what the file `mode` says.
FAKE_MANAGE_PY = """
import os, pathlib, signal, sys
here = pathlib.Path(__file__).parent
(here / f"{os.getpid()}.args").write_text(" ".join(sys.argv[1:]))
mode = (here / "mode").read_text()
if mode == "crash":
    sys.exit(3)
if mode == "ignore-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
(here / f"{os.getpid()}.ready").touch()
signal.pause()  # runs until a signal ends it
"""

# Generous limits unless a test says otherwise: nothing is judged hung by accident.
RELAXED = HangPolicy(heartbeat_seconds=1.0, hang_seconds=600.0, grace_seconds=600.0)


class Children:
    """The directory of the fake manage.py: what each child was started with, and the mode."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.mode("run")

    def mode(self, mode: str) -> None:
        (self.directory / "mode").write_text(mode)

    def args(self, process: subprocess.Popen) -> str:
        wait_for(lambda: (self.directory / f"{process.pid}.args").exists(), timeout=10, message="the child started")
        return (self.directory / f"{process.pid}.args").read_text()

    def wait_ready(self, process: subprocess.Popen) -> None:
        wait_for(lambda: (self.directory / f"{process.pid}.ready").exists(), timeout=10, message="the child ready")


@pytest.fixture
def children(tmp_path: Path) -> Children:
    (tmp_path / "manage.py").write_text(FAKE_MANAGE_PY)
    return Children(tmp_path)


def make_supervisor(children: Children, policy: HangPolicy = RELAXED) -> Supervisor:
    supervisor = Supervisor(poll_seconds=0.05, policy=policy)
    supervisor.manage_py = str(children.directory / "manage.py")
    return supervisor


@pytest.fixture
def supervise(settings, children: Children) -> Iterator[Callable[[HangPolicy], Supervisor]]:
    """Makes supervisors of the stand-in workers; their children are killed afterwards."""
    settings.OUTBOX_RUN_CLUSTER = False
    made: list[Supervisor] = []

    def make(policy: HangPolicy = RELAXED) -> Supervisor:
        made.append(make_supervisor(children, policy))
        return made[-1]

    yield make
    for supervisor in made:
        for state in supervisor.state.values():
            for process in state.running + state.stopping:
                if process.poll() is None:
                    process.kill()
                process.wait()


@pytest.fixture
def supervisor(supervise: Callable[[HangPolicy], Supervisor]) -> Supervisor:
    return supervise(RELAXED)


def exited(process: subprocess.Popen) -> bool:
    return process.poll() is not None


def test_it_supervises_every_registered_worker_type(supervisor):
    assert set(supervisor.state) == set(WORKER_CLASSES)
    assert {"collector", "background", "workflow"} <= set(WORKER_CLASSES)
    assert CLUSTER not in supervisor.state  # OUTBOX_RUN_CLUSTER off


def test_it_starts_the_replicas_wanted_with_the_run_worker_command(supervisor, children):
    supervisor.step({"background": 2, "collector": 1})
    background, collector = supervisor.state["background"], supervisor.state["collector"]
    assert len(background.running) == 2 and len(collector.running) == 1
    assert supervisor.state["workflow"].running == []  # not in desired: none
    assert [children.args(p) for p in background.running] == ["run_worker background"] * 2
    assert children.args(collector.running[0]) == "run_worker collector"
    for process in background.running:
        assert process.pid in background.started and background.spawned_at[process.pid] <= time.time()
    pids = [p.pid for p in background.running]
    supervisor.step({"background": 2, "collector": 1})  # nothing to do: the same processes
    assert [p.pid for p in background.running] == pids


def test_the_cluster_is_started_with_qcluster_and_never_judged_hung(settings, supervise, children):
    settings.OUTBOX_RUN_CLUSTER = True
    impatient = HangPolicy(heartbeat_seconds=0.01, hang_seconds=0.03, grace_seconds=0.01)
    supervisor = supervise(impatient)
    supervisor.step({CLUSTER: 1})
    (cluster,) = supervisor.state[CLUSTER].running
    assert children.args(cluster) == "qcluster"
    wait_for(lambda: time.time() - supervisor.state[CLUSTER].spawned_at[cluster.pid] > 0.05, timeout=5)
    supervisor.step({CLUSTER: 1}, beats={})  # no heartbeat, past the grace: a worker would be killed
    assert supervisor.state[CLUSTER].running == [cluster] and not exited(cluster)


def test_extra_replicas_get_sigterm_and_are_reaped_once_they_exit(supervisor, children):
    supervisor.step({"background": 3})
    state = supervisor.state["background"]
    first, second, third = state.running
    for process in state.running:
        children.wait_ready(process)
    supervisor.step({"background": 1})
    assert state.running == [first]
    assert state.stopping == [third, second]  # the newest go first
    assert set(state.started) == set(state.spawned_at) == {first.pid}
    wait_for(lambda: exited(second) and exited(third), timeout=10, message="SIGTERM stopped them")
    assert second.returncode == third.returncode == -signal.SIGTERM
    supervisor.step({"background": 1})
    assert state.stopping == [] and state.running == [first]
    assert state.crashes == 0  # a stop asked for is not a crash


def test_a_worker_that_ignores_sigterm_stays_stopping_and_is_not_replaced_twice(supervisor, children):
    children.mode("ignore-sigterm")
    supervisor.step({"background": 1})
    state = supervisor.state["background"]
    (stubborn,) = state.running
    children.wait_ready(stubborn)
    supervisor.step({"background": 0})
    supervisor.step({"background": 0})
    assert state.running == [] and state.stopping == [stubborn] and not exited(stubborn)


def test_a_crashed_worker_is_restarted_after_a_delay_that_grows_while_it_keeps_crashing(supervisor, children):
    children.mode("crash")
    supervisor.step({"background": 1})
    state = supervisor.state["background"]
    (crashed,) = state.running
    wait_for(lambda: exited(crashed), timeout=10, message="the crash")
    before = time.monotonic()
    supervisor.step({"background": 1})
    assert state.running == [] and state.crashes == 1
    assert before + 1.0 <= state.not_before <= time.monotonic() + 1.0  # 1 s after a first crash
    assert crashed.pid not in state.started and crashed.pid not in state.spawned_at

    def restarted() -> bool:
        supervisor.step({"background": 1})
        return bool(state.running)

    wait_for(restarted, timeout=10, interval=0.05, message="the restart after the delay")
    assert time.monotonic() >= before + 1.0
    (again,) = state.running
    wait_for(lambda: exited(again), timeout=10, message="the second crash")
    before = time.monotonic()
    supervisor.step({"background": 1})
    assert state.crashes == 2 and state.not_before >= before + 2.0  # then 2 s
    assert state.running == []


def test_back_off_doubles_up_to_the_limit_and_forgives_a_worker_that_lived_long(supervisor):
    state = TypeState()
    now = 1000.0
    delays = []
    for pid in range(8):
        state.started[pid] = now - 1  # lived 1 s
        state.spawned_at[pid] = 0.0
        delays.append(supervisor.back_off(state, pid, now))
        assert pid not in state.started and pid not in state.spawned_at
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, MAX_RESTART_DELAY, MAX_RESTART_DELAY, MAX_RESTART_DELAY]
    assert state.not_before == now + MAX_RESTART_DELAY
    state.started[99] = now - 30  # healthy for 30 s: a fresh failure
    assert supervisor.back_off(state, 99, now) == 1.0 and state.crashes == 1


def test_a_worker_whose_heartbeat_went_silent_is_killed_and_restarted_later(supervise):
    policy = HangPolicy(heartbeat_seconds=1.0, hang_seconds=10.0, grace_seconds=600.0)
    supervisor = supervise(policy)
    supervisor.step({"background": 2})
    state = supervisor.state["background"]
    hung, fine = state.running
    now = time.time()
    supervisor.step({"background": 2}, beats={hung.pid: now - 11, fine.pid: now - 9})
    assert hung.returncode == -signal.SIGKILL  # reaped by the supervisor
    assert state.running == [fine] and not exited(fine)
    assert state.crashes == 1 and state.not_before > time.monotonic()  # restarted like a crash


def test_a_worker_without_a_first_heartbeat_is_hung_only_after_the_start_grace(supervise):
    policy = HangPolicy(heartbeat_seconds=1.0, hang_seconds=600.0, grace_seconds=1.5)
    supervisor = supervise(policy)
    supervisor.step({"background": 1})
    state = supervisor.state["background"]
    (starting,) = state.running
    supervisor.step({"background": 1}, beats={})
    assert state.running == [starting]  # within the grace
    wait_for(lambda: time.time() - state.spawned_at[starting.pid] > 1.6, timeout=10)
    supervisor.step({"background": 1}, beats={})
    assert exited(starting) and starting.returncode == -signal.SIGKILL and state.running == []


def test_without_heartbeats_nobody_is_judged_hung(supervise):
    impatient = HangPolicy(heartbeat_seconds=0.01, hang_seconds=0.03, grace_seconds=0.01)
    supervisor = supervise(impatient)
    supervisor.step({"background": 1})
    (worker,) = supervisor.state["background"].running
    wait_for(lambda: time.time() - supervisor.state["background"].spawned_at[worker.pid] > 0.05, timeout=5)
    supervisor.step({"background": 1}, beats=None)  # the heartbeats could not be read
    assert supervisor.state["background"].running == [worker] and not exited(worker)


def test_silence_the_supervisor_could_not_see_is_not_held_against_a_worker(supervise):
    policy = HangPolicy(heartbeat_seconds=1.0, hang_seconds=10.0, grace_seconds=600.0)
    supervisor = supervise(policy)
    supervisor.step({"background": 1})
    (worker,) = supervisor.state["background"].running
    now = time.time()
    supervisor.observed_since = now - 5  # the heartbeats were unreadable until 5 s ago
    supervisor.step({"background": 1}, beats={worker.pid: now - 60})
    assert supervisor.state["background"].running == [worker] and not exited(worker)
    assert supervisor.judge(spawned=now - 100, last_seen=now - 60, now=now).silent_seconds == pytest.approx(5)
    supervisor.observed_since = None
    assert supervisor.judge(spawned=now - 100, last_seen=now - 60, now=now).silent_seconds == pytest.approx(60)


def test_a_type_wanted_at_zero_is_stopped_and_not_restarted(supervisor, children):
    supervisor.step({"collector": 1})
    (worker,) = supervisor.state["collector"].running
    children.wait_ready(worker)
    supervisor.step({})  # a type missing from desired is wanted at 0
    assert supervisor.state["collector"].running == [] and supervisor.state["collector"].stopping == [worker]
    wait_for(lambda: exited(worker), timeout=10)
    supervisor.step({})
    assert supervisor.state["collector"].stopping == [] and supervisor.state["collector"].running == []
