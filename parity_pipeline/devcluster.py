"""A cluster on one machine from real parts, for `make cluster-demo` and the cluster test.

Debian's PostgreSQL server holds the Dagster instance (``docs/dagster.postgres.yaml``), Debian's
``redis-server`` is the Celery broker and result backend, and ``dagster-celery`` workers run the
steps; each is a separate process on 127.0.0.1 and a free port, and every process shares one
artifact store folder (``PARITY_HOME``), as machines would share a mount. A run is launched the
way a user would (``dagster job execute -m parity_pipeline.cluster``): that process coordinates,
the workers compute. Everything started is stopped by PID when the context ends and checked
gone; a server that will not stop raises.

Run it: ``make cluster-demo`` (``python -m parity_pipeline.devcluster --data data/sample``).
"""

import argparse
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from parity_pipeline.core.store import home

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"  # PostgreSQL refuses to run as root: its tools run as this user
ROLE = DB = "parity"
TOOL_TIMEOUT_S = 120
START_TIMEOUT_S = 60
WORKERS = 2
# the tested Celery settings are the documented ones: the deploy recipe's run config
DEPLOY_RUN_CONFIG = Path("deploy") / "run_config.celery.yaml"
STEP_DONE = re.compile(r" - (\S+) - STEP_SUCCESS - ")


class ClusterError(RuntimeError):
    """A part of the local cluster could not start or stop; the message says which and why."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _wait_for(ready, what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} did not become ready within {timeout_s:.0f} s")
        time.sleep(0.2)


# --- PostgreSQL ------------------------------------------------------------------------------

def pg_bin() -> Path:
    """The newest installed major version's folder with the server tools."""
    found = [p for p in sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")))
             if all((p / tool).is_file() for tool in ("initdb", "pg_ctl", "psql"))]
    if not found:
        raise ClusterError(f"no PostgreSQL server binaries in {PG_BIN_GLOB}: `make postgres` "
                           "installs Debian's postgresql package")
    return max(found, key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])


def run_as() -> list[str]:
    """The prefix that runs a server tool as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None or not _user_exists(SERVER_USER):
        raise ClusterError(f"running as root without a `{SERVER_USER}` user to run PostgreSQL "
                           "as: Debian's postgresql package creates it (`make postgres`)")
    return ["runuser", "-u", SERVER_USER, "--"]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class PgServer:
    bin: Path
    root: Path
    port: int = 0
    password: str = ""

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def tool(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A server tool as the server's user, from the cluster folder."""
        done = subprocess.run([*run_as(), str(self.bin / name), *args], cwd=self.root,
                              capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                              check=False)
        if check and done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise ClusterError(f"{name} {' '.join(args)} exited {done.returncode}:\n"
                               f"{done.stdout}\n{done.stderr}\n{log}")
        return done

    def env(self) -> dict[str, str]:
        """The variables docs/dagster.postgres.yaml reads."""
        return {"DAGSTER_PG_USERNAME": ROLE, "DAGSTER_PG_PASSWORD": self.password,
                "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_DB": DB,
                "DAGSTER_PG_PORT": str(self.port)}

    def query(self, sql: str) -> list[list[str]]:
        """``sql`` as parity's role over TCP with its password, as the instance connects."""
        done = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", ROLE, "-d", DB, "-X", "-v", "ON_ERROR_STOP=1", "-tA",
                               "-F", "\t", "-c", sql],
                              env={**os.environ, "PGPASSWORD": self.password,
                                   "PGCONNECT_TIMEOUT": "10"},
                              capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise ClusterError(f"psql failed: {done.stderr}")
        return [line.split("\t") for line in done.stdout.splitlines() if line]

    def running(self) -> bool:
        return self.tool("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0


@contextlib.contextmanager
def postgres_server() -> Iterator[PgServer]:
    """A throw-away PostgreSQL cluster on 127.0.0.1:<free port>; stopped and checked stopped."""
    server = PgServer(bin=pg_bin(), root=Path(tempfile.mkdtemp(prefix="parity-pg-")))
    if run_as():
        shutil.chown(server.root, SERVER_USER, SERVER_USER)
    server.tool("initdb", "-D", str(server.data), "-U", "postgres", "-E", "UTF8", "--no-locale",
                "--auth-local=trust", "--auth-host=scram-sha-256")
    try:
        for _ in range(3):  # a free port can be taken between probing and binding
            server.port = free_port()
            server.socket_dir.mkdir(exist_ok=True)
            if run_as():
                shutil.chown(server.socket_dir, SERVER_USER, SERVER_USER)
            started = server.tool(
                "pg_ctl", "start", "-D", str(server.data), "-l", str(server.log), "-w",
                "-t", str(START_TIMEOUT_S), "-o",
                f"-p {server.port} -k {server.socket_dir} -c listen_addresses=127.0.0.1",
                check=False)
            if started.returncode == 0:
                break
        else:
            raise ClusterError("PostgreSQL did not start:\n"
                               f"{server.log.read_text(errors='replace')}")
        server.password = secrets.token_hex(16)
        server.tool("psql", "-h", str(server.socket_dir), "-p", str(server.port), "-U", "postgres",
                    "-d", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                    "-c", f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.password}'",
                    "-c", f"CREATE DATABASE {DB} OWNER {ROLE}")
        yield server
    finally:
        _stop_postgres(server)


