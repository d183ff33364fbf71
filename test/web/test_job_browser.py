"""The job browser page in headless Chromium against a real standalone service:
sign-in, filters, the job detail, its log, cancel, retry and lineage."""
from __future__ import annotations

import json
import time
from pathlib import Path

from selenium.webdriver.common.by import By

from execution_engine2_client import Client
from support.live_server import standalone_server
from support.sdk_services import make_job
from web import jobs
from web.browser import JobsPage, wait_for

DAY = 24 * 3600.0


def client_for(service, user: str, role: str = "n") -> tuple[Client, str]:
    token = service.token(user, role)
    return Client(service.url, token=token), token


def test_sign_in_lists_the_callers_recent_jobs_and_keeps_the_token(service, page):
    alice, token = client_for(service, "alice")
    bob, _ = client_for(service, "bob")
    done = jobs.job_in(alice, "completed", wsid=None)
    queued = jobs.job_in(alice, "queued")
    jobs.job_in(bob, "queued")
    old = make_job(service.services, "alice", "completed", created=time.time() - 5 * DAY)["_id"]

    page.open()
    wait_for(lambda: page.visible("#token-input"), "the sign-in form")
    page.find("#token-input").send_keys("not-a-token")
    page.find("#sign-in").click()
    wait_for(lambda: "Sign-in failed" in page.find("#login-error").text, "a refused token")

    page.sign_in(token)
    assert page.find("#whoami").text == "Signed in as alice"
    assert page.row_ids() == [queued, done]  # newest first; bob's and the 5-day-old job left out
    cells = [cell.text for cell in page.row(done).find_elements(By.CSS_SELECTOR, "td")]
    assert cells[3] == "Demo/echo" and cells[8] == "completed"
    assert cells[5].startswith(time.strftime("%Y-"))  # submitted, local time
    assert page.row_status(queued) == "queued"
    assert page.find("#page-info").text == "1–2 of 2"

    page.driver.refresh()  # the token stays for the session: no second sign-in
    page.wait_rows(lambda ids: ids == [queued, done], "the list after a reload")
    assert not page.visible("#login")

    page.find('#range option[value="week"]').click()
    page.wait_rows(lambda ids: ids == [queued, done, old], "the week's jobs")
    page.find('#range option[value="hour"]').click()
    page.wait_rows(lambda ids: ids == [queued, done], "the last hour's jobs")

    page.find("#sign-out").click()
    wait_for(lambda: page.visible("#token-input"), "the sign-in form after signing out")


def test_kbase_session_cookie_signs_in(service, page):
    alice, token = client_for(service, "alice")
    job = jobs.job_in(alice, "queued")
    page.open()
    page.driver.add_cookie({"name": "kbase_session", "value": token, "path": "/"})
    page.open()
    page.wait_rows(lambda ids: ids == [job], "the list signed in from the cookie")
    assert not page.visible("#login") and not page.visible("#sign-out")


def test_a_refused_cookie_asks_for_a_token_that_then_wins(service, page):
    alice, token = client_for(service, "alice")
    job = jobs.job_in(alice, "queued")
    page.open()
    page.driver.add_cookie({"name": "kbase_session", "value": "expired-token", "path": "/"})
    page.open()
    wait_for(lambda: "not accepted" in page.find("#login-error").text, "the refused cookie")
    page.find("#token-input").send_keys(token)
    page.find("#sign-in").click()
    page.wait_rows(lambda ids: ids == [job], "the list after entering a token")
    page.driver.refresh()
    page.wait_rows(lambda ids: ids == [job], "the entered token kept over the cookie")


def test_narratives_link_to_the_kbase_deployment(driver, tmp_path: Path):
    endpoint = {"kbase-endpoint": "https://ci.kbase.us/services", "maintenance-interval": 0}
    with standalone_server(tmp_path, **endpoint) as service:
        alice, token = client_for(service, "alice")
        in_narrative = jobs.job_in(alice, "queued", wsid=42)
        page = JobsPage(driver, service.url).sign_in(token)
        link = page.row(in_narrative).find_element(By.CSS_SELECTOR, "td:nth-child(3) a")
        assert link.text == "workspace 42"
        assert link.get_attribute("href") == "https://ci.kbase.us/narrative/42"


