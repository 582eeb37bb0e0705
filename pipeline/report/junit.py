"""JUnit XML of a comparison: one test case per regression check (CI systems render these natively).

``classname`` is ``edgekd.compare.<variant id with '/' -> '.'>``, ``name`` the metric (``row`` for a
missing or new row). A failed check carries ``<failure>`` whose message shows the value, the baseline,
the delta and the tolerance; a skipped one ``<skipped>`` with the reason; a new row passes and says so
in ``<system-out>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pipeline.compare import Check, Comparison, Status


def _case(check: Check) -> ET.Element:
    case = ET.Element("testcase", classname="edgekd.compare." + check.variant.replace("/", "."), name=check.metric)
    case.set("time", "0")
    if check.status is Status.FAIL:
        fail = ET.SubElement(case, "failure", message=check.message, type="regression")
        fail.text = _details(check)
    elif check.status is Status.SKIP:
        ET.SubElement(case, "skipped", message=check.message)
    elif check.status is Status.NEW:
        ET.SubElement(case, "system-out").text = check.message
    return case


def _details(check: Check) -> str:
    def fmt(x: float | None) -> str:
        return "null" if x is None else f"{x:.6g}"

    unit = "growth factor" if check.kind == "latency_ratio" else "delta"
    return (
        f"variant: {check.variant}\nmetric: {check.metric}\nvalue: {fmt(check.value)}\n"
        f"baseline: {fmt(check.baseline)}\n{unit}: {fmt(check.delta)}\ntolerance: {fmt(check.tolerance)}\n"
    )


def to_junit(comparison: Comparison, suite: str = "edgekd compare") -> str:
    """The JUnit XML text (UTF-8, with declaration) of ``comparison``."""
    counts = comparison.counts()
    root = ET.Element("testsuites", name=suite)
    ts = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(comparison.checks)),
        failures=str(counts["fail"]),
        errors="0",
        skipped=str(counts["skip"]),
        time="0",
    )
    props = ET.SubElement(ts, "properties")
    for name, value in (
        ("current", comparison.current),
        ("baseline", comparison.baseline),
        ("reference", comparison.reference or ""),
        ("tolerances", comparison.tolerances),
    ):
        ET.SubElement(props, "property", name=name, value=value)
    for check in comparison.checks:
        ts.append(_case(check))
    root.set("tests", ts.get("tests", "0"))
    root.set("failures", ts.get("failures", "0"))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