def _stop_postgres(server: PgServer) -> None:
    if server.data.is_dir():
        server.tool("pg_ctl", "stop", "-D", str(server.data), "-m", "fast", "-w", "-t", "60",
                    check=False)
        if server.running():
            server.tool("pg_ctl", "stop", "-D", str(server.data), "-m", "immediate", "-w",
                        check=False)
    stopped = not server.data.is_dir() or not server.running()
    pid_file_gone = not (server.data / "postmaster.pid").exists()
    port_closed = not server.port or not port_open(server.port)
    if not (stopped and pid_file_gone and port_closed):
        raise ClusterError(f"PostgreSQL in {server.root} is still running after pg_ctl stop")
    shutil.rmtree(server.root, ignore_errors=True)


# --- processes: Redis and the workers --------------------------------------------------------

def _stop_group(process: subprocess.Popen, what: str) -> None:
    """SIGTERM the process group (a Celery worker's pool children too), SIGKILL after 30 s,
    then check that no process of the group is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise ClusterError(f"{what} (process group {process.pid}) is still running after SIGKILL")


@dataclass
class RedisServer:
    """Debian's redis-server on 127.0.0.1:``port``, its data in ``folder`` with an append-only
    file synced on every write, so a restart keeps the queued steps and their results."""

    binary: str
    folder: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "redis.log"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.folder), "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
            stdout=self.log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)
        process = self.process
        _wait_for(lambda: port_open(self.port) or process.poll() is not None, "redis-server")
        if process.poll() is not None:
            raise ClusterError(f"redis-server exited {process.returncode}: "
                               f"{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, "redis-server")
        if port_open(self.port):
            raise ClusterError(f"redis-server still answers on port {self.port} after stopping")

    def restart(self, down_s: float) -> None:
        """Stop the broker, leave it down ``down_s`` seconds, start it again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    """A started RedisServer on a free port; stopped and checked stopped."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ClusterError("no redis-server on PATH: `make redis` installs Debian's "
                           "redis-server package")
    folder.mkdir(parents=True, exist_ok=True)
    server = RedisServer(binary=binary, folder=folder, port=free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass
class LocalCluster:
    root: Path
    pg: PgServer
    redis: RedisServer
    env: dict[str, str]
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def broker(self) -> str:
        return self.redis.url

    @property
    def parity_home(self) -> Path:
        return Path(self.env["PARITY_HOME"])

    def worker_log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def execution_config(self) -> dict:
        """The executor config block: this cluster's Redis as broker and backend, with the
        deploy recipe's Celery settings (late acknowledgement, retries while Redis restarts)."""
        documented = yaml.safe_load((home.project_root() / DEPLOY_RUN_CONFIG).read_text())
        settings = documented["execution"]["config"]["config_source"]
        return {"execution": {"config": {"broker": f"{self.broker}/0",
                                         "backend": f"{self.broker}/1",
                                         "config_source": settings}}}

    def launch(self, data_dir: Path) -> subprocess.Popen:
        """``parity_all`` through the Celery executor, launched as a user would; the process
        coordinates the run until it ends."""
        run_config = self.root / "run_config.yaml"
        data_source = {"data_source": {"config": {"data_dir": str(data_dir.resolve())}}}
        run_config.write_text(yaml.safe_dump({**self.execution_config(),
                                              "resources": data_source}, sort_keys=True))
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m",
             "parity_pipeline.cluster", "-j", "parity_all", "-c", str(run_config)],
            env=self.env, cwd=home.project_root(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)

    def run_pipeline(self, data_dir: Path) -> tuple[int, str]:
        """Launch and wait: (exit code, the coordinator's output)."""
        process = self.launch(data_dir)
        output, _ = process.communicate(timeout=1800)
        return process.returncode, output

    def steps_by_worker(self) -> dict[str, list[str]]:
        """Which steps each worker finished, read from its own log (each line names the
        worker's process id; the worker name is the log's)."""
        return {name: sorted(set(STEP_DONE.findall(self.worker_log(name).read_text(
            errors="replace")))) for name in sorted(self.workers)}


@dataclass(frozen=True)
class StepTiming:
    """Where a Celery run's time went, from its events in PostgreSQL: per step, the wait from
    the coordinator submitting its task to a worker starting it, and the step's own time."""

    run_wall_s: float
    steps: int
    compute_s: float  # sum over steps, STEP_START to STEP_SUCCESS
    wait_median_s: float
    wait_max_s: float

    def text(self) -> str:
        return (f"run {self.run_wall_s:.1f} s: {self.steps} steps computed {self.compute_s:.1f} s "
                f"in all; a task waited {self.wait_median_s:.2f} s (median, max "
                f"{self.wait_max_s:.2f} s) from submission to its step starting on a worker")


