"""One attempt of a training call, inside a Function: `tandem train` (or torchrun over several GPUs) as a
child process, supervised.

- Every way the attempt ends stops the whole job, torchrun's ranks included (they run in sessions of
  their own, so the job is tracked as a process tree, not a group): Modal's InputCancellation or a
  timeout (BaseExceptions raised into this process), preemption (SIGINT, then SIGKILL 30 s later), or
  our own deadline. Stopping is SIGTERM (each rank checkpoints and records its stop), then SIGKILL to
  every process of the tree after a grace short enough for the Volume commit to land before Modal's kill.
- How the attempt ended comes from the run's result.json, which the trainer writes with every rank's
  status, never from an exit code alone: torchrun exits 1 after a stop that every rank recorded.
- A run that would outlast this call's timeout is stopped shortly before it, with a checkpoint, and
  continues in a new call of the same Function (`.spawn`), which resumes from that checkpoint.
- A run stopped by a signal raises RunInterrupted, so Modal retries the call; the retry resumes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import modal
import modal.experimental

COMMIT_INTERVAL = 5.0  # seconds between looks for a new checkpoint to commit
MODAL_KILL_AFTER = 30.0  # Modal's SIGKILL follows its preemption SIGINT by this much
COMMIT_RESERVE = 10.0  # kept for the Volume commit after the job is gone
STOP_GRACE = MODAL_KILL_AFTER - COMMIT_RESERVE  # seconds a stopped job has to checkpoint and exit


class RunInterrupted(RuntimeError):
    """The trainer stopped on a signal (preemption, shutdown) after writing a checkpoint. Raised so that
    Modal retries the call, and the retry resumes from that checkpoint."""


@dataclasses.dataclass
class JobEnd:
    """How the child process ended, as this supervisor saw it."""

    code: int
    out_of_time: bool = False  # our deadline stopped it
    signal: str | None = None  # the signal that reached this call and was passed on as a stop
    killed: bool = False  # some of it outlived the grace and was killed
    last_error: str = ""  # its last line on stderr (tandem's one-line error)

    @property
    def stopped_by_us(self) -> bool:
        return self.out_of_time or self.signal is not None


def train_here(
    kind: str,
    values: dict,
    placement,
    next_call,
    commit,
    given: dict[str, str] | None = None,
    node=None,
    lead: tuple = (),
) -> dict:
    """Train `kind` with the config `values` on this machine over `placement.count` GPUs, continuing the run
    when an earlier attempt left it started. `next_call` is the Function a run continues in when this
    call's time is up (`lead`: its arguments before these); `commit` makes the runs Volume's new files
    durable (None: nothing to commit); `given` names the fields the user's words set, with where each
    came from (None: all of them); `node`: this container's place in a cluster (a
    tandem.train.launch.Launch), None for one container. The trainer plans the attempt itself, under the
    run's lock, from these words, exactly as `tandem train` typed locally does."""
    from tandem.errors import UsageError
    from tandem.train import CONFIGS
    from tandem.train.config import config_from_dict
    from tandem.train.launch import Launch
    from tandem.train.run import RunDir

    try:
        config = name_the_run(kind, config_from_dict(CONFIGS[kind], values))
    except UsageError as exc:
        return {"kind": kind, "status": "error", "message": str(exc)}
    run_dir = Path(config.runs_dir) / config.run_name
    start_step, _ = newest_checkpoint(RunDir(run_dir))
    deadline = None if modal.is_local() else time.monotonic() + placement.timeout - stop_margin(placement.timeout)
    attempt_id = uuid.uuid4().hex
    node = node or Launch(gpus=placement.count)
    command = trainer_command(kind, config, node, given)
    end = run_attempt(command, run_dir, commit, deadline, attempt_id=attempt_id)
    if node.node_rank:  # node 0 holds the run (its result.json, its commits) and answers for the call
        return {"kind": kind, "node_rank": node.node_rank, "status": "node ended", "exit_code": end.code}
    if end.code == 2 and not end.stopped_by_us:  # bad input (tandem's UsageError): retrying cannot help
        return {"kind": kind, "run_dir": str(run_dir), "status": "error", "message": end.last_error, "shown": True}
    result = attempt_result(kind, run_dir, end, attempt_id)
    if result["status"] in ("stopped", "interrupted") and end.out_of_time:
        if (result["step"] or 0) <= start_step:
            return {
                **result,
                "status": "error",
                "message": f"the call's time ran out before {run_dir.name} trained past step {start_step}; "
                "raise --timeout so that one call has time to start and checkpoint",
            }
        following = next_call.with_options(**placement.options()).spawn(
            *lead, dataclasses.asdict(dataclasses.replace(config, resume=True)), placement.as_dict(), given
        )
        print(f"{run_dir} continues from step {result['step']} in call {following.object_id}")
        return {**result, "status": "continued", "call_id": following.object_id}
    # In a cluster, a stop this node did not ask for came from another node's signal (its preemption).
    if result["status"] == "interrupted" or (result["status"] == "stopped" and (end.signal or node.nodes > 1)):
        by = end.signal or ("a signal to another node" if node.nodes > 1 else "a signal")
        raise RunInterrupted(f"{kind} run {run_dir} stopped at step {result['step']} by {by}; resume it")
    return result


