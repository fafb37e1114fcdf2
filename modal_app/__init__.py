"""The Modal target: where tandem's trainers, sampler and check run on Modal, never how they train.

train.py      the entry file (`modal run modal_app/train.py ...`, `python modal_app/train.py ...`)
functions.py  the app: image, Volumes, one Function per command
resources.py  GPU type and count, timeout, CPU and memory: the one place that decides them
supervisor.py inside a training Function: the supervised trainer, commits, continuation
flags.py      the entrypoint's words; launch.py: what the entrypoint does with them
outputs.py    copying a run's outputs; compare_fingerprints.py: `tox -e modal`
"""