def test_status_filters_combine_and_custom_dates(service, page):
    alice, token = client_for(service, "alice")
    by_state = {state: jobs.job_in(alice, state)
                for state in ("queued", "running", "completed", "error", "terminated")}
    old = make_job(service.services, "alice", "error", created=time.time() - 10 * DAY)["_id"]
    page.sign_in(token)
    page.wait_rows(lambda ids: len(ids) == 5, "all five recent jobs")

    page.set_statuses("error", "terminated")
    page.wait_rows(lambda ids: set(ids) == {by_state["error"], by_state["terminated"]},
                   "error and terminated jobs only")
    page.set_statuses("queued", "running")
    page.wait_rows(lambda ids: set(ids) == {by_state["queued"], by_state["running"]},
                   "queued and running jobs only")

    page.set_statuses("error")
    page.find('#range option[value="custom"]').click()
    day = time.strftime("%Y-%m-%d", time.localtime(time.time() - 10 * DAY))
    page.driver.execute_script(
        "for (const id of ['range-from', 'range-to']) {"
        "  const input = document.getElementById(id); input.value = arguments[0];"
        "  input.dispatchEvent(new Event('change')); }", day)
    page.wait_rows(lambda ids: ids == [old], "the error job of the custom day")


def test_detail_shows_parameters_output_and_error(service, page):
    alice, token = client_for(service, "alice")
    done = jobs.job_in(alice, "completed", greeting="hello")
    broken = jobs.job_in(alice, "error")
    page.sign_in(token)

    page.row(done).click()
    wait_for(lambda: done in page.find("#detail-title").text, "the completed job's detail")
    assert json.loads(page.find("#job-params").text) == [{"greeting": "hello"}]
    output = json.loads(page.find("#job-output").text)
    assert output["result"] == [jobs.REPORT]
    assert page.detail_status() == "completed"
    assert not page.visible("#retry-job") and not page.visible("#cancel-job")

    page.open_job(broken)
    assert page.find("#job-errormsg").text == "the app fell over"
    assert page.visible("#retry-job")


def test_log_follows_a_running_job_and_downloads(service, page, tmp_path: Path):
    alice, token = client_for(service, "alice")
    job = jobs.job_in(alice, "running")
    alice.add_job_logs({"job_id": job}, [{"line": f"step {i}", "is_error": 0} for i in range(60)])
    page.sign_in(token)
    page.open_job(job)
    page.tab("log")
    pane = page.find("#log-pane")
    wait_for(lambda: pane.text.splitlines()[-1:] == ["step 59"], "the first 60 lines")

    alice.add_job_logs({"job_id": job}, [{"line": "went wrong here", "is_error": 1},
                                         {"line": "still going", "is_error": 0}])
    wait_for(lambda: pane.text.splitlines()[-2:] == ["went wrong here", "still going"],
             "lines logged after the pane opened")
    assert page.find_all("#log-pane .log-line.err")[0].text == "went wrong here"
    at_bottom = "const p = arguments[0]; return p.scrollTop + p.clientHeight >= p.scrollHeight - 2;"
    wait_for(lambda: page.driver.execute_script(at_bottom, pane), "the pane scrolled to the last line")
    assert page.find("#log-count").text == "62 lines"

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    page.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                {"behavior": "allow", "downloadPath": str(downloads)})
    page.find("#log-text").click()
    text_file = downloads / f"{job}.log.txt"
    wait_for(text_file.exists, "the text download")
    wait_for(lambda: text_file.read_text().endswith("still going\n"), "the whole text log")
    assert text_file.read_text().splitlines()[0] == "step 0"
    page.find("#log-json").click()
    json_file = downloads / f"{job}.log.json"
    wait_for(lambda: json_file.exists() and json_file.read_text().endswith("]"), "the JSON download")
    lines = json.loads(json_file.read_text())
    assert len(lines) == 62 and lines[60]["line"] == "went wrong here" and lines[60]["is_error"] == 1

    alice.finish_job({"job_id": job, "error_message": "done for"})
    wait_for(lambda: page.detail_status() == "error", "the detail to notice the job ended")


