"""The HTML report in headless Chromium: it loads cleanly, offline, with every figure.

Needs Debian's ``chromium`` (``.ci/run`` installs it when missing). Without it the test is
skipped, unless ``REGSTUDY_REQUIRE_CHROMIUM=1`` (set in CI) makes that a failure. The
full-page screenshot is kept under ``test-artifacts/report/`` in the repository (ignored by
git) and in the test's temporary directory.
"""

from __future__ import annotations

import io
import os
import shutil

import pytest
from PIL import Image

from .chromium import find_chromium, open_report
from .helpers import REPO

ARTIFACTS = REPO / "test-artifacts" / "report"


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("REGSTUDY_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is not installed but REGSTUDY_REQUIRE_CHROMIUM=1")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return binary


@pytest.mark.slow
def test_html_report_loads_offline_without_errors_and_every_image_decodes(
    chromium, joint_report, tmp_path
):
    html = joint_report.result.html
    profile = tmp_path / "profile"
    profile.mkdir()
    page = open_report(chromium, profile, html.resolve().as_uri())

    assert page["errors"] == []
    # Self-contained: the page itself, then only its embedded data: images.
    assert page["requests"][0] == html.resolve().as_uri()
    assert all(url.startswith("data:image/png;base64,") for url in page["requests"][1:])
    assert len(page["images"]) == len(joint_report.result.figures) == 6
    for decoded, width, height in page["images"]:
        assert decoded and width > 0 and height > 0

    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(page["png"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, ARTIFACTS / "report.png")
    image = Image.open(io.BytesIO(page["png"]))
    assert image.width == 1280 and image.height > 3000
