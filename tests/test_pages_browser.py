"""The pipeline pages in a real browser: Debian's Chromium, driven by Playwright, on the
seed story served by the real `reconciler serve` (a subprocess) and exported by the real
`reconciler status --format html`.

Chromium comes from Debian (`apt-get install -y chromium`, which `.ci/run` does when it is
missing), never Playwright's own download; axe-core from npm (`npm ci` in tests/browser,
which `.ci/run` also does). Screenshots of the pipeline, light and dark, are kept in
$PAGES_ARTEFACTS (default build/artefacts/).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.configrepo import reconciler
from tests.people import People
from tests.repositories import SeedRepo
from tests.runner import serve_process
from tests.scenarios import (
    DEV_PLAN,
    ECOMMERCE,
    PORTAL,
    PORTAL_DEV,
    QA_PLAN,
    dev_plan,
    plan,
    proposed_qa_release,
    qa_plan,
)

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is in the test extra"
)
expect = playwright_api.expect

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
ARTEFACTS = Path(os.environ.get("PAGES_ARTEFACTS", ROOT / "build" / "artefacts"))
QA_NAME = "2026-11-qa-release"
HOSTILE = "<script>alert('notes')</script><img src=x onerror=\"alert('img')\">"

# .ci/run installs both and sets this: there a missing browser fails, never skips.
REQUIRED = os.environ.get("RECONCILER_BROWSER_TESTS") == "required"


def missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (RECONCILER_BROWSER_TESTS=required)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        missing(f"Debian's Chromium is not installed ({CHROMIUM}): apt-get install -y chromium")
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def served(repo: SeedRepo) -> Iterator[str]:
    """`reconciler serve` on the repository and its state, on a port the system chose; its
    address. Stopped (SIGTERM, then SIGKILL) at the end."""
    options = ["--state-dir", str(repo.state_dir), "--driver-root", str(repo.driver_root)]
    with served_at(repo.path, *options) as address:
        yield address


@contextmanager
def served_at(path: Path, *options: str) -> Iterator[str]:
    with serve_process(path, *options) as (_server, address):
        yield address


def new_page(browser: Any, **options: Any) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, **options)
    page.set_default_timeout(20_000)
    return page


def approved_and_triggered(tmp_path: Path, people: People) -> SeedRepo:
    """The seed story up to a QA release that runs at the next pass: development built and
    deployed by a first pass, the QA plan approved by ravi and triggered by olga."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    first = repo.apply()
    assert first.exit_code == 0, first.stdout + first.stderr
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="November release")})
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    return repo


# -- the seed story -------------------------------------------------------------------


