"""Executes every notebook headless against a `chiso serve --demo` it starts itself (one per
demo the notebooks ask for in their metadata: `{"chiso": {"demo": [...], "ranked_months": N}}`).

    python3 notebooks/run_notebooks.py --chiso target/debug/chiso

Fails when a notebook in git holds outputs (they are stripped), when a cell raises, or when
a notebook draws no picture.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, check, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if check(response.read()):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {url}")


def run(notebook: Path, flight: str) -> list[str]:
    book = nbformat.read(notebook, as_version=4)
    problems = []
    if any(cell.get("outputs") or cell.get("execution_count") for cell in book.cells if cell.cell_type == "code"):
        problems.append("its outputs are not stripped in git")
    os.environ["CHISO_FLIGHT"] = flight
    client = NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
    try:
        client.execute()
    except CellExecutionError as error:
        problems.append(f"a cell failed: {str(error).splitlines()[-1] if str(error) else error}")
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    if any(o.get("output_type") == "error" for o in outputs):
        problems.append("an error output")
    if not any("image/png" in o.get("data", {}) for o in outputs):
        problems.append("no picture")
    return problems


def demo_of(notebook: Path) -> tuple[tuple[str, ...], int]:
    """The demo a notebook runs against: extra `chiso serve --demo` arguments and how many
    months of rankings to wait for (its metadata's `chiso` entry; the demo decade without)."""
    meta = nbformat.read(notebook, as_version=4).metadata.get("chiso", {})
    return tuple(meta.get("demo", [])), int(meta.get("ranked_months", 120))


def serve(chiso: str, demo: tuple[str, ...], data: str) -> tuple[subprocess.Popen, str, str]:
    """A `chiso serve --demo` (with `demo`'s arguments) on free ports: process, URL, Flight."""
    port, flight_port = free_port(), free_port()
    server = subprocess.Popen(
        [chiso, "serve", "--demo", *demo, "--data-dir", data, "--listen", f"127.0.0.1:{port}",
         "--flight-listen", f"127.0.0.1:{flight_port}", "--pg-listen", "off"],
        env={**os.environ, "CHISO_LOG": "warn"},
    )
    return server, f"http://127.0.0.1:{port}", f"grpc://127.0.0.1:{flight_port}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chiso", required=True, help="the chiso binary")
    args = parser.parse_args()
    notebooks = sorted(HERE.glob("*.ipynb"))
    assert len(notebooks) >= 5, "the notebooks are missing"
    demos: dict[tuple[tuple[str, ...], int], list[Path]] = {}
    for notebook in notebooks:
        demos.setdefault(demo_of(notebook), []).append(notebook)
    failed = False
    for (demo, months), group in demos.items():
        with tempfile.TemporaryDirectory() as data:
            server, url, flight = serve(args.chiso, demo, data)
            try:
                wait_for(f"{url}/ready", lambda body: json.loads(body).get("ready"), 1800)
                query = urllib.parse.quote("SELECT count(DISTINCT month) AS n FROM rankings")
                wait_for(f"{url}/v1/sql?q={query}", lambda body: json.loads(body) == [{"n": months}], 900)
                for notebook in group:
                    started = time.monotonic()
                    problems = run(notebook, flight)
                    took = time.monotonic() - started
                    status = "ok" if not problems else "FAILED: " + "; ".join(problems)
                    print(f"notebook {notebook.name}: {status} ({took:.1f} s)", flush=True)
                    failed |= bool(problems)
            finally:
                server.terminate()
                server.wait(timeout=120)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
