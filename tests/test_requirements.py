"""The template's own dev environment can run every rendered project's tests."""

from __future__ import annotations

import ast
import re

from packaging.specifiers import SpecifierSet

from conftest import TEMPLATE


def requirement_names(lines: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ]", line.strip())[0].lower() for line in lines if line.strip()}


def hook_table(name: str) -> list[tuple[str, object]]:
    tree = ast.parse((TEMPLATE / "hooks" / "post_gen_project.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in post_gen_project.py")


def test_dev_requirements_cover_rendered_core_and_dev() -> None:
    lines = (TEMPLATE / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    dev = requirement_names([line for line in lines if not line.startswith("#")])
    always = [req for req, cond in hook_table("REQUIREMENTS") if cond is None]
    always += [req for req, cond in hook_table("DEV_REQUIREMENTS")]
    always += [req for req, cond in hook_table("EXPORT_REQUIREMENTS")]  # tests of the extra
    missing = requirement_names(always) - dev
    assert not missing, f"requirements-dev.txt lacks {sorted(missing)}"


def test_torch_is_pinned_to_the_local_cpu_build() -> None:
    lines = (TEMPLATE / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    assert "torch==2.13.0" in lines
    assert lines.index("torch==2.13.0") == min(
        i for i, line in enumerate(lines) if line and not line.startswith("#")
    )


def test_rendered_torch_range_admits_the_pinned_build() -> None:
    torch = next(req for req, _ in hook_table("REQUIREMENTS") if req.startswith("torch"))
    spec = SpecifierSet(torch.removeprefix("torch"))
    assert spec.contains("2.13.0")
    assert spec.contains("2.14.1")  # a CUDA build the user already has is kept too
