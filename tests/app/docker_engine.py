"""A Docker engine and local base images for the real-image tests (no registry needed).

The engine: one already answering (``DOCKER_HOST`` or the default socket, or one this module
started before and left running), else ``dockerd`` started here with its own data and exec
roots under the cache folder and stopped again at the end. ``--iptables=false
--bridge=none`` because CI machines and sandboxes often cannot change the host's firewall;
containers use ``--network host`` or user-defined networks (docker-proxy publishes ports).

The base image: Debian bookworm from Debian's mirror (``debootstrap``), imported with
``docker import``. Its tarball stays in the cache folder, so a later run (or an engine whose
data root was wiped) imports it in seconds instead of downloading Debian again.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.tools import unavailable

CACHE = Path(os.environ.get("CXRLAB_DOCKER_CACHE", Path.home() / ".cache" / "cxrlab-docker"))
MIRROR = os.environ.get("CXRLAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_IMAGE = "cxrlab-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
# The host's CA bundle goes into the base image: builds download from PyPI through whatever
# TLS-intercepting proxy the host trusts (CI sandboxes often have one).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class EngineUnavailable(RuntimeError):
    """No Docker engine can run here (the reason is the message)."""


@dataclass
class Engine:
    """A Docker engine reached through ``host`` (a ``DOCKER_HOST`` value)."""

    host: str | None
    proc: subprocess.Popen | None = None           # the dockerd this module started, if any
    log: Path | None = None
    env: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "DOCKER_BUILDKIT": "0"}   # the classic builder: no buildx needed
        if self.host:
            self.env["DOCKER_HOST"] = self.host

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``docker ARGS``; text output; raises with its output when ``check`` fails."""
        rv = subprocess.run(["docker", *args], env=self.env, capture_output=True, timeout=timeout,
                            check=False)
        out = subprocess.CompletedProcess(rv.args, rv.returncode, rv.stdout.decode(errors="replace"),
                                          rv.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:3])}… failed ({out.returncode}):\n"
                               f"{out.stdout[-3000:]}{out.stderr[-3000:]}")
        return out

    def answers(self) -> bool:
        try:
            return self.docker("version", "--format", "{{.Server.Version}}", check=False,
                               timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def stop(self) -> None:
        """Stop the dockerd this module started (an engine found running is left alone)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def own_socket() -> str:
    return f"unix://{CACHE / 'docker.sock'}"


def start_engine(timeout: float = 90) -> Engine:
    """An engine that answers, started here if needed; :class:`EngineUnavailable` if none can."""
    if shutil.which("docker") is None:
        raise EngineUnavailable("the docker client is not installed (Debian: apt-get install docker.io)")
    for host in (None, own_socket()):         # None: the client's default (DOCKER_HOST or the socket)
        if Engine(host).answers():
            return Engine(host)
    dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)
    if dockerd is None:
        raise EngineUnavailable("no Docker engine answers and dockerd is not installed")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers and dockerd needs root to start")
    return _launch(dockerd, timeout)


def require_engine(timeout: float = 90) -> Engine:
    """:func:`start_engine`, or :func:`tests.helpers.tools.unavailable` with the reason: the
    real-image tests skip where no engine can start, and fail under ``CI=true``."""
    try:
        return start_engine(timeout)
    except EngineUnavailable as exc:
        unavailable(f"no Docker engine can run here: {exc}")


def _launch(dockerd: str, timeout: float) -> Engine:
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / "dockerd.log"
    cmd = [dockerd, "--iptables=false", "--bridge=none", f"--data-root={CACHE / 'data'}",
           f"--exec-root={CACHE / 'exec'}", f"--pidfile={CACHE / 'dockerd.pid'}",
           f"--host={own_socket()}"]
    # dockerd finds docker-proxy, containerd and runc on PATH: in sbin, not always on a user's PATH.
    env = {**os.environ, "PATH": os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin",
                                                   "/usr/sbin", "/sbin", "/usr/bin", "/bin"])}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    engine = Engine(own_socket(), proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineUnavailable(f"dockerd exited with {proc.returncode}: {_tail(log)}")
        if engine.answers():
            return engine
        time.sleep(1)
    engine.stop()
    raise EngineUnavailable(f"dockerd did not answer within {timeout:.0f} s: {_tail(log)}")


def _tail(path: Path, n: int = 600) -> str:
    return path.read_text(errors="replace")[-n:].strip() if path.exists() else ""


def has_image(engine: Engine, name: str) -> bool:
    return engine.docker("image", "inspect", name, check=False).returncode == 0


def base_image(engine: Engine) -> str:
    """``cxrlab-base:bookworm`` (Debian + python3, pip, venv), imported from the cached tarball."""
    if not has_image(engine, BASE_IMAGE):
        tarball = CACHE / "base-bookworm.tar"
        if not tarball.exists():
            _debootstrap_tarball(tarball)
        engine.docker("import", str(tarball), BASE_IMAGE, timeout=600)
    return BASE_IMAGE


def _debootstrap_tarball(tarball: Path) -> None:
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        raise EngineUnavailable("no base image can be made: debootstrap is not installed "
                                "(Debian: apt-get install debootstrap)")
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    CACHE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    try:
        run_checked([debootstrap, "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(root),
             MIRROR], timeout=1200)
        if HOST_CA_BUNDLE.exists():
            shutil.copyfile(HOST_CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
            # pip in a venv uses its own certifi bundle unless told to use the system one.
            (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        partial = tarball.with_suffix(".partial")
        run_checked(["tar", "-C", str(root), "--exclude=./var/cache/apt/archives/*.deb",
             "--exclude=./var/lib/apt/lists/*", "-cf", str(partial), "."], timeout=600)
        partial.replace(tarball)                  # a killed run leaves no half tarball behind
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_checked(cmd: Sequence[str], timeout: float) -> None:
    """Run ``cmd``; raise with the end of its output when it fails."""
    rv = subprocess.run(list(cmd), capture_output=True, timeout=timeout, check=False)
    if rv.returncode != 0:
        out = (rv.stdout + rv.stderr).decode(errors="replace")
        raise RuntimeError(f"{cmd[0]} failed ({rv.returncode}): {out[-4000:]}")


def build(engine: Engine, context: Path, tag: str, dockerfile: str = "Dockerfile",
          build_args: dict[str, str] | None = None, timeout: float = 900) -> str:
    """``docker build --network host`` (no bridge needed for downloads); returns ``tag``."""
    args = ["build", "--network", "host", "--force-rm", "-t", tag, "-f", str(context / dockerfile)]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    engine.docker(*args, str(context), timeout=timeout)
    return tag


def compose_command(env: dict[str, str] | None = None) -> list[str] | None:
    """``docker compose`` (the plugin) or ``docker-compose`` (Debian's), whichever runs; else None."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "version"], env=env, capture_output=True,
                                                   timeout=60, check=False).returncode == 0:
            return cmd
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inspect(engine: Engine, container: str, fmt: str) -> str:
    return engine.docker("inspect", "--format", fmt, container).stdout.strip()


def wait_healthy(engine: Engine, container: str, timeout: float = 240) -> None:
    """Wait for the image's HEALTHCHECK to say ``healthy`` (fails on exit or ``unhealthy``)."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        state = inspect(engine, container,
                        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}")
        running, _, status = state.partition(" ")
        if status == "healthy":
            return
        if running != "running" or status == "unhealthy":
            break
        time.sleep(2)
    logs = engine.docker("logs", "--tail", "40", container, check=False)
    raise AssertionError(f"{container} is {status or 'not healthy'} ({timeout:.0f} s):\n"
                         f"{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
