"""The README's snnTorch and Norse examples run as written (keeps the documentation true)."""
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _wrap_examples() -> list[str]:
    section = README.read_text().split("## Wrap your network", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_wrap_example_runs():
    code = _wrap_examples()[0]
    ns: dict = {}
    torch.manual_seed(0)
    exec(compile(code, str(README), "exec"), ns)
    assert ns["logits"].shape == (8, 12)
    assert ns["noisy"].fc1.errors == "static" and ns["noisy"].fc1.error_model == ns["sn"].MultiLevelNVM.noise_level(3)


def test_readme_norse_example_runs():
    pytest.importorskip("norse")
    code = _wrap_examples()[1]
    assert "norse" in code
    ns: dict = {}
    torch.manual_seed(0)
    exec(compile(code, str(README), "exec"), ns)
    assert ns["out"].shape == (67, 8, 12)
    assert len(ns["sn"].summary(ns["noisy"])) == 4


def test_readme_starts_with_the_two_commands_ci_runs():
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    assert block[0].startswith("bash .ci/setup && .venv/bin/spikenoise compare")
    assert block[1].startswith("bash .ci/setup && .venv/bin/python -m pytest")
    ci = (README.parent / ".ci" / "run").read_text()
    assert "bash .ci/setup" in ci and ".venv/bin/python -m pytest" in ci
