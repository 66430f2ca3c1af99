"""Tests of the OCPS CSC configuration, index 101, and the command line."""

import json
import pathlib
import sys

import pytest
import redis.asyncio
from lsst.ts.ocps import sal
from lsst.ts.ocps.csc.ocps_csc import OcpsCsc
from lsst.ts.ocps.csc.settings import DEFAULT_CONFIG_DIR
from lsst.ts.ocps.sal.testing import check_bin_script, make_csc
from support.csc import (
    CONFIGS_DIR,
    STD_TIMEOUT,
    csc_env,
    make_ocps,
    next_job_result,
    start_execute,
)

__all__ = ["csc_env"]

REPO_DIR = pathlib.Path(__file__).parents[1]


@pytest.mark.parametrize(
    "override", ["", "all_fields.yaml", "short_limit.yaml", "no_rest.yaml"]
)
async def test_good_configs(csc_env: str, override: str) -> None:
    async with make_ocps() as harness:
        remote, csc = harness.remote, harness.csc
        assert isinstance(csc, OcpsCsc)
        await remote.cmd_start.set_start(
            configurationOverride=override, timeout=STD_TIMEOUT
        )
        assert csc.summary_state == sal.State.DISABLED
        applied = await harness.assert_next_sample(remote.evt_configurationApplied)
        expected = ["_init.yaml"] + ([override] if override else [])
        assert applied.configurations.split(",") == expected
        assert applied.schemaVersion == "v5"
        assert csc.settings is not None and csc.settings.instance is not None
        if override == "no_rest.yaml":
            assert csc.rest_port is None
        else:
            assert csc.rest_port
        assert csc.manager is not None
        if override == "all_fields.yaml":
            assert csc.settings.instance.butler == "/repo/test/all_fields"
            assert csc.settings.manager.max_concurrent == 2
            # Slurm is enabled, but the default runner stays local.
            assert sorted(csc.manager.runners) == ["local", "slurm"]
            slurm = csc.settings.manager.runners.slurm
            assert slurm is not None
            assert (slurm.partition, slurm.account) == ("debug", "rubin")
            assert slurm.sbatch_options == ("--qos=normal",)
            assert csc.manager.job_types["fake_pipetask"].runner == "local"
        else:
            assert sorted(csc.manager.runners) == ["local"]
        if override == "short_limit.yaml":
            assert csc.settings.instance.job_type == "fake_pipetask_short"


async def test_v4_config(csc_env: str) -> None:
    async with make_ocps(config_dir=CONFIGS_DIR / "v4", index=2) as harness:
        remote, csc = harness.remote, harness.csc
        assert isinstance(csc, OcpsCsc)
        await remote.cmd_start.set_start(timeout=STD_TIMEOUT)
        assert csc.settings is not None and csc.settings.instance is not None
        assert csc.settings.instance.job_type == "pipetask"
        assert csc.settings.instance.butler == "/repo/LSSTComCam"
        assert csc.manager is not None and "pipetask" in csc.manager.job_types
        while True:
            message = await remote.evt_logMessage.next(flush=False, timeout=STD_TIMEOUT)
            if "unused" in message.message:
                break
        assert "url, poll_interval unused" in message.message
        assert "sal_index=2" in message.message


BAD_CONFIGS = [
    ("missing_butler.yaml", "'butler' is a required property"),
    ("missing_index.yaml", "no instances entry has sal_index=1"),
    ("duplicate_index.yaml", "2 instances entries have sal_index=1"),
    ("wrong_instance.yaml", "instance='LSSTCam'; expected 'LATISS'"),
    ("bad_interval.yaml", "'fast' is not of type 'number'"),
    ("unknown_key.yaml", "'colour' was unexpected"),
    ("unknown_job_type.yaml", "job type 'no_such_type' of sal_index=1"),
    ("missing_job_types_dir.yaml", "no_such_dir"),
    ("bad_token_file.yaml", "cannot read rest_token_file"),
    ("no_such_file.yaml", "does not exist"),
]
"""Bad override files and what the start command says about each."""


@pytest.mark.parametrize("override, match", BAD_CONFIGS)
async def test_bad_configs(csc_env: str, override: str, match: str) -> None:
    async with make_ocps(config_dir=CONFIGS_DIR / "bad") as harness:
        with pytest.raises(sal.AckError, match=match):
            await harness.remote.cmd_start.set_start(
                configurationOverride=override, timeout=STD_TIMEOUT
            )
        assert harness.csc.summary_state == sal.State.STANDBY


def test_bad_configs_listed() -> None:
    """Every bad override file is in the parametrization above."""
    names = {path.name for path in (CONFIGS_DIR / "bad").glob("[!_]*.yaml")}
    assert names == {override for override, _ in BAD_CONFIGS} - {"no_such_file.yaml"}


async def test_default_config_dir(csc_env: str) -> None:
    async with make_csc(lambda **kw: OcpsCsc(index=3, **kw)) as harness:
        csc = harness.csc
        assert isinstance(csc, OcpsCsc)
        assert csc.config_dir == DEFAULT_CONFIG_DIR
        available = await harness.assert_next_sample(
            harness.remote.evt_configurationsAvailable
        )
        assert available.url == DEFAULT_CONFIG_DIR.as_uri()
        assert available.schemaVersion == "v5"
        # The job manager runs from the base configuration, before start.
        assert csc.manager is not None
        assert "pipetask" in csc.manager.job_types


