"""Resumable study: a run killed part way and rerun with the same settings reads its finished chunks back and ends
with exactly the uninterrupted result; the class-map solver resumes from its checkpoint to the same maps; chunked
work equals one call over all images; a folder of chunks made under other settings is refused, naming them."""
from __future__ import annotations

import math

import pytest
import torch

from freqmaps.analysis import analyse_images
from freqmaps.attacks import FMN, PGD
from freqmaps.chunks import ChunkStore, digest
from freqmaps.class_maps import class_maps
from freqmaps.errors import UserInputError
from freqmaps.maps import MapSettings
from freqmaps.study import run_study
from tests.small_digits import digits32, zoo_cnn

SETTINGS = MapSettings(lam=0.1, lr=0.05, min_steps=10, max_steps=30, batch_size=64)
CLASS_SETTINGS = MapSettings(lam=1e-3, lr=0.01, min_steps=8, max_steps=14, tol=1e-3, window=4)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Bit-for-bit comparisons need deterministic arithmetic: with two CPU threads the class-map solver's
    scatter-adds (the gradient of gathering each image's class map) already differ run to run by ~1e-5."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Interrupt(Exception):
    """Stands for the kill: raised from inside the model's forward."""


class Forwards:
    """Counts the model's forwards; with `stop_after`, raises Interrupt at that forward."""

    def __init__(self, model, stop_after: int | None = None) -> None:
        self.count, self.stop_after = 0, stop_after
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, module, args) -> None:
        self.count += 1
        if self.stop_after is not None and self.count >= self.stop_after:
            raise Interrupt

    def __enter__(self) -> Forwards:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def study(store=None):
    x, y = digits32()
    attacks = [("PGD", PGD(eps=0.1, norm="linf", steps=4, random_start=True)),
               ("FMN", FMN(norm="linf", steps=8))]
    return run_study(zoo_cnn(), x[1400:1424], y[1400:1424], attacks, SETTINGS, permutations=10, seed=2,
                     attack_batch_size=8, class_map_data=(x[1500:1530], y[1500:1530]), class_map_attack="FMN",
                     class_map_settings=CLASS_SETTINGS, adaptive_attack=("PGD", PGD(eps=0.1, norm="linf", steps=3)),
                     progress=False, resamples=0, store=store)


def assert_same_study(a, b):
    assert a.analyses.keys() == b.analyses.keys()
    for name in a.analyses:
        for part in ("essential", "adversarial"):
            ma, mb = getattr(a.analyses[name].images, part), getattr(b.analyses[name].images, part)
            for field in ma._TENSORS:
                assert torch.equal(getattr(ma, field), getattr(mb, field)), (name, part, field)
        assert torch.equal(a.analyses[name].images.x_adv, b.analyses[name].images.x_adv)
    for ra, rb in zip(a.rows, b.rows):
        for key in ra:
            if not key.endswith("seconds"):
                assert ra[key] == rb[key] or (math.isnan(ra[key]) and math.isnan(rb[key])), key
    assert torch.equal(a.defence.maps.maps, b.defence.maps.maps) and torch.equal(a.defence.maps.steps,
                                                                                   b.defence.maps.steps)
    assert a.defence.rates == b.defence.rates
    assert a.defence.adaptive_robust_accuracy == b.defence.adaptive_robust_accuracy


@pytest.fixture(scope="module")
def uninterrupted():
    with Forwards(zoo_cnn()) as forwards:
        result = study()
    return result, forwards.count


# killed in the second attack's chunks / in the class-map solver (its own checkpoints: the test below)
@pytest.mark.parametrize(("share", "last_piece"), [(0.5, "FMN_chunk0000"), (0.8, "class_map_adversarials")])
def test_a_killed_study_rerun_reads_its_chunks_and_ends_as_if_never_stopped(uninterrupted, tmp_path, share,
                                                                             last_piece):
    reference, total = uninterrupted
    fingerprint = {"run": "digits"}
    with Forwards(zoo_cnn(), stop_after=int(share * total)), pytest.raises(Interrupt):
        study(ChunkStore(tmp_path / "chunks", fingerprint))
    saved = sorted(p.stem for p in (tmp_path / "chunks").rglob("*.pt"))  # the defence's in chunks/defence
    assert last_piece in saved and "class_maps" not in saved  # stopped where the case says
    assert not list((tmp_path / "chunks").rglob("*.partial"))  # whole pieces only
    store = ChunkStore(tmp_path / "chunks", fingerprint)
    with Forwards(zoo_cnn()) as forwards:
        resumed = study(store)
    assert sorted(store.reused) == sorted(set(saved) - {"class_maps_solver"})
    assert forwards.count < total - 0.2 * share * total  # the finished work was not done again
    assert_same_study(resumed, reference)


