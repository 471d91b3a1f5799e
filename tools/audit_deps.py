"""Audit the installed Python environment for dependencies with known vulnerabilities.

    python tools/audit_deps.py            # or: ./dev audit
    python tools/audit_deps.py --json report.json   # keep pip-audit's own report too

Runs pip-audit (the dev extra) against the environment of this interpreter (the project's
.venv), over the network (the PyPI advisory service), and prints a table a person can act on:
each vulnerable package, its installed version, the advisory (and its CVE), the first fixed
version, and what to change: the lower bound in pyproject.toml for a direct dependency, or the
package that pulls it in for a transitive one.

Exit codes: 0 no known vulnerability; 1 vulnerabilities found (the table says which); 2 the
audit could not run (no network, pip-audit missing or failing). pip-audit itself says "No known
vulnerabilities found" and exits 0 when it could not reach the advisory service for any
package; this treats that as 2, never as a pass.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = REPO / "pyproject.toml"
OK, VULNERABLE, NOT_AUDITED = 0, 1, 2


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    advisory: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Audit:
    findings: list[Finding]
    audited: int
    skipped: dict[str, str]  # package -> why pip-audit could not audit it


class AuditUnavailable(RuntimeError):
    """pip-audit did not run, or audited nothing (no network): the sentence says why."""


def canonical(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_report(report: dict[str, Any]) -> Audit:
    """The findings of a pip-audit JSON report (``pip-audit -f json``)."""
    findings: list[Finding] = []
    skipped: dict[str, str] = {}
    audited = 0
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped[dep["name"]] = dep["skip_reason"]
            continue
        audited += 1
        for vuln in dep.get("vulns", []):
            findings.append(
                Finding(
                    package=dep["name"],
                    version=dep.get("version", "?"),
                    advisory=vuln.get("id", "?"),
                    aliases=tuple(vuln.get("aliases", ())),
                    fixed_in=tuple(vuln.get("fix_versions", ())),
                    description=" ".join(str(vuln.get("description") or "").split()),
                )
            )
    if audited == 0:
        raise AuditUnavailable(
            "pip-audit could not audit any package (is the network, and the PyPI advisory service, "
            f"reachable?); it said for example: {next(iter(skipped.values()), 'nothing')}"
        )
    return Audit(findings, audited, skipped)


def direct_dependencies(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """{canonical name: requirement as written} of the project's own and optional dependencies."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    out: dict[str, str] = {}
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if name:
            out.setdefault(canonical(name.group(0)), requirement)
    return out


def required_by(package: str, distributions: Iterable[metadata.Distribution] | None = None) -> list[str]:
    """The installed distributions that require `package` (who pulls in a transitive one)."""
    wanted = canonical(package)
    users: set[str] = set()
    for dist in metadata.distributions() if distributions is None else distributions:
        for requirement in dist.requires or ():
            name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
            if name and canonical(name.group(0)) == wanted and "extra ==" not in requirement:
                users.add(dist.metadata["Name"])
    return sorted(users)


def advice(finding: Finding, direct: dict[str, str]) -> str:
    """What to change so that the fixed version is installed."""
    fixed = min(finding.fixed_in, key=_version_key) if finding.fixed_in else None
    written = direct.get(canonical(finding.package))
    if fixed is None:
        return "no fixed release yet: read the advisory; pin away from it or ignore it with a reason"
    if written is not None:
        return f"pyproject.toml: change {written!r} to require >={fixed}, then reinstall (./dev test)"
    users = required_by(finding.package)
    through = f" (pulled in by {', '.join(users)})" if users else ""
    return f"transitive{through}: pip install -U '{finding.package}>={fixed}', or raise the parent's pin"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def render(audit: Audit, direct: dict[str, str]) -> str:
    """The report a person reads: one block per finding, then what was not audited."""
    lines: list[str] = []
    if audit.findings:
        packages = sorted({f.package for f in audit.findings})
        lines.append(
            f"{len(audit.findings)} known vulnerabilit{'y' if len(audit.findings) == 1 else 'ies'} "
            f"in {len(packages)} installed package{'s' if len(packages) != 1 else ''} "
            f"({audit.audited} audited):"
        )
        for f in sorted(audit.findings, key=lambda f: (f.package, f.advisory)):
            also = f" ({', '.join(f.aliases)})" if f.aliases else ""
            fixed = ", ".join(f.fixed_in) or "none yet"
            lines.append("")
            lines.append(f"  {f.package} {f.version}: {f.advisory}{also}")
            lines.append(f"    fixed in: {fixed}")
            if f.description:
                summary = f.description if len(f.description) <= 200 else f.description[:197] + "..."
                lines.append(f"    what: {summary}")
            lines.append(f"    do: {advice(f, direct)}")
    else:
        lines.append(f"no known vulnerabilities in the {audit.audited} audited packages")
    if audit.skipped:
        lines.append("")
        lines.append(f"not audited ({len(audit.skipped)}): " + ", ".join(sorted(audit.skipped)))
    return "\n".join(lines)


def run_pip_audit(timeout_s: float = 300.0, extra: Sequence[str] = ()) -> dict[str, Any]:
    """pip-audit's JSON report on this interpreter's environment; AuditUnavailable if it fails."""
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--skip-editable",  # the project itself is not on PyPI
        *extra,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise AuditUnavailable(f"cannot run {sys.executable}: {exc}") from exc
    except subprocess.TimeoutExpired:
        raise AuditUnavailable(f"pip-audit did not finish in {timeout_s:.0f} s") from None
    if "No module named pip_audit" in done.stderr:
        raise AuditUnavailable("pip-audit is not installed: pip install -e '.[dev]'")
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise AuditUnavailable(f"pip-audit failed (exit {done.returncode}): {last[0]}") from None
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="also write pip-audit's JSON report here")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds pip-audit may take")
    parser.add_argument(
        "--ignore-vuln",
        action="append",
        default=[],
        metavar="ID",
        help="an advisory to accept (with a reason)",
    )
    args = parser.parse_args(argv)
    extra = [arg for vuln in args.ignore_vuln for arg in ("--ignore-vuln", vuln)]
    try:
        report = run_pip_audit(args.timeout, extra)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        audit = parse_report(report)
    except AuditUnavailable as exc:
        print(f"dependency audit not done: {exc}", file=sys.stderr)
        return NOT_AUDITED
    print(render(audit, direct_dependencies()))
    return VULNERABLE if audit.findings else OK


if __name__ == "__main__":
    sys.exit(main())