def test_cancel_asks_for_confirmation(service, page):
    alice, token = client_for(service, "alice")
    job = jobs.job_in(alice, "queued")
    page.sign_in(token)
    page.open_job(job)

    page.find("#cancel-job").click()
    wait_for(lambda: page.visible("#confirm"), "the confirmation")
    assert job in page.find("#confirm-text").text
    page.find("#confirm-no").click()
    wait_for(lambda: not page.visible("#confirm"), "the dialog to close")
    time.sleep(0.5)
    assert jobs.status(alice, job) == "queued"

    page.find("#cancel-job").click()
    wait_for(lambda: page.visible("#confirm"), "the confirmation")
    page.find("#confirm-yes").click()
    wait_for(lambda: page.detail_status() == "terminated", "the cancelled job's status")
    assert jobs.status(alice, job) == "terminated"
    page.wait_rows(lambda ids: page.row_status(job) == "terminated", "the row's new status")
    assert "Cancelled" in page.notice()


def test_retry_one_job_and_follow_its_lineage(service, page):
    alice, token = client_for(service, "alice")
    root = jobs.job_in(alice, "error")
    page.sign_in(token)
    page.open_job(root)
    page.find("#retry-job").click()
    wait_for(lambda: "1 retried" in page.notice(), "the retry's summary")
    first = alice.check_job({"job_id": root})["retry_ids"]
    assert len(first) == 1
    wait_for(lambda: first[0] in page.find("#detail-title").text, "the new attempt's detail")

    jobs.failed(alice, first[0], "again")  # the attempt fails too; retry it from its own page
    wait_for(lambda: page.detail_status() == "error", "the attempt's failure")
    page.find("#retry-job").click()
    wait_for(lambda: "1 retried" in page.notice() and len(
        alice.check_job({"job_id": root})["retry_ids"]) == 2, "the second retry")
    second = alice.check_job({"job_id": root})["retry_ids"][1]
    wait_for(lambda: second in page.find("#detail-title").text, "the second attempt's detail")

    page.open_job(first[0])
    page.tab("lineage")
    entries = wait_for(lambda: (lambda items: items if len(items) == 3 else None)(
        page.find_all("#lineage li")), "the root and both attempts")
    assert [entry.find_element(By.CSS_SELECTOR, ".role").text for entry in entries] == [
        "original", "retry 1", "retry 2"]
    assert [entry.find_element(By.CSS_SELECTOR, "a").text for entry in entries] == [root, first[0], second]
    assert "current" in (entries[1].get_attribute("class") or "")
    entries[0].find_element(By.CSS_SELECTOR, "a").click()
    wait_for(lambda: root in page.find("#detail-title").text, "the root's detail from the lineage")
    page.wait_rows(lambda ids: ids[:3] == [second, first[0], root], "the retries in the list")


def test_retry_selected_failed_jobs(service, page):
    alice, token = client_for(service, "alice")
    broken = [jobs.job_in(alice, "error"), jobs.job_in(alice, "terminated")]
    done = jobs.job_in(alice, "completed")
    page.sign_in(token)
    assert page.find("#retry-selected").get_attribute("disabled") is not None
    for job in [*broken, done]:
        page.row(job).find_element(By.CSS_SELECTOR, "input.select").click()
    wait_for(lambda: page.find("#retry-selected").text == "Retry selected (2)", "two retryable jobs selected")
    page.find("#retry-selected").click()
    wait_for(lambda: "2 retried" in page.notice(), "the bulk retry's summary")
    for job in broken:
        assert alice.check_job({"job_id": job})["retry_count"] == 1
    assert alice.check_job({"job_id": done})["retry_count"] == 0
    page.wait_rows(lambda ids: len(ids) == 5, "the two new attempts in the list")


