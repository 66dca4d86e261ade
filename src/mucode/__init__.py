"""mucode: multi-turn code generation from execution feedback, trained with single-step rewards."""

from mucode.types import ExecResult, Problem, TestStatus, TestVerdict

__version__ = "0.1.0"
__all__ = ["ExecResult", "Problem", "TestStatus", "TestVerdict", "__version__"]
