"""The README's snnTorch example runs as written (keeps the documentation true)."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_wrap_example_runs():
    text = README.read_text()
    section = text.split("## Wrap your snnTorch network", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    torch.manual_seed(0)
    exec(compile(code, str(README), "exec"), ns)
    assert ns["logits"].shape == (8, 12)
    assert ns["noisy"].fc1.errors == "static" and ns["noisy"].fc1.error_model == ns["sn"].MultiLevelNVM.noise_level(3)


def test_readme_starts_with_the_two_commands_ci_runs():
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    assert block[0].startswith("bash .ci/setup && .venv/bin/spikenoise compare")
    assert block[1].startswith("bash .ci/setup && .venv/bin/python -m pytest")
    ci = (README.parent / ".ci" / "run").read_text()
    assert "bash .ci/setup" in ci and ".venv/bin/python -m pytest" in ci
