"""Reliability: bad inputs through the real `peam`, crashes of a run, probes of the dashboard.

- **Bad inputs**: each command runs in a fresh `PEAM_HOME` (a subprocess, as a user runs it).
  Clean means: the documented exit code (2), one line on stderr, no traceback, and nothing
  written (no new file; files there before byte-identical, or, for a peam store, the same rows).
- **Crashes**: a `peam run` is killed (SIGKILL, SIGTERM, SIGINT) once an episode is under way;
  counted: run and episode rows left `running` right after, and after the next `peam run`.
- **Dashboard probes**: a real `peam dashboard` on a fresh store; forged Host and Origin headers,
  bad JSON, bad ids, oversized inputs. Passed means: the expected status and no job queued by a
  request that must not queue one.

    python benchmarks/reliability.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import parse_args, record  # noqa: E402

PEAM = str(Path(sys.executable).parent / "peam")
STORE_TABLES = ("runs", "episodes", "segments", "jobs", "experts")


@dataclass
class Args:
    jobs: int = 2  # commands run at once
    timeout: float = 120.0  # seconds per command; a command past it is not clean (it hung)
    crash_wait: float = 90.0  # seconds to wait for a run's first episode before killing it
    results: str = "benchmarks/RESULTS.md"
    note: str = ""  # a line under the command: which code ran (e.g. a commit)


@dataclass
class Case:
    name: str
    args: list[str]
    setup: object = None  # callable(dir) run first: files the command meets
    codes: tuple[int, ...] = (2,)
    env: dict = field(default_factory=dict)


# ---- what a command meets -------------------------------------------------------------------------

def _store(d: Path) -> None:
    from envs import make_env
    from memory.store import Store

    with Store.open(f"sqlite:///{d / 'home' / 'peam.db'}") as store:
        store.sync_skills(make_env("crafter").catalog)


def _foreign(d: Path) -> None:
    con = sqlite3.connect(d / "notes.db")
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.commit()
    con.close()


def _random(d: Path) -> None:
    (d / "junk.db").write_bytes(os.urandom(8192))


def _empty(d: Path) -> None:
    (d / "empty.db").touch()


def _damaged(d: Path) -> None:
    _store(d)
    path = d / "home" / "peam.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = os.urandom(len(data) - page)
    path.write_bytes(bytes(data))


def _dropped_table(d: Path) -> None:
    _store(d)
    con = sqlite3.connect(d / "home" / "peam.db")
    con.execute("DROP TABLE jobs")
    con.commit()
    con.close()


def _random_base(d: Path) -> None:
    base = d / "home" / "models" / "base" / "model.safetensors"
    base.parent.mkdir(parents=True)
    base.write_bytes(os.urandom(4096))


def _blocker(d: Path) -> None:
    (d / "file").write_text("not a directory")


class Listener:
    """A loopback port held open: silent (a server that says nothing) or taken."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cases(silent: Listener) -> list[Case]:
    run = ["run", "--task", "collect_wood"]
    big = str(10**30)
    return [
        Case("unknown task", ["run", "--task", "make_golden_apple"]),
        Case("empty task", ["run", "--task", ""]),
        Case("unknown env", [*run, "--env", "tetris"]),
        Case("unknown planner", [*run, "--planner", "oracle"]),
        Case("hf planner, missing path", [*run, "--planner", "hf:/nonexistent/model"]),
        Case("negative LLM temperature", [*run, "--planner", "openai:http://127.0.0.1:9/v1",
                                          "--llm-temperature", "-1"]),
        Case("unknown memory", [*run, "--memory", "dreams"]),
        Case("unknown --consolidate", [*run, "--consolidate", "sometimes"]),
        Case("episodes 0", [*run, "--episodes", "0"]),
        Case("episodes not a number", [*run, "--episodes", "many"]),
        Case("seed -1", [*run, "--seed", "-1"]),
        Case("seed 2**70", [*run, "--seed", str(2**70)]),
        Case("seed 2**31-1, 2 episodes", [*run, "--seed", str(2**31 - 1), "--episodes", "2"]),
        Case("max-steps 0", [*run, "--max-steps", "0"]),
        Case("max-steps 10**30", [*run, "--max-steps", big]),
        Case("workers -1", [*run, "--workers", "-1"]),
        Case("workers 10**30", [*run, "--workers", big]),
        Case("address nothing listens on", [*run, "--address", "127.0.0.1:1"]),
        Case("address of a silent server", [*run, "--address", f"127.0.0.1:{silent.port}"]),
        Case("address malformed", [*run, "--address", "nowhere"]),
        Case("db malformed URL", [*run, "--db", "not a url"]),
        Case("db mysql", [*run, "--db", "mysql+pymysql://root@127.0.0.1/peam"]),
        Case("db asyncpg driver", ["skills", "--db", "postgresql+asyncpg://u@127.0.0.1/x"]),
        Case("db psycopg2 driver", ["skills", "--db", "postgresql+psycopg2://u@127.0.0.1/x"]),
        Case("db server not answering", [*run, "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none"]),
        Case("db in-memory SQLite", [*run, "--db", "sqlite:///:memory:"]),
        Case("db foreign SQLite (skills)", ["skills", "--db", "sqlite:///{d}/notes.db"], _foreign),
        Case("db foreign SQLite (run)", [*run, "--db", "sqlite:///{d}/notes.db"], _foreign),
        Case("db random bytes (skills)", ["skills", "--db", "sqlite:///{d}/junk.db"], _random),
        Case("db random bytes (run)", [*run, "--db", "sqlite:///{d}/junk.db"], _random),
        Case("db empty file (skills)", ["skills", "--db", "sqlite:///{d}/empty.db"], _empty),
        Case("db a directory", ["skills", "--db", "sqlite:///{d}"]),
        Case("store damaged past its header", ["skills"], _damaged),
        Case("store missing a table (dashboard)", ["dashboard", "--port", str(_free_port())], _dropped_table),
        Case("store missing a table (jobs)", ["jobs"], _dropped_table),
        Case("PEAM_HOME under a file", run, _blocker, env={"PEAM_HOME": "{d}/file/home"}),
        Case("random-bytes base model", run, _random_base),
        Case("skills, no store", ["skills"]),
        Case("jobs --limit 10**30", ["jobs", "--limit", big], _store),
        Case("jobs --limit 0", ["jobs", "--limit", "0"], _store),
        Case("jobs --status nope", ["jobs", "--status", "nope"], _store),
        Case("consolidate, no target", ["consolidate"], _store),
        Case("consolidate, both targets", ["consolidate", "--skill", "collect_wood", "--category", "gather"], _store),
        Case("consolidate, unknown skill", ["consolidate", "--skill", "fly"], _store),
        Case("worker --device tpu", ["worker", "--once", "--device", "tpu"], _store),
        Case("worker --lease 0", ["worker", "--once", "--lease", "0"], _store),
        Case("train-base --device tpu", ["train-base", "--device", "tpu"], _store),
        Case("train-base --epochs 0", ["train-base", "--epochs", "0"], _store),
        Case("dashboard public bind, no token", ["dashboard", "--host", "0.0.0.0"], _store),
        Case("dashboard --port 70000", ["dashboard", "--port", "70000"], _store),
        Case("dashboard port taken", ["dashboard", "--port", str(silent.port)], _store),
        Case("demo --episodes 0", ["demo", "--episodes", "0"]),
        Case("bench continual --stages 9", ["bench", "continual", "--stages", "9"]),
        Case("unknown command", ["fly"]),
        Case("unknown option", ["run", "--fly"]),
    ]


