"""Ray beyond one process: a real two-node cluster on this machine, joined by address.

Two ``ray start`` nodes (a head and a worker that joins it by address), one CPU each,
with their own temp dirs, are started as their own process groups and stopped by those
group ids at the end, even when the test fails. The experiment runs with
``executor: {kind: ray, address: ...}`` and must give the local executor's OOF.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from stacking import Experiment

ray = pytest.importorskip("ray", reason="the dev extra installs ray")

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _node_ports() -> list[str]:
    """Ports a second node on the same machine must not share with the first."""
    agent, grpc, env_agent, metrics, manager, objects = _free_ports(6)
    return [
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--runtime-env-agent-port={env_agent}",
        f"--metrics-export-port={metrics}",
        f"--node-manager-port={manager}",
        f"--object-manager-port={objects}",
        "--min-worker-port=0",  # workers take any free port, as ray.cluster_utils does
        "--max-worker-port=0",
    ]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    ray_cli = Path(sys.executable).parent / "ray"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",  # a throwaway cluster of this test; no token to share
    }
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [str(ray_cli), "start", "--block", "--num-cpus=1", "--disable-usage-stats", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stopped by that id, nothing else
        )


def _stop(process: subprocess.Popen) -> None:
    for sig, wait in [(signal.SIGTERM, 3), (signal.SIGKILL, 10)]:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_for_nodes(address: str, n: int, logs: list[Path], timeout: float = 90) -> None:
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    end = time.monotonic() + timeout
    while sum(node["Alive"] for node in ray.nodes()) < n:
        if time.monotonic() > end:
            text = "\n".join(log.read_text()[-2000:] for log in logs)
            pytest.fail(f"the Ray cluster did not reach {n} nodes in {timeout} s:\n{text}")
        time.sleep(0.5)


@pytest.fixture
def two_node_cluster(monkeypatch):
    """``address`` of a head node plus one worker node on this machine, both 1 CPU."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the driver joins without a token
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: socket paths <108 chars
    port = _free_ports(1)[0]
    address = f"127.0.0.1:{port}"
    common = ["--object-store-memory=100000000"]
    nodes = []
    try:
        head = [
            "--head",
            f"--port={port}",
            "--include-dashboard=false",
            f"--ray-client-server-port={_free_ports(1)[0]}",
            f"--temp-dir={root / 'head'}",
        ]
        nodes.append(_start([*head, *common, *_node_ports()], root / "head.log"))
        time.sleep(3)
        worker = [f"--address={address}", f"--temp-dir={root / 'head'}"]
        nodes.append(_start([*worker, *common, *_node_ports()], root / "worker.log"))
        _wait_for_nodes(address, 2, [root / "head.log", root / "worker.log"])
        yield address
    finally:
        ray.shutdown()
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(root, ignore_errors=True)


def test_ray_cluster_two_nodes_gives_the_local_oof(multiclass_project, tmp_path, two_node_cluster):
    assert ray.cluster_resources().get("CPU") == 2
    local = multiclass_project.config(tmp_path / "local", **{"tracking.enabled": False})
    remote = multiclass_project.config(
        tmp_path / "ray",
        **{
            "tracking.enabled": False,
            "executor": {"kind": "ray", "address": two_node_cluster, "num_cpus": 1},
        },
    )
    first = Experiment.from_yaml(local, output_dir=tmp_path / "a", progress=False)
    a = first.run()
    b = Experiment.from_yaml(remote, output_dir=tmp_path / "b", progress=False)
    assert type(b.executor).__name__ == "RayExecutor"
    result = b.run()
    # every job ran on the cluster and its result was cached by the driver
    assert b.cache.info()["entries"] == first.cache.info()["entries"] > 0
    pd.testing.assert_frame_equal(a.oof, result.oof, check_exact=True)
    pd.testing.assert_frame_equal(a.test_predictions, result.test_predictions, check_exact=True)
