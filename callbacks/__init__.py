"""Per-epoch orchestration: pick a fixed probe set, call the freqmaps core on the current model, log the results.

`FrequencyMapsCallback` (essential / adversarial maps and their correlation) and `RobustAccuracyCallback`
(accuracy under an attack), both sharded across processes under DDP (see `callbacks.probe`).
"""
from callbacks.curvature import CurvatureCallback
from callbacks.fragility import FragilityCallback
from callbacks.frequency_maps import FrequencyMapsCallback
from callbacks.robust_accuracy import RobustAccuracyCallback
from callbacks.transfer import TransferCallback
from callbacks.weight_kurtosis import WeightKurtosisCallback

__all__ = ["CurvatureCallback", "FragilityCallback", "FrequencyMapsCallback", "RobustAccuracyCallback",
           "TransferCallback", "WeightKurtosisCallback"]
