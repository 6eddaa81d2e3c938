"""The link process: a stand-in for the isolation gateway (网闸 / 单向光闸) between the ferry's folders.

Contract. `python -m tests.support.ferry_link --lane down=FROM:TO [--lane up=FROM:TO] --control FILE --log FILE`
(or `--from DIR --to DIR`, one lane named "link") runs until SIGTERM. Each pass it takes, per lane, every file in
FROM that has its done marker (`<name>.done`), oldest marker first, and moves it to TO as a real isolation
gateway delivers: the bytes to `.<name>.tmp`, fsync, rename to `<name>`, then the marker `<name>.done`, fsync of
the folder; the source file and its marker are removed. A half-written file (no marker) is never touched.

Under test control it misbehaves. The control file (JSON, re-read whenever it changes; written by `FerryLink`)
holds per lane `refuse` (the direction passes nothing: files are taken and discarded, as a diode that has no
way back) and a list of rules, each `{"id", "action", "count", "match", "ms", "signals"}`; a rule applies to
the next `count` files of its lane whose name matches `match` (a regular expression, searched; none: any) —
batches only unless `signals` is true (a signal's name holds `_sig_`). Actions:
  drop       the file never arrives;
  duplicate  it arrives, and once the receiver has taken it away (or after `ms`), it arrives again, same name;
  reorder    it is held back until the lane's next file has been delivered (or `ms` passed), then delivered;
  delay      it arrives `ms` later;
  truncate   only its first half arrives (still with a done marker: the link lies, the receiver must not);
  corrupt    one letter or digit near the middle becomes another (so even a base64 text wrapper carries it).
The link's own account, one JSON object a line in the log file, names every file and what it did to it
(`delivered`, `dropped`, `duplicated`, `held`, `released`, `delayed`, `truncated`, `corrupted`, `refused`), with
the rule's id, and whether a delivery replaced a copy of the same name the receiver had not taken yet (a resend
arriving first: the receiver never saw the replaced one): the ledger check reads it as an independent witness of
what crossed.

Nothing here imports the project: the link shares no code, and so no bug, with the stations it carries for.
`FerryLink` is the tests' handle: start/stop the process, add rules, refuse a lane, read the log, wait for quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

DONE = ".done"
ACTIONS = ("drop", "duplicate", "reorder", "delay", "truncate", "corrupt")
SIGNAL_MARK = "_sig_"
DUPLICATE_WAIT_MS = 2000  # a duplicate is sent again once the first copy was taken, or after this long
HOLD_MS = 3000  # a reordered file waits for the next one at most this long
# Default file names (FERRY-SPEC folders.Naming.pattern): "{channel}_{seq:010d}_{digest8}{extension}".
BATCH_NAME = re.compile(r"^(?P<channel>.+)_(?P<seq>\d{10})_(?P<digest>[0-9a-f]{8})")


# --------------------------------------------------------------------------- the process


@dataclass
class Pending:
    """A file the link owes its receiver: when (monotonic), and the condition it waits for."""

    lane: str
    name: str
    data: bytes
    at: float
    action: str  # what it is logged as when it goes out
    rule: str | None
    after_taken: bool = False  # a duplicate: only once the receiver removed the first copy
    until_next: bool = False  # a reordered file: only after the lane's next delivery


@dataclass
class Lane:
    name: str
    source: Path
    target: Path


class Link:
    """The link's loop: lanes, the control it obeys, what it owes, its log."""

    def __init__(self, lanes: Sequence[Lane], control: Path, log: Path, interval_s: float) -> None:
        self.lanes = {lane.name: lane for lane in lanes}
        self.control_path = control
        self.log_path = log
        self.interval_s = interval_s
        self.control: dict[str, Any] = {}
        self.control_stamp: tuple[int, int] | None = None
        self.used: dict[str, int] = {}  # rule id -> files it has been applied to
        self.pending: list[Pending] = []
        self.stopping = False

    def run(self) -> None:
        for lane in self.lanes.values():
            lane.target.mkdir(parents=True, exist_ok=True)
        self.note("-", "-", "started")
        while not self.stopping:
            self.pass_once()
            time.sleep(self.interval_s)
        self.note("-", "-", "stopped")

    def pass_once(self) -> None:
        self.reload_control()
        for lane in self.lanes.values():
            for path in ready(lane.source):
                self.take(lane, path)
        self.flush_pending()

    def reload_control(self) -> None:
        try:
            stat = self.control_path.stat()
        except FileNotFoundError:
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self.control_stamp:
            return
        try:
            self.control = json.loads(self.control_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # written atomically by the handle; a broken one is ignored and read again when it changes
        self.control_stamp = stamp

    def lane_control(self, lane: str) -> Mapping[str, Any]:
        lanes = self.control.get("lanes", {})
        found = lanes.get(lane, {}) if isinstance(lanes, dict) else {}
        return found if isinstance(found, dict) else {}

    def rule_for(self, lane: str, name: str) -> dict[str, Any] | None:
        """The first rule of the lane that still has uses left and matches the file; its use is counted."""
        for rule in self.lane_control(lane).get("rules", []):
            if not isinstance(rule, dict) or rule.get("action") not in ACTIONS:
                continue
            rule_id = str(rule.get("id"))
            if self.used.get(rule_id, 0) >= int(rule.get("count", 1)):
                continue
            if SIGNAL_MARK in name and not rule.get("signals", False):
                continue
            if rule.get("match") and not re.search(str(rule["match"]), name):
                continue
            self.used[rule_id] = self.used.get(rule_id, 0) + 1
            return rule
        return None

    def take(self, lane: Lane, path: Path) -> None:
        """One file from the lane's source: read, removed at the source, then dealt with per the control."""
        name = path.name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        remove_with_marker(path)
        if self.lane_control(lane.name).get("refuse"):
            self.note(lane.name, name, "refused", size=len(data))
            return
        rule = self.rule_for(lane.name, name)
        action = rule["action"] if rule else None
        rule_id = str(rule["id"]) if rule else None
        now = time.monotonic()
        ms = float(rule.get("ms", 0)) / 1000 if rule else 0.0
        if action == "drop":
            self.note(lane.name, name, "dropped", rule_id, size=len(data))
        elif action == "duplicate":
            self.deliver(lane, name, data, "delivered", rule_id)
            wait = ms or DUPLICATE_WAIT_MS / 1000
            self.pending.append(Pending(lane.name, name, data, now + wait, "duplicated", rule_id, after_taken=True))
        elif action == "reorder":
            self.note(lane.name, name, "held", rule_id, size=len(data))
            wait = ms or HOLD_MS / 1000
            self.pending.append(Pending(lane.name, name, data, now + wait, "released", rule_id, until_next=True))
        elif action == "delay":
            self.note(lane.name, name, "held", rule_id, size=len(data))
            self.pending.append(Pending(lane.name, name, data, now + ms, "delayed", rule_id))
        elif action == "truncate":
            self.deliver(lane, name, data[: len(data) // 2], "truncated", rule_id)
        elif action == "corrupt":
            self.deliver(lane, name, flip_middle_byte(data), "corrupted", rule_id)
        else:
            self.deliver(lane, name, data, "delivered", None)

    def deliver(self, lane: Lane, name: str, data: bytes, action: str, rule: str | None) -> None:
        replaced = (lane.target / name).exists()  # a copy the receiver has not taken yet: it never sees that one
        deliver_file(lane.target, name, data)
        self.note(lane.name, name, action, rule, size=len(data), replaced=replaced)
        for held in self.pending:  # the next file went out: a reordered one may follow it now
            if held.lane == lane.name and held.until_next and held.name != name:
                held.until_next = False
                held.at = 0.0

    def flush_pending(self) -> None:
        now = time.monotonic()
        for owed in list(self.pending):
            lane = self.lanes[owed.lane]
            taken = not (lane.target / owed.name).exists()
            due = now >= owed.at or (owed.after_taken and taken)
            if owed.until_next and now < owed.at:
                due = False
            if owed.after_taken and not taken and now < owed.at:
                due = False
            if not due:
                continue
            self.pending.remove(owed)
            self.deliver(lane, owed.name, owed.data, owed.action, owed.rule)

    def note(self, lane: str, name: str, action: str, rule: str | None = None, size: int | None = None,
             replaced: bool = False) -> None:
        entry = {"at": time.time(), "lane": lane, "file": name, "action": action, "rule": rule, "bytes": size,
                 "replaced": replaced}
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
            log.flush()


def ready(folder: Path) -> list[Path]:
    """Files with their done marker, the oldest marker first (as a gateway picks them up)."""
    try:
        markers = [m for m in folder.iterdir() if m.name.endswith(DONE) and not m.name.startswith(".")]
    except FileNotFoundError:
        return []
    found = []
    for marker in markers:
        data = marker.with_name(marker.name[: -len(DONE)])
        try:
            found.append((marker.stat().st_mtime_ns, data.name, data))
        except FileNotFoundError:
            continue
    return [path for _, _, path in sorted(found) if path.is_file()]


def remove_with_marker(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + DONE).unlink(missing_ok=True)


def deliver_file(folder: Path, name: str, data: bytes) -> None:
    """Temporary name, fsync, rename, done marker, fsync of the folder: never a half file under its name."""
    temporary = folder / f".{name}.{uuid.uuid4().hex[:6]}.tmp"
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, folder / name)
    with open(folder / (name + DONE), "wb") as marker:
        marker.flush()
        os.fsync(marker.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


ALNUM = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz", b"0123456789")


def flip_middle_byte(data: bytes) -> bytes:
    """One letter or digit near the middle changed into another: a change every wrapper carries through (a
    flipped newline or an out-of-alphabet byte could be skipped by a lenient base64 reader, and so change
    nothing that matters)."""
    for at in sorted(range(len(data)), key=lambda i: abs(i - len(data) // 2)):
        for alphabet in ALNUM:
            found = alphabet.find(data[at:at + 1])
            if found >= 0 and data[at:at + 1]:
                replaced = alphabet[(found + 1) % len(alphabet)]
                return data[:at] + bytes([replaced]) + data[at + 1:]
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:] if data else data


def parse_lane(text: str) -> Lane:
    name, _, folders = text.partition("=")
    source, _, target = folders.partition(":")
    if not (name and source and target):
        raise argparse.ArgumentTypeError(f"a lane is NAME=FROM:TO, not {text!r}")
    return Lane(name, Path(source), Path(target))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A stand-in isolation gateway between ferry folders (tests only)")
    parser.add_argument("--lane", action="append", type=parse_lane, default=[], help="NAME=FROM:TO (repeatable)")
    parser.add_argument("--from", dest="source", type=Path, help="one lane named 'link': its pickup folder")
    parser.add_argument("--to", dest="target", type=Path, help="... and its delivery folder")
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--interval-ms", type=float, default=10)
    args = parser.parse_args(argv)
    lanes: list[Lane] = list(args.lane)
    if args.source and args.target:
        lanes.append(Lane("link", args.source, args.target))
    if not lanes:
        parser.error("no lane: give --lane NAME=FROM:TO or --from DIR --to DIR")
    link = Link(lanes, args.control, args.log, args.interval_ms / 1000)

    def stop(signum: int, frame: FrameType | None) -> None:
        link.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    link.run()
    return 0


# --------------------------------------------------------------------------- the tests' handle


@dataclass(frozen=True)
class LinkAction:
    """One line of the link's account."""

    at: float
    lane: str
    file: str
    action: str
    rule: str | None
    bytes: int | None
    replaced: bool = False  # this delivery overwrote a copy of the same name the receiver had not taken

    @property
    def seq(self) -> int | None:
        """The batch's sequence number from its file name (None for a signal or another name)."""
        found = BATCH_NAME.match(self.file)
        return int(found["seq"]) if found and SIGNAL_MARK not in self.file else None

    @property
    def channel(self) -> str | None:
        found = BATCH_NAME.match(self.file)
        return found["channel"] if found else None


@dataclass
class FerryLink:
    """A link process between folders, under the test's control. Use as a context manager (stops it)."""

    workdir: Path
    lanes: Mapping[str, tuple[Path, Path]]  # lane name -> (pickup folder, delivery folder)
    interval_ms: float = 10
    process: subprocess.Popen[bytes] | None = None
    rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)

    @property
    def control_path(self) -> Path:
        return self.workdir / "link-control.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "link-actions.jsonl"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_control()
        args = [sys.executable, "-m", "tests.support.ferry_link", "--control", str(self.control_path),
                "--log", str(self.log_path), "--interval-ms", str(self.interval_ms)]
        for name, (source, target) in self.lanes.items():
            args += ["--lane", f"{name}={source}:{target}"]
        root = Path(__file__).resolve().parents[2]
        with open(self.workdir / "link.out", "ab") as out:
            self.process = subprocess.Popen(args, cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONPATH": str(root)})
        deadline = time.monotonic() + 10
        while not any(a.action == "started" for a in self.actions()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the link process did not start (exit {self.process.poll()}): "
                                     f"{(self.workdir / 'link.out').read_text(errors='replace')}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    # ----- control

    def fault(self, action: str, *, lane: str = "down", count: int = 1, match: str | None = None,
              ms: float = 0, signals: bool = False) -> str:
        """Do `action` to the lane's next `count` files (matching `match`); returns the rule's id."""
        if action not in ACTIONS:
            raise ValueError(f"unknown link fault {action!r}; expected one of {ACTIONS}")
        if lane not in self.lanes:
            raise ValueError(f"no lane {lane!r}; lanes: {sorted(self.lanes)}")
        rule_id = f"{action}-{uuid.uuid4().hex[:6]}"
        self.rules.setdefault(lane, []).append({"id": rule_id, "action": action, "count": count, "match": match,
                                                "ms": ms, "signals": signals})
        self._write_control()
        self._wait_read()
        return rule_id

    def refuse(self, lane: str, refused: bool = True) -> None:
        """The lane passes nothing (one-way), or passes again."""
        (self.refused.add if refused else self.refused.discard)(lane)
        self._write_control()
        self._wait_read()

    def clear(self) -> None:
        self.rules.clear()
        self.refused.clear()
        self._write_control()
        self._wait_read()

    def _write_control(self) -> None:
        control = {"lanes": {lane: {"refuse": lane in self.refused, "rules": self.rules.get(lane, [])}
                             for lane in self.lanes}, "written": time.time_ns()}
        temporary = self.control_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(control), encoding="utf-8")
        os.replace(temporary, self.control_path)

    def _wait_read(self) -> None:
        """Two passes of the loop: the new control is in force for the next file."""
        time.sleep(3 * self.interval_ms / 1000)

    # ----- what it did

    def actions(self, lane: str | None = None, action: str | None = None) -> list[LinkAction]:
        try:
            lines = self.log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        found = [LinkAction(**json.loads(line)) for line in lines if line.strip()]
        return [a for a in found if (lane is None or a.lane == lane) and (action is None or a.action == action)]

    def rule_used(self, rule: str) -> list[LinkAction]:
        return [a for a in self.actions() if a.rule == rule]

    def wait_for(self, rule: str, timeout_s: float = 10, uses: int = 1) -> list[LinkAction]:
        """Until the rule has been applied to `uses` files (the last step logged: released, duplicated)."""
        final = {"dropped", "duplicated", "released", "delayed", "truncated", "corrupted"}
        deadline = time.monotonic() + timeout_s
        while True:
            done = [a for a in self.rule_used(rule) if a.action in final]
            if len(done) >= uses:
                return done
            if time.monotonic() > deadline:
                raise AssertionError(f"the link did not apply {rule} within {timeout_s} s: {self.rule_used(rule)}")
            time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main())
