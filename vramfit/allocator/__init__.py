"""PyTorch's CUDA caching allocator as data: its constants (:mod:`vramfit.allocator.constants`), read by the
estimator (block rounding), the probe's attribution, its allocator model and its capped trials. Pure Python,
importable without torch; nothing here imports the estimator or the probe."""
