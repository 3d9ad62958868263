"""The Dagster UI in a real browser: Debian's Chromium, driven by Playwright, against a
``dagster dev`` started here on a free port with a private PARITY_HOME and stopped by PID.

The run is launched the way a user launches it, with *Materialize all* on the asset graph, so it
uses the code location's default resources; ``PARITY_DATA_DIR`` (the documented way to point
the UI at a dataset) selects the small test dataset to keep the run short. Then a one-target
run goes through the webserver with the launchpad's config. Screenshots go to
``test-output/browser/``.
"""

import json
import os
import re
import time
import urllib.request
from pathlib import Path

import pytest

from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.definitions import defs
from parity_tests.helpers import PROJECT, dagster_dev, step_failures

SHOTS = PROJECT / "test-output" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
ASSETS = ("sampled_data", "ranked_targets", "selected_features", "trained_models", "snapshots")
DAGSTER_YAML = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
SERVER_START_S = 240
RUN_TIMEOUT_S = 900
UI_TIMEOUT_MS = 120_000
ONE_TARGET = "fwd_ret_60m"

pytestmark = pytest.mark.browser


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


@pytest.fixture()
def dagster_ui(tmp_path, small_dataset):
    """``dagster dev`` on a free port against a fresh instance; yields (base URL, PARITY_HOME)."""
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    env = {**os.environ, "PARITY_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "PARITY_DATA_DIR": str(small_dataset)}
    log_path = tmp_path / "dagster_dev.log"
    with dagster_dev(env, log_path) as (dev, base):
        deadline = time.monotonic() + SERVER_START_S
        while True:
            assert dev.poll() is None, f"dagster dev exited:\n{_tail(log_path)}"
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=5) as response:
                    if json.load(response).get("dagster_webserver_version"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no webserver on {base}:\n{_tail(log_path)}"
            time.sleep(1)
        yield base, home, log_path


@pytest.fixture()
def browser_page():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium package")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1200})
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _checks_by_asset() -> dict[str, list[str]]:
    checks: dict[str, list[str]] = {}
    for key in defs.resolve_asset_graph().asset_check_keys:
        checks.setdefault(key.asset_key.to_user_string(), []).append(key.name)
    return {asset: sorted(names) for asset, names in checks.items()}


def _launch(base: str, settings: dict, assets: list[str] | None = None) -> tuple[str, str]:
    """Submit a run through the webserver's GraphQL API (what the launchpad sends) with
    Dagster's own client; wait for the daemon to finish it. Returns (run id, final status)."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=int(base.rsplit(":", 1)[1]))
    run_id = client.submit_job_execution("parity_all", asset_selection=assets, run_config={
        "resources": {"settings": {"config": settings}},
        "execution": {"config": {"max_concurrent": 2}}})
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (status := client.get_run_status(run_id).value) not in ("SUCCESS", "FAILURE",
                                                                   "CANCELED"):
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(2)
    return run_id, status


def _failure_text(home: Path, run_id: str) -> str:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        return step_failures(instance, run_id)


def _snapshots_sha256(home: Path, run_id: str) -> str:
    import dagster as dg

    from parity_pipeline.resources.lineage import run_materializations

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        record = run_materializations(instance, run_id)["snapshots"]
        return str(record.asset_materialization.metadata["sha256"].value)


def test_materialize_all_then_one_target_in_the_ui(dagster_ui, browser_page, small_dataset):
    from playwright.sync_api import expect

    base, home, log_path = dagster_ui
    page = browser_page
    try:
        # The asset graph shows the five assets as graph nodes (SVG foreignObject boxes).
        page.goto(f"{base}/asset-groups")
        graph = page.locator("foreignObject")
        for asset in ASSETS:
            expect(graph.get_by_text(asset, exact=True)).to_be_visible()
        materialize_all = page.get_by_role("button", name="Materialize all")
        expect(materialize_all).to_be_enabled()
        _shot(page, "asset_graph")

        # Materialize all: the toast names the run and links to it.
        materialize_all.click()
        expect(page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))).to_be_visible()
        view_run = page.locator("a[href*='/runs/']", has_text="View").first
        expect(view_run).to_have_attribute("href", re.compile(r"/runs/[0-9a-f-]{36}"))
        run_id = re.search(r"/runs/([0-9a-f-]{36})", view_run.get_attribute("href")).group(1)

        # The run page: wait for a terminal status, then it must be Success.
        page.goto(f"{base}/runs/{run_id}")
        terminal = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$"))
        terminal.first.wait_for(state="visible", timeout=RUN_TIMEOUT_S * 1000)
        status = terminal.first.inner_text().strip()
        _shot(page, "run_success" if status == "Success" else "run_failed")
        assert status == "Success", f"run {run_id} ended {status}:\n{_tail(log_path)}"
        expect(page.get_by_text("5 assets", exact=True)).to_be_visible()
        expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()
        assert (home / "artifacts" / "runs" / run_id / "manifest.json").is_file()

        # sampled_data: its materialization metadata lists per_symbol_stats, from this instance.
        page.goto(f"{base}/assets/sampled_data")
        per_symbol_stats = page.get_by_text("per_symbol_stats", exact=True)
        expect(per_symbol_stats).to_be_visible()
        per_symbol_stats.scroll_into_view_if_needed()
        # the artifact path proves the UI reads this test's instance; the latest run may be the
        # nightly schedule's if the test spans 02:00 UTC, so any run id of this home will do
        artifact_path = re.compile(re.escape(str(home / "artifacts" / "runs")) +
                                   r"/[0-9a-f-]{36}/sampled_data")
        expect(page.get_by_text(artifact_path).first).to_be_visible()
        _shot(page, "sampled_data")

        # The checks view of every asset: each declared check is listed as Succeeded, and its
        # detail shows the evaluation Passed.
        checks = _checks_by_asset()
        assert set(checks) == set(ASSETS)
        for asset, names in checks.items():
            page.goto(f"{base}/assets/{asset}?view=checks")
            expect(page.get_by_text(f"Checks ({len(names)})", exact=True)).to_be_visible()
            for name in names:
                row = page.locator("[class*='checkRow']").filter(
                    has=page.get_by_text(name, exact=True))
                expect(row).to_have_count(1)
                expect(row).to_contain_text("Succeeded")
            expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
            _shot(page, "checks" if asset == "sampled_data" else f"checks_{asset}")
            for name in names:
                page.goto(f"{base}/assets/{asset}?view=checks&checkDetail={name}")
                expect(page.get_by_text("Evaluation result", exact=True)).to_be_visible()
                expect(page.get_by_text("Passed", exact=True)).to_be_visible()

        # ranked_targets: the ranking table, every declared target in both views.
        page.goto(f"{base}/assets/ranked_targets")
        table = page.locator("table:not(:has(table))").filter(
            has=page.get_by_role("columnheader", name="route", exact=True))
        expect(table).to_have_count(1)
        headers = table.locator("th").all_inner_texts()
        assert {"target", "task", "view", "metric", "score", "t_stat", "skill",
                "route"} <= set(headers), headers

        # read the table as the user sees it: one dict per row, keyed by column header
        records = [dict(zip(headers, cells, strict=False))
                   for cells in (row.locator("td").all_inner_texts()
                                 for row in table.locator("tr").all()) if cells]
        shown = sorted((r["target"], r["view"]) for r in records)
        expected = sorted((target, view) for target in load_registry(small_dataset).target_names
                          for view in ("CROSS_SECTIONAL", "SYMBOL_SPECIFIC"))
        assert shown == expected, shown
        truth = json.loads((small_dataset / "ground_truth.json").read_text())
        noise_routes = {r["route"] for r in records if r["target"] in truth["noise_targets"]}
        assert noise_routes == {"BLOCKED"}, "placebo targets are blocked in both views"
        table.scroll_into_view_if_needed()
        _shot(page, "ranked_targets")
        # the skill chart, an SVG data URI in markdown metadata (behind "[Show Markdown]", as
        # every markdown value over 1,000 characters), is decoded and drawn
        page.locator("tr").filter(has=page.get_by_text("skill_by_horizon", exact=True)) \
            .get_by_text("[Show Markdown]").first.click()
        chart = page.get_by_role("img", name="Best ranking skill by horizon")
        expect(chart).to_be_visible()
        assert chart.evaluate("image => image.complete && image.naturalWidth > 0")
        _shot(page, "ranking_chart")
        page.keyboard.press("Escape")

        # A partial run: the launchpad's config for one target, sent through the webserver's
        # GraphQL API (the mutation the launchpad sends), queued and run by the daemon.
        one_run, status = _launch(base, {"targets": [ONE_TARGET]})
        assert status == "SUCCESS", f"one-target run {one_run} ended {status}"
        page.goto(f"{base}/runs/{one_run}")
        terminal.first.wait_for(state="visible", timeout=RUN_TIMEOUT_S * 1000)
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        # the run page's step list: sampled_data, snapshots and, per stage, plan + parts +
        # collect; in each stage one part per (target, view) piece (both views are scored, and
        # both are routed) up to one per CPU (a step per target: 28 here)
        views_in_parts = min(2, os.cpu_count() or 1)
        expect(page.get_by_text(f"Succeeded ({8 + 3 * views_in_parts})",
                                exact=True)).to_be_visible()
        _shot(page, "one_target_run")
        fingerprints = json.loads((home / "artifacts" / "runs" / one_run / "snapshots" /
                                   "data.json").read_text())
        assert {e["target"] for e in fingerprints["entries"]} == {ONE_TARGET}

        # snapshots alone through GraphQL: with every target it must refuse the latest stages
        # (they are the one-target run's) and say why; with that run's scope it reproduces it.
        refused, status = _launch(base, {}, assets=["snapshots"])
        assert status == "FAILURE", f"full-scope snapshots over a partial graph ended {status}"
        assert "made under other settings" in _failure_text(home, refused)
        page.goto(f"{base}/runs/{refused}")
        expect(page.get_by_text("Failure", exact=True).first).to_be_visible()
        _shot(page, "snapshots_alone_refused")
        alone, status = _launch(base, {"targets": [ONE_TARGET]}, assets=["snapshots"])
        assert status == "SUCCESS", f"snapshots alone ended {status}:\n{_tail(log_path)}"
        assert _snapshots_sha256(home, alone) == _snapshots_sha256(home, one_run)
    except Exception:
        _shot(page, "failure")
        raise