def test_chunks_equal_one_call_over_all_images(uninterrupted):
    reference, _ = uninterrupted
    x, y = digits32()
    whole = analyse_images(zoo_cnn(), x[1400:1424], y[1400:1424], PGD(eps=0.1, norm="linf", steps=4,
                                                                       random_start=True), SETTINGS,
                           seed=2, attack_batch_size=8, progress=False)
    chunked = reference.analyses["PGD"].images
    assert torch.equal(whole.x_adv, chunked.x_adv)
    assert torch.equal(whole.essential.maps, chunked.essential.maps)
    assert torch.equal(whole.adversarial.maps, chunked.adversarial.maps)


def test_class_map_solver_resumes_from_its_checkpoint_to_the_same_maps(tmp_path):
    x, y = digits32()
    model, x, y = zoo_cnn(), x[1500:1560], y[1500:1560]
    x_adv = PGD(eps=0.15, norm="linf", steps=5)(model, x, y)
    with Forwards(model) as forwards:
        reference = class_maps(model, x, y, x_adv, 10, CLASS_SETTINGS, progress=False)
    checkpoint = tmp_path / "solver.pt"
    with Forwards(model, stop_after=forwards.count // 2), pytest.raises(Interrupt):
        class_maps(model, x, y, x_adv, 10, CLASS_SETTINGS, progress=False, checkpoint=checkpoint,
                   checkpoint_every=3)
    assert checkpoint.is_file()
    with Forwards(model) as resumed_forwards:
        resumed = class_maps(model, x, y, x_adv, 10, CLASS_SETTINGS, progress=False, checkpoint=checkpoint,
                             checkpoint_every=3)
    assert resumed_forwards.count < forwards.count - forwards.count // 4
    for field in ("maps", "steps", "converged", "clean_counts", "adversarial_counts"):
        assert torch.equal(getattr(resumed, field), getattr(reference, field)), field
    with pytest.raises(UserInputError, match="another problem"):  # the same file for other images
        class_maps(model, x[:30], y[:30], x_adv[:30], 10, CLASS_SETTINGS, progress=False, checkpoint=checkpoint)


def test_chunks_of_other_settings_are_refused_naming_them_and_restart_empties_the_folder(tmp_path):
    model = zoo_cnn()
    fingerprint = {"model": digest(model.state_dict()), "seed": 0, "images": [1, 2, 3]}
    store = ChunkStore(tmp_path, fingerprint)
    store.get("piece", lambda: {"x": torch.ones(2)})
    with pytest.raises(UserInputError, match=r"other settings \(differing: images, seed\); pass --overwrite true"):
        ChunkStore(tmp_path, fingerprint | {"seed": 1, "images": [1, 2]})
    again = ChunkStore(tmp_path, fingerprint)  # same settings: the piece is read back, not computed
    assert torch.equal(again.get("piece", lambda: pytest.fail("recomputed"))["x"], torch.ones(2))
    assert again.reused == ["piece"]
    # a later stage's own settings: changing them renews its subfolder only
    again.nested("defence", {"steps": 5}).get("stage", lambda: {"y": torch.zeros(1)})
    with pytest.raises(UserInputError, match=r"differing: steps\)"):
        ChunkStore(tmp_path, fingerprint).nested("defence", {"steps": 6})
    ChunkStore(tmp_path, fingerprint, restart=True).nested("defence", {"steps": 6})
    assert (tmp_path / "piece.pt").is_file() and not (tmp_path / "defence" / "stage.pt").exists()
    ChunkStore(tmp_path, fingerprint | {"seed": 1}, restart=True)
    assert not (tmp_path / "piece.pt").exists()
    changed = {name: t.clone() for name, t in model.state_dict().items()}
    changed["head.bias"][0] += 1e-6
    assert digest(changed) != fingerprint["model"] and digest(zoo_cnn().state_dict()) == fingerprint["model"]