def test_batch_expands_and_retries_its_failed_members(service, page):
    alice, token = client_for(service, "alice")
    batch = alice.run_job_batch([{"method": "Demo.echo", "app_id": "Demo/echo", "params": [{"n": i}]}
                                 for i in range(3)], {})
    container, children = batch["batch_id"], batch["child_job_ids"]
    jobs.failed(alice, children[0])
    jobs.completed(alice, children[1])
    jobs.failed(alice, children[2])
    earlier = alice.retry_job({"job_id": children[2]})["retry_id"]  # its latest attempt fails too
    jobs.failed(alice, earlier)
    page.sign_in(token)
    page.wait_rows(lambda ids: ids == [container], "the container alone (children sit under it)")
    # Its stored status stays "created": the page shows one derived from the latest attempts.
    assert page.row_status(container) == "error"
    assert page.row(container).find_element(By.CSS_SELECTOR, ".counts").text == "2 error · 1 completed"

    page.row(container).find_element(By.CSS_SELECTOR, ".expander").click()
    page.wait_rows(lambda ids: ids == [container, *children, earlier], "the batch jobs under it")
    assert len(page.find_all("#jobs tr.child")) == 4

    page.open_job(container)
    assert page.visible("#retry-batch")
    page.find("#retry-batch").click()
    wait_for(lambda: "2 retried" in page.notice(), "the failed members retried")
    assert alice.check_job({"job_id": children[0]})["retry_count"] == 1
    assert alice.check_job({"job_id": children[1]})["retry_count"] == 0
    assert alice.check_job({"job_id": children[2]})["retry_count"] == 2  # retried once more, not twice
    page.wait_rows(lambda ids: len(ids) == 7, "the new attempts under the container")
    wait_for(lambda: page.row_status(container) == "queued", "the batch queued again")
    wait_for(lambda: page.detail_status() == "queued", "the container's detail queued again")


def test_list_refreshes_itself_while_jobs_are_active(service, page):
    alice, token = client_for(service, "alice")
    job = jobs.job_in(alice, "queued")
    page.sign_in(token)
    assert page.row_status(job) == "queued"
    assert page.find("#auto-refresh").text.startswith("refreshing every")
    alice.start_job({"job_id": job})
    page.wait_rows(lambda ids: page.row_status(job) == "running", "the row to turn running by itself")
    newer = jobs.job_in(alice, "queued")
    page.wait_rows(lambda ids: ids == [newer, job], "a new job to appear by itself")


def test_admin_sees_every_users_jobs_and_filters_by_user(service, page):
    alice, _ = client_for(service, "alice")
    bob, _ = client_for(service, "bob")
    _, admin_token = client_for(service, "root", "w")
    alices = jobs.job_in(alice, "queued")
    bobs = jobs.job_in(bob, "error")
    page.sign_in(admin_token)
    assert page.find("#whoami").text == "Signed in as root · admin"
    assert page.row_ids() == []  # own jobs first: none

    page.find("#all-users").click()
    page.wait_rows(lambda ids: ids == [bobs, alices], "every user's jobs")
    assert page.row(bobs).find_element(By.CSS_SELECTOR, ".user-col").text == "bob"
    page.find("#user-filter").send_keys("bob\n")
    page.wait_rows(lambda ids: ids == [bobs], "bob's jobs only")

    page.open_job(bobs)  # an admin retries someone else's job (as_admin)
    page.find("#retry-job").click()
    wait_for(lambda: "1 retried" in page.notice(), "the admin's retry")
    assert bob.check_job({"job_id": bobs})["retry_count"] == 1
    page.open_job(alices)  # and cancels one
    page.find("#cancel-job").click()
    wait_for(lambda: page.visible("#confirm"), "the confirmation")
    page.find("#confirm-yes").click()
    wait_for(lambda: jobs.status(alice, alices) == "terminated", "the admin's cancel")


def test_read_only_admin_sees_all_but_cannot_cancel(service, page):
    alice, _ = client_for(service, "alice")
    _, token = client_for(service, "reader", "r")
    job = jobs.job_in(alice, "queued")
    JobsPage.sign_in(page, token)
    assert page.find("#whoami").text == "Signed in as reader · read-only admin"
    page.find("#all-users").click()
    page.wait_rows(lambda ids: ids == [job], "alice's job for a read-only admin")
    page.open_job(job)
    page.find("#cancel-job").click()
    page.find("#confirm-yes").click()
    wait_for(lambda: "Cancel failed" in page.notice(), "the refusal")
    assert jobs.status(alice, job) == "queued"
