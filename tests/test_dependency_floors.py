"""The lower bounds in pyproject.toml admit only releases with the APIs and defaults the code relies on."""

import inspect
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"


def requirement(name: str) -> Requirement:
    """The project's requirement on `name`, read from the dependencies list (no TOML parser on 3.10)."""
    block = re.search(r"^dependencies = \[(.*?)^\]", PYPROJECT.read_text(encoding="utf8"), re.S | re.M).group(1)
    for line in block.splitlines():
        match = re.match(r'\s*"([^"]+)",', line)
        if match and Requirement(match.group(1)).name == name:
            return Requirement(match.group(1))
    raise AssertionError(f"{name} is not in pyproject.toml's dependencies")


@pytest.mark.parametrize(
    "name,too_old,first_good,why",
    [
        ("scipy", "1.14.1", "1.15.0", "evaluation/stats.py passes rng= to scipy.stats.bootstrap"),
        ("torch", "2.5.1", "2.6.0", "torch.load must default to weights_only=True"),
    ],
)
def test_dependency_floor_admits_no_release_without_what_the_code_uses(name, too_old, first_good, why):
    specifier = requirement(name).specifier
    assert not specifier.contains(too_old), f"{name} {too_old} is allowed, but {why}"
    assert specifier.contains(first_good)


def test_installed_scipy_bootstrap_takes_rng():
    from scipy import stats

    assert "rng" in inspect.signature(stats.bootstrap).parameters