def node_of_cluster(placement):
    """This container's place in its Modal cluster: its rank, and node 0's address on the cluster's
    private network as the rendezvous (port MASTER_PORT, else torchrun's usual one)."""
    from tandem.train.launch import DEFAULT_PORT, Launch

    info = modal.experimental.get_cluster_info()
    if len(info.container_ips) != placement.nodes:
        raise RuntimeError(
            f"the cluster has {len(info.container_ips)} containers, the call asked for {placement.nodes}"
        )
    port = int(os.environ.get("MASTER_PORT", DEFAULT_PORT))
    return Launch(placement.count, placement.nodes, info.rank, info.container_ips[0], port)


def stop_margin(timeout: int) -> float:
    """How long before the timeout the trainer is asked to stop: time to checkpoint and hand over."""
    return min(600.0, timeout / 10)


def name_the_run(kind: str, config):
    """The run this call trains, by name, continued when it exists (a retry, a restart after preemption,
    the next call of a long run): the trainer then decides how (tandem.train.attempt: resume, start over,
    or refuse). The name is fixed here, so the child, the Volume commits and a retry agree on it."""
    from tandem.train.attempt import locate_run
    from tandem.train.run import RunDir

    path = locate_run(kind, config)
    return dataclasses.replace(config, run_name=path.name, resume=RunDir(path).started())


def newest_checkpoint(run) -> tuple[int, Path | None]:
    """(step, path) of the run's newest complete checkpoint; (0, None) when it has none."""
    found = run.checkpoints.existing() if run.checkpoints.directory.is_dir() else []
    return found[-1] if found else (0, None)


# -----------------------------------------------------------------------------
# the child process


def trainer_command(kind: str, config, node, given: dict[str, str] | None = None) -> list[str]:
    """`python -m tandem train KIND ...` with the flags the user gave (None: every field of `config`) and
    those of this attempt (where the run is, its name, whether to continue it); through torchrun for the
    node's ranks (`node`: a tandem.train.launch.Launch)."""
    from tandem.train.attempt import PER_ATTEMPT
    from tandem.train.flags import config_to_argv, sources_argv

    names = None if given is None else {*given, *PER_ATTEMPT}
    return node.torchrun(["-m", "tandem", "train", kind, *config_to_argv(config, names), *sources_argv(given)])


def run_attempt(
    command: list[str], run_dir: Path, commit, deadline: float | None, grace: float = STOP_GRACE, attempt_id=None
) -> JobEnd:
    """Run the job, committing after each new checkpoint and once more after the job is gone, however the
    attempt ends."""
    with commit_on_checkpoint(run_dir / "checkpoints", commit):
        return run_job(command, deadline, grace, attempt_id)


