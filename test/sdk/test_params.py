"""Values no store can keep alike: integers beyond 64 bits, numbers that are not
finite, keys with a NUL character, records over 16 MiB. Each is refused at the sdk
boundary with the same invalid-params error naming the field, on SQLite and on
MongoDB (mongomock), and nothing is written.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

import pytest

from execution_engine2.auth.base import AdminRole
from execution_engine2.db.store import JobQuery
from execution_engine2.errors import InvalidParams, ValidationError
from execution_engine2.job import JobStatus
from execution_engine2.sdk import params, run, status
from execution_engine2.sdk.services import Services
from execution_engine2.sdk.submission import StoreSubmitter
from support.sdk_services import close_services, make_job, make_services, stored
from support.stores import STORE_KINDS, make_store

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Small in JSON, large in BSON: each integer of a list costs 1 type byte, its index as a
# key and 4 or 8 bytes there, against 2 characters in JSON.
OVER_16_MIB_AS_BSON = [1] * 1_600_000


@contextlib.contextmanager
def stack_on(kind: str, tmp_path: Any) -> Iterator[Services]:
    """The standalone sdk stack with its store replaced by a store of ``kind``."""
    services = make_services(tmp_path)
    with make_store(kind, tmp_path / "store") as store:
        services.store.close()
        services.store = store
        services.submitter = StoreSubmitter(store, services.scheduler, services.config, services.clock)
        try:
            yield services
        finally:
            close_services(services)


@pytest.fixture(params=STORE_KINDS)
def any_store(request, tmp_path) -> Iterator[Services]:
    (tmp_path / "store").mkdir()
    with stack_on(request.param, tmp_path) as services:
        yield services


def alice(services: Services) -> Any:
    return services.auth.authenticate(services.auth.create_token("alice"))


def run_params(**fields: Any) -> dict[str, Any]:
    return {"method": "Demo.echo", "app_id": "Demo/echo", **fields}


# --- the checks themselves ------------------------------------------------------------

@pytest.mark.parametrize("value", [0, INT64_MIN, INT64_MAX, 1.5, -0.0, 1.7976931348623157e308, "x",
                                   None, True, {"a": [1, {"b": "c"}]}, []])
def test_storable_values_pass(value):
    params.storable({"v": value}, "")


@pytest.mark.parametrize("value, place, problem", [
    ({"n": 10**30}, "n", "is an integer beyond 64 bits"),
    ({"n": INT64_MAX + 1}, "n", "is an integer beyond 64 bits"),
    ({"n": INT64_MIN - 1}, "n", "is an integer beyond 64 bits"),
    ({"a": [1, {"b": [0, float("inf")]}]}, "a[1].b[1]", "is not a finite number"),
    ({"a": {"x": float("-inf")}}, "a.x", "is not a finite number"),
    ({"a": {"k\x00": 1}}, "a.'k\\x00'", "is a key with a NUL character"),
    ({"k\x00": 1}, "'k\\x00'", "is a key with a NUL character"),
])
def test_unstorable_values_are_invalid_params_naming_the_place(value, place, problem):
    with pytest.raises(InvalidParams, match=f"^{re.escape(place)} {problem}") as caught:
        params.storable(value, "")
    assert caught.value.code == -32602


def test_the_place_starts_at_the_named_field():
    with pytest.raises(InvalidParams, match=r"^batch_params\.meta\.tag is an integer beyond 64 bits"):
        params.storable({"meta": {"tag": 2**64}}, "batch_params")


def test_a_record_over_16_mib_is_refused_naming_its_largest_part():
    record = {"_id": "x", "job_input": {"params": OVER_16_MIB_AS_BSON, "meta": {}}}
    with pytest.raises(InvalidParams, match=r"^The job would take \d+ bytes when stored, over the limit "
                                            r"of 16252928 bytes for one job record \(MongoDB's 16 MiB less 512 KiB for what "
                                            r"the service adds later\); "
                                            r"params takes \d+ bytes$"):
        params.fits_in_document(record, "The job", {"params": OVER_16_MIB_AS_BSON, "meta": {}})
    params.fits_in_document({"_id": "x", "job_input": {"params": [1] * 1000}}, "The job", {})


# --- the same answer on every store ---------------------------------------------------

@pytest.mark.parametrize("fields, message", [
    ({"params": [{"n": 10**30}]}, r"^params\[0\]\.n is an integer beyond 64 bits"),
    ({"params": [{"x": [float("inf")]}]}, r"^params\[0\]\.x\[0\] is not a finite number"),
    ({"params": [{"k\x00": 1}]}, r"^params\[0\]\.'k\\x00' is a key with a NUL character"),
    ({"meta": {"run_id": -(2**64)}}, r"^meta\.run_id is an integer beyond 64 bits"),
    ({"wsid": 2**70, "as_admin": 1}, r"^wsid must be between -9223372036854775808 and 9223372036854775807"),
    ({"params": OVER_16_MIB_AS_BSON}, r"^The job would take \d+ bytes when stored.*params takes"),
])
def test_run_job_refuses_unstorable_params_on_every_store(any_store, fields, message):
    admin = any_store.auth.authenticate(any_store.auth.create_token("admin", AdminRole.WRITE))
    caller = admin if "as_admin" in fields else alice(any_store)
    with pytest.raises(InvalidParams, match=message):
        run.run_job(any_store, caller, run_params(**fields))
    assert any_store.store.find_jobs(JobQuery()) == []
    assert any_store.scheduler.submitted == []


def test_run_job_stores_64_bit_extremes_on_every_store(any_store):
    job_id = run.run_job(any_store, alice(any_store), run_params(params=[{"lo": INT64_MIN, "hi": INT64_MAX}]))
    assert stored(any_store, job_id)["job_input"]["params"] == [{"lo": INT64_MIN, "hi": INT64_MAX}]


def test_a_batch_names_the_child_with_the_unstorable_value(any_store):
    children = [run_params(params=[1]), run_params(params=[{"n": 10**19}])]
    with pytest.raises(InvalidParams, match=r"^Job #2: params\[0\]\.n is an integer beyond 64 bits"):
        run.run_job_batch(any_store, alice(any_store), children, {})
    # Children are checked in order: the first one's unstorable value before the second's method.
    children = [run_params(params=[{"n": float("inf")}]), {"method": "Demo"}]
    with pytest.raises(InvalidParams, match=r"^Job #1: params\[0\]\.n is not a finite number"):
        run.run_job_batch(any_store, alice(any_store), children, {})
    with pytest.raises(InvalidParams, match=r"^batch_params\.meta\.cell_id is not a finite number"):
        run.run_job_batch(any_store, alice(any_store), [run_params()], {"meta": {"cell_id": float("nan")}})
    assert any_store.store.find_jobs(JobQuery()) == []


@pytest.mark.parametrize("fields, message", [
    ({"job_output": {"version": "1.1", "result": [{"n": 10**20}]}},
     r"^job_output\.result\[0\]\.n is an integer beyond 64 bits"),
    ({"error_message": "boom", "error": {"code": float("inf")}}, r"^error\.code is not a finite number"),
    ({"job_output": {"version": "1.1", "result": OVER_16_MIB_AS_BSON}},
     r"^Job [0-9a-f]{24} would take \d+ bytes when stored.*job_output takes"),
])
def test_finish_job_refuses_unstorable_output_on_every_store(any_store, fields, message):
    job = make_job(any_store, "alice", JobStatus.RUNNING)
    with pytest.raises(InvalidParams, match=message):
        status.finish_job(any_store, alice(any_store), {"job_id": job["_id"], **fields})
    assert stored(any_store, job["_id"]) == job


def test_the_error_code_of_finish_job_is_bounded(any_store):
    job = make_job(any_store, "alice", JobStatus.RUNNING)
    with pytest.raises(InvalidParams, match="^error_code is an integer beyond 64 bits"):
        status.finish_job(any_store, alice(any_store),
                          {"job_id": job["_id"], "error_message": "x", "error_code": 2**64})
    with pytest.raises(ValidationError, match="^99 is not a valid error_code"):
        status.finish_job(any_store, alice(any_store),
                          {"job_id": job["_id"], "error_message": "x", "error_code": 99})


def test_concierge_resources_beyond_64_bits_are_invalid_params(any_store):
    concierge = any_store.auth.authenticate(any_store.auth.create_token("kbaseconcierge"))
    with pytest.raises(InvalidParams, match=r"^concierge_params\.request_cpus is an integer beyond 64 bits"):
        run.run_job_concierge(any_store, concierge, run_params(), {"request_cpus": 10**30})
    assert any_store.store.find_jobs(JobQuery()) == []


def test_a_record_holding_an_unstorable_value_is_refused_naming_it():
    with pytest.raises(InvalidParams, match=r"^The job cannot be stored: job_input\.requirements\.cpu is an integer beyond"):
        params.fits_in_document({"job_input": {"requirements": {"cpu": 2**64}}}, "The job", {})
