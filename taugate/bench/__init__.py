"""Benchmarks: ``timing.py`` the interleaved harness, ``run.py`` one model's backends side by side,
``backends.py`` the timed callables, ``machine.py`` machine info and thread limits, and the
factories of the non-runtime backends (``torch_paths.py``, ``ort_path.py``, ``scipy_path.py``)."""