def run_job(command: list[str], deadline: float | None, grace: float = STOP_GRACE, attempt_id=None) -> JobEnd:
    """The job in its own process group, its stderr passed through; SIGTERM at `deadline` (monotonic
    seconds) or when SIGINT/SIGTERM reaches this process, and SIGKILL to all of it `grace` seconds after
    a signal. Any exception raised into this process meanwhile stops the job before it goes on."""
    from tandem.train.run_writer import ATTEMPT_VARIABLE

    env = {**os.environ, ATTEMPT_VARIABLE: attempt_id} if attempt_id else None
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True, env=env
    )
    tree, tail = ProcessTree(process.pid), StderrTail(process.stderr)
    end, kill_at = JobEnd(code=0), None
    try:
        with forward_signals(tree) as received:
            while True:
                tree.refresh()
                if received and kill_at is None:
                    end.signal, kill_at = received[0], received[1] + grace
                wakes = [t for t in (None if end.out_of_time else deadline, kill_at) if t is not None]
                wait = min(1.0, max(0.0, min(wakes) - time.monotonic())) if wakes else 1.0
                try:
                    end.code = process.wait(wait)
                    end.signal = received[0] if received else None
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if kill_at is not None and now >= kill_at:
                    print(f"the trainer did not stop within {grace:.0f} s: killing it", file=sys.stderr)
                    end.killed = tree.kill()
                    kill_at = float("inf")
                elif deadline is not None and not end.out_of_time and now >= deadline:
                    print("this call's time is nearly up: stopping the trainer at a checkpoint", file=sys.stderr)
                    end.out_of_time = True
                    tree.stop()
    except BaseException:
        stop_job(process, tree, grace)
        raise
    finally:
        if tree.kill():  # ranks that outlived their launcher (a crash, a kill): none may train on unwatched
            end.killed = True
        tail.join(timeout=10)
    end.last_error = tail.last
    return end


def stop_job(process: subprocess.Popen, tree: ProcessTree, grace: float) -> None:
    """SIGTERM to the job (its ranks checkpoint and exit), then SIGKILL to what is left after `grace`."""
    tree.stop()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        print(f"the trainer did not stop within {grace:.0f} s: killing it", file=sys.stderr)
    tree.kill()
    process.wait()


class ProcessTree:
    """The job's processes: the launcher and everything it started, remembered as they are seen, so that
    ranks in sessions of their own (torchrun starts them so) and ranks whose launcher died are still
    reached. A process is named by (pid, start time), so a reused pid is never signalled."""

    def __init__(self, root: int):
        self.root = root
        table = process_table()
        self.known: set[tuple[int, int]] = {(root, table[root].started)} if root in table else set()

    def _living(self, table: dict) -> set[int]:
        return {pid for pid, started in self.known if pid in table and table[pid].started == started}

    def refresh(self) -> None:
        table = process_table()
        members = self._living(table)
        while children := {pid for pid, p in table.items() if p.parent in members and pid not in members}:
            members |= children
        self.known |= {(pid, table[pid].started) for pid in members if pid in table}

    def stop(self) -> None:
        """SIGTERM once to each process: the launcher's group (torchrun passes it on to its ranks) and any
        rank whose launcher is gone."""
        self.refresh()
        table = process_table()
        living = self._living(table)
        signal_group(self.root, signal.SIGTERM)
        for pid in living:
            if table[pid].group != self.root and table[pid].parent not in living:
                send(pid, signal.SIGTERM)

    def kill(self) -> bool:
        """SIGKILL to every process of the job still alive; whether any but the launcher was."""
        self.refresh()
        signal_group(self.root, signal.SIGKILL)
        living = self._living(process_table()) - {self.root}
        for pid in living:
            send(pid, signal.SIGKILL)
        return bool(living)


