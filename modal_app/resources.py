"""The one place that decides what a Modal call runs on: GPU type and count, nodes, timeout, CPU and memory,
checked against tandem.env.modal_gpus (what Modal documents) before anything is sent."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tandem.env.modal_gpus import CLUSTER_GPU_TYPES, GPU_TYPES, MAX_CLUSTER_GPUS, MAX_CLUSTER_NODES
from tandem.errors import UsageError

# A clustered Function's size is fixed when it is defined: the app defines one for each of these sizes.
CLUSTER_SIZES = (2, 4, 8, 16, 32)
MAX_TIMEOUT = 24 * 60 * 60  # Modal's limit per call, in seconds
TRAIN_TIMEOUT = 4 * 60 * 60  # per call; a longer run continues in a new call (see supervisor.py)
SHORT_TIMEOUT = 30 * 60  # sampling and the fingerprint
RETRIES = 3  # attempts after the first, 10 s, 20 s, 40 s apart
RETRY_DELAY = 10.0
RETRY_BACKOFF = 2.0


@dataclass(frozen=True)
class Placement:
    """Where one call runs: `nodes` containers (a Modal cluster when more than one) of `count` GPUs of
    `gpu` each, stopped after `timeout` seconds, with the settings' CPU and memory reservation. Plain
    values, so a Function can pass it on to its continuation."""

    gpu: str
    count: int
    timeout: int
    cpu: float
    memory: int
    nodes: int = 1
    rdma: bool = True  # clusters only: the RDMA network between nodes, for the gradients' all-reduce

    @property
    def gpu_spec(self) -> str:
        """Modal's "TYPE" or "TYPE:COUNT" (per container)."""
        return self.gpu if self.count == 1 else f"{self.gpu}:{self.count}"

    def options(self) -> dict:
        """Keyword arguments of Function.with_options (cpu and memory too: the call's resources replace the
        decorator's)."""
        return {"gpu": self.gpu_spec, "timeout": self.timeout, "cpu": self.cpu, "memory": self.memory}

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        gpus = f"{self.count} x {self.gpu}" if self.count > 1 else self.gpu
        if self.nodes > 1:
            gpus = f"{self.nodes} nodes x {gpus} ({'RDMA' if self.rdma else 'no RDMA'})"
        return f"{gpus}, {self.cpu:g} CPU, {self.memory} MiB, timeout {self.timeout} s"


def placement(gpu: str, count: int, timeout: int, settings, nodes: int = 1, rdma: bool = True) -> Placement:
    """A checked Placement from the flags (`settings`: the image settings, for CPU and memory)."""
    kind = gpu_type(gpu)
    return Placement(
        kind,
        gpu_count(kind, count),
        checked_timeout(timeout),
        *reservation(settings),
        cluster_size(kind, count, nodes),
        rdma,
    )


def cluster_size(gpu: str, count: int, nodes: int) -> int:
    """--nodes, checked against what Modal's clusters allow; one line naming the flag and the fix."""
    if nodes == 1:
        return 1
    if not 1 <= nodes <= MAX_CLUSTER_NODES:
        raise UsageError(
            f"--nodes {nodes}: a Modal cluster has 2 to {MAX_CLUSTER_NODES} nodes; pick a count in that range"
        )
    if gpu not in CLUSTER_GPU_TYPES:
        raise UsageError(
            f"--gpu {gpu}: Modal clusters run on {', '.join(CLUSTER_GPU_TYPES)}; pick one of those with --nodes"
        )
    if count != GPU_TYPES[gpu]:
        raise UsageError(
            f"--gpus {count}: each node of a Modal cluster takes all {GPU_TYPES[gpu]} GPUs of its host; "
            f"pass --gpus {GPU_TYPES[gpu]} with --nodes"
        )
    if nodes * count > MAX_CLUSTER_GPUS:
        raise UsageError(
            f"--nodes {nodes} x --gpus {count}: a Modal cluster holds at most {MAX_CLUSTER_GPUS} GPUs; pass fewer --nodes"
        )
    if nodes not in CLUSTER_SIZES:
        raise UsageError(
            f"--nodes {nodes}: this app defines clusters of {', '.join(map(str, CLUSTER_SIZES))} nodes; pick one of those"
        )
    return nodes


def cluster_function_name(nodes: int, rdma: bool) -> str:
    """The clustered Function of this size: train_2_nodes, train_2_nodes_no_rdma, ..."""
    return f"train_{nodes}_nodes" + ("" if rdma else "_no_rdma")


def gpu_type(value: str) -> str:
    """The documented spelling of a GPU type given in any case; one line listing the valid ones otherwise."""
    known = {name.upper(): name for name in GPU_TYPES}
    if ":" in value and value.split(":", 1)[0].upper() in known:
        raise UsageError(
            f"--gpu {value!r}: give the type alone and the count with --gpus, e.g. --gpu {value.split(':')[0]} --gpus {value.split(':', 1)[1]}"
        )
    if value.upper() not in known:
        raise UsageError(f"--gpu {value!r} is not a Modal GPU type; use one of {', '.join(GPU_TYPES)}")
    return known[value.upper()]


def gpu_count(gpu: str, count: int) -> int:
    most = GPU_TYPES[gpu]
    if not 1 <= count <= most:
        raise UsageError(
            f"--gpus {count}: a container holds 1 to {most} {gpu} GPUs on Modal; pick a count in that range"
        )
    return count


def checked_timeout(timeout: int) -> int:
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise UsageError(
            f"--timeout {timeout}: Modal allows 1 to {MAX_TIMEOUT} seconds per call; a longer training continues "
            "in a new call by itself"
        )
    return timeout


def reservation(settings) -> tuple[float, int]:
    """(CPU cores, memory MiB) reserved for every container, from the settings block."""
    return float(settings.modal_cpu), int(settings.modal_memory)


def function_options(settings, timeout: int, train: bool, nodes: int = 1) -> dict:
    """The `@app.function` defaults: the settings' GPU, CPU and memory, a timeout and retries; training gets
    a fresh container per input, so a retry never shares one with an attempt that may still be stopping.
    A cluster's containers take every GPU of their host (the first cluster type, unless the settings'
    GPU is one)."""
    import modal

    cpu, memory = reservation(settings)
    gpu = gpu_type(settings.modal_gpu)
    if nodes > 1:
        gpu = gpu if gpu in CLUSTER_GPU_TYPES else CLUSTER_GPU_TYPES[0]
        gpu = f"{gpu}:{GPU_TYPES[gpu]}"
    options = {
        "gpu": gpu,
        "cpu": cpu,
        "memory": memory,
        "timeout": timeout,
        "retries": modal.Retries(max_retries=RETRIES, backoff_coefficient=RETRY_BACKOFF, initial_delay=RETRY_DELAY),
    }
    if train:
        options["single_use_containers"] = True
    return options
