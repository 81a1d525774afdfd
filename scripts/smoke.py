"""Smoke test of one ankisyncd binary with the real Anki client: a full upload, a full
download and normal syncs both ways, checked row for row; prints the server's resident
memory when idle and at its peak.

    python3 scripts/smoke.py --binary BIN --client-python PY [--emulator qemu-aarch64-static]

With --emulator the binary runs under that user-mode emulator (a release binary for another
architecture). The memory figures are then those of the emulator process: the program's own
memory plus the emulator's (its code, translated-code cache and guest page tables).

The server listens on 127.0.0.1 on a port the system picks (read back from its log), keeps
its database in a temporary folder, and is stopped with SIGTERM. Each device is
tests/client/device.py in the client's virtual environment. Every wait is bounded; any
mismatch or failure ends the run with status 1.
"""

import argparse
import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVICE = ROOT / "tests" / "client" / "device.py"
USER = "smoke"
PASSWORD = secrets.token_urlsafe(12)
# Emulated servers are slow; these bound waits that normally take well under a second.
STARTUP_TIMEOUT = 120.0
COMMAND_TIMEOUT = 600.0
STOP_TIMEOUT = 60.0
# Notes added to the rich collection before the first upload: a small collection that still
# spans several ingest batches of cards and revlog rows.
BULK_NOTES = 3000


class SmokeFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise SmokeFailure(message)


class Server:
    def __init__(self, binary, emulator, workdir):
        self.log_path = workdir / "server.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ANKISYNCD_HOST": "127.0.0.1",
            "ANKISYNCD_PORT": "0",
            "ANKISYNCD_DATABASE": str(workdir / "ankisyncd.redb"),
            "ANKISYNCD_LOG_LEVEL": "info",
            "SYNC_USER1": f"{USER}:{PASSWORD}",
        }
        command = ([emulator] if emulator else []) + [str(binary.resolve()), "serve"]
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=self.log,
        )
        try:
            self.endpoint = self._wait_for_endpoint()
        except SmokeFailure:
            self.process.kill()
            self.process.wait()
            self.log.close()
            raise

    def _wait_for_endpoint(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SmokeFailure(f"server exited during startup:\n{self.log_text()}")
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+/)", self.log_text())
            if found:
                return found.group(1)
            time.sleep(0.1)
        raise SmokeFailure(f"server did not start within {STARTUP_TIMEOUT:.0f} s:\n{self.log_text()}")

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def memory_kib(self):
        """(VmRSS, VmHWM) of the server process, in KiB."""
        fields = {}
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0])
        return fields["VmRSS"], fields["VmHWM"]

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise SmokeFailure(f"server ignored SIGTERM for {STOP_TIMEOUT:.0f} s")
        finally:
            self.log.close()
        check(code == 0, f"server exited with status {code} after SIGTERM:\n{self.log_text()}")


class Device:
    """One device.py process: one collection driven through the real client."""

    def __init__(self, name, client_python, workdir):
        self.name = name
        self.stderr = open(workdir / f"device-{name}.log", "wb")
        self.process = subprocess.Popen(
            [client_python, str(DEVICE), str(workdir / f"{name}.anki2")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
        )

    def __call__(self, cmd, **args):
        line = json.dumps({"cmd": cmd, "args": args}) + "\n"
        self.process.stdin.write(line.encode())
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], COMMAND_TIMEOUT)
        if not ready:
            self.process.kill()
            raise SmokeFailure(f"device {self.name}: {cmd} took over {COMMAND_TIMEOUT:.0f} s")
        reply = self.process.stdout.readline()
        if not reply:
            raise SmokeFailure(f"device {self.name} exited during {cmd}")
        reply = json.loads(reply)
        if "ok" not in reply:
            raise SmokeFailure(f"device {self.name}: {cmd} failed: {reply}")
        return reply["ok"]

    def sync_expecting(self, required):
        outcome = self("sync")
        check(outcome["required"] == required,
              f"device {self.name}: sync reported {outcome['required']}, expected {required}")

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


