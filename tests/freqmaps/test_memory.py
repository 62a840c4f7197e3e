"""The solver's memory budget at 224 px: the working batch picked from `maps.memory_gib` really stays inside it
(the peak resident memory of a child process that solves ResNet-18 maps), results do not depend on it, and a
budget that holds no image or an allocation failure names the knobs."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from freqmaps.errors import UserInputError
from freqmaps.maps import MapSettings, essential_maps
from freqmaps.memory import GIB, footprint, working_batch
from freqmaps.models import create_model

CHILD = """
import json, resource, sys, torch
from freqmaps.maps import MapSettings, essential_maps
from freqmaps.models import create_model
torch.manual_seed(0)
torch.set_num_threads(1)
model = create_model("resnet18", 10, 3, 224).eval()
x = torch.rand(12, 3, 224, 224)
y = model(x).argmax(1).detach()
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
budget = float(sys.argv[1])
settings = MapSettings(lam=0.1, min_steps=2, max_steps=3, batch_size=12, memory_gib=budget)
essential_maps(model, x[:1], y[:1], settings, memory_gib=None, progress=False)  # warm up
before = peak()
maps = essential_maps(model, x, y, settings, progress=False)
print(json.dumps({"growth": peak() - before, "batch": maps.settings["batch_size"]}))
"""


def test_the_picked_working_batch_stays_inside_the_budget():
    budget = 0.4
    result = subprocess.run([sys.executable, "-c", CHILD, str(budget)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert 2 <= measured["batch"] < 12  # the budget, not batch_size, set the batch
    assert measured["growth"] <= budget * GIB  # the solve's peak memory fitted the budget


def test_the_budget_scales_the_batch_and_not_the_maps():
    torch.manual_seed(0)
    model = create_model("resnet18", 10, 3, 32).eval()
    x = torch.rand(6, 3, 32, 32)
    y = model(x).argmax(1)
    fixed, per_image = footprint(model, x)
    budget = (fixed + 3.5 * per_image) / GIB
    assert working_batch(model, x, 256, budget) == 3
    assert working_batch(model, x, 2, budget) == 2  # at most batch_size
    settings = MapSettings(lam=0.1, min_steps=3, max_steps=4, batch_size=6)
    budgeted = essential_maps(model, x, y, settings, memory_gib=budget, progress=False)
    whole = essential_maps(model, x, y, settings, progress=False)
    assert budgeted.settings["batch_size"] == 3
    torch.testing.assert_close(budgeted.maps, whole.maps, atol=1e-6, rtol=0)
    _, at_double = footprint(model, torch.rand(1, 3, 64, 64))
    assert at_double / per_image == pytest.approx(4, rel=0.1)  # activations grow with the pixels


def test_a_budget_without_room_for_one_image_names_the_knobs():
    model = create_model("resnet18", 10, 3, 224).eval()
    x = torch.rand(2, 3, 224, 224)
    with pytest.raises(UserInputError, match=r"maps.memory_gib 0.001 holds no 3x224x224 image.*maps.autocast"):
        essential_maps(model, x, torch.zeros(2, dtype=torch.long), memory_gib=0.001, progress=False)


def test_running_out_of_memory_names_the_batch_knobs(monkeypatch):
    import freqmaps.maps as maps_module

    def exhausted(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 123456789 bytes.")

    monkeypatch.setattr(maps_module, "_solve_warm_then_cold", exhausted)
    model = create_model("small_cnn", 10, 3, 32).eval()
    with pytest.raises(UserInputError, match=r"out of memory solving 3x32x32 maps 256 at a time: lower "
                                             r"maps.batch_size, or set maps.memory_gib"):
        essential_maps(model, torch.rand(2, 3, 32, 32), torch.zeros(2, dtype=torch.long), progress=False)