async def test_manager_settings_locked_while_jobs_run(csc_env: str) -> None:
    async with make_ocps(initial_state=sal.State.ENABLED) as harness:
        remote, csc = harness.remote, harness.csc
        flow = await start_execute(remote, pipeline="p.yaml", data_query="sleep=120")
        await remote.cmd_disable.set_start(timeout=STD_TIMEOUT)
        await remote.cmd_standby.set_start(timeout=STD_TIMEOUT)
        with pytest.raises(sal.AckError, match="cannot change the job manager"):
            await remote.cmd_start.set_start(
                configurationOverride="all_fields.yaml", timeout=STD_TIMEOUT
            )
        # The same settings are fine, and the job is still tracked.
        await remote.cmd_start.set_start(timeout=STD_TIMEOUT)
        await remote.cmd_enable.set_start(timeout=STD_TIMEOUT)
        await remote.cmd_abort_job.set_start(job_id=flow.job_id, timeout=STD_TIMEOUT)
        assert (await next_job_result(remote, flow.job_id)).exit_code == 255

        await remote.cmd_disable.set_start(timeout=STD_TIMEOUT)
        await remote.cmd_standby.set_start(timeout=STD_TIMEOUT)
        await remote.cmd_start.set_start(
            configurationOverride="all_fields.yaml", timeout=STD_TIMEOUT
        )
        assert csc.manager is not None
        assert csc.manager.config.max_concurrent == 2
        # The job's history moved with the state dir: same dir, new manager.
        assert (await csc.manager.get_job(flow.job_id)).job_id == flow.job_id


async def test_rapid_analysis(
    csc_env: str, redis_server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in redis_server.items():
        monkeypatch.setenv(name, value)
    client = redis.asyncio.Redis(
        host=redis_server["REDIS_HOST"],
        port=int(redis_server["REDIS_PORT"]),
        password=redis_server["REDIS_PASSWORD"],
    )
    key = "LSSTCam-FROM-OCS_CWFSIMAGE"
    try:
        await client.delete(key, "LSSTComCam-FROM-OCS_DONUTPAIR")
        async with make_ocps(index=101, initial_state=sal.State.ENABLED) as harness:
            remote, csc = harness.remote, harness.csc
            assert isinstance(csc, OcpsCsc)
            assert csc.manager is None and csc.rest_port is None

            # The first ack is the final one: no job id, no in-progress.
            ack = await remote.cmd_execute.set_start(
                wait_done=False,
                config=json.dumps({key: "2026120300042"}),
                timeout=STD_TIMEOUT,
            )
            assert ack.ack == sal.SalRetCode.CMD_COMPLETE
            await remote.cmd_execute.set_start(
                config=json.dumps(
                    {key: 2026120300043, "LSSTComCam-FROM-OCS_DONUTPAIR": "a,b"}
                ),
                timeout=STD_TIMEOUT,
            )
            assert await client.lrange(key, 0, -1) == [
                b"2026120300043",
                b"2026120300042",
            ]
            assert await client.lrange("LSSTComCam-FROM-OCS_DONUTPAIR", 0, -1) == [
                b"a,b"
            ]

            for bad, match in (("not json", "not valid JSON"), ("[1]", "JSON object")):
                with pytest.raises(sal.AckError, match=match):
                    await remote.cmd_execute.set_start(config=bad, timeout=STD_TIMEOUT)
            with pytest.raises(sal.AckError, match="runs no jobs"):
                await remote.cmd_abort_job.set_start(job_id="abc", timeout=STD_TIMEOUT)
            assert not remote.evt_job_result.has_data
            assert not remote.evt_job_id.has_data
            assert await client.llen(key) == 2
    finally:
        await client.aclose()


async def test_rapid_analysis_needs_redis(
    csc_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_HOST", raising=False)
    async with make_ocps(index=101) as harness:
        with pytest.raises(sal.AckError, match="REDIS_HOST is not set"):
            await harness.remote.cmd_start.set_start(timeout=STD_TIMEOUT)
        monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
        monkeypatch.setenv("REDIS_PORT", "1")
        with pytest.raises(sal.AckError, match="cannot reach Redis"):
            await harness.remote.cmd_start.set_start(timeout=STD_TIMEOUT)
        assert harness.csc.summary_state == sal.State.STANDBY


@pytest.mark.parametrize(
    "exe, state",
    [
        ([str(REPO_DIR / ".venv" / "bin" / "run_ocps")], None),
        ([sys.executable, str(REPO_DIR / "bin" / "run_ocps")], sal.State.ENABLED),
    ],
)
async def test_bin_script(
    kafka_env: object, csc_env: str, exe: list[str], state: sal.State | None
) -> None:
    await check_bin_script(
        "OCPS",
        1,
        exe,
        initial_state=state,
        override="all_fields.yaml" if state else None,
        cmdline_args=["--configdir", str(CONFIGS_DIR / "good")],
        timeout=STD_TIMEOUT,
    )