# ---- one bad input ------------------------------------------------------------------------------

def snapshot(d: Path) -> dict[str, object]:
    """Each file under `d` (SQLite side files aside): a peam store's row counts, else its bytes."""
    out = {}
    for path in sorted(p for p in d.rglob("*") if p.is_file()):
        if path.name.endswith(("-wal", "-shm", "-journal")):
            continue
        out[str(path)] = _rows(path) or path.read_bytes()
    return out


def _rows(path: Path) -> tuple | None:
    if path.read_bytes()[:16] != b"SQLite format 3\x00":
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "alembic_version" not in names:
                return None
            return tuple(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] if t in names else -1
                         for t in STORE_TABLES)
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return None


def try_case(case: Case, args: Args) -> dict:
    d = Path(tempfile.mkdtemp(prefix="peam-rel-"))
    try:
        if case.setup:
            case.setup(d)
        before = snapshot(d)
        env = {k: v for k, v in os.environ.items() if k not in ("PEAM_DB", "RAY_ADDRESS", "PEAM_DASHBOARD_TOKEN")}
        env["PEAM_HOME"] = str(d / "home")
        env.update({k: v.format(d=d) for k, v in case.env.items()})
        argv = [a.format(d=d) for a in case.args]
        t0 = time.perf_counter()
        try:
            out = subprocess.run([PEAM, *argv], capture_output=True, text=True, env=env, timeout=args.timeout)
            code, err = out.returncode, out.stderr
        except subprocess.TimeoutExpired as e:
            code, err = None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        seconds = time.perf_counter() - t0
        lines = err.strip().splitlines()
        problems = []
        if code not in case.codes:
            problems.append("hung" if code is None else f"exit {code}")
        if "Traceback" in err:
            problems.append("traceback")
        elif len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        if snapshot(d) != before:
            problems.append("wrote")
        return dict(name=case.name, clean=not problems, problems=problems, seconds=seconds,
                    line=lines[-1][:160] if lines else "")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- crashes -------------------------------------------------------------------------------------

