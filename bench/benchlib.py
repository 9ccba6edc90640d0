"""What the benchmark scripts share: the stack they run on, wrk, starting and stopping the
processes measured, sampling their memory, and the figures they report (printed, and as
JSON for bench/run_all.py)."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
# gunicorn.conf.py (read from ROOT) runs gthread workers with WEB_THREADS threads each.
THREADS = f"(gthread, {os.environ.get('WEB_THREADS', '6')} threads per worker)"
VAR = ROOT / "var"
SOURCE = "bench-source"

# The real stack of devtools/services/up.sh; each can be overridden from the environment.
REAL_STACK = {
    "DATABASE_URL": "mysql://tracardi:tracardi@127.0.0.1:13306/tracardi",
    "QUEUE_BACKEND": "pulsar",
    "PULSAR_SERVICE_URL": "pulsar://127.0.0.1:16650",
    "PULSAR_ADMIN_URL": "http://127.0.0.1:18080",
    "STORE_BACKEND": "elasticsearch",
    "ELASTICSEARCH_URL": "http://127.0.0.1:19200",
    "ELASTICSEARCH_REPLICAS": "0",
}


# --- the stack ------------------------------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack",
        choices=["embedded", "real"],
        default="embedded",
        help="embedded: SQLite broker and store (the defaults); real: Pulsar + Elasticsearch + MySQL "
        "(devtools/services/up.sh), settings from REAL_STACK unless set in the environment",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file (bench/run_all.py reads it)")


def prepare(name: str, stack: str) -> Path:
    """Points this process (and what it starts) at a fresh store: embedded, a new SQLite
    database under var/<name>/; real, the real servers and a new TENANT (its Pulsar topics and
    Elasticsearch indices start empty, and are deleted at exit) and a new MySQL database of
    the same name, also dropped at exit (worker settings are not per tenant: a development
    database's would apply; README, Benchmarks). Migrates, creates the event
    source, sets Django up. Returns the directory for logs."""
    directory = VAR / name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tracardi_site.settings"
    os.environ["PYTHONUNBUFFERED"] = "1"
    if stack == "real":
        for key, value in REAL_STACK.items():
            os.environ.setdefault(key, value)
    else:
        os.environ.update(embedded_stack(directory))
    os.environ["TENANT"] = f"{name.replace('-', '')}{int(time.time())}"
    if stack != "real":
        init_store()
        return directory
    os.environ["DATABASE_URL"] = fresh_mysql_database(os.environ["DATABASE_URL"], os.environ["TENANT"])
    try:
        init_store()
    except BaseException:
        drop_database(os.environ["TENANT"])
        raise
    # After init_store: registered before it, it ran after exit handlers registered during
    # the set-up, and its Elasticsearch request then waited forever for a pooled connection.
    atexit.register(drop_tenant)
    return directory


def fresh_mysql_database(url: str, name: str) -> str:
    """`url` (mysql://user:password@host:port/any) with a new, empty database `name` on the
    same server, created now and dropped at exit (drop_tenant)."""
    import MySQLdb

    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mysql2"):
        raise SystemExit(f"bench: --stack real runs on MySQL; DATABASE_URL is {parts.scheme}")
    server = MySQLdb.connect(
        host=unquote(parts.hostname or "127.0.0.1"),
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )
    try:
        server.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        server.close()
    return urlunsplit(parts._replace(path=f"/{name}"))


def embedded_stack(directory: Path) -> dict[str, str]:
    """The settings of the embedded defaults, on a SQLite database under `directory`."""
    return {
        "DATABASE_URL": f"sqlite:///{directory / 'bench.sqlite3'}",
        "QUEUE_BACKEND": "database",
        "STORE_BACKEND": "database",
    }


def init_store(**workers: int) -> None:
    """Sets Django up on the environment's settings, migrates, creates the event source and
    sets `workers` (set_workers)."""
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.core.management import call_command

    from tracking.models import EventSource

    call_command("migrate", verbosity=0)
    EventSource.objects.update_or_create(id=SOURCE, defaults={"name": "bench", "enabled": True})
    set_workers(**workers)


def drop_tenant() -> None:
    """Deletes this run's Pulsar tenant (its topics and ledgers), Elasticsearch indices and
    MySQL database when the script exits. Every run makes a new tenant; left behind, they
    grew a development Pulsar's data to 2.8 GB, and it took 20 % fewer requests/s (README,
    Benchmarks)."""
    from django.conf import settings

    from queueing.broker import get_broker
    from storage.store import get_store

    tenant = settings.TENANT
    get_broker().close()  # this process's producers and consumers go first
    try:
        if settings.QUEUE_BACKEND == "pulsar":
            requests.delete(
                f"{settings.PULSAR_ADMIN_URL}/admin/v2/tenants/{tenant}", params={"force": "true"}, timeout=60
            ).raise_for_status()
        if settings.STORE_BACKEND == "elasticsearch":
            es = get_store().es.options(ignore_status=404)  # a run that wrote nothing made none
            es.indices.delete(index=f"{tenant}.*", ignore_unavailable=True, allow_no_indices=True)
            es.indices.delete_index_template(name=f"{tenant}.*")
    except Exception as exc:  # a failed cleanup must not hide the figures already printed
        print(f"bench: could not delete tenant {tenant}: {exc}", file=sys.stderr)
    drop_database(tenant)


def drop_database(name: str) -> None:
    """Drops the MySQL database prepare() made for this run, and only that one: Django must be
    on it (a script that set Django up before prepare() would still be on another)."""
    try:
        from django.db import connection

        if connection.vendor != "mysql" or connection.settings_dict["NAME"] != name:
            print(f"bench: not dropping database {connection.settings_dict['NAME']}: not this run's", file=sys.stderr)
            return
        connection.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    except Exception as exc:  # Django not set up, the server gone: say so, keep the figures
        print(f"bench: could not drop database {name}: {exc}", file=sys.stderr)


def describe_stack() -> str:
    from django.conf import settings

    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    ours = cpu_list(0)
    # Where the figures ran: bench/api_ratio.py --servers-cpu moves these, or a killed run left them so.
    placed = [f"{name} on CPU {cpus}" for name, pid in service_pids().items() if (cpus := cpu_list(pid)) != ours]
    return (
        f"{os.cpu_count()} cores; database {database}; broker {settings.QUEUE_BACKEND}; "
        f"store {settings.STORE_BACKEND}; tenant {settings.TENANT}"
        + (
            f"; this process and what it starts on CPU {ours}"
            if len(os.sched_getaffinity(0)) < (os.cpu_count() or 1)
            else ""
        )
        + "".join(f"; {each}" for each in placed)
    )


def cpu_list(pid: int) -> str:
    """The CPUs process `pid` (0: this one) may run on, as "0,1"; "?" if it has ended."""
    try:
        return ",".join(map(str, sorted(os.sched_getaffinity(pid))))
    except ProcessLookupError:
        return "?"


def set_workers(**enabled: int) -> None:
    """worker.<type>.enabled and replicas, e.g. set_workers(background=1, collector=0)."""
    from queueing.models import WorkerSettings

    for worker_type, replicas in enabled.items():
        WorkerSettings.objects.update_or_create(
            worker_type=worker_type, defaults={"enabled": replicas > 0, "replicas": max(replicas, 1)}
        )


# --- processes ------------------------------------------------------------------------


def start(args: list[str], log: Path, *, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process of the project, run from the repository root, its output in `log`."""
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (workers finish their batch), then SIGKILL after a minute."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    """A port nothing listens on now (another benchmark or test run may use the usual ones)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(
    directory: Path, *, options: str = "-w 2", app: str = "tracardi_site.wsgi", env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """gunicorn on a free 127.0.0.1 port; returns (process, base URL) once /track answers OPTIONS."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web = start(
        [sys.executable, "-m", "gunicorn", app, "-b", f"127.0.0.1:{port}", *options.split()],
        directory / "gunicorn.log",
        env=env,
    )
    wait_until(
        lambda: web.poll() is not None or _answers(f"{url}/track"),
        timeout=60,
        what=f"gunicorn to start (see {directory / 'gunicorn.log'})",
    )
    if web.poll() is not None:
        raise SystemExit(f"bench: gunicorn exited; see {directory / 'gunicorn.log'}")
    return web, url


def start_embedded_web(directory: Path, *, options: str, app: str, **workers: int) -> tuple[subprocess.Popen, str]:
    """gunicorn on the embedded defaults beside the real stack's (a SQLite database of its
    own under `directory`/embedded/), so the two stacks are measured in the same run."""
    own = directory / "embedded"
    own.mkdir(exist_ok=True)
    env = {**os.environ, **embedded_stack(own)}
    setup = f"import sys; sys.path.insert(0, 'bench'); import benchlib; benchlib.init_store(**{workers!r})"
    subprocess.run([sys.executable, "-c", setup], cwd=ROOT, env=env, check=True)
    return start_web(own, options=options, app=app, env=env)


def _answers(url: str) -> bool:
    try:
        return requests.options(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def wait_for_log_lines(process: subprocess.Popen, log: Path, lines: Sequence[str], *, what: str) -> float:
    """Until `log` holds every one of `lines` (a worker's "started (pid"): returns the
    time.perf_counter() at which it did. Stops at once if `process` exits meanwhile."""
    wait_until(
        lambda: process.poll() is not None or all(line in log.read_text(errors="replace") for line in lines),
        timeout=120,
        what=f"{what} (see {log})",
        interval=0.01,
    )
    if process.poll() is not None:
        raise SystemExit(f"bench: {what}: the process exited; see {log}")
    return time.perf_counter()


def wait_until(done: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> float:
    """Polls `done`; returns the time.perf_counter() at which it was true."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return time.perf_counter()


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def rss_mib(pid: int) -> float | None:
    """Resident set size from /proc/<pid>/status (VmRSS), None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...), None if the
    process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds so far of each of the processes still running (all their
    threads), from /proc."""
    found = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return found


# The servers of devtools/services/ and the 127.0.0.1 port each answers on, in the order
# they are started.
SERVICES = {"mariadb": 13306, "pulsar": 16650, "elasticsearch": 19200}


def service_pids() -> dict[str, int]:
    """The real stack's servers that devtools/services/ started and that still run (from
    their pid files under SERVICES_VAR, as the scripts write them)."""
    directory = Path(os.environ.get("SERVICES_VAR", VAR / "services"))
    found = {}
    for name in SERVICES:
        try:
            pid = int((directory / name / f"{name}.pid").read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            found[name] = pid
    return found


def pin_servers(cpu: int) -> None:
    """Gives the real stack's servers (service_pids) CPU `cpu` alone and this process, and
    so whatever it starts from now on (the API, wrk), the others: the broker and the store
    on a core of their own, as on hosts of their own. Every thread of a server is moved
    (threads it starts later inherit the affinity of the thread that starts them); at exit,
    SIGTERM included, every thread it then has gets back the affinity its main thread had.
    A server left pinned by a killed run shows in describe_stack()."""
    ours = os.sched_getaffinity(0)
    if cpu not in ours or len(ours) < 2:
        raise SystemExit(f"bench: cannot give CPU {cpu} to the servers: this process runs on CPUs {sorted(ours)}")
    servers = service_pids()
    missing = [name for name in SERVICES if name not in servers]
    if missing:
        raise SystemExit(f"bench: not running from devtools/services/, so not pinned: {', '.join(missing)}")
    before = {pid: os.sched_getaffinity(pid) for pid in servers.values()}

    def set_threads(pid: int, cpus: set[int]) -> None:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except ProcessLookupError:  # the thread ended meanwhile
                continue

    def restore() -> None:
        for pid, cpus in before.items():
            if Path(f"/proc/{pid}").exists():
                set_threads(pid, cpus)

    atexit.register(restore)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs restore() too
    for _ in range(2):  # the second pass takes threads started during the first
        for pid in servers.values():
            set_threads(pid, {cpu})
    os.sched_setaffinity(0, ours - {cpu})


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


# --- wrk ------------------------------------------------------------------------------


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        print("bench: installing wrk (Debian package)")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or "wrk"


def run_wrk(
    url: str,
    *,
    seconds: float,
    per_request: int,
    queue: bool,
    path: str = "/track",
    connections: int = 16,
    sessions: int = 200,
    delay_ms: float = 0,
) -> dict[str, float]:
    """POSTs bench/track.lua payloads for `seconds`; returns requests, non2xx, socket_errors,
    seconds, p50_ms, p99_ms, ok_per_second (2xx answers/s). `delay_ms` paces each connection
    (wrk's delay(): that long between an answer and the next request)."""
    wrk = ensure_wrk()
    result = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
         "-s", str(ROOT / "bench" / "track.lua"), url,
         "--", str(per_request), SOURCE, "true" if queue else "false", path, str(sessions), f"{delay_ms:.3f}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(row for row in result.stdout.splitlines() if row.startswith("WRK "))
    stats = {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", line)}
    stats["ok"] = stats["requests"] - stats["non2xx"] - stats["socket_errors"]
    stats["ok_per_second"] = stats["ok"] / stats["seconds"]
    return stats


# --- figures --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def figure(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_label: str = "",
    target: tuple[str, float] | None = None,
    note: str = "",
    ratio: float | None = None,
) -> dict[str, Any]:
    """One row of the table. With a baseline the target applies to the ratio (value/baseline,
    unless given: e.g. the median of per-round ratios), else to the value. target: (">=" or
    "<=", bound); None: reported only."""
    if ratio is None:
        ratio = value / baseline if baseline else None
    checked = ratio if baseline else value
    passed = None
    if target is not None:
        op, bound = target
        passed = checked >= bound if op == ">=" else checked <= bound
    return {
        "figure": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_label": baseline_label,
        "ratio": ratio,
        "target": None if target is None else f"{'ratio ' if baseline else ''}{target[0]} {target[1]:g}",
        "pass": passed,
        "note": note,
    }


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The figures as one fixed-width table: figure, value, baseline, ratio, target, result."""
    header = ("figure", "value", "baseline", "ratio", "target", "result")
    lines = [
        (
            row["figure"],
            f"{_number(row['value'])} {row['unit']}".strip(),
            f"{_number(row['baseline'])} {row['baseline_label']}".strip() if row["baseline"] is not None else "",
            _number(row["ratio"]),
            row["target"] or "(reported)",
            {True: "PASS", False: "FAIL", None: "-"}[row["pass"]],
        )
        for row in rows
    ]
    widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(len(header))]
    out = [
        "  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
    notes = [f"- {row['figure']}: {row['note']}" for row in rows if row.get("note")]
    return "\n".join(out + (["", *notes] if notes else []))


def report(rows: list[dict[str, Any]], json_path: Path | None, **extra: Any) -> None:
    print()
    print(table(rows))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"figures": rows, **extra}, indent=2, default=str))