def test_the_pipeline_shows_each_cell_and_what_the_qa_plan_waits_for(
    tmp_path: Path, people: People, browser: Any
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    # Diana edited the plan: her approval does not count, and the plan page says why.
    repo.approve(people.diana, QA_PLAN)
    with served(repo) as address:
        page = new_page(browser)
        page.goto(address)
        cell = "td.cell[data-env='{}'][data-app='{}']"
        assert page.inner_text(cell.format("development", "ecommerce")) == "1.4.0"
        assert page.inner_text(cell.format("development", "customer-portal")) == "0.6-dev.41"
        assert page.inner_text(cell.format("production", "ecommerce")) == "—"
        card = page.locator("li.move", has_text=QA_NAME)
        assert card.locator(".badge").inner_text() == "saved"
        # plan's own words, after "waits for"
        assert "waits for 1 more approval by tech-lead (may approve: ravi)" in card.inner_text()
        card.get_by_role("link", name=QA_NAME).click()
        page.wait_for_url(f"{address}plans/{QA_NAME}")
        verdicts = page.locator("tr.verdict").all_inner_texts()
        assert len(verdicts) == 1, verdicts
        assert verdicts[0].startswith("approval in ")
        assert "by diana" in verdicts[0]
        assert "does not count" in verdicts[0]
        assert "waits for 1 more approval by tech-lead" in page.inner_text("main")
        assert page.locator("p.status .badge").inner_text() == "waiting"


def test_after_a_pass_runs_the_plan_its_page_says_done_without_a_reload(
    tmp_path: Path, people: People, browser: Any
) -> None:
    repo = approved_and_triggered(tmp_path, people)
    with served(repo) as address:
        page = new_page(browser)
        page.goto(f"{address}plans/{QA_NAME}")
        assert page.locator("p.status .badge").inner_text() == "executable"
        page.evaluate("window.stillTheSamePage = true")
        ran = repo.apply()
        assert ran.exit_code == 0, ran.stdout + ran.stderr
        # (a locator, not wait_for_function: the page's policy refuses the latter's eval)
        expect(page.locator("p.status .badge")).to_have_text("done", timeout=30_000)
        assert page.evaluate("window.stillTheSamePage") is True  # no reload
        # done as soon as its run started (plan's word); then the run's end, still live
        expect(page.locator("main")).to_contain_text(f"run {QA_NAME}.1 succeeded")
        assert page.locator("details.run pre.log").count() == 1


def test_a_cell_whose_driver_reports_another_version_is_marked_drift(
    tmp_path: Path, people: People, browser: Any
) -> None:
    repo = approved_and_triggered(tmp_path, people)
    assert repo.apply().exit_code == 0
    # Someone switched the release by hand, behind the reconciler's back.
    current = repo.driver_root / "quality-assurance" / "ecommerce" / "current"
    assert current.is_symlink()
    current.unlink()
    current.symlink_to("releases/1.3.9")
    with served(repo) as address:
        page = new_page(browser)
        page.goto(address)
        drifted = page.locator("td.cell[data-env='quality-assurance'][data-app='ecommerce']")
        assert drifted.inner_text() == "1.4.0\ndrift: the driver reports 1.3.9"
        steady = page.locator("td.cell[data-env='quality-assurance'][data-app='customer-portal']")
        assert steady.inner_text() == "0.6"


def test_a_stop_the_line_lock_shows_on_its_environment_with_who_and_why(
    tmp_path: Path, people: People, browser: Any
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.act_as(people.alice)  # a tech lead: plan.deploy in development
    why = "incident 42 <b>checkout down</b>"
    locked = repo.reconciler("lock", "development", "-m", why)
    assert locked.exit_code == 0, locked.stdout + locked.stderr
    with served(repo) as address:
        page = new_page(browser)
        page.goto(address)
        header = page.locator("th.env-head", has_text="development").inner_text()
        assert "locked" in header
        assert "by alice" in header
        assert why in header  # as text: its markup is escaped
        page.goto(f"{address}environments/development")
        assert why in page.inner_text("section[aria-labelledby='locks']")


def test_the_audit_trail_is_paged_newest_first_and_an_environment_links_to_the_rest(
    tmp_path: Path, people: People, browser: Any
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    drafts = {
        f"plans/draft-{number:03d}.yaml": plan(
            f"draft-{number:03d}", "development", [ECOMMERCE], state="draft"
        )
        for number in range(120)
    }
    repo.commit(people.alice, drafts, "Add 120 drafts")  # 120 entries, oldest to newest
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)}, "Add the build")  # the newest
    with served(repo) as address:
        page = new_page(browser)
        page.goto(f"{address}history")
        pager = page.locator("nav.pager p")
        expect(pager).to_contain_text("Entries 1–100 of ")
        total = int(pager.inner_text().split(" of ")[1].split(",")[0])
        assert total > 121  # the drafts, the build's creation and its trigger, and the seed's
        rows = page.locator("table.entries tbody tr")
        expect(rows).to_have_count(100)
        expect(rows.first).to_contain_text(DEV_PLAN)
        assert "plans/draft-000.yaml" not in page.inner_text("table.entries")
        assert page.get_by_role("link", name="Newer").count() == 0

        page.get_by_role("link", name="Older").click()
        expect(pager).to_contain_text(f"Entries 101–{min(total, 200)} of {total}")
        expect(rows).to_have_count(min(total, 200) - 100)
        assert "plans/draft-000.yaml" in page.inner_text("table.entries")
        page.get_by_role("link", name="Newer").click()
        expect(pager).to_contain_text("Entries 1–100 of ")
        assert page.url == f"{address}history"

        # An environment shows its newest entries, and links to all of them.
        page.goto(f"{address}environments/development")
        more = page.locator("p.more")
        expect(more).to_contain_text("The newest 100 of ")
        more.get_by_role("link").click()
        assert page.url == f"{address}history?env=development"
        expect(pager).to_contain_text("Entries 1–100 of ")

        # A page that is no page number is refused, and names what is.
        answer = page.goto(f"{address}history?page=zero")
        assert answer is not None
        assert answer.status == 400
        assert "is not a page number" in page.inner_text("main")


