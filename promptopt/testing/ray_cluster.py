"""A real multi-node Ray cluster on loopback, for tests and benchmarks.

Each node is a ``ray start --block`` process of its own (the head, then workers that join
it with ``--address``), started in a new process group so that :meth:`LocalCluster.stop_node`
and :meth:`LocalCluster.close` end it and everything it spawned (raylet, GCS, workers) —
and nothing else: ``ray stop`` would end every Ray on the machine, other users' included.

Every port a node opens is picked free on loopback (the GCS, Ray Client server, node
manager, object manager, agents, metrics, a small range for workers), so concurrent runs
do not collide on Ray's defaults, and the cluster's files go to a short temp dir of its own
(Ray's socket paths are limited to about 107 characters). The nodes run in ``cwd``, a
directory of their own, so a worker cannot read the user's files by relative path::

    with LocalCluster(worker_nodes=1) as cluster:
        env = {**os.environ, "RAY_ADDRESS": cluster.address}          # --ray-address auto
        client = cluster.client_address                                # ray://127.0.0.1:PORT
        cluster.stop_node("worker-1")                                  # its actors die

Worker nodes carry the custom resource ``{"worker_node": 1}`` (with ``--ray-resources
'{"worker_node": 0.01}'`` a search puts its model actors there); the head has none.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The custom resource of every worker node.
WORKER_RESOURCE = "worker_node"


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on loopback right now (held open together while picked)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_range(size: int, attempts: int = 50) -> int:
    """The first of ``size`` consecutive ports, all free now, above the ephemeral crowd."""
    import random

    rng = random.Random()
    for _ in range(attempts):
        start = rng.randrange(20000, 30000 - size)
        held = []
        try:
            for port in range(start, start + size):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {size} consecutive free ports found")


@dataclass
class Node:
    name: str
    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    resources: dict[str, float] = field(default_factory=dict)
    marker: str = ""  # the line written to its log before this start

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class LocalCluster:
    """A Ray head plus ``worker_nodes`` worker nodes on this machine (see the module doc)."""

    def __init__(
        self,
        *,
        worker_nodes: int = 1,
        head_cpus: int = 1,
        worker_cpus: int = 1,
        ray: str | None = None,
        startup_timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.ray_cli = ray or str(Path(sys.executable).with_name("ray"))
        self.head_cpus = head_cpus
        self.worker_cpus = worker_cpus
        self.n_workers = worker_nodes
        self.startup_timeout = startup_timeout
        self.temp_dir = Path(tempfile.mkdtemp(prefix="po-rc-", dir="/tmp"))  # short: socket paths
        self.cwd = self.temp_dir / "cwd"  # nodes start here: an empty directory, no user files
        self.cwd.mkdir()
        self.log_dir = self.temp_dir / "out"
        self.log_dir.mkdir()
        # Token authentication, with a token of this cluster's own (Ray 2.5x+ turns it on for
        # `ray start --head`; every node and driver must then present the same token).
        self.auth_token = secrets.token_hex(32)
        self.env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0", **self.auth_env()}
        # The nodes know nothing of the user's session: no data dir, no task path, no API key
        # (a worker gets the key from the driver, the data by value).
        for name in ("RAY_ADDRESS", "PROMPTOPT_DATA_DIR", "PROMPTOPT_TASK_PATH", "OPENAI_API_KEY"):
            self.env.pop(name, None)
        self.nodes: dict[str, Node] = {}
        self.started: list[str] = []  # node names, once per start
        self.gcs_port, self.client_port = free_ports(2)

    # -- addresses ------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The GCS address (``RAY_ADDRESS`` for ``--ray-address auto``)."""
        return f"127.0.0.1:{self.gcs_port}"

    def auth_env(self) -> dict[str, str]:
        """What a driver needs in its environment to be let in."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.auth_token}

    def driver_env(self) -> dict[str, str]:
        """``os.environ`` for a driver of ``--ray-address auto`` on this cluster's head."""
        return {**os.environ, **self.auth_env(), "RAY_ADDRESS": self.address}

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    # -- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """The head, then each worker node in turn: on a loaded machine, nodes started
        together can miss Ray's fixed 30 s registration window, so each is started once the
        previous one is up, and started again (up to ``attempts`` times) if it missed it."""
        self.start_head()
        for i in range(1, self.n_workers + 1):
            self.start_worker(f"worker-{i}")

    def start_head(self, attempts: int = 3) -> Node:
        args = ["--head", "--port", str(self.gcs_port), "--ray-client-server-port", str(self.client_port),
                "--num-cpus", str(self.head_cpus), "--include-dashboard", "false",
                "--temp-dir", str(self.temp_dir / "ray")]  # fmt: skip
        return self._start_until_up("head", args, {}, attempts)

    def start_worker(self, name: str, resources: dict[str, float] | None = None, attempts: int = 3) -> Node:
        resources = resources if resources is not None else {WORKER_RESOURCE: 1}
        args = ["--address", self.address, "--num-cpus", str(self.worker_cpus),
                "--resources", json.dumps(resources)]  # fmt: skip
        return self._start_until_up(name, args, resources, attempts)

    def _start_until_up(self, name: str, args: list[str], resources: dict[str, float], attempts: int) -> Node:
        for _ in range(attempts):
            node = self._start(name, args, resources)
            deadline = time.monotonic() + self.startup_timeout
            log = self.log_dir / f"{name}.log"
            while time.monotonic() < deadline and node.alive:
                if "Ray runtime started" in log.read_text(errors="replace").split(node.marker)[-1]:
                    return node
                time.sleep(0.3)
            _kill_group(node.process, 15.0)
        raise RuntimeError(f"Ray node {name} did not start in {attempts} attempts:\n{self.logs()}")

    def _start(self, name: str, args: list[str], resources: dict[str, float]) -> Node:
        names = ["node_manager", "object_manager", "agent_listen", "agent_grpc", "runtime_env", "metrics",
                 "dashboard"]  # fmt: skip
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        first_worker_port = free_port_range(24)
        command = [self.ray_cli, "start", *args, "--node-ip-address", "127.0.0.1",
                   "--node-manager-port", str(ports["node_manager"]),
                   "--object-manager-port", str(ports["object_manager"]),
                   "--dashboard-agent-listen-port", str(ports["agent_listen"]),
                   "--dashboard-agent-grpc-port", str(ports["agent_grpc"]),
                   "--runtime-env-agent-port", str(ports["runtime_env"]),
                   "--metrics-export-port", str(ports["metrics"]),
                   "--dashboard-port", str(ports["dashboard"]),
                   "--min-worker-port", str(first_worker_port),
                   "--max-worker-port", str(first_worker_port + 23),
                   "--disable-usage-stats", "--block"]  # fmt: skip
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        attempt = sum(1 for n in self.started if n == name) + 1
        self.started.append(name)
        marker = f"=== {name}: start {attempt} ==="
        log.write(f"\n{marker}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        node = Node(name, process, {**ports, "workers": first_worker_port}, resources, marker)
        self.nodes[name] = node
        return node

    def wait_for_nodes(self, count: int) -> None:
        """Until ``count`` nodes are alive in the cluster (asked in a process of its own)."""
        script = (
            "import ray, sys, time\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR', log_to_driver=False)\n"
            f"deadline = time.monotonic() + {self.startup_timeout}\n"
            f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
            "    if time.monotonic() > deadline: sys.exit(1)\n"
            "    time.sleep(0.5)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=self.startup_timeout + 60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"the cluster did not reach {count} nodes:\n{done.stderr[-2000:]}\n{self.logs()}"
            )

    def wait_for_client(self, attempts: int = 5) -> None:
        """Until a Ray Client driver gets in: right after the head starts, its client server
        can fail a first connection (the runtime-env agent it needs is still starting)."""
        script = f"import ray; ray.init({self.client_address!r}, logging_level='ERROR'); ray.shutdown()"
        error = ""
        for _ in range(attempts):
            done = subprocess.run(
                [sys.executable, "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                timeout=self.startup_timeout,
            )  # fmt: skip
            if done.returncode == 0:
                return
            error = done.stderr[-2000:]
            time.sleep(2.0)
        raise RuntimeError(f"no Ray Client connection to {self.client_address}:\n{error}")

    def ask(self, expression: str) -> Any:
        """The JSON value of ``expression`` evaluated by a driver of its own on the cluster
        (``ray`` imported and connected), e.g. ``"[n['NodeID'] for n in ray.nodes()]"``."""
        script = (
            "import json, ray\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR', log_to_driver=False)\n"
            f"print('RESULT ' + json.dumps({expression}))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=self.startup_timeout,
        )  # fmt: skip
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"asking the cluster failed:\n{done.stderr[-2000:]}")
        return json.loads(lines[-1][len("RESULT ") :])

    def node_resources(self) -> dict[str, dict[str, float]]:
        """Node id -> resources, for the nodes alive now."""
        return dict(self.ask("{n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}"))

    def actors(self, *class_names: str) -> list[dict[str, Any]]:
        """Every actor the cluster has known (dead ones included): id, class, state, node id."""
        rows = self.ask(
            "[{'id': k, 'class': a['ActorClassName'], 'state': a['State'], 'node': a['Address']['NodeID']}"
            " for k, a in ray._private.state.actors().items()]"
        )
        return [r for r in rows if not class_names or r["class"] in class_names]

    def nodes_running(self, title: str) -> list[str]:
        """Names of the nodes (alive) with a process titled ``title`` (Ray names an actor's
        process ``ray::ClassName``), read from /proc: instant, unlike asking the cluster."""
        found = []
        for name, node in self.nodes.items():
            for pid in _session_members(node.process.pid):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title.encode()):
                        found.append(name)
                        break
        return found

    def stop_node(self, name: str, *, timeout: float = 30.0) -> None:
        """End node ``name`` and every process it started (its actors die with it)."""
        node = self.nodes[name]
        _kill_group(node.process, timeout)

    def close(self) -> None:
        for name in reversed(list(self.nodes)):  # workers first, the head last
            with contextlib.suppress(Exception):
                self.stop_node(name, timeout=15.0)
        keep = os.environ.get("PROMPTOPT_KEEP_RAY_LOGS")  # a directory to copy Ray's logs to
        if keep:
            for logs in (self.temp_dir / "ray").glob("session_2*/logs"):
                shutil.copytree(
                    logs, Path(keep) / f"{self.temp_dir.name}-{logs.parent.name}", dirs_exist_ok=True
                )
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def logs(self, tail: int = 2000) -> str:
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)

    def ray_files(self) -> list[Path]:
        """Every regular file the cluster's Ray processes wrote (logs, session data)."""
        return [p for p in (self.temp_dir / "ray").rglob("*") if p.is_file() and not p.is_symlink()]


def _kill_group(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM to every process of the node's session (``ray start --block`` began one;
    Ray's workers set their own process groups but stay in it), SIGKILL to what is left
    after ``timeout``."""
    session = process.pid  # start_new_session: the session id is the leader's pid
    _signal_session(session, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _session_members(session):
        process.poll()
        time.sleep(0.2)
    _signal_session(session, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _session_members(session: int) -> list[int]:
    """Live (not zombie) processes of ``session``, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        if fields[0] != "Z" and int(fields[3]) == session:
            members.append(int(stat.parent.name))
    return members


def _signal_session(session: int, sig: int) -> None:
    for pid in _session_members(session):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
