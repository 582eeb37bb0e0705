"""Render a fixture report.html in headless Chromium: it must load offline and paint a non-blank page."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.compare import compare_metrics
from pipeline.report import write_report
from pipeline.report.metrics_file import load_metrics
from pipeline.tolerances import default_tolerances

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


def screenshot(html: Path, png: Path, profile: Path, size: str = "1280,2000") -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={size}",
        html.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    import cv2

    metrics = load_metrics(FIXTURES / "current.json")
    baseline = load_metrics(FIXTURES / "baseline.json")
    written = write_report(metrics, tmp_path / "report", compare_metrics(metrics, baseline, default_tolerances()))
    png = tmp_path / "shot.png"
    proc = screenshot(written["html"], png, tmp_path / "profile")
    assert png.is_file(), f"no screenshot; chromium said:\n{proc.stderr[-2000:]}"
    image = cv2.imread(str(png))
    assert image is not None and image.shape[:2] == (2000, 1280)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    assert gray.var() > 200, "the page rendered blank"
    # the header band is dark and the body light: the inline stylesheet was applied
    assert gray[:60].mean() < 80 and gray[400:].mean() > 180
    # embedded figures painted: some rows deep in the page hold many distinct grey levels
    assert max(len(np.unique(gray[y : y + 40])) for y in range(1200, 1960, 40)) > 40
