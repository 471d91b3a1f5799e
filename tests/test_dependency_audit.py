"""The dependency audit (tools/audit_deps.py, docs/security.md "Dependencies").

The first test audits the installed environment with pip-audit over the network. Without a
network it is skipped with the reason, unless ``POSTURE_AUDIT_REQUIRED=1`` (set it in CI), which
turns "could not audit" into a failure. The others check, on pip-audit reports of its own JSON
shape, that a finding reads as something a person can act on."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_deps_under_test", REPO / "tools" / "audit_deps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_deps_under_test"] = module
    spec.loader.exec_module(module)
    return module


audit_deps = _load_tool()


def test_the_installed_environment_has_no_dependency_with_a_known_vulnerability():
    try:
        audit = audit_deps.parse_report(audit_deps.run_pip_audit(timeout_s=50))
    except audit_deps.AuditUnavailable as exc:
        if os.environ.get("POSTURE_AUDIT_REQUIRED") == "1":
            pytest.fail(f"the dependency audit could not run: {exc}")
        pytest.skip(f"dependency audit not possible here: {exc}")
    assert not audit.findings, "\n" + audit_deps.render(audit, audit_deps.direct_dependencies())


def report(*dependencies: dict[str, Any]) -> dict[str, Any]:
    return {"dependencies": list(dependencies), "fixes": []}


JINJA_ADVISORY = {
    "id": "GHSA-h5c8-rqwp-cp95",
    "fix_versions": ["3.1.3"],
    "aliases": ["CVE-2024-22195"],
    "description": "The xmlattr filter in affected versions of Jinja accepts keys containing spaces.",
}


def test_a_vulnerable_direct_dependency_names_the_advisory_the_fix_and_the_pin_to_raise():
    audit = audit_deps.parse_report(
        report(
            {"name": "jinja2", "version": "3.1.2", "vulns": [JINJA_ADVISORY]},
            {"name": "numpy", "version": "2.0.0", "vulns": []},
        )
    )
    text = audit_deps.render(audit, audit_deps.direct_dependencies())
    assert text.splitlines()[0] == "1 known vulnerability in 1 installed package (2 audited):"
    assert "jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (CVE-2024-22195)" in text
    assert "fixed in: 3.1.3" in text
    assert "pyproject.toml: change 'jinja2>=3.1' to require >=3.1.3" in text
    assert "xmlattr filter" in text


def test_a_vulnerable_transitive_dependency_names_the_package_that_pulls_it_in():
    advisory = {"id": "PYSEC-0000-1", "fix_versions": ["99.0", "98.1"], "aliases": [], "description": ""}
    audit = audit_deps.parse_report(report({"name": "starlette", "version": "0.1", "vulns": [advisory]}))
    text = audit_deps.render(audit, audit_deps.direct_dependencies())
    assert "fixed in: 99.0, 98.1" in text
    assert "transitive (pulled in by " in text and "fastapi" in text.lower()
    assert "pip install -U 'starlette>=98.1'" in text  # the lowest fixed release


def test_an_audit_that_reached_no_advisory_service_is_not_a_pass():
    # What pip-audit reports without a network: every package skipped, and "No known vulnerabilities".
    offline = report(
        {
            "name": "numpy",
            "skip_reason": "Dependency not found on PyPI and could not be audited: numpy (2.0.0)",
        },
        {
            "name": "rich",
            "skip_reason": "Dependency not found on PyPI and could not be audited: rich (15.0.0)",
        },
    )
    with pytest.raises(audit_deps.AuditUnavailable, match="could not audit any package"):
        audit_deps.parse_report(offline)


def test_packages_that_could_not_be_audited_are_listed_apart():
    audit = audit_deps.parse_report(
        report(
            {"name": "numpy", "version": "2.0.0", "vulns": []},
            {
                "name": "vqf",
                "skip_reason": "Dependency not found on PyPI and could not be audited: vqf (2.1.2)",
            },
        )
    )
    text = audit_deps.render(audit, audit_deps.direct_dependencies())
    assert text.splitlines() == [
        "no known vulnerabilities in the 1 audited packages",
        "",
        "not audited (1): vqf",
    ]


def test_the_tool_exits_2_and_says_why_when_it_cannot_audit(capsys: pytest.CaptureFixture[str]):
    # Here pip-audit runs for real; offline it audits nothing, online it audits: both are handled.
    code = audit_deps.main(["--timeout", "50"])
    out, err = capsys.readouterr()
    if code == audit_deps.NOT_AUDITED:
        assert err.startswith("dependency audit not done: ")
    else:
        assert code in (audit_deps.OK, audit_deps.VULNERABLE) and "audited" in out
