"""udfs/ is the engine-free core: no pyflink import anywhere in it (house rule)."""

import ast
from pathlib import Path

UDFS = Path(__file__).resolve().parents[2] / "udfs"


def test_no_pyflink_import_in_udfs():
    offenders = []
    for path in UDFS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "pyflink"]
    assert offenders == []
