"""The probe set is fixed by its seed and dealt to the processes in equal, padded batches that cover it once."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from callbacks import FrequencyMapsCallback, RobustAccuracyCallback
from callbacks.probe import dealt_batches, load_shard, probe_indices
from freqmaps.errors import UserInputError


def test_probe_indices_are_a_fixed_seeded_draw():
    first, again = probe_indices(100, 30, seed=3), probe_indices(100, 30, seed=3)
    assert torch.equal(first, again) and len(first.unique()) == 30 and bool((first.diff() > 0).all())
    assert not torch.equal(first, probe_indices(100, 30, seed=4))
    assert torch.equal(probe_indices(10, 30, seed=0), torch.arange(10))  # a probe larger than the data: all of it


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_have_equal_shapes_and_cover_the_probe_once(world_size):
    dataset = TensorDataset(torch.rand(50, 1, 8, 8), torch.arange(50) % 10)
    indices = probe_indices(50, 40, seed=0)
    shards = [load_shard(dataset, indices, 16, rank, world_size) for rank in range(world_size)]
    assert len({len(shard.y) for shard in shards}) == 1  # every process gathers the same shapes
    positions = torch.cat([shard.position for shard in shards])
    assert sorted(positions[positions >= 0].tolist()) == list(range(40))
    for shard in shards:
        real = shard.position >= 0
        assert torch.equal(shard.index[real], indices[shard.position[real]])
        assert torch.equal(shard.x[real], dataset.tensors[0][shard.index[real]])
        assert torch.equal(shard.y[real], dataset.tensors[1][shard.index[real]])
        for number, rows in shard:  # batch b: probe positions 16 b .. min(16 b + 15, 39), whatever the world size
            assert torch.equal(shard.position[rows], torch.arange(16 * number, min(16 * (number + 1), 40)))
    assert dealt_batches(40, 16, 0, 2) == [0, 2] and dealt_batches(40, 16, 1, 2) == [1, 3]  # 3: padding only
    assert [number for number, _ in shards[0]] == list(range(0, 3, world_size))  # padding batches are skipped


def test_a_probe_smaller_than_a_batch_is_one_batch_of_its_size():
    dataset = TensorDataset(torch.rand(50, 1, 8, 8), torch.arange(50) % 10)
    shard = load_shard(dataset, probe_indices(50, 8, seed=0), 256, 0, 1)
    assert shard.batch_size == 8 and len(shard.y) == 8


@pytest.mark.parametrize("build, message", [
    (lambda: FrequencyMapsCallback(probe_size=0), "probe_size must be >= 1"),
    (lambda: FrequencyMapsCallback(lam=-1.0), "lam must be >= 0"),
    (lambda: FrequencyMapsCallback(min_steps=10, max_steps=5), "min_steps must be in [0, max_steps]"),
    (lambda: FrequencyMapsCallback(warm_min_steps=-1), "warm_min_steps must be >= 0"),
    (lambda: RobustAccuracyCallback(every_n_epochs=0), "every_n_epochs must be >= 1"),
    (lambda: RobustAccuracyCallback(name="val/robust"), "without '/'"),
])
def test_bad_settings_give_clear_errors(build, message):
    with pytest.raises(UserInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build()
