"""How the two SSH transports compare with OpenSSH on the test bed (figures, no verdicts).

    .venv/bin/python bench/transport.py [--runs 15] [--config FILE] [--target falcon]

Prints medians of:
- chain set-up plus one command: a fresh SshTransport (paramiko), a fresh OpenSshTransport
  whose shared connection is not open yet (it starts the master), and
  ``ssh -F cfg -J mack falcon true``;
- per-command latency on the open chain: SshTransport, OpenSshTransport through its master,
  one ``ssh`` process per command, and plain OpenSSH with a ControlMaster (its socket lives in
  a temporary folder; every master is stopped at the end);
- a stream of ``--stream-mb`` MB (``head -c N /dev/zero`` into a sink that drops it) through
  SshTransport with AES-GCM first (the toolkit's order), SshTransport with paramiko's own order
  (AES-CTR with HMAC-SHA2 first), and OpenSshTransport, the three taking turns.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from globtim_hpc.transport.openssh.transport import OpenSshTransport
from globtim_hpc.transport.settings import SshSettings
from globtim_hpc.transport.ssh import hop
from globtim_hpc.transport.ssh.chain import SshTransport

DEFAULT_CONFIG = "/var/tmp/globtim-testbed/client/ssh_config"


def median_ms(
    action: Callable[[], object], runs: int, before: Callable[[], object] | None = None
) -> float:
    """Median of ``runs`` timings of ``action``; ``before`` runs first, outside the timing."""
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


class _Drop(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        return len(data)


def stream_medians(settings: SshSettings, shared: SshSettings, byte_count: int,
                   runs: int) -> dict[str, float]:
    """Median seconds to stream ``byte_count`` bytes, per transport and cipher order."""
    argv = ["head", "-c", str(byte_count), "/dev/zero"]
    samples: dict[str, list[float]] = {"gcm": [], "ctr": [], "openssh": []}
    aead = hop._AEAD_CIPHERS
    try:
        for _ in range(runs):
            for name in samples:
                hop._AEAD_CIPHERS = () if name == "ctr" else aead
                transport = OpenSshTransport(shared) if name == "openssh" else SshTransport(settings)
                with transport:
                    transport.run(["true"])  # connected outside the measurement
                    started = time.perf_counter()
                    transport.stream(argv, stdout_sink=_Drop(), timeout_s=600)  # type: ignore[arg-type]
                    samples[name].append(time.perf_counter() - started)
    finally:
        hop._AEAD_CIPHERS = aead
    return {name: statistics.median(values) for name, values in samples.items()}


def openssh(*argv: str) -> None:
    subprocess.run(["ssh", *argv], check=True, stdin=subprocess.DEVNULL, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--target", default="falcon")
    parser.add_argument("--jump", default="mack")
    parser.add_argument("--stream-mb", type=int, default=46)
    args = parser.parse_args()
    cfg, target, runs = args.config, args.target, args.runs
    settings = SshSettings(target=target, config_file=cfg)

    def fresh_chain() -> None:
        with SshTransport(settings) as ssh:
            ssh.run(["true"]).check("true")

    setup_ours = median_ms(fresh_chain, runs)
    setup_openssh = median_ms(lambda: openssh("-F", cfg, "-J", args.jump, target, "true"), runs)

    with SshTransport(settings) as ssh:
        ssh.run(["true"])  # connect outside the measurement
        per_command_ours = median_ms(lambda: ssh.run(["true"]).check("true"), runs * 4)
        connections = ssh.connection_count

    with tempfile.TemporaryDirectory(prefix="gh-bench-", dir="/tmp") as folder:
        shared = SshSettings(
            target=target, config_file=cfg, client="openssh", control_dir=f"{folder}/t"
        )

        def fresh_master() -> None:
            with OpenSshTransport(shared) as transport:
                transport.run(["true"]).check("true")

        try:
            stop = OpenSshTransport(shared).disconnect
            setup_shared = median_ms(fresh_master, runs, before=stop)
            with OpenSshTransport(shared) as transport:
                transport.run(["true"])  # the master is up outside the measurement
                per_command_shared = median_ms(
                    lambda: transport.run(["true"]).check("true"), runs * 4
                )
        finally:
            OpenSshTransport(shared).disconnect()

        stream_bytes = args.stream_mb * 1_000_000
        try:
            streams = stream_medians(settings, shared, stream_bytes, max(3, runs // 3))
        finally:
            OpenSshTransport(shared).disconnect()

        control = ["-o", f"ControlPath={folder}/cm", "-F", cfg]
        openssh(*control, "-o", "ControlMaster=yes", "-o", "ControlPersist=120", "-fN", target)
        try:
            per_command_master = median_ms(lambda: openssh(*control, target, "true"), runs * 4)
        finally:
            subprocess.run(
                ["ssh", *control, "-O", "exit", target], capture_output=True, check=False
            )

    print(f"runs: {runs} (set-up), {runs * 4} (per command); target {target} via {args.jump}")
    print("chain set-up + one command (median ms)")
    print(f"  SshTransport (paramiko)          {setup_ours:8.1f}")
    print(f"  OpenSshTransport (new master)    {setup_shared:8.1f}")
    print(f"  ssh -J {args.jump} {target} true        {setup_openssh:8.1f}")
    print(f"  ratio paramiko / OpenSSH         {setup_ours / setup_openssh:8.2f}")
    print(f"  ratio OpenSshTransport / OpenSSH {setup_shared / setup_openssh:8.2f}")
    print(f"  ratio OpenSshTransport / paramiko{setup_shared / setup_ours:8.2f}")
    print("one command on an open chain (median ms)")
    print(f"  SshTransport, open chain         {per_command_ours:8.1f}")
    print(f"  OpenSshTransport, open master    {per_command_shared:8.1f}")
    print(f"  one ssh process per command      {setup_openssh:8.1f}")
    print(f"  OpenSSH ControlMaster            {per_command_master:8.1f}")
    print(f"  ratio paramiko / ssh per command {per_command_ours / setup_openssh:8.2f}")
    print(f"  ratio paramiko / ControlMaster   {per_command_ours / per_command_master:8.2f}")
    print(
        f"  ratio OpenSshTransport / ControlMaster {per_command_shared / per_command_master:8.2f}"
    )
    print(f"  ratio OpenSshTransport / paramiko      {per_command_shared / per_command_ours:8.2f}")
    print(f"TCP connections opened by the open-chain transport: {connections}")
    print(f"a stream of {args.stream_mb} MB (median s, MB/s)")
    for name, label in (("gcm", "SshTransport, AES-GCM first"), ("ctr", "SshTransport, AES-CTR+HMAC"),
                        ("openssh", "OpenSshTransport")):
        seconds = streams[name]
        print(f"  {label:32} {seconds:8.3f} {stream_bytes / seconds / 1e6:8.1f}")
    print(f"  ratio AES-GCM / AES-CTR+HMAC     {streams['gcm'] / streams['ctr']:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
