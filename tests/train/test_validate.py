import os

import pytest

from tandem.errors import UsageError
from tandem.train import validate as validate_module
from tandem.train.config import ClassifierTrainConfig, DiTTrainConfig
from tandem.train.validate import RUN_NAME_MAX, SAMPLE_STEPS_MAX, SEED_MAX, check_cpu_threads, cores, validate


@pytest.mark.parametrize(
    "changes, flag",
    [
        (dict(dataset="nope"), "--dataset"),
        (dict(steps=0), "--steps"),
        (dict(steps=-3), "--steps"),
        (dict(batch_size=-1), "--batch-size"),
        (dict(log_every=-1), "--log-every"),
        (dict(lr=0.0), "--lr"),
        (dict(image_size=10, patch_size=4), "--patch-size"),
        (dict(size="XXL"), "--size"),
        (dict(keep_checkpoints=0), "--keep-checkpoints"),
        (dict(device="tpu"), "--device"),
        (dict(classifier_checkpoint="/no/such.pt"), "--classifier-checkpoint"),
        (dict(dataset="imagefolder"), "--folder"),
    ],
)
def test_validate_names_the_flag(changes, flag):
    with pytest.raises(UsageError, match=flag):
        validate(DiTTrainConfig(**changes))


@pytest.mark.parametrize(
    "changes, flag",
    [(dict(arch="vgg"), "--arch"), (dict(epochs=0), "--epochs"), (dict(arch="resnet18", width=8), "--width")],
)
def test_validate_classifier(changes, flag):
    with pytest.raises(UsageError, match=flag):
        validate(ClassifierTrainConfig(**changes))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(seed=2**63), "--seed must be between 0 and 2**63 - 1, got 9223372036854775808"),
        (dict(seed=-1), "--seed must be between 0 and 2**63 - 1, got -1"),
        (dict(sample_steps=1001), "--sample-steps must be between 1 and 1000, got 1001"),
        (dict(sample_steps=0), "--sample-steps must be between 1 and 1000, got 0"),
        (dict(run_name="a" * 101), "--run-name is 101 characters long; use at most 100"),
    ],
)
def test_the_documented_ranges_are_enforced(changes, message):
    with pytest.raises(UsageError) as error:
        validate(DiTTrainConfig(**changes))
    assert str(error.value) == message


def test_the_ends_of_the_ranges_are_accepted():
    validate(DiTTrainConfig(seed=2**63 - 1, sample_steps=1000, run_name="a" * 100))
    validate(DiTTrainConfig(seed=0, sample_steps=1))


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            dict(translate=8),
            "--translate 8 must be smaller than the image size (the 8x8 images of digits); pass --translate 7 or less",
        ),
        (
            dict(dataset="cifar10", translate=1000),
            "--translate 1000 must be smaller than the image size (the 32x32 images of cifar10); "
            "pass --translate 31 or less",
        ),
        (
            dict(image_size=4, translate=4),
            "--translate 4 must be smaller than the image size (--image-size 4); pass --translate 3 or less",
        ),
    ],
)
def test_translate_is_checked_against_the_image_size(changes, message):
    with pytest.raises(UsageError) as error:
        validate(ClassifierTrainConfig(**changes))
    assert str(error.value) == message


def test_translate_below_the_image_size_is_accepted():
    validate(ClassifierTrainConfig(translate=7))  # digits: 8x8
    validate(ClassifierTrainConfig(translate=8, image_size=16))


def test_cpu_threads_are_at_most_the_cores(monkeypatch):
    monkeypatch.setattr(validate_module, "cores", lambda: 4)
    check_cpu_threads(0)
    check_cpu_threads(4)
    with pytest.raises(UsageError) as error:
        check_cpu_threads(100000)
    assert str(error.value) == "--cpu-threads must be between 0 (one per core) and the 4 cores here, got 100000"
    with pytest.raises(UsageError):
        check_cpu_threads(-1)


def test_cores_are_those_this_process_may_use():
    assert 1 <= cores() <= os.cpu_count()


def test_the_flag_help_documents_the_ranges():
    def help_of(cls, name: str) -> str:
        return cls.__dataclass_fields__[name].metadata["help"]

    assert f"at most {RUN_NAME_MAX} characters" in help_of(DiTTrainConfig, "run_name")
    assert "0 to 2**63 - 1" in help_of(DiTTrainConfig, "seed") and SEED_MAX == 2**63 - 1
    assert f"1 to {SAMPLE_STEPS_MAX}" in help_of(DiTTrainConfig, "sample_steps")
    assert "at most the cores" in help_of(DiTTrainConfig, "cpu_threads")
    assert "fewer than the image size" in help_of(ClassifierTrainConfig, "translate")
    assert "must fit the device's memory" in help_of(DiTTrainConfig, "depth")
