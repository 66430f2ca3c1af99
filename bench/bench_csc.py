# This file is part of ts_ocps.
#
# Developed for the Vera C. Rubin Observatory Telescope and Site Systems.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""Benchmark of the OCPS CSC: job exit to job_result, execute round trip.

Runs the CSC with a trivial job type on the in-process transport and on a
real Kafka-protocol broker (tansu, with the schema-registry stand-in of the
tests), and prints, for each:

* the latency from a job's process exit to its ``job_result`` arriving at a
  Remote (the job writes its exit time as its last act; the figure
  includes the interpreter's exit, the supervisor noticing it, the journal
  write, the SAL write and the broker round trip); guide: p99 < 50 ms;
* the ``execute`` round trip (``set_start`` to the final ack) and the time
  to its first (in-progress) ack, next to a plain asyncio spawn of the same
  command as the floor.

Usage: ``.venv/bin/python bench/bench_csc.py [--count N]``.
"""

import argparse
import asyncio
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml
from lsst.ts.ocps import sal
from lsst.ts.ocps.csc.ocps_csc import OcpsCsc
from lsst.ts.ocps.sal.tai import utc_from_tai
from lsst.ts.ocps.sal.testing import set_test_environment

REPO_DIR = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR / "tests"))

from support.kafka import TANSU_CONSUMER_SETTINGS, TansuBroker  # noqa: E402
from support.schema_registry_standin import SchemaRegistryStandIn  # noqa: E402

WARM_UP = 5
TIMEOUT = 60.0

JOB_CODE = """
import json, os, time
with open(os.environ["OCPS_RESULT_FILE"], "w") as stream:
    json.dump({"exit_time": time.time()}, stream)
os._exit(0)
"""

JOB_TYPE = {
    "name": "bench_exit",
    "description": "Write the exit time to the result file and exit 0.",
    "version": "1.0",
    "command": ["python3", "-c", JOB_CODE.replace("{", "{{").replace("}", "}}")],
    "parameters": {
        "type": "object",
        "properties": {"pipeline": {"type": "string", "default": ""}},
    },
    "execution_duration": 60,
}


def quantiles(values: list[float]) -> tuple[float, float]:
    """Median and 99th percentile, in milliseconds."""
    p99 = statistics.quantiles(values, n=100, method="inclusive")[98]
    return statistics.median(values) * 1e3, p99 * 1e3


def write_config(directory: pathlib.Path) -> pathlib.Path:
    """A job-types dir with ``bench_exit`` and a CSC config dir using it."""
    job_types = directory / "job_types"
    job_types.mkdir()
    (job_types / "bench_exit.yaml").write_text(yaml.safe_dump(JOB_TYPE))
    config_dir = directory / "config"
    config_dir.mkdir()
    config = {
        "instances": [
            {
                "sal_index": 1,
                "instance": "LATISS",
                "butler": "/unused",
                "job_type": "bench_exit",
            }
        ],
        "job_types_dir": str(job_types),
        "state_dir": str(directory / "state"),
        "rest_port": -1,
        "max_concurrent": 1,
    }
    (config_dir / "_init.yaml").write_text(yaml.safe_dump(config))
    return config_dir


async def spawn_floor(count: int) -> tuple[float, float]:
    """Median and p99 of spawning the job's command directly."""
    times = []
    # The same interpreter the job gets: OCPS puts its own first on PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    env = dict(os.environ, OCPS_RESULT_FILE=os.devnull, PATH=path)
    for i in range(WARM_UP + count):
        start = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            "python3", "-c", JOB_CODE, env=env
        )
        await process.wait()
        if i >= WARM_UP:
            times.append(time.perf_counter() - start)
    return quantiles(times)


