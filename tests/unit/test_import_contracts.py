"""The layering, checked on the source: the domain and the kernel are pure, handlers see no
adapter and no generated protobuf code."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
DOMAIN_SERVICES = sorted(p.parent.name for p in SERVICES.glob("*/domain"))


def imports_of(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: relative import; the contracts read absolute ones")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            raise AssertionError(f"{path}: __import__ hides an import from this check")
    return found


def stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


def test_every_service_with_a_domain_is_checked():
    assert {"insurance", "pharmacy", "prescribing"} <= set(DOMAIN_SERVICES)


@pytest.mark.parametrize("service", DOMAIN_SERVICES)
def test_domain_imports_only_the_standard_library_the_kernel_and_itself(service):
    files = sorted((SERVICES / service / "domain").rglob("*.py"))
    assert files
    allowed = ("services.kernel", f"services.{service}.domain")
    bad = {f"{f.relative_to(SERVICES)}: {m}" for f in files for m in imports_of(f)
           if not stdlib(m) and not m.startswith(allowed)}
    assert not bad, sorted(bad)


def test_kernel_imports_only_the_standard_library_and_itself():
    files = sorted((SERVICES / "kernel").rglob("*.py"))
    assert files
    bad = {f"{f.name}: {m}" for f in files for m in imports_of(f) if not stdlib(m) and not m.startswith("services.kernel")}
    assert not bad, sorted(bad)


@pytest.mark.parametrize("service", DOMAIN_SERVICES)
def test_handlers_import_no_adapter_and_no_generated_code(service):
    modules = imports_of(SERVICES / service / "handlers.py")
    bad = [m for m in modules if ".adapters" in m or m.startswith("eprescription") or m.endswith(("_pb2", "_pb2_grpc"))
           or m.split(".")[0] in ("grpc", "redis", "faust", "kafka", "aiokafka", "google")]
    assert not bad, bad


def test_the_check_sees_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import redis\nfrom eprescription.common.v1 import common_pb2\nfrom datetime import date\n")
    assert [m for m in imports_of(sample) if not stdlib(m)] == ["redis", "eprescription.common.v1"]