def step_timing(pg: PgServer, run_id: str) -> StepTiming:
    rows = pg.query(
        "SELECT step_key, dagster_event_type, extract(epoch from timestamp) FROM event_logs "
        f"WHERE run_id = '{run_id}' AND (dagster_event_type IN ('STEP_START', 'STEP_SUCCESS', "
        "'RUN_START', 'RUN_SUCCESS', 'RUN_FAILURE') OR (dagster_event_type = 'ENGINE_EVENT' "
        "AND event LIKE '%Submitting celery task%')) ORDER BY id")
    at: dict[tuple[str, str], float] = {}
    for step, kind, seconds in rows:
        at.setdefault((step, kind), float(seconds))
    steps = sorted({step for step, kind in at if kind == "STEP_START"})
    waits = sorted(at[(s, "STEP_START")] - at[(s, "ENGINE_EVENT")] for s in steps
                   if (s, "ENGINE_EVENT") in at)
    compute = sum(at[(s, "STEP_SUCCESS")] - at[(s, "STEP_START")] for s in steps
                  if (s, "STEP_SUCCESS") in at)
    ends = [seconds for (step, kind), seconds in at.items() if kind.startswith("RUN_")
            and kind != "RUN_START"]
    start = at.get(("", "RUN_START"), min(at.values(), default=0.0))
    return StepTiming(run_wall_s=(max(ends) if ends else max(at.values(), default=start)) - start,
                      steps=len(steps), compute_s=compute,
                      wait_median_s=waits[len(waits) // 2] if waits else 0.0,
                      wait_max_s=waits[-1] if waits else 0.0)


@contextlib.contextmanager
def local_cluster(root: Path, n_workers: int = WORKERS) -> Iterator[LocalCluster]:
    """PostgreSQL, Redis and ``n_workers`` Celery workers (one task at a time each), all
    stopped when the context ends."""
    root.mkdir(parents=True, exist_ok=True)
    dagster_home = root / "dagster"
    dagster_home.mkdir(exist_ok=True)
    shutil.copyfile(home.project_root() / "docs" / "dagster.postgres.yaml",
                    dagster_home / "dagster.yaml")
    with postgres_server() as pg, redis_server(root / "redis") as redis:
        env = {**os.environ, **pg.env(), "DAGSTER_HOME": str(dagster_home),
               "PARITY_HOME": str(root / "home"),
               # the workers start `celery` from this environment
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        cluster = LocalCluster(root=root, pg=pg, redis=redis, env=env)
        worker_config = root / "celery.yaml"
        worker_config.write_text(yaml.safe_dump(cluster.execution_config(), sort_keys=True))
        try:
            for number in range(1, n_workers + 1):
                name = f"worker{number}"
                cluster.workers[name] = subprocess.Popen(
                    [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start",
                     "-A", "dagster_celery.app", "-y", str(worker_config), "-n", f"{name}@%h",
                     "--", "--concurrency", "1"],
                    env=env, cwd=home.project_root(), stdout=cluster.worker_log(name).open("w"),
                    stderr=subprocess.STDOUT, start_new_session=True)
            for name, process in cluster.workers.items():
                log = cluster.worker_log(name)
                _wait_for(lambda log=log, process=process: process.poll() is not None
                          or " ready." in log.read_text(errors="replace"), f"Celery {name}")
                if process.poll() is not None:
                    raise ClusterError(f"Celery {name} exited {process.returncode}: "
                                       f"{log.read_text(errors='replace')[-2000:]}")
            yield cluster
        finally:
            for name, process in cluster.workers.items():
                _stop_group(process, f"Celery {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/sample", help="dataset folder (data/sample)")
    parser.add_argument("--root", default=None,
                        help="folder for the cluster's instance, store and logs (a new "
                             "temporary folder by default; kept afterwards)")
    args = parser.parse_args(argv)
    root = Path(args.root or tempfile.mkdtemp(prefix="parity-cluster-"))
    with local_cluster(root) as cluster:
        print(f"cluster: PostgreSQL 127.0.0.1:{cluster.pg.port}, Redis {cluster.broker}, "
              f"workers {', '.join(f'{n} (pid {p.pid})' for n, p in cluster.workers.items())}")
        started = time.monotonic()
        code, output = cluster.run_pipeline(home.project_root() / args.data)
        wall = time.monotonic() - started
        print(output[-2000:] if code else f"run: success, {wall:.1f} s from launch to exit")
        for name, steps in cluster.steps_by_worker().items():
            print(f"{name} ran {len(steps)} steps: {', '.join(steps)}")
        for (run_id,) in cluster.pg.query(
                "SELECT run_id FROM runs ORDER BY create_timestamp DESC LIMIT 1"):
            print(step_timing(cluster.pg, run_id).text())
        print(f"store and logs: {root}")
    print("stopped: workers, Redis, PostgreSQL")
    return code


if __name__ == "__main__":
    sys.exit(main())