async def run_one(count: int, config_dir: pathlib.Path) -> dict[str, Any]:
    """Run ``count`` executes on the transport the environment selects."""
    csc = OcpsCsc(index=1, config_dir=config_dir, initial_state=sal.State.ENABLED)
    remote = sal.Remote(None, "OCPS", 1, include=["job_result"])
    try:
        await asyncio.wait_for(csc.start_task, TIMEOUT)
        await asyncio.wait_for(remote.start_task, TIMEOUT)
        first_acks, round_trips, latencies = [], [], []
        for i in range(WARM_UP + count):
            start = time.perf_counter()
            ack = await remote.cmd_execute.set_start(
                wait_done=False, pipeline=f"bench{i}", timeout=TIMEOUT
            )
            first = time.perf_counter()
            job_id = json.loads(ack.result)["job_id"]
            await remote.cmd_execute.next_ackcmd(ack, timeout=TIMEOUT)
            done = time.perf_counter()
            while True:
                data = await remote.evt_job_result.next(flush=False, timeout=TIMEOUT)
                # The reader stamps arrival in private_rcvStamp (TAI); the
                # sample is read only after the final ack, which may come
                # later than the event.
                received = utc_from_tai(data.private_rcvStamp)
                result = json.loads(data.result)
                if result["jobId"] == job_id:
                    break
            if data.exit_code != 0:
                raise RuntimeError(f"job {job_id} failed: {data.result}")
            if i >= WARM_UP:
                first_acks.append(first - start)
                round_trips.append(done - start)
                exit_time = result["jobInfo"]["result"]["exit_time"]
                latencies.append(received - exit_time)
        return {
            "first_ack": quantiles(first_acks),
            "round_trip": quantiles(round_trips),
            "exit_to_result": quantiles(latencies),
        }
    finally:
        await remote.close()
        await csc.close()


async def main(count: int) -> None:
    os.environ["LSST_SITE"] = "bench"
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as directory:
        root = pathlib.Path(directory)
        floor = await spawn_floor(count)

        os.environ.pop("LSST_KAFKA_BROKER_ADDR", None)
        set_test_environment()
        os.environ["LSST_SITE"] = "bench"
        (root / "inprocess").mkdir()
        results["in-process"] = await run_one(count, write_config(root / "inprocess"))

        broker = TansuBroker(log_path=root / "tansu.log")
        registry = SchemaRegistryStandIn()
        broker.start()
        registry.start()
        try:
            consumer_config = root / "consumer.yaml"
            consumer_config.write_text(yaml.safe_dump(TANSU_CONSUMER_SETTINGS))
            os.environ["LSST_KAFKA_BROKER_ADDR"] = broker.bootstrap
            os.environ["LSST_SCHEMA_REGISTRY_URL"] = registry.url
            os.environ["LSST_KAFKA_CONSUMER_CONFIGURATION"] = str(consumer_config)
            set_test_environment()
            os.environ["LSST_SITE"] = "bench"
            (root / "kafka").mkdir()
            results["kafka (tansu)"] = await run_one(
                count, write_config(root / "kafka")
            )
        finally:
            registry.stop()
            broker.stop()

    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout
    print(f"uname -a: {uname.strip()}")
    print(f"nproc: {os.cpu_count()}, Python {platform.python_version()}")
    print(f"{count} executes per transport (after {WARM_UP} warm-up), one at a time")
    print(
        f"plain spawn of the job command: median {floor[0]:.1f} ms, p99 {floor[1]:.1f} ms"
    )
    header = ("exit -> job_result", "execute round trip", "first ack")
    print(f"{'':16}" + "".join(f"{name + ' (ms)':>26}" for name in header))
    print(f"{'transport':16}" + f"{'median':>13}{'p99':>13}" * len(header))
    for name, figures in results.items():
        row = "".join(
            f"{figures[key][0]:13.1f}{figures[key][1]:13.1f}"
            for key in ("exit_to_result", "round_trip", "first_ack")
        )
        print(f"{name:16}{row}")
    for name, figures in results.items():
        print(
            f"{name}: execute round trip / plain spawn (median) = "
            f"{figures['round_trip'][0] / floor[0]:.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200, help="executes per transport")
    args = parser.parse_args()
    if args.count < 100:
        parser.error("--count must be at least 100 for a meaningful p99")
    asyncio.run(main(args.count))