# -- hostile content ------------------------------------------------------------------


def hostile(tmp_path: Path, people: People) -> SeedRepo:
    """A plan whose notes hold a script and an image with an onerror handler, and a plan
    that cannot be read whose name holds them (its refusal quotes it on the pipeline)."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE, notes=HOSTILE)})
    bad = plan(HOSTILE, "quality-assurance", [ECOMMERCE], source="development")
    repo.commit(people.alice, {"plans/hostile.yaml": bad})
    return repo


def refuse(dialog: Any, dialogs: list[str]) -> None:
    """A dialog opened: a script ran. Noted, and closed so the page goes on."""
    dialogs.append(dialog.message)
    dialog.dismiss()


def assert_ran_nothing(page: Any, dialogs: list[str]) -> None:
    assert dialogs == []
    assert page.evaluate("document.querySelectorAll('main script, main img').length") == 0
    assert page.evaluate("[...document.querySelectorAll('*')].some(e => e.onerror)") is False


def test_a_plan_s_hostile_notes_run_no_script_served_or_exported(
    tmp_path: Path, people: People, browser: Any
) -> None:
    repo = hostile(tmp_path, people)
    dialogs: list[str] = []
    with served(repo) as address:
        page = new_page(browser)
        page.on("dialog", lambda dialog: refuse(dialog, dialogs))
        page.goto(f"{address}plans/{QA_NAME}")
        assert page.inner_text("pre.notes").strip() == HOSTILE  # shown as text
        assert_ran_nothing(page, dialogs)
        page.goto(address)
        assert "<script>" in page.inner_text("main")  # the refusal quotes the name as text
        assert_ran_nothing(page, dialogs)
    exported = repo.reconciler("status", "--format", "html")
    assert exported.exit_code == 0, exported.stderr
    assert "<script>alert" not in exported.stdout
    assert "<img src=x" not in exported.stdout
    assert "&lt;script&gt;" in exported.stdout
    export = tmp_path / "status.html"
    export.write_text(exported.stdout)
    page = new_page(browser)
    page.on("dialog", lambda dialog: refuse(dialog, dialogs))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(export.as_uri())
    assert "<script>" in page.inner_text("main")
    assert_ran_nothing(page, dialogs)
    assert requests == [export.as_uri()]  # self-contained: nothing else is fetched


def test_every_response_carries_a_strict_policy_and_no_secret(
    tmp_path: Path, people: People, browser: Any
) -> None:
    repo = approved_and_triggered(tmp_path, people)
    assert repo.apply().exit_code == 0
    # (a run's log names its release folders: it is committed, as readable as the repository)
    secrets = [str(people.reconciler.key), str(repo.state_dir), str(people.directory)]
    with served(repo) as address:
        page = new_page(browser)
        for path in (
            "",
            f"plans/{QA_NAME}",
            "environments/quality-assurance",
            "history",
            "access?user=olga",
            "static/page.css",
            "plans/nope",
        ):
            response = page.goto(address + path)
            assert response is not None
            headers = response.headers
            assert "script-src 'self'" in headers["content-security-policy"], path
            assert "unsafe-inline" not in headers["content-security-policy"], path
            assert headers["x-content-type-options"] == "nosniff", path
            text = page.content()
            assert [secret for secret in secrets if secret in text] == [], path
        # Read-only: nothing but GET (and HEAD) is routed.
        posted = page.request.post(address, data="x")
        assert posted.status == 405


# -- accessibility and looks ----------------------------------------------------------


def test_no_page_has_a_serious_or_critical_accessibility_violation(
    tmp_path: Path, people: People, browser: Any
) -> None:
    if not AXE.is_file():
        missing(f"axe-core is not installed ({AXE}): run `npm ci` in tests/browser")
    repo = approved_and_triggered(tmp_path, people)
    repo.approve(people.diana, QA_PLAN)
    pages = [
        "",
        f"plans/{QA_NAME}",
        "environments/quality-assurance",
        "history",
        "history?user=olga",
        "access",
        "access?user=olga&env=production",
    ]
    found: dict[str, list[str]] = {}
    with served(repo) as address:
        for scheme in ("light", "dark"):
            # axe is injected as a script of the test's own: the page's policy would refuse it.
            page = new_page(browser, bypass_csp=True, color_scheme=scheme)
            for path in pages:
                page.goto(address + path)
                page.add_script_tag(path=str(AXE))
                result = page.evaluate("axe.run(document)")
                for violation in result["violations"]:
                    if violation["impact"] in ("serious", "critical"):
                        found.setdefault(f"{scheme} /{path}", []).append(violation["id"])
    assert found == {}


def test_screenshots_of_the_pipeline_in_light_and_dark(
    tmp_path: Path, people: People, browser: Any
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with served(repo) as address:
        for scheme in ("light", "dark"):
            page = new_page(browser, color_scheme=scheme)
            page.goto(address)
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (background == "rgb(255, 255, 255)") == (scheme == "light"), background
            shot = ARTEFACTS / f"pipeline-{scheme}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000
        # A phone: the page fits, the table scrolls in its own box.
        phone = new_page(browser)
        phone.set_viewport_size({"width": 390, "height": 800})
        phone.goto(address)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width


# -- the demo -------------------------------------------------------------------------


def test_the_demo_s_last_lines_say_how_to_serve_it_and_the_pages_work_on_it(
    tmp_path: Path, browser: Any
) -> None:
    story = tmp_path / "story"
    told = reconciler("demo", "--keep", str(story), timeout=300)
    assert told.exit_code == 0, told.stderr
    last = told.stdout.rstrip("\n").splitlines()[-2:]
    command = shlex.split(last[0])
    assert command == ["reconciler", "serve", "--repo", str(story / "config")]
    assert last[1].strip() == "then open http://127.0.0.1:8080/"
    status = reconciler("status", "--repo", command[3], "--format", "json").json()
    with served_at(Path(command[3])) as address:
        page = new_page(browser)
        page.goto(address)
        # every cell as `status` says it
        shown = {
            (cell.get_attribute("data-app"), cell.get_attribute("data-env")): cell.inner_text()
            for cell in page.locator("td.cell").all()
        }
        assert shown == {
            (app, env): status["applications"][app].get(env, "—")
            for app in status["applications"]
            for env in status["environments"]
        }
        assert status["applications"]["ecommerce"]["quality-assurance"] == "1.4.0"
        assert page.locator("li.move", has_text="2026-11-qa-hotfix").count() == 1
        for path in (f"plans/{QA_NAME}", "environments/production", "history", "access?user=olga"):
            response = page.goto(address + path)
            assert response is not None
            assert response.status == 200, path
        page.goto(f"{address}plans/{QA_NAME}")
        assert page.locator("p.status .badge").inner_text() == "done"
        assert "result succeeded" in page.inner_text("pre.log")
