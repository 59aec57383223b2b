"""Spend enters the books through one door: the metering engine (billing/metering). No other
module places, settles or releases a hold, grows a lease or commits a settlement batch: only the
modules that define these (billing/holds.py, billing/batches.py) and the engine use them."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOORS = {"hold_place", "hold_settle", "hold_release", "lease_grow", "lease_shrink",
         "usage_batch_commit"}  # fmt: skip
ALLOWED = ("billing/holds.py", "billing/batches.py", "billing/metering/")
SKIPPED = (".venv/", "tests/", "var/", "benchmarks/")


def second_doors(root: Path) -> list[str]:
    """Every use of a door outside the engine, in the project's modules under ``root``."""
    offenders = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(SKIPPED + ALLOWED) or "/migrations/" in "/" + relative:
            continue
        tree = ast.parse(path.read_text(), filename=relative)
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and node.attr in DOORS:
                name = node.attr
            elif isinstance(node, ast.Name) and node.id in DOORS:
                name = node.id
            elif isinstance(node, ast.ImportFrom):
                name = next((a.name for a in node.names if a.name in DOORS), None)
            if name:
                offenders.append(f"{relative}:{node.lineno} uses {name}")
    return offenders


def test_only_the_metering_engine_touches_holds():
    assert second_doors(ROOT) == []


def test_the_guard_sees_a_second_door(tmp_path):
    """The check above would catch a module that placed a hold itself, however it got it."""
    (tmp_path / "generation").mkdir()
    (tmp_path / "generation" / "probe.py").write_text("from billing.holds import hold_place\n")
    (tmp_path / "generation" / "other.py").write_text(
        "from billing import batches\nbatches.usage_batch_commit(batch='b')\n"
    )
    (tmp_path / "billing" / "metering").mkdir(parents=True)
    (tmp_path / "billing" / "metering" / "engine.py").write_text("hold_place()\n")
    # Inside billing too: the wallet's other modules do not settle holds themselves.
    (tmp_path / "billing" / "services.py").write_text("from billing.holds import hold_settle\n")
    (tmp_path / "billing" / "holds.py").write_text("def hold_place(): ...\nhold_place()\n")
    assert sorted(second_doors(tmp_path)) == [
        "billing/services.py:1 uses hold_settle",
        "generation/other.py:2 uses usage_batch_commit",
        "generation/probe.py:1 uses hold_place",
    ]
