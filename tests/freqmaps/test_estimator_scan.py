"""`python -m freqmaps.estimator_scan` on a study folder whose maps share a known latent: every estimator finds
the dependence, the TwoNN row is the study's own IdCor, and shuffled pairs give the null level."""
from __future__ import annotations

import json

import pytest
import torch

from freqmaps.correlation import correlate_maps
from freqmaps.estimator_scan import ESTIMATORS, main
from freqmaps.maps import FrequencyMaps
from freqmaps.power import simulated_pairs


def maps_of(kind: str, values: torch.Tensor, index: torch.Tensor) -> FrequencyMaps:
    n = len(values)
    flags = torch.ones(n, dtype=torch.bool)
    return FrequencyMaps(kind, values.view(n, 1, 4, 4), index, torch.zeros(n, dtype=torch.long),
                         torch.full((n,), -1 if kind == "essential" else 1), torch.ones(n, dtype=torch.long),
                         flags, flags, torch.zeros(n, dtype=torch.bool))


def test_every_estimator_sees_a_shared_latent(tmp_path, capsys):
    n = 240
    adversarial, essential = simulated_pairs(n, 3, 3, 3, ambient=16, generator=torch.Generator().manual_seed(0))
    adversarial, essential = adversarial.float(), essential.float()  # A and E: one 3-dim latent
    index = torch.arange(n)
    (tmp_path / "maps").mkdir()
    maps_of("essential", essential, index).save(tmp_path / "maps" / "essential.pt")
    maps_of("adversarial", adversarial, index).save(tmp_path / "maps" / "adversarial_FMN-linf.pt")

    main([str(tmp_path), "--permutations", "50", "--resamples", "0"])
    rows = json.loads((tmp_path / "estimators.json").read_text())
    assert [row["estimator"] for row in rows] == [name for name, _ in ESTIMATORS]
    assert all(row["p"] == pytest.approx(1 / 51) for row in rows)  # no shuffle reaches the joint dimension
    assert all(row["idcor"] > row["null_idcor"] + 0.3 for row in rows)
    direct = correlate_maps(essential.view(n, 1, 4, 4), adversarial.view(n, 1, 4, 4), index, index, 50)
    assert rows[0]["idcor"] == pytest.approx(direct.idcor.idcor)
    assert "| FMN-linf | TwoNN | 240 |" in capsys.readouterr().out


def test_a_folder_without_maps_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert str(exit_info.value.code).startswith(f"error: no {tmp_path / 'maps' / 'essential.pt'}")
