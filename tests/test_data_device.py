"""The device-resident data path, bring-your-own data, and the training switches that use it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from optuna_energy import run_study
from optuna_energy.config import ConfigError, load_config
from optuna_energy.data import (
    ArraySplits,
    DatasetError,
    DeviceData,
    from_datasets,
    from_tensors,
)
from optuna_energy.data.device import random_crop, random_flip
from optuna_energy.model.space import TrainingParams
from optuna_energy.trial.train import evaluate, precision_context, train


def splits(n: int = 64, shape=(3, 8, 8), seed: int = 0) -> ArraySplits:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % 4
    return from_tensors(images, labels, images[: n // 2], labels[: n // 2], name="toy")


def test_normalised_training_images_have_zero_mean_and_unit_std_per_channel():
    data = DeviceData(splits(), "cpu")
    everything = data.normalize(data.train_x)
    torch.testing.assert_close(everything.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(everything.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)


def test_an_epoch_visits_every_image_once_in_a_seeded_order():
    data = DeviceData(splits(), "cpu")

    def epoch(seed: int) -> list[torch.Tensor]:
        return list(data.train_batches(10, torch.Generator(device=data.device).manual_seed(seed)))

    first = epoch(0)
    assert [len(labels) for _, labels in first] == [10] * 6 + [4]
    seen = torch.cat([images for images, _ in first])
    expected = data.normalize(data.train_x).flatten(1).tolist()
    assert sorted(map(tuple, seen.flatten(1).tolist())) == sorted(map(tuple, expected))
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first, epoch(0)))
    assert not torch.equal(first[0][0], epoch(1)[0][0])


def test_batches_are_not_augmented_unless_asked():
    data = DeviceData(splits(), "cpu")
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    images, labels = next(data.train_batches(64, generator))
    torch.testing.assert_close(images, data.normalize(data.train_x[order]))
    assert torch.equal(labels, data.train_y[order])


def test_random_crop_shifts_each_image_within_its_zero_border():
    images = torch.arange(16 * 2 * 6 * 6, dtype=torch.int64).view(16, 2, 6, 6).to(torch.uint8)
    cropped = random_crop(images, 2, torch.Generator().manual_seed(0))
    padded = nn.functional.pad(images, (2, 2, 2, 2))
    offsets = []
    for image, source in zip(cropped, padded):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(image, source[:, dy:dy + 6, dx:dx + 6])]
        assert matches, "every crop is a 6x6 window of the padded image"
        offsets.append(matches[0])
    assert len(set(offsets)) > 4


def test_random_flip_mirrors_about_half_of_the_images():
    images = torch.randint(0, 256, (200, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(out, image.flip(2)) for out, image in zip(flipped, images)]
    unchanged = [torch.equal(out, image) for out, image in zip(flipped, images)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 70 < sum(mirrored) < 130


def test_augmentation_applies_to_training_batches_only():
    data = DeviceData(splits(), "cpu", augment=("crop", "flip"))
    images, _ = next(data.train_batches(64, torch.Generator().manual_seed(0)))
    assert (images == data.normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))).any()  # zero border
    evaluation = torch.cat([batch for batch, _ in data.eval_batches(10)])
    torch.testing.assert_close(evaluation, data.normalize(data.eval_x))


def test_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'; allowed: crop, flip"):
        DeviceData(splits(), "cpu", augment=("rotate",))


def test_channels_last_batches_and_host_copy_for_inference_timing():
    data = DeviceData(splits(), "cpu", channels_last=True)
    images, _ = next(data.train_batches(8, torch.Generator().manual_seed(0)))
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert data.eval_x_host.dtype == torch.uint8 and torch.equal(data.eval_x_host, data.eval_x.cpu())


def test_bf16_precision_autocasts_and_a_model_still_learns():
    cpu = torch.device("cpu")
    with precision_context(cpu, "bf16"):
        assert nn.Linear(4, 2)(torch.ones(1, 4)).dtype == torch.bfloat16
    with precision_context(cpu, "fp32"):
        assert nn.Linear(4, 2)(torch.ones(1, 4)).dtype == torch.float32
    # Labels are the image's brightest quadrant pixel, so a linear model can learn them.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, size=(512, 1, 2, 2), dtype=np.uint8)
    labels = rng.integers(0, 4, size=512)
    images.reshape(512, 4)[np.arange(512), labels] = 255
    data = DeviceData(from_tensors(images, labels, images, labels), "cpu", channels_last=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4)).to(memory_format=data.memory_format)
    params = TrainingParams(learning_rate=0.05, optimizer="adam", batch_size=32, weight_decay=1e-6)
    train(model, data, params, epochs=5, seed=0, precision="bf16")
    assert evaluate(model, data, precision="bf16") > 0.9


def test_from_tensors_accepts_float_and_grey_images_and_checks_labels():
    images = torch.rand(10, 6, 6)
    data = from_tensors(images, torch.arange(10) % 2, images[:4], torch.tensor([0, 1, 0, 1]))
    assert data.train_x.dtype == np.uint8 and data.input_shape == (1, 6, 6) and data.n_classes == 2
    np.testing.assert_array_equal(data.train_x[:, 0], np.rint(images.numpy() * 255))
    with pytest.raises(DatasetError, match=r"label 3 does not fit n_classes = 2"):
        from_tensors(images, torch.arange(10) % 4, images, torch.arange(10) % 2, n_classes=2)
    with pytest.raises(DatasetError, match=r"outside \[0, 1\]"):
        from_tensors(images * 255, torch.zeros(10, dtype=torch.int64), images, torch.zeros(10, dtype=torch.int64))
    with pytest.raises(DatasetError, match="train_x has 10 images but train_y has 3 labels"):
        from_tensors(images, [0, 1, 0], images, torch.zeros(10, dtype=torch.int64))
    with pytest.raises(DatasetError, match="both need one"):
        from_tensors(images, torch.zeros(10, dtype=torch.int64), torch.rand(2, 3, 6, 6), [0, 0])


def test_from_datasets_reads_pil_and_to_tensor_datasets_alike():
    def fake(**kwargs):
        return torchvision.datasets.FakeData(size=12, image_size=(3, 8, 8), num_classes=3, random_offset=5, **kwargs)

    from_pil = from_datasets(fake(), fake(), n_classes=3)
    from_tensor = from_datasets(fake(transform=torchvision.transforms.ToTensor()), fake(), n_classes=3)
    np.testing.assert_array_equal(from_pil.train_x, from_tensor.train_x)
    assert from_pil.input_shape == (3, 8, 8) and from_pil.n_classes == 3
    np.testing.assert_array_equal(from_pil.train_y, [int(label) for _, label in fake()])


def test_run_study_takes_python_data_and_the_training_switches(tmp_path):
    config = load_config({
        "study": {"storage": f"sqlite:///{tmp_path / 'study.db'}", "n_trials": 2, "device": "cpu",
                  "sampler": "random"},
        "training": {"epochs": 1, "batch_sizes": [16], "precision": "bf16", "channels_last": True,
                     "augment": ["crop", "flip"], "crop_padding": 1},
        # Random images: nothing learns them, and early stopping would end every trial at chance.
        "early_stopping": {"enabled": False},
        "space": {"feature_slots": 2, "classifier_slots": 1, "conv_channels": [4, 8],
                  "inception_width": [2, 4], "linear_width": [8, 16]},
        "measure": {"min_window_seconds": 0.05, "idle_seconds": 0, "warmup_batches": 1},
    })
    study = run_study(config, dataset=splits(), show_progress_bar=False)
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]
    attrs = study.trials[0].user_attrs
    assert attrs["eval_split"] == "evaluation tensors" and attrs["precision"] == "bf16"


@pytest.mark.parametrize("keys, message", [
    ({"name": "cifar10"}, "[dataset] root is required for cifar10"),
    ({"name": "cifar10", "root": "d", "eval_split": "valid"},
     "[dataset] eval_split is 'valid' for cifar10; allowed: test, validation"),
    ({"name": "cinic10", "root": "d", "eval_split": "test"},
     "[dataset] eval_split is 'test' for cinic10; allowed: valid"),
    ({"name": "cinic10", "root": "d", "download": True},
     "[dataset] download = true works only for cifar10, cifar100"),
    ({"name": "imagefolder", "root": "d"}, "[dataset] image_size is required for imagefolder"),
    ({"name": "imagefolder", "root": "d", "image_size": 8, "eval_split": "../x"},
     "or the name of a sub-folder of root next to train/"),
    ({"name": "imagefolder", "root": "d", "image_size": 8, "channels": 2},
     "[dataset] channels is 2; allowed: 1 (grey), 3 (RGB)"),
    ({"name": "cifar100", "root": "d", "image_size": 8}, "image_size and channels apply only to imagefolder"),
    ({"name": "mnist"}, "[dataset] name is 'mnist'; allowed: digits, cifar10, cifar100, cinic10, imagefolder"),
])
def test_dataset_config_errors_name_the_key_and_what_is_allowed(keys, message):
    with pytest.raises(ConfigError) as error:
        load_config({"dataset": keys})
    assert message in str(error.value)


@pytest.mark.parametrize("keys, message", [
    ({"precision": "fp16"}, "[training] precision is 'fp16'; allowed: fp32, bf16"),
    ({"augment": ["crop", "rotate"]}, "[training] augment entry is 'rotate'; allowed: crop, flip"),
    ({"channels_last": "yes"}, "[training] channels_last must be bool"),
])
def test_training_switch_errors(keys, message):
    with pytest.raises(ConfigError) as error:
        load_config({"training": keys})
    assert message in str(error.value)
