"""The Node side of the Minecraft backend as a child process.

One Node process per episode runs a flying-squid server and a mineflayer bot
(`minecraft_node/bot.js`) and answers JSON lines on stdin/stdout. This module finds Node,
installs the pinned packages on first use (`npm ci`, then drops data a Java-edition world never
reads), and makes sure every process it starts ends: it is killed with its process group on
`close()` and at interpreter exit, and the child itself exits when its stdin closes or its
parent changes (a SIGKILLed Python leaves no server behind).
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

from envs.errors import GameCrashedError, PeamError

NODE_MIN = 18
PACKAGE_DIR = Path(__file__).with_name("minecraft_node")
DIR_ENV = "PEAM_MINECRAFT_NODE_DIR"  # where node_modules goes, if not beside the package
SCRIPT = PACKAGE_DIR / "bot.js"
START_TIMEOUT_S = 60.0
ACT_TIMEOUT_S = 30.0  # the slowest action (digging stone by hand) takes 7.5 s
# Never read by a 1.16.5 Java world: minecraft-data's Bedrock edition versions (~400 MB of 560);
# its `common` folder stays, minecraft-data reads it when loaded.
PRUNE = "minecraft-data/minecraft-data/data/bedrock"
NODE_HINT = "install Node.js 18 or newer (with npm) and put `node` on PATH"


class NodeMissingError(PeamError):
    pass


def find_node() -> str:
    """The `node` executable, or a one-line error saying what to install."""
    node = shutil.which("node")
    if node is None:
        raise NodeMissingError(f"--env minecraft needs Node.js: {NODE_HINT}")
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=20).stdout
        major = int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        raise NodeMissingError(f"--env minecraft: `{node} --version` failed: {NODE_HINT}") from None
    if major < NODE_MIN:
        raise NodeMissingError(f"--env minecraft needs Node.js {NODE_MIN}+, found {out.strip()}: {NODE_HINT}")
    return node


def install_dir() -> Path:
    """$PEAM_MINECRAFT_NODE_DIR, else beside the package, else (a read-only install) the
    user's cache."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    if os.access(PACKAGE_DIR, os.W_OK):
        return PACKAGE_DIR
    return Path.home() / ".cache" / "peam" / "minecraft_node"


def modules_dir() -> Path:
    return install_dir() / "node_modules"


def _lock_digest() -> str:
    return hashlib.sha256((PACKAGE_DIR / "package-lock.json").read_bytes()).hexdigest()[:16]


def is_installed() -> bool:
    stamp = modules_dir() / ".peam-installed"
    return stamp.exists() and stamp.read_text().strip() == _lock_digest()


def ensure_installed() -> Path:
    """node_modules for the pinned lockfile, installed once (`npm ci`) under a file lock so that
    parallel runs install it once; returns its directory."""
    find_node()
    if is_installed():
        return modules_dir()
    npm = shutil.which("npm")
    if npm is None:
        raise NodeMissingError(f"--env minecraft needs npm to install its Node packages: {NODE_HINT}")
    target = install_dir()
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".peam-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_installed():
            return modules_dir()
        if target.resolve() != PACKAGE_DIR.resolve():
            for name in ("package.json", "package-lock.json"):
                shutil.copy2(PACKAGE_DIR / name, target / name)
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PeamError(f"npm ci in {target} failed ({tail[0]}); run it there by hand to see why")
        for path in (modules_dir() / PRUNE).iterdir():
            if path.name != "common":
                shutil.rmtree(path, ignore_errors=True)
        (modules_dir() / ".peam-installed").write_text(_lock_digest())
    return modules_dir()


def data_dir(version: str) -> dict[str, Path]:
    """minecraft-data's JSON files for `version`, by kind (recipes, blocks, items, blockLoot)."""
    root = ensure_installed() / "minecraft-data" / "minecraft-data" / "data"
    paths = json.loads((root / "dataPaths.json").read_text())["pc"][version]
    return {kind: root / rel / f"{kind}.json" for kind, rel in paths.items()}


_LIVE: "weakref.WeakSet[NodeGame]" = weakref.WeakSet()


@atexit.register
def _kill_all() -> None:
    for game in list(_LIVE):
        game.close()


class NodeGame:
    """One running server + bot. `request()` sends a message and returns the answer; a process
    that ends or stops answering raises `GameCrashedError` (and is killed)."""

    def __init__(self, seed: int):
        node = find_node()
        modules = ensure_installed()
        env = dict(os.environ, NODE_PATH=str(modules), NODE_OPTIONS="")
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [node, str(SCRIPT), str(int(seed))], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, cwd=PACKAGE_DIR, env=env, start_new_session=True)
        _LIVE.add(self)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        self._buffer = b""
        self.hello = self._read(START_TIMEOUT_S)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, message: dict, timeout_s: float = ACT_TIMEOUT_S) -> dict:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._crash("it stopped reading")
        return self._read(timeout_s)

    def _read(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._crash(f"no answer within {timeout_s:.0f} s")
            if not self._selector.select(left):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                self._crash("it exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _crash(self, why: str):
        self.close()
        self._stderr.seek(0)
        tail = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()][-1:]
        detail = f": {tail[0].strip()[:200]}" if tail else ""
        raise GameCrashedError(f"the Minecraft process {self.proc.pid} crashed ({why}, exit "
                               f"{self.proc.returncode}){detail}")

    def close(self) -> None:
        """End the process and its group: TERM, then KILL after a grace second."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=2)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._selector.close()
        _LIVE.discard(self)
