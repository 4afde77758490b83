"""Installed from a wheel, not from the checkout, the service still finds its templates, styles and texts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.dashboard import PASSWORD, csrf_of

ROOT = Path(__file__).resolve().parent.parent


def _copy_checkout(to: Path) -> None:
    """The files a fresh clone has (tracked and new, not ignored): no build leftovers."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in files:
        source = ROOT / name
        if source.is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)


def test_a_non_editable_install_serves_the_dashboard_with_its_css(tmp_path: Path) -> None:
    src, venv, work = tmp_path / "src", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    _copy_checkout(src)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The dependencies come from this environment (a .pth line), smsflows itself from the wheel.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(src)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(src)  # nothing may be read from the sources once installed
    where = subprocess.run(
        [python, "-c", "import app, app.dashboard.templating as t; print(app.__file__, t.templates_dir())"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(site) and f"{site}/app/templates" in where, where

    port = free_port()
    env = {
        **os.environ,
        "SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'smsflows.db'}",
        "SMSFLOWS_SESSION_SECRET": "wheel-test-secret",
        "SMSFLOWS_FLOWS_DIR": str(work / "flows"),
        "SMSFLOWS_DISPATCHER": "false",
    }
    smsflows = [str(python), "-m", "app.cli"]
    added = subprocess.run(
        [*smsflows, "users", "add", "anna", "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stderr
    server = subprocess.Popen(
        [*smsflows, "serve", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(base + "/health", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=10) as client:
            login = client.get("/login")
            assert login.status_code == 200
            signed = client.post(
                "/login", data={"name": "anna", "password": PASSWORD, "_csrf_token": csrf_of(login.text)}
            )
            assert signed.status_code == 303
            page = client.get("/")
            assert page.status_code == 200 and "Received today" in page.text
            assert '<link rel="stylesheet" href="/static/app.css">' in page.text
            css = client.get("/static/app.css")
            assert css.status_code == 200 and "--accent" in css.text
            assert client.get("/static/htmx-2.0.11.min.js").status_code == 200
            polish = client.get("/", headers={"accept-language": "pl"})
            assert "Odebrane dziś" in polish.text  # the catalogs came along too
    finally:
        server.terminate()
        server.wait(timeout=20)
