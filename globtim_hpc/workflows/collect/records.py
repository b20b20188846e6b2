"""What a collection reports as it goes (the observer) and when it is done (the result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class CollectObserver(Protocol):
    def phase(self, message: str) -> None: ...

    def transfer_started(self, byte_count: int, file_count: int) -> None: ...

    def transferred(self, byte_count: int) -> None:
        """Called with the number of stream bytes received since the previous call."""
        ...

    def transfer_finished(self) -> None: ...

    def stream_codec(self, codec: str) -> None:
        """Called once, as the stream begins, with its codec: zstd, gzip or none."""
        ...


class SilentObserver:
    def phase(self, message: str) -> None:
        pass

    def transfer_started(self, byte_count: int, file_count: int) -> None:
        pass

    def transferred(self, byte_count: int) -> None:
        pass

    def transfer_finished(self) -> None:
        pass

    def stream_codec(self, codec: str) -> None:
        pass


@dataclass(frozen=True)
class CollectOptions:
    results_root: Path
    clean_remote: bool = False
    require_complete: bool = False  # skip (do not partly collect) runs with unfinished tasks
    fsync: bool = True
    plots: bool = True  # draw plots/ into the run folder (matplotlib)
    # auto, zstd, gzip or none (see collect.compression); the API passes the profile's, auto.
    compression: str = "none"
    local_link: bool = False  # the transport is this machine: auto never compresses


@dataclass
class CollectResult:
    run_id: str
    problem: str
    local_dir: str | None = None
    skipped: str | None = None  # why nothing was collected
    complete: bool = False
    task_count: int = 0
    finished_tasks: list[str] = field(default_factory=list)
    unfinished_tasks: list[dict[str, str]] = field(default_factory=list)
    failed_tasks: list[dict[str, str]] = field(default_factory=list)
    file_count: int = 0
    byte_count: int = 0
    files_fetched: int = 0
    files_reused: int = 0
    content_bytes_received: int = 0  # sum of the sizes of the files that came over the wire
    stream_bytes_received: int = 0  # tar stream bytes, headers and padding included
    wire_bytes_received: int = 0  # what came over the link: the tar stream, compressed or not
    compression: str | None = None  # the stream's codec (zstd, gzip, none); None: no stream
    manifest_sha256: str | None = None
    remote_removed: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "problem": self.problem,
            "local_dir": self.local_dir,
            "skipped": self.skipped,
            "complete": self.complete,
            "task_count": self.task_count,
            "finished_tasks": list(self.finished_tasks),
            "unfinished_tasks": list(self.unfinished_tasks),
            "failed_tasks": list(self.failed_tasks),
            "file_count": self.file_count,
            "byte_count": self.byte_count,
            "files_fetched": self.files_fetched,
            "files_reused": self.files_reused,
            "content_bytes_received": self.content_bytes_received,
            "stream_bytes_received": self.stream_bytes_received,
            "wire_bytes_received": self.wire_bytes_received,
            "compression": self.compression,
            "manifest_sha256": self.manifest_sha256,
            "remote_removed": self.remote_removed,
            "notes": list(self.notes),
        }
