"""The probe set is fixed by its seed and dealt to the processes in batches that cover it once."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from callbacks import FrequencyMapsCallback, RobustAccuracyCallback
from callbacks.probe import dealt_batches, load_shard
from freqmaps.errors import UserInputError
from freqmaps.maps import MapSettings
from freqmaps.sampling import seeded_indices


def test_seeded_indices_are_a_fixed_seeded_draw():
    first, again = seeded_indices(100, 30, seed=3), seeded_indices(100, 30, seed=3)
    assert torch.equal(first, again) and len(first.unique()) == 30 and bool((first.diff() > 0).all())
    assert not torch.equal(first, seeded_indices(100, 30, seed=4))
    assert torch.equal(seeded_indices(10, 10, seed=0), torch.arange(10))  # the whole data set
    with pytest.raises(UserInputError, match="asked for 30 images but there are 10"):
        seeded_indices(10, 30, seed=0)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shards_cover_the_probe_once(world_size):
    dataset = TensorDataset(torch.rand(50, 1, 8, 8), torch.arange(50) % 10)
    indices = seeded_indices(50, 40, seed=0)
    shards = [load_shard(dataset, indices, 16, rank, world_size) for rank in range(world_size)]
    assert sorted(torch.cat([shard.position for shard in shards]).tolist()) == list(range(40))
    for shard in shards:
        assert torch.equal(shard.index, indices[shard.position])
        assert torch.equal(shard.x, dataset.tensors[0][shard.index])
        assert torch.equal(shard.y, dataset.tensors[1][shard.index])
        for number, rows in shard:  # batch b: probe positions 16 b .. min(16 b + 15, 39), whatever the world size
            assert torch.equal(shard.position[rows], torch.arange(16 * number, min(16 * (number + 1), 40)))
    assert dealt_batches(40, 16, 0, 2) == [0, 2] and dealt_batches(40, 16, 1, 2) == [1]
    assert [number for number, _ in shards[0]] == list(range(0, 3, world_size))
    if world_size == 4:  # more processes than batches: the last one has nothing to do
        assert len(shards[3].y) == 0 and shards[3].x.shape == (0, 1, 8, 8) and list(shards[3]) == []


def test_a_probe_smaller_than_a_batch_is_one_batch_of_its_size():
    dataset = TensorDataset(torch.rand(50, 1, 8, 8), torch.arange(50) % 10)
    shard = load_shard(dataset, seeded_indices(50, 8, seed=0), 256, 0, 1)
    assert shard.batch_size == 8 and len(shard.y) == 8


@pytest.mark.parametrize("build, message", [
    (lambda: FrequencyMapsCallback(probe_size=0), "probe_size must be >= 1"),
    (lambda: FrequencyMapsCallback(maps=MapSettings(lam=-1.0)), "lam must be >= 0"),
    (lambda: FrequencyMapsCallback(maps=MapSettings(min_steps=10, max_steps=5)), "min_steps must be in [0, max_steps]"),
    (lambda: FrequencyMapsCallback(warm_min_steps=-1), "warm_min_steps must be >= 0"),
    (lambda: RobustAccuracyCallback(every_n_epochs=0), "every_n_epochs must be >= 1"),
    (lambda: RobustAccuracyCallback(name="val/robust"), "without '/'"),
])
def test_bad_settings_give_clear_errors(build, message):
    with pytest.raises(UserInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build()
