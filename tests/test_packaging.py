"""The package's metadata is consistent: conda and pip list the same dependencies."""

from __future__ import annotations

import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from conftest import REPO


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> set[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in meta["dependencies"]}
    for extra in meta["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return names


def _conda_requirements() -> set[str]:
    names = set()
    in_pip = False
    for line in (REPO / "environment.yml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("- pip:"):
            in_pip = True
            continue
        if in_pip and stripped.startswith("- ") and not stripped.startswith("- -e"):
            names.add(_name(stripped[2:]))
    return names


def test_environment_yml_matches_pyproject():
    pip_names = _pyproject_requirements()
    conda_names = _conda_requirements()
    assert pip_names, "no dependencies parsed from pyproject.toml"
    assert conda_names == pip_names, (
        f"only in pyproject: {sorted(pip_names - conda_names)}; "
        f"only in environment.yml: {sorted(conda_names - pip_names)}"
    )


def test_version_matches_pyproject():
    import fsl

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert fsl.__version__ == meta["version"]
