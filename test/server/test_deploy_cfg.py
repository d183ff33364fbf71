"""deploy/deploy.cfg: the example production configuration documents every key and loads."""
from __future__ import annotations

import configparser
from pathlib import Path

from execution_engine2.config import KEYS, SECTION, load

DEPLOY_CFG = Path(__file__).resolve().parents[2] / "deploy" / "deploy.cfg"
STANDARD_GROUPS = {"njs", "bigmem", "bigmemlong", "extreme", "concierge", "hpc", "kb_upload",
                   "terabyte", "multi_tb", "kb_upload_bulk"}


def test_every_config_key_is_documented():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(DEPLOY_CFG)
    options = {option for option in parser.options(SECTION) if option not in parser.defaults()}
    assert options == {key.name for key in KEYS}


def test_it_loads_with_production_wiring_and_every_client_group():
    config = load(str(DEPLOY_CFG), environ={})
    assert (config.store, config.scheduler, config.auth, config.catalog) == (
        "mongo", "condor", "kbase", "kbase")
    assert set(config.client_groups) == STANDARD_GROUPS
    assert config.default_client_group == "njs"
    assert config.client_groups["njs"].request_memory == 2000
    assert config.catalog_token is None and config.mongo_password is None


def test_secrets_come_from_the_environment():
    config = load(str(DEPLOY_CFG), environ={"EE2_MONGO_PASSWORD": "s3cret", "EE2_CATALOG_TOKEN": "tok"})
    assert (config.mongo_password, config.catalog_token) == ("s3cret", "tok")
