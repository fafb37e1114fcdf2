import pytest

from tandem.errors import UsageError
from tandem.train.config import ClassifierTrainConfig, DiTTrainConfig
from tandem.train.validate import validate


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
