"""Transfer of adversarial examples between digits models: white-box success above transfer success, the targeted
rule checked against the targets' own predictions, the perturbations' spectrum on known perturbations, mismatched
models refused in one line, a result that survives save / load, and the map cosines, solved on a seeded draw of the
images (issue 16: on CIFAR-10's class-sorted probe the first images' targeted cosines were all nan)."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from freqmaps.attacks import PGD, TargetedPGD, attack_in_chunks
from freqmaps.errors import UserInputError
from freqmaps.maps import MapSettings, adversarial_maps, essential_maps
from freqmaps.sampling import seeded_indices, take
from freqmaps.transfer import TransferResult, perturbation_spectrum, transfer_matrix
from freqmaps.zoo import entry, load_model, load_test_split
from tests.small_digits import digits32, linear_classifier, zoo_cnn

N = 64


@pytest.fixture(scope="module")
def setting():
    x, y = digits32()
    return {"cnn": zoo_cnn(), "linear": linear_classifier()}, x[1400:1400 + N], y[1400:1400 + N]


def predictions(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def test_white_box_success_exceeds_transfer_and_the_diagonal_is_white_box(setting):
    models, x, y = setting
    attack = PGD(eps=0.1, steps=10, step_size=0.025)
    result = transfer_matrix({"cnn": models["cnn"]}, models, x, y, attack, progress=False)
    assert result.white_box[0] > 0.9
    assert result.success[0, 1] < result.white_box[0] - 0.2  # the CNN's examples fool the linear model less
    assert result.success[0, 0] == pytest.approx(result.white_box[0].item())  # a source among the targets
    # success counted over the images each target classifies correctly, from the per-image outcomes
    x_adv = attack_in_chunks(attack, models["cnn"], x, y, 256, 0)
    for j, model in enumerate(models.values()):
        correct = predictions(model, x) == y
        assert torch.equal(result.correct[j], correct) and result.counts[j] == correct.sum()
        assert torch.equal(result.outcomes[0, j], correct & (predictions(model, x_adv) != y))
        assert result.success[0, j] == pytest.approx((result.outcomes[0, j].sum() / correct.sum()).item())


def test_targeted_success_is_prediction_equal_to_the_shifted_class(setting):
    models, x, y = setting
    attack = TargetedPGD(eps=0.2, steps=10, step_size=0.05)
    for shift in (1, 3):
        result = transfer_matrix({"cnn": models["cnn"]}, {"linear": models["linear"]}, x, y, attack, targeted=True,
                                 target_shift=shift, progress=False)
        target = (y + shift) % 10
        x_adv = attack_in_chunks(attack, models["cnn"], x, target, 256, 0)
        correct = predictions(models["linear"], x) == y
        assert torch.equal(result.outcomes[0, 0], correct & (predictions(models["linear"], x_adv) == target))
        own = predictions(models["cnn"], x) == y
        reached = own & (predictions(models["cnn"], x_adv) == target)
        assert result.white_box[0] == pytest.approx((reached.sum() / own.sum()).item())
        assert result.white_box[0] > 0.8  # the targeted attack reaches its class on the white-box source
    with pytest.raises(UserInputError, match="targeted attack"):
        transfer_matrix(models, models, x, y, PGD(eps=0.1, steps=2), targeted=True, progress=False)
    with pytest.raises(UserInputError, match="untargeted attack"):
        transfer_matrix(models, models, x, y, attack, progress=False)


def test_models_of_different_tasks_give_a_one_line_error_naming_both(setting):
    models, x, y = setting
    four = nn.Sequential(nn.Flatten(), nn.Linear(1024, 4))
    with pytest.raises(UserInputError) as error:
        transfer_matrix({"cnn": models["cnn"]}, {"four": four}, x, y, PGD(steps=1), progress=False)
    message = str(error.value)
    assert "'cnn'" in message and "'four'" in message and "10 and 4" in message and "\n" not in message
    colour = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    with pytest.raises(UserInputError) as error:
        transfer_matrix({"cnn": models["cnn"]}, {"rgb": colour}, x, y, PGD(steps=1), progress=False)
    message = str(error.value)
    assert "'cnn'" in message and "'rgb'" in message and "3-channel" in message and "\n" not in message


def test_perturbation_spectrum_puts_known_perturbations_at_their_radius():
    constant = torch.full((2, 1, 32, 32), 0.01)
    assert perturbation_spectrum(constant)[0] == pytest.approx(1.0)
    i = torch.arange(32)
    checker = ((-1.0) ** (i[:, None] + i[None, :])).expand(2, 3, 32, 32) * 0.01
    spectrum = perturbation_spectrum(checker)
    assert spectrum.argmax() == len(spectrum) - 1 and spectrum[-1] == pytest.approx(1.0)  # radius 16·sqrt 2


def test_result_survives_save_and_load(setting, tmp_path):
    models, x, y = setting
    result = transfer_matrix(models, models, x[:16], y[:16], PGD(eps=0.1, steps=2), progress=False)
    result.save(tmp_path / "transfer.pt")
    loaded = TransferResult.load(tmp_path / "transfer.pt")
    assert loaded.sources == ["cnn", "linear"] and loaded.targeted is False
    for name in ("success", "white_box", "counts", "outcomes", "correct", "spectrum", "map_index", "map_cosine"):
        assert torch.equal(getattr(loaded, name), getattr(result, name))
    assert result.map_cosine.shape == (2, 2, 0) and result.mean_map_cosine.isnan().all()  # map_images=0: no solve
    assert result.map_index.shape == (0,) and not result.map_pairs.any()


def test_map_cosines_are_those_of_the_maps_of_a_seeded_draw_of_the_images(setting, tmp_path):
    models, x, y = setting
    order = y.argsort(stable=True)  # sorted by class, as a seeded probe of an image folder comes out
    x, y = x[order], y[order]
    attack, m = TargetedPGD(eps=0.2, steps=5, step_size=0.05), 6
    settings = MapSettings(solver="fast", fast_min_steps=20, fast_max_steps=40)
    result = transfer_matrix({"cnn": models["cnn"]}, models, x, y, attack, targeted=True, progress=False,
                             map_images=m, map_settings=settings)
    rows = seeded_indices(N, m, 0)
    assert torch.equal(result.map_index, rows) and result.map_cosine.shape == (1, 2, m)
    assert len(y[:m].unique()) == 1 and len(y[rows].unique()) > 2  # the first m: one class, one target class
    x_adv = attack_in_chunks(attack, models["cnn"], x, (y + 1) % 10, 256, 0)[rows]
    adversarial = adversarial_maps(models["cnn"], x_adv, predictions(models["cnn"], x_adv), y[rows], settings,
                                   progress=False)
    for j, model in enumerate(models.values()):
        essential = essential_maps(model, x[rows], y[rows], settings, progress=False)
        valid = adversarial.kept & essential.kept & result.outcomes[0, 0, rows]  # white box: the source is a target
        assert torch.equal(~result.map_cosine[0, j].isnan(), valid) and result.map_pairs[0, j] == valid.sum()
        expected = torch.nn.functional.cosine_similarity(adversarial.maps.flatten(1), essential.maps.flatten(1))
        torch.testing.assert_close(result.map_cosine[0, j][valid], expected[valid], atol=1e-5, rtol=0)
    assert valid.any() and torch.isclose(result.mean_map_cosine[0, 1], result.map_cosine[0, 1].nanmean())
    state = {key: value for key, value in vars(result).items() if key != "map_index"}
    torch.save(state, tmp_path / "before_map_index.pt")  # saved before the draw: maps of the first m images
    assert torch.equal(TransferResult.load(tmp_path / "before_map_index.pt").map_index, torch.arange(m))


@pytest.fixture(scope="module")
def cifar10_probe() -> tuple[torch.Tensor, torch.Tensor]:
    """The transfer study's probe of 64 CIFAR-10 test images (`studies.common.load_probe`'s seeded draw, ascending:
    sorted by class, its first 8 images airplanes), from $FREQMAPS_CIFAR10."""
    if not os.environ.get("FREQMAPS_CIFAR10"):
        pytest.skip("needs CIFAR-10: set FREQMAPS_CIFAR10 to an image folder (test/<class>/*.jpg) or a .tar.gz of one")
    test_set = load_test_split(entry("cifar10_resnet20"))
    return take(test_set, seeded_indices(len(test_set), 64, 0))


def test_targeted_map_cosines_on_a_class_sorted_cifar10_probe_have_images(cifar10_probe):
    """Issue 16 at small scale: maps solved on the probe's first images (all airplanes, all targeted at automobile,
    no airplane's automobile map kept) gave no cosine, a nan for every targeted cell."""
    x, y = cifar10_probe
    assert (y[:8] == 0).all()
    attack = TargetedPGD(eps=1.0, norm="l2", steps=5, step_size=0.25)
    result = transfer_matrix({"eps0": load_model("cifar10_resnet20")}, {"seed1": load_model("cifar10_resnet20_seed1")},
                             x, y, attack, targeted=True, progress=False, map_images=8)
    assert result.mean_map_cosine[0, 0].isfinite()
    assert result.map_pairs[0, 0] > 0 and len(y[result.map_index].unique()) >= 4
