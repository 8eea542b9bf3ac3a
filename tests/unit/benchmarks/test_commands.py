"""Every ``python -m benchmarks`` command imports and declares its arguments (a command
whose module no longer loads would otherwise go unnoticed until someone measures)."""

from __future__ import annotations

import argparse
import importlib

import pytest

from benchmarks.__main__ import BENCHMARKS


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_the_command_loads_and_takes_its_arguments(name: str) -> None:
    module = importlib.import_module(BENCHMARKS[name])
    parser = argparse.ArgumentParser(prog=name)
    module.add_arguments(parser)
    assert callable(module.run)
