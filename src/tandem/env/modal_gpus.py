"""The GPUs Modal offers, as its GPU guide and multi-node guide document them for the pinned client
(modal 1.6): the types `gpu=` accepts, how many fit in one container, their compute capability, and
which of them form clusters. The client itself only upper-cases a type and splits off `:COUNT`, so without
this table a typo fails on Modal, after the image build. The Modal app (modal_app/resources.py) and
`tandem doctor` both read it."""

from __future__ import annotations

# type -> most GPUs per container ("H100!" is an H100 never upgraded to an H200; "B200+" may get a B300)
GPU_TYPES = {
    "T4": 8,
    "L4": 8,
    "A10": 4,
    "A10G": 4,  # the older name of A10
    "L40S": 8,
    "A100": 8,
    "A100-40GB": 8,
    "A100-80GB": 8,
    "RTX-PRO-6000": 1,  # the guide names no multi-GPU count for it
    "H100": 8,
    "H100!": 8,
    "H200": 8,
    "B200": 8,
    "B200+": 8,
}
GPU_ARCH = {
    "T4": "sm_75", "L4": "sm_89", "A10": "sm_86", "A10G": "sm_86", "L40S": "sm_89", "A100": "sm_80",
    "A100-40GB": "sm_80", "A100-80GB": "sm_80", "RTX-PRO-6000": "sm_120", "H100": "sm_90", "H100!": "sm_90",
    "H200": "sm_90", "B200": "sm_100", "B200+": "sm_100",
}  # fmt: skip
# Clusters (modal.clustered): each container takes every GPU of its host, only these types, at most 32
# nodes and 256 GPUs.
CLUSTER_GPU_TYPES = ("H100", "H100!", "H200", "B200", "B200+")
MAX_CLUSTER_NODES = 32
MAX_CLUSTER_GPUS = 256
