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

"""Benchmark: SAL command round trip and event latency, both transports.

A `MinimalOcpsCsc` and a `Remote` with its own domain (so, on Kafka, its
own producer and consumer) exchange ``setLogLevel`` commands, alternating
the level so that every command also writes a ``logLevel`` event. Printed
per transport, side by side: the command round trip (``set_start`` until
CMD_COMPLETE) and the event latency (the Remote's ``private_rcvStamp``
minus the CSC's ``private_sndStamp``), median and 99th percentile.

The Kafka case runs on a local tansu broker with the schema-registry test
stand-in (from ``tests/support``), with the tansu client settings.

Usage::

    .venv/bin/python bench/bench_sal.py [--count 300]
"""

import argparse
import asyncio
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import yaml
from lsst.ts.ocps.sal.enums import State
from lsst.ts.ocps.sal.remote import Remote
from lsst.ts.ocps.sal.testing import set_test_environment
from lsst.ts.ocps.sal.testing_csc import MinimalOcpsCsc

REPO_DIR = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR / "tests"))

from support.kafka import (  # noqa: E402
    TANSU_CONSUMER_SETTINGS,
    TANSU_PRODUCER_SETTINGS,
    TansuBroker,
)
from support.schema_registry_standin import SchemaRegistryStandIn  # noqa: E402

CONFIG_DIR = REPO_DIR / "tests" / "data" / "sal_configs" / "good"
WARM_UP = 10
TIMEOUT = 30.0


def quantiles(values: list[float]) -> tuple[float, float]:
    """Median and 99th percentile, in milliseconds."""
    p99 = statistics.quantiles(values, n=100, method="inclusive")[98]
    return statistics.median(values) * 1e3, p99 * 1e3


async def run_one(count: int) -> dict[str, tuple[float, float]]:
    """Exchange ``count`` commands with the transport the env selects."""
    csc = MinimalOcpsCsc(index=1, config_dir=CONFIG_DIR, initial_state=State.STANDBY)
    remote = Remote(None, "OCPS", 1, include=["logLevel"])
    try:
        await asyncio.wait_for(csc.start_task, TIMEOUT)
        await asyncio.wait_for(remote.start_task, TIMEOUT)
        remote.evt_logLevel.flush()
        round_trips = []
        latencies = []
        for i in range(WARM_UP + count):
            level = 30 if i % 2 == 0 else 20
            start = time.perf_counter()
            await remote.cmd_setLogLevel.set_start(level=level, timeout=TIMEOUT)
            elapsed = time.perf_counter() - start
            event = await remote.evt_logLevel.next(flush=False, timeout=TIMEOUT)
            if event.level != level:
                raise RuntimeError(f"logLevel {event.level} after setting {level}")
            if i >= WARM_UP:
                round_trips.append(elapsed)
                latencies.append(event.private_rcvStamp - event.private_sndStamp)
        return {"command": quantiles(round_trips), "event": quantiles(latencies)}
    finally:
        await remote.close()
        await csc.close()


async def main(count: int) -> None:
    results = {}
    os.environ.pop("LSST_KAFKA_BROKER_ADDR", None)
    set_test_environment()
    results["in-process"] = await run_one(count)

    with tempfile.TemporaryDirectory() as directory:
        broker = TansuBroker(log_path=pathlib.Path(directory) / "tansu.log")
        registry = SchemaRegistryStandIn()
        broker.start()
        registry.start()
        try:
            consumer_config = pathlib.Path(directory) / "consumer.yaml"
            consumer_config.write_text(yaml.safe_dump(TANSU_CONSUMER_SETTINGS))
            os.environ["LSST_KAFKA_BROKER_ADDR"] = broker.bootstrap
            os.environ["LSST_SCHEMA_REGISTRY_URL"] = registry.url
            os.environ["LSST_KAFKA_CONSUMER_CONFIGURATION"] = str(consumer_config)
            producer_config = pathlib.Path(directory) / "producer.yaml"
            producer_config.write_text(yaml.safe_dump(TANSU_PRODUCER_SETTINGS))
            os.environ["LSST_KAFKA_PRODUCER_CONFIGURATION"] = str(producer_config)
            set_test_environment()
            results["kafka (tansu)"] = await run_one(count)
        finally:
            registry.stop()
            broker.stop()

    print(
        f"{platform.uname().system} {platform.uname().release}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"{count} setLogLevel commands per transport (after {WARM_UP} warm-up)")
    print(f"{'':16}{'command round trip (ms)':>28}{'logLevel event latency (ms)':>32}")
    print(f"{'transport':16}{'median':>14}{'p99':>14}{'median':>16}{'p99':>16}")
    for name, figures in results.items():
        (cmd_median, cmd_p99), (evt_median, evt_p99) = (
            figures["command"],
            figures["event"],
        )
        print(
            f"{name:16}{cmd_median:14.2f}{cmd_p99:14.2f}{evt_median:16.2f}{evt_p99:16.2f}"
        )
    base, kafka = results["in-process"], results["kafka (tansu)"]
    print(
        "kafka / in-process: command median x"
        f"{kafka['command'][0] / base['command'][0]:.1f}, event median x"
        f"{kafka['event'][0] / base['event'][0]:.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300, help="commands per transport")
    args = parser.parse_args()
    if args.count < 200:
        parser.error("--count must be at least 200 for a meaningful p99")
    asyncio.run(main(args.count))
