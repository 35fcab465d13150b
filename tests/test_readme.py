"""README.md stays true: its Python example runs, its commands exist."""

from __future__ import annotations

import re
import warnings

from conftest import REPO

README = (REPO / "README.md").read_text()


def test_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no Python example"
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "model.keras").is_file()
    # e.g. Keras' "Skipping variable loading for optimizer": what a reader
    # copying the example would see.
    keras_warnings = [str(w.message) for w in caught
                      if issubclass(w.category, UserWarning) and "keras" in w.filename]
    assert not keras_warnings, keras_warnings


def test_opening_commands_are_the_install_and_run_commands():
    commands = re.findall(r"```bash\n(.*?)```", README, flags=re.S)[:2]
    assert commands[0].strip().endswith("fsl train siamese-mnist")
    assert commands[1].strip().endswith('pip install -e ".[dev]" && pytest')
    assert "pytest" in (REPO / ".ci" / "run").read_text()


def test_cli_commands_listed_in_readme_exist():
    from fsl import cli

    listed = set(re.findall(r"^fsl (\w+)", README, flags=re.M))
    assert listed, "README lists no fsl commands"
    assert listed <= set(cli.COMMANDS), listed - set(cli.COMMANDS)
