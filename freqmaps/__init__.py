"""freqmaps: which frequencies a classifier relies on, which ones attacks exploit, and how they align.

Pure PyTorch core (no Lightning): Fourier masks and maps, attacks, correlation measures, models.
"""
