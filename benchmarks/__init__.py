"""vramfit's benchmarks: probe grids measured on a GPU, the allocator-slack fit, the accuracy report and
speed figures. Run each as a module from the repository root, e.g. ``python -m benchmarks.accuracy_report``.
They use vramfit's public API; nothing here is installed with the package."""
