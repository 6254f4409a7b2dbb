"""JUnit XML of a check, for CI systems that show test reports."""

from __future__ import annotations

from vramfit.check.core import CheckResult


def junit_xml(result: CheckResult) -> str:
    """JUnit XML: one testcase per configuration; failures for regressions and exceeded budgets."""
    import xml.etree.ElementTree as ET

    failures = sum(c.failed for c in result.checks)
    suites = ET.Element(
        "testsuites", name="vramfit check", tests=str(len(result.checks)), failures=str(failures)
    )
    suite = ET.SubElement(
        suites, "testsuite", name=f"vramfit check ({result.mode})", tests=str(len(result.checks)),
        failures=str(failures), errors="0", skipped="0",
    )  # fmt: skip
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="tolerance", value=f"{result.tolerance:g}")
    for k, v in result.versions.items():
        if v is not None:
            ET.SubElement(props, "property", name=k, value=str(v))
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"vramfit.check.{result.mode}", name=c.name)
        text = "\n".join(c.messages)
        if c.failed:
            first = c.messages[0] if c.messages else c.status
            fail = ET.SubElement(
                case, "failure", message=f"{c.status}: {first}", type=c.status.replace(" ", "_")
            )
            fail.text = text
        out = ET.SubElement(case, "system-out")
        base = "none" if c.baseline_bytes is None else str(c.baseline_bytes)
        out.text = (
            f"model: {c.model}\nrequired_vram_bytes: {c.required_vram_bytes}\nbaseline_bytes: {base}\n{text}"
        )
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