def _running(path: Path) -> tuple[int, int]:
    if not path.exists():
        return 0, 0
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return tuple(con.execute(f"SELECT count(*) FROM {t} WHERE status='running'").fetchone()[0]
                     for t in ("runs", "episodes"))
    except sqlite3.OperationalError:  # the store is being made: no tables yet
        return 0, 0
    finally:
        con.close()


def _default_sigint() -> None:
    """A Ctrl-C as a terminal sends it, even when this script runs in the background (where
    the shell has the children ignore SIGINT and Python keeps that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def crash(sig: signal.Signals, args: Args) -> dict:
    d = Path(tempfile.mkdtemp(prefix="peam-crash-"))
    db = d / "peam.db"
    env = {k: v for k, v in os.environ.items() if k not in ("PEAM_DB", "RAY_ADDRESS")}
    env["PEAM_HOME"] = str(d)
    try:
        proc = subprocess.Popen([PEAM, "run", "--task", "collect_diamond", "--episodes", "20",
                                 "--consolidate", "off"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
        deadline = time.monotonic() + args.crash_wait
        while time.monotonic() < deadline and _running(db)[1] == 0 and proc.poll() is None:
            time.sleep(0.5)
        under_way = _running(db)[1] > 0
        time.sleep(1.0)  # a segment or two committed
        proc.send_signal(sig)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        after_kill = _running(db)
        subprocess.run([PEAM, "run", "--task", "collect_wood", "--consolidate", "off"], env=env,
                       capture_output=True, timeout=args.timeout)
        after_next = _running(db)
        return dict(name=f"{sig.name} a run", under_way=under_way, code=code,
                    after_kill=after_kill, after_next=after_next)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- dashboard probes --------------------------------------------------------------------------

def probes(port: int) -> list[tuple[str, str, str, dict, object, set[int], bool]]:
    """(name, method, path, headers, body, expected statuses, may queue a job)."""
    host = {"Host": f"127.0.0.1:{port}"}
    same = host | {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    job = {"skill": "collect_wood"}
    j = {"Content-Type": "application/json"}
    return [
        ("rebinding GET (Host evil.example)", "GET", "/api/skills", {"Host": "evil.example"}, None, {400}, False),
        ("rebinding POST (Host+Origin evil)", "POST", "/api/jobs",
         {"Host": "evil.example", "Origin": "http://evil.example"} | j, job, {400, 403}, False),
        ("cross-site POST (Origin evil)", "POST", "/api/jobs", host | {"Origin": "http://evil.example"} | j, job, {403}, False),
        ("cross-site POST (Origin null)", "POST", "/api/jobs", host | {"Origin": "null"} | j, job, {403}, False),
        ("cross-site POST (Sec-Fetch-Site)", "POST", "/api/jobs", host | {"Sec-Fetch-Site": "cross-site"} | j, job, {403}, False),
        ("cross-site form POST", "POST", "/jobs", host | {"Origin": "http://evil.example",
         "Content-Type": "application/x-www-form-urlencoded"}, "target=skill%3Acollect_wood", {403}, False),
        ("form POST without the nonce", "POST", "/jobs", same | {"Content-Type": "application/x-www-form-urlencoded"},
         "target=skill%3Acollect_wood", {401}, False),
        ("bad JSON", "POST", "/api/jobs", same | j, "{not json", {422}, False),
        ("JSON array", "POST", "/api/jobs", same | j, "[1,2]", {422}, False),
        ("unknown skill", "POST", "/api/jobs", same | j, {"skill": "fly"}, {404}, False),
        ("both targets", "POST", "/api/jobs", same | j, {"skill": "collect_wood", "category": "gather"}, {422}, False),
        ("10 kB skill name", "POST", "/api/jobs", same | j, {"skill": "x" * 10_000}, {422}, False),
        ("10 MB body", "POST", "/api/jobs", same | j, "[" + "1," * 5_000_000 + "1]", {413, 422}, False),
        ("episode id 0", "GET", "/api/episodes/0", host, None, {422}, False),
        ("episode id -1", "GET", "/api/episodes/-1", host, None, {422}, False),
        ("episode id abc", "GET", "/api/episodes/abc", host, None, {422}, False),
        ("episode id 10**30", "GET", f"/api/episodes/{10**30}", host, None, {422}, False),
        ("episode id missing", "GET", "/api/episodes/12345", host, None, {404}, False),
        ("limit 10**30", "GET", f"/api/skills?limit={10**30}", host, None, {422}, False),
        ("offset -1", "GET", "/api/runs?offset=-1", host, None, {422}, False),
        ("run_id 10**30", "GET", f"/runs?run_id={10**30}", host, None, {422}, False),
        ("5 kB skill page name", "GET", "/skills/" + "x" * 5000, host, None, {404, 422}, False),
        ("NUL in a name", "GET", "/api/skills/a%00b", host, None, {404, 422}, False),
        ("sort by a column that is none", "GET", "/api/skills?sort=password", host, None, {422}, False),
        ("localhost answers", "GET", "/api/skills", {"Host": f"localhost:{port}"}, None, {200}, False),
        ("same-origin POST works", "POST", "/api/jobs", same | j, job, {201}, True),
    ]


def dashboard(args: Args) -> list[dict]:
    import httpx

    d = Path(tempfile.mkdtemp(prefix="peam-dash-"))
    _store(d)
    db = d / "home" / "peam.db"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PEAM_DB", "PEAM_DASHBOARD_TOKEN", "PEAM_DASHBOARD_HOSTS")}
    proc = subprocess.Popen([PEAM, "dashboard", "--port", str(port), "--db", f"sqlite:///{db}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                httpx.get(base + "/api/skills", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        for name, method, path, headers, body, ok, may_queue in probes(port):
            jobs = _rows(db)[3]
            kw = {"json": body} if isinstance(body, (dict, list)) else {"content": body} if body else {}
            try:
                status = httpx.request(method, base + path, headers=headers, timeout=30, **kw).status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            queued = _rows(db)[3] - jobs
            out.append(dict(name=name, status=status,
                            passed=status in ok and (may_queue or queued == 0), queued=queued))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    return out


# ---- the table ------------------------------------------------------------------------------------

def main() -> None:
    args = parse_args(Args, __doc__.splitlines()[0])
    t0 = time.perf_counter()
    silent = Listener()  # holds a port, never accepting: silent to a Ray probe, taken for a dashboard
    with ThreadPoolExecutor(args.jobs) as pool:
        bad = list(pool.map(lambda c: try_case(c, args), cases(silent)))
    crashes = [crash(s, args) for s in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)]
    dash = dashboard(args)
    wall = time.perf_counter() - t0
    clean = sum(r["clean"] for r in bad)
    dangling = sum(sum(c["after_kill"]) for c in crashes)
    dangling_next = sum(sum(c["after_next"]) for c in crashes)
    lines = [
        f"### Reliability: bad inputs, crashes, dashboard probes — {date.today().isoformat()}", "",
        f"`python benchmarks/reliability.py {shlex.join(sys.argv[1:])}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; SQLite stores; {wall:.0f} s wall."
        + (f" {args.note}" if args.note else ""), "",
        "| what | tried | clean / passed | rows left `running` |", "| --- | ---: | ---: | ---: |",
        f"| bad inputs through `peam` (exit 2, one line, no traceback, nothing written) | {len(bad)} | {clean} | — |",
        f"| crashes of `peam run` (SIGKILL, SIGTERM, SIGINT): right after / after the next run | {len(crashes)} | — | "
        f"{dangling} / {dangling_next} |",
        f"| dashboard probes (forged Host/Origin, bad JSON, bad ids, oversized) | {len(dash)} | "
        f"{sum(p['passed'] for p in dash)} | — |", "",
    ]
    unclean = [r for r in bad if not r["clean"]]
    if unclean:
        lines += ["Not clean:", ""] + [f"- {r['name']}: {', '.join(r['problems'])} — `{r['line']}`" for r in unclean] + [""]
    lines += ["| crash | episode under way | exit code | running (runs, episodes) after | after the next run |",
              "| --- | --- | ---: | --- | --- |"]
    lines += [f"| {c['name']} | {c['under_way']} | {c['code']} | {c['after_kill']} | {c['after_next']} |" for c in crashes]
    failed = [p for p in dash if not p["passed"]]
    if failed:
        lines += ["", "Dashboard probes not passed:", ""]
        lines += [f"- {p['name']}: status {p['status']}, jobs queued {p['queued']}" for p in failed]
    record(args.results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