@dataclasses.dataclass(frozen=True)
class Process:
    parent: int
    group: int
    started: int  # clock ticks after boot


def process_table() -> dict[int, Process]:
    """The living processes, from /proc (Linux: Modal, Docker); zombies are dead already."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
        if fields[0] not in ("Z", "X"):
            table[int(entry.name)] = Process(parent=int(fields[1]), group=int(fields[2]), started=int(fields[19]))
    return table


def send(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


class StderrTail(threading.Thread):
    """Copies a child's stderr through and keeps its last non-empty line (tandem's one-line error)."""

    def __init__(self, stream):
        super().__init__(name="stderr-tail", daemon=True)
        self.stream, self.last = stream, ""
        self.start()

    def run(self) -> None:
        for line in self.stream:
            sys.stderr.write(line)
            if line.strip():
                self.last = line.strip()


@contextmanager
def forward_signals(tree: ProcessTree):
    """SIGTERM / SIGINT (Modal's preemption) become one SIGTERM to every rank, which checkpoints and
    exits; yields a list that gets (signal name, monotonic time) of the first one."""
    received: list = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum, frame) -> None:
        if not received:
            received.extend([signal.Signals(signum).name, time.monotonic()])
            tree.stop()

    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def attempt_result(kind: str, run_dir: Path, end: JobEnd, attempt_id: str) -> dict:
    """What run_training returned in the child, from the result.json this attempt's trainer wrote; when it
    wrote none and was stopped by us (a signal, the deadline), "interrupted": the run resumes from its
    newest complete checkpoint. Anything else is a crash."""
    from tandem.train.run import RunDir

    run = RunDir(run_dir)
    result = run.read_result()
    if result is not None and result.get("attempt") == attempt_id:
        statuses = {rank.get("status") for rank in result["ranks"]}
        if statuses != {result["status"]}:
            raise RuntimeError(f"the ranks of {run_dir} disagree on how the attempt ended: {result['ranks']}")
        if end.code != 0 and result["status"] == "completed":
            print(f"note: the trainer exited with code {end.code} after it completed {run_dir}", file=sys.stderr)
        return {
            k: result[k]
            for k in ("kind", "run_dir", "status", "step", "metrics", "checkpoint", "artifacts", "message")
            if k in result
        }
    if end.stopped_by_us:
        step, newest = newest_checkpoint(run)
        return {
            "kind": kind,
            "run_dir": str(run_dir),
            "status": "interrupted",
            "step": step,
            "checkpoint": str(newest) if newest else None,
        }
    why = f": {end.last_error}" if end.last_error else ""
    raise RuntimeError(f"the trainer exited with code {end.code} before {run_dir} was finished{why}")


# -----------------------------------------------------------------------------
# the runs Volume


@contextmanager
def commit_on_checkpoint(checkpoints: Path, commit, interval: float = COMMIT_INTERVAL):
    """Call commit() whenever a new checkpoint file appears (they appear whole: written, then renamed),
    and once at the end. Watching the directory works the same for one process and for torchrun's."""
    if commit is None:
        yield
        return
    from tandem.train.checkpoint import CheckpointDir

    directory, done = CheckpointDir(checkpoints), threading.Event()

    def newest() -> int | None:
        found = directory.existing()
        return found[-1][0] if found else None

    def watch(seen: int | None) -> None:
        while not done.wait(interval):
            if (step := newest()) != seen:
                seen = step
                safe_commit(commit, f"checkpoint {step}")

    watcher = threading.Thread(target=watch, args=(newest(),), name="commit-on-checkpoint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        safe_commit(commit, "the end of the attempt")


def safe_commit(commit, when: str) -> None:
    try:
        commit()
    except Exception as exc:  # a failed commit must not end the training; the next one catches up
        print(f"volume commit after {when} failed: {exc}", file=sys.stderr)
