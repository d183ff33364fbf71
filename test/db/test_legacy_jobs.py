"""The split of our job records into the existing service's layout (``db.legacy_jobs``)
and the model checker the cut-over tests rely on (``support.legacy_model``)."""
from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId

from execution_engine2.db.legacy_jobs import ABSENT, merge, route_changes, split, split_path
from execution_engine2.job import new_job_id, new_job_record
from support.legacy_model import job_problems, legacy_jobs

RESOLVED = {"clientgroup": "njs", "cpu": 4, "memory": 2000, "disk": 100, "client_group_regex": None,
            "bill_to_user": "bob", "ignore_concurrency_limits": True,
            "scheduler_requirements": {"a": "b"}, "debug_mode": False}


def our_record(**fields: Any) -> dict[str, Any]:
    """A retry as the service writes it: resolved requirements, the caller's own."""
    job_input = {"method": "Demo.echo", "service_ver": "c" * 40, "narrative_cell_info": {"cell_id": "1"},
                 "requirements": dict(RESOLVED), "job_requirements": {"bill_to_user": "bob"},
                 "params": [{"n": 1}]}
    record = new_job_record(job_id=new_job_id(), user="alice", job_input=job_input,
                            retry_parent=new_job_id(), wsid=3, now=1.5)
    return {**record, "_id": ObjectId(record["_id"]), **fields}


def test_a_record_splits_into_a_loadable_document_and_merges_back() -> None:
    record = our_record(claims={"submit": {"owner": "x", "expires": 2.0}}, odd={"x": 1})
    legacy, extra = split(record)
    assert job_problems(legacy) == []
    assert legacy["job_input"]["requirements"] == {"clientgroup": "njs", "cpu": 4, "memory": 2000,
                                                   "disk": 100}
    assert extra == {"retry_active": True, "claims": record["claims"], "odd": {"x": 1},
                     "job_input": {"job_requirements": {"bill_to_user": "bob"},
                                   "requirements": {k: v for k, v in RESOLVED.items()
                                                    if k not in legacy["job_input"]["requirements"]}}}
    assert merge(legacy, extra) == record


@pytest.mark.parametrize("field, value", [
    ("wsid", "12"), ("batch_job", 1), ("updated", True), ("child_jobs", "a"), ("retry_parent", 5)])
def test_a_value_of_the_wrong_type_goes_to_the_extra_part(field: str, value: Any) -> None:
    legacy, extra = split(our_record(**{field: value}))
    assert field not in legacy and extra[field] == value
    assert job_problems(legacy) == []


def test_routing_a_change_keeps_each_field_in_one_part() -> None:
    update, extra_sets, extra_unsets = route_changes(
        {"scheduler_id": "9", "job_input.requirements.cpu": 8, "job_input.requirements.bill_to_user": "x",
         "job_input.requirements": {"cpu": 2, "debug_mode": True}, "wsid": "bad", "by": 3},
        ["errormsg", "note"])
    assert update == {"$set": {"scheduler_id": "9", "job_input.requirements.cpu": 8,
                               "job_input.requirements": {"cpu": 2}},
                      "$unset": {"job_input.requirements.bill_to_user": "", "wsid": "", "by": "",
                                 "errormsg": "", "note": ""}}
    assert extra_sets == {"job_input.requirements.bill_to_user": "x",
                          "job_input.requirements": {"debug_mode": True}, "wsid": "bad", "by": 3}
    assert extra_unsets == ["note"]
    assert split_path("error.anything.deep", {"x": 1}) == ({"x": 1}, ABSENT)
    # A whole embedded document with nothing extra clears what the extra part held there.
    assert route_changes({"job_input.requirements": {"cpu": 1}}, []) == (
        {"$set": {"job_input.requirements": {"cpu": 1}}}, {}, ["job_input.requirements"])


def test_the_legacy_value_wins_where_both_parts_hold_a_field() -> None:
    assert merge({"wsid": 4, "job_input": {"a": 1}}, {"wsid": "old", "job_input": {"b": 2}}) == {
        "wsid": 4, "job_input": {"a": 1, "b": 2}}


def test_the_model_checker_refuses_what_the_existing_model_refuses() -> None:
    good = next(iter(legacy_jobs(1_700_000_000.0).values()))
    assert job_problems(good) == []
    assert job_problems({**good, "claims": {}}) == ["claims: unknown field"]
    assert job_problems({**good, "status": "finished"}) == ["status: 'finished' is not valid"]
    assert job_problems({**good, "error_code": 9}) == ["error_code: 9 is not valid"]
    assert job_problems({**good, "wsid": "1"}) == ["wsid: '1' is not valid"]
    requirements = {**good["job_input"]["requirements"], "debug_mode": True}
    assert job_problems({**good, "job_input": {**good["job_input"], "requirements": requirements}}) == [
        "job_input.requirements.debug_mode: unknown field"]
    no_cell = {k: v for k, v in good["job_input"].items() if k != "narrative_cell_info"}
    assert job_problems({**good, "job_input": no_cell}) == ["job_input.narrative_cell_info: required"]
    assert job_problems({k: v for k, v in good.items() if k != "user"}) == ["user: required"]


def test_the_fixtures_cover_every_status_batches_and_live_retry_lineages() -> None:
    docs = legacy_jobs(1_700_000_000.0)
    assert {doc["status"] for doc in docs.values()} == {
        "created", "estimating", "queued", "running", "completed", "error", "terminated"}
    assert any(doc.get("batch_job") for doc in docs.values())
    live = [doc for doc in docs.values() if doc.get("retry_parent") and doc["status"] in ("queued", "running")]
    assert len(live) == 2 and len({doc["retry_parent"] for doc in live}) == 1
    assert "wsid" not in docs["bare"] and "requirements" not in docs["bare"]["job_input"]
