"""A real Hugging Face Hub on the loopback: olah (a self-hosted hub mirror) serving tiny git repositories under the
ids textclf's registry and presets use, to the unmodified huggingface_hub / transformers / datasets clients.

olah runs offline (it never reaches the real hub). Offline, it resolves a branch only from its own cache, so each
repository's ``main`` is seeded there with olah's own cache writer: without it, optional files a client asks for
answer 401 instead of 404 and the clients fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

GIT_ENV = {"GIT_AUTHOR_NAME": "textclf tests", "GIT_AUTHOR_EMAIL": "tests@textclf.invalid",
           "GIT_COMMITTER_NAME": "textclf tests", "GIT_COMMITTER_EMAIL": "tests@textclf.invalid",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


class HubMirror:
    """``add(kind, repo_id, folder)`` the repositories, then ``start()``; ``endpoint`` is the ``HF_ENDPOINT``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mirrors, self.repos = root / "mirrors", root / "repos"
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = root / "olah.log"
        self._proc: subprocess.Popen | None = None

    def add(self, kind: str, repo_id: str, folder: Path) -> str:
        """Commit ``folder``'s files as ``kind`` ('models' or 'datasets') repository ``repo_id``; its commit sha."""
        from olah.utils.cache_utils import write_cache_request
        from olah.utils.repo_utils import get_resolved_commit_save_path

        dest = self.mirrors / kind / repo_id
        shutil.copytree(folder, dest)
        _git(dest, "init", "-q", "-b", "main")
        _git(dest, "add", "-A")
        _git(dest, "commit", "-q", "-m", "tiny test repository")
        sha = _git(dest, "rev-parse", "HEAD")
        org, _, name = repo_id.rpartition("/")
        resolved = Path(get_resolved_commit_save_path(str(self.repos), kind, org or None, name, "main"))
        resolved.parent.mkdir(parents=True, exist_ok=True)
        asyncio.run(write_cache_request(str(resolved), 200, {}, sha.encode()))
        stamp = _git(dest, "log", "-1", "--format=%cI")
        (resolved.parent / "meta_head.json").write_text(json.dumps({"sha": sha, "lastModified": stamp}))
        return sha

    def start(self, ready_s: float = 60.0) -> HubMirror:
        config = self.root / "configs.toml"
        config.write_text(f"""[basic]
host = "127.0.0.1"
port = {self.port}
repos-path = "{self.repos}"
mirror-netloc = "127.0.0.1:{self.port}"
mirror-lfs-netloc = "127.0.0.1:{self.port}"
mirrors-path = ["{self.mirrors}"]

[accessibility]
offline = true
""", encoding="utf-8")
        cli = Path(sys.executable).with_name("olah-cli")
        with open(self.log, "w", encoding="utf-8") as log:
            self._proc = subprocess.Popen([str(cli), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                          cwd=self.root)
        end = time.monotonic() + ready_s
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                raise RuntimeError(f"olah exited with {self._proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.endpoint + "/api/whoami-v2", timeout=1).close()
                return self
            except urllib.error.HTTPError:  # an answer, whatever it says: the server is up
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"olah did not answer within {ready_s:g} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def env(self, hf_home: Path) -> dict[str, str]:
        """A subprocess environment that reaches this mirror as its hub, with its own cache in ``hf_home``."""
        return hub_env(self.endpoint, hf_home)


def hub_env(endpoint: str, hf_home: Path) -> dict[str, str]:
    """This process's environment, online, with ``endpoint`` as the hub and its own cache in ``hf_home``."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                             "TRANSFORMERS_OFFLINE")}
    return env | {"HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1"}


def write_dataset(folder: Path, features: dict, splits: dict[str, dict[str, list]], config: str = "default",
                  card: str = "") -> Path:
    """A hub-layout dataset: ``<data-or-config>/<split>-00000-of-00001.parquet`` per split (the parquet schema
    carries the features, ClassLabel names included) and a README whose YAML names the config's data files."""
    import datasets
    import yaml

    feats = datasets.Features(features)
    sub = "data" if config == "default" else config
    (folder / sub).mkdir(parents=True, exist_ok=True)
    for split, columns in splits.items():
        datasets.Dataset.from_dict(columns, features=feats).to_parquet(
            str(folder / sub / f"{split}-00000-of-00001.parquet"))
    meta = {"configs": [{"config_name": config, "data_files": [{"split": s, "path": f"{sub}/{s}-*"} for s in splits]}]}
    (folder / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + card,
                                      encoding="utf-8")
    return folder