def assert_same(a, b, when):
    dump_a, dump_b = a("dump"), b("dump")
    differing = sorted(key for key in dump_a if dump_a[key] != dump_b.get(key))
    check(not differing, f"after {when}, A and B differ in: {', '.join(differing)}")
    counts = {key: len(dump_a[key]) for key in ("notes", "cards", "revlog")}
    print(f"after {when}: A and B hold the same collection "
          f"({counts['notes']} notes, {counts['cards']} cards, {counts['revlog']} reviews)")
    return counts


def next_second():
    # Modification times are whole seconds: a change in the same second as the last sync
    # would not count as newer.
    time.sleep(1.1)


def run(args, workdir):
    server = Server(args.binary, args.emulator, workdir)
    a = b = None
    try:
        # Let startup work (opening the database, the janitor's first pass) settle.
        time.sleep(2)
        idle_rss, _ = server.memory_kib()
        print(f"server up at {server.endpoint}; idle RSS {idle_rss / 1024:.1f} MiB")

        a = Device("a", args.client_python, workdir)
        a("add_rich_content", label="from A")
        a("add_notes_bulk", n=BULK_NOTES, prefix="smoke")
        a("login", user=USER, password=PASSWORD, endpoint=server.endpoint)
        a.sync_expecting("FULL_UPLOAD")
        a("full_upload")
        a.sync_expecting("NO_CHANGES")

        b = Device("b", args.client_python, workdir)
        b("login", user=USER, password=PASSWORD, endpoint=server.endpoint)
        b.sync_expecting("FULL_DOWNLOAD")
        b("full_download")
        b.sync_expecting("NO_CHANGES")
        full = assert_same(a, b, "full upload and download")
        check(full["notes"] == a("note_count") == BULK_NOTES + 13,
              f"A holds {a('note_count')} notes, expected {BULK_NOTES + 13}")

        next_second()
        a("add_notes", n=25, prefix="incremental")
        first = a("find_notes", query="smoke")[0]
        a("edit_note", nid=first, field="Back", value="changed on A")
        answered = a("answer_cards", n=10, ease=3, deck="Default")
        check(answered == 10, f"A answered {answered} cards, expected 10")
        a.sync_expecting("NO_CHANGES")
        b.sync_expecting("NO_CHANGES")
        after_a = assert_same(a, b, "A's changes synced to B")
        check(after_a["notes"] == full["notes"] + 25
              and after_a["revlog"] == full["revlog"] + 10,
              f"counts after A's changes: {after_a}, before: {full}")

        next_second()
        removed = b("delete_notes", nids=[first])
        check(removed == 1, f"B removed {removed} notes, expected 1")
        b("add_notes", n=5, prefix="from B")
        b.sync_expecting("NO_CHANGES")
        a.sync_expecting("NO_CHANGES")
        after_b = assert_same(a, b, "B's changes synced to A")
        check(after_b["notes"] == after_a["notes"] + 4,
              f"counts after B's changes: {after_b}, before: {after_a}")

        rss, peak = server.memory_kib()
        print(f"server RSS after the syncs {rss / 1024:.1f} MiB; peak RSS {peak / 1024:.1f} MiB")
        if args.emulator:
            print(f"(figures of the {Path(args.emulator).name} process: the emulator's own "
                  "memory is included)")
    finally:
        for device in (a, b):
            if device is not None:
                device.close()
        if server.process.poll() is None:
            server.stop()
    print("smoke test passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True, type=Path)
    parser.add_argument("--client-python", required=True,
                        help="python of a virtual environment with the anki package")
    parser.add_argument("--emulator", help="user-mode emulator to run the binary under")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ankisyncd-smoke-") as tmp:
        try:
            run(args, Path(tmp))
        except SmokeFailure as failure:
            print(f"smoke test FAILED: {failure}", file=sys.stderr)
            log = Path(tmp) / "server.log"
            if log.exists():
                print(f"--- server log ---\n{log.read_text(errors='replace')}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
