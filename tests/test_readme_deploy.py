"""The README's "Deploy: ONNX and onnxruntime" section works as written.

The ```python block after ``<!-- deploy-snippet`` runs, in a fresh interpreter with taugate made
unimportable, on a file exported by ``CompiledModel.export_onnx``: it needs only onnxruntime and
numpy, and prints the provenance from the metadata and 32 predictions. The section also shows the
``taugate export MODEL --out FILE.onnx`` command.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from taugate.runtime import CompiledModel, random_model

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- deploy-snippet"

# run before the snippet: taugate (and so every taugate.* module) cannot be imported
BLOCKER = textwrap.dedent(
    """
    import sys

    sys.modules["taugate"] = None  # an import of a None entry raises ImportError
    try:
        import taugate  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the import blocker failed: taugate is importable")
    try:
        import taugate.export  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the import blocker failed: taugate.export is importable")
    import numpy as np

    np.random.seed(0)  # the snippet's np.random.rand inputs, reproducible
    """
)


def deploy_section() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## Deploy\b.*?(?=^## |\Z)", text, re.S | re.M)
    if m is None:
        pytest.fail(f"{README} has no '## Deploy' section")
    return m.group(0)


def deploy_snippet() -> str:
    """The fenced python block right after the ``<!-- deploy-snippet`` line."""
    lines = README.read_text(encoding="utf-8").splitlines()
    at = [i for i, line in enumerate(lines) if MARKER in line]
    if len(at) != 1:
        pytest.fail(f"{README}: expected one line with {MARKER!r}, found {len(at)}")
    rest = lines[at[0] + 1 :]
    while rest and not rest[0].strip():
        rest = rest[1:]
    if not rest or rest[0].strip() != "```python":
        pytest.fail(f"{README}: the {MARKER!r} line is not followed by a ```python block")
    try:
        end = next(i for i, line in enumerate(rest) if i and line.strip() == "```")
    except StopIteration:
        pytest.fail(f"{README}: the ```python block after {MARKER!r} is never closed")
    code = "\n".join(rest[1:end]) + "\n"
    if not code.strip():
        pytest.fail(f"{README}: the ```python block after {MARKER!r} is empty")
    return code


def test_deploy_section_shows_the_export_command():
    section = deploy_section()
    assert "taugate export" in section and "--out" in section
    assert re.search(r"taugate export \S+ --out \S+\.onnx", section), section[:400]
    assert MARKER in section  # the snippet belongs to this section


def test_deploy_snippet_runs_without_taugate(tmp_path):
    code = deploy_snippet()
    assert "fmnist.onnx" in code  # the file the test provides
    prov = {"dataset": "fashion-mnist", "angle": 45.0, "method": "taugate", "lambda": 0.01,
            "seed": 0}  # fmt: skip
    model = CompiledModel(random_model([784, 64, 64, 10], 0.3, seed=4).spec,
                          {"provenance": prov})  # fmt: skip
    model.export_onnx(tmp_path / "fmnist.onnx")

    # the interpreter itself can import taugate: it is the blocker that takes it away
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    control = subprocess.run([sys.executable, "-c", "import taugate"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert control.returncode == 0, control.stderr

    done = subprocess.run([sys.executable, "-c", BLOCKER + code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, f"snippet failed:\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    assert lines, "the snippet printed nothing"
    assert ast.literal_eval(lines[0]) == prov  # the provenance from the ONNX metadata
    preds = [int(v) for v in re.findall(r"-?\d+", " ".join(lines[1:]))]
    assert len(preds) == 32 and all(0 <= p < 10 for p in preds), lines[1:]
    if "np.random.rand(32, n_in)" in code:  # the same inputs here: the same predictions
        x = np.random.RandomState(0).rand(32, 784).astype(np.float32)
        assert preds == model.predict(x, backend="compact").argmax(axis=1).tolist()
    assert sorted(os.listdir(tmp_path)) == ["fmnist.onnx"]  # the snippet writes nothing
