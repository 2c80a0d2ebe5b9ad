"""scripts/stack.sh on a fresh Debian machine without Java or Maven installs them from
Debian packages (as it does redis-server) instead of stopping with "Java 17+ is needed",
and a second run installs nothing (idempotent). apt-get, java and mvn are stand-ins that
record what they were asked; nothing is installed on this machine."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TOOLS = ("bash", "sed", "head", "cat", "mkdir", "mktemp", "rm", "mv", "id", "dirname",
         "tr", "grep", "ls", "touch", "sort", "tail", "printf", "sh", "chmod", "cp")  # fmt: skip

APT = """#!/bin/bash
echo "$@" >> "$APT_LOG"
BIN="$(dirname "$0")"
for arg in "$@"; do
  case "$arg" in
    default-jre-headless)
      printf '#!/bin/bash\\necho "openjdk version \\\\"17.0.9\\\\" 2023-10-17" >&2\\n' > "$BIN/java"
      chmod +x "$BIN/java" ;;
    maven)
      cp "$BIN/fake-mvn" "$BIN/mvn" ;;
  esac
done
"""
#: What `mvn dependency:copy-dependencies` leaves: the broker jar in -DoutputDirectory.
MVN = """#!/bin/bash
for a in "$@"; do
  case "$a" in -DoutputDirectory=*) d="${a#*=}";; -Dkafka.version=*) v="${a#*=}";; esac
done
mkdir -p "$d"; touch "$d/kafka_2.13-$v.jar"
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_stack_installs_java_and_maven_from_debian_packages(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    _executable(bin_dir / "apt-get", APT)
    _executable(bin_dir / "fake-mvn", MVN)
    for fake in ("redis-server", "redis-cli"):  # installed already: not the point here
        _executable(bin_dir / fake, "#!/bin/bash\nexit 0\n")
    log = tmp_path / "apt.log"
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "APT_LOG": str(log),
           "SHOPSTREAM_CACHE": str(tmp_path / "cache"),
           "SHOPSTREAM_STACK_DIR": str(tmp_path / "stack")}  # fmt: skip
    assert shutil.which("java", path=env["PATH"]) is None

    def install() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ROOT / "scripts/stack.sh"), "install"], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    first = install()
    assert first.returncode == 0, first.stderr
    calls = log.read_text().splitlines()
    assert any("install" in c and "default-jre-headless" in c for c in calls), calls
    assert any("install" in c and "maven" in c for c in calls), calls
    assert list((tmp_path / "cache").rglob("kafka_2.13-*.jar"))
    second = install()
    assert second.returncode == 0, second.stderr
    assert log.read_text().splitlines() == calls  # nothing installed twice
    os.remove(bin_dir / "apt-get")  # and without apt-get, a clear error (not a crash)
    (bin_dir / "java").unlink()
    third = install()
    assert third.returncode != 0 and "no apt-get here" in third.stderr
