"""Cluster profiles: what a cluster is and how to reach it, loaded in layers and validated.

Layers, lowest first: built-in defaults -> profile file -> flags. Every resolved value
remembers the layer it came from, so ``--show-config`` can say where each one was set.
Unknown keys are errors that list the valid ones; YAML errors name file, line and column.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from globtim_hpc import paths
from globtim_hpc.errors import ConfigError
from globtim_hpc.settings.fields import (
    Field,
    coerce,
    expand_path,
)
from globtim_hpc.settings.yamlio import (
    YamlDoc,
    load_yaml_file,
    parse_yaml_text,
    unknown_key_error,
)
from globtim_hpc.transport.settings import HopOverride, SshSettings

LOCAL_PROFILE_NAME = "local"


# The profile schema: section -> key -> Field. Section "" holds top-level scalars.
SCHEMA: dict[str, dict[str, Field]] = {
    "": {
        "name": Field("str", None, "profile name (default: the file's name)"),
        "description": Field("str", "", "free text shown by --show-config"),
        "transport": Field(
            "str", "local", "how commands reach the cluster", ("ssh", "local"), nullable=False
        ),
        "scheduler": Field("str", "direct", "who runs jobs", ("slurm", "direct"), nullable=False),
        "remote_root": Field(
            "remote_path", None, "root folder for code, depot and runs on the cluster (not the home quota)"
        ),
        "home_dir": Field("remote_path", None, "the user's home on the cluster, checked for free space"),
        "min_free_home_mb": Field(
            "int", 10, "refuse to submit when home has less free space", minimum=0
        ),
        "min_free_root_mb": Field(
            "int", 100, "refuse to submit when remote_root has less", minimum=0
        ),
        "source": Field("path", None, "local GlobTim.jl checkout deployed by deploy_julia.py"),
    },
    "ssh": {
        "target": Field(
            "str", None, "host (or ~/.ssh/config alias) that runs commands, e.g. falcon"
        ),
        "config_file": Field("path", None, "ssh_config file; default ~/.ssh/config"),
        "proxy_jump": Field("str", None, "OpenSSH ProxyJump chain, e.g. 'mack' or 'u@mack:22'"),
        "hosts": Field(
            "hosts", {}, "per-host overrides: {alias: {hostname, user, port, identity_file}}"
        ),
        "known_hosts": Field("path_list", [], "known_hosts files; default from ssh_config"),
        "host_key_policy": Field(
            "str",
            "strict",
            "unknown host keys: refuse, or record them",
            ("strict", "accept-new"),
            nullable=False,
        ),
        "connect_timeout_s": Field("float", 15.0, "TCP + handshake timeout per hop", minimum=0.1),
        "keepalive_s": Field("float", 30.0, "keep-alive interval", minimum=0),
        "connect_retries": Field("int", 3, "retries of transient connect failures", minimum=0),
        "passphrase_env": Field("str", None, "environment variable holding the key passphrase"),
        "use_agent": Field("bool", True, "use ssh-agent when SSH_AUTH_SOCK is set", nullable=False),
        "client": Field(
            "str",
            "paramiko",
            "SSH client: built-in (paramiko), or the system ssh with one shared connection",
            ("paramiko", "openssh"),
            nullable=False,
        ),
        "control_persist_s": Field(
            "float",
            600.0,
            "openssh: how long the shared connection stays open while idle (ControlPersist)",
            # shorter, and a master on a busy laptop can go idle before its first command
            minimum=5,
        ),
        "control_dir": Field(
            "path", None, "openssh: folder of the shared connection's socket (default: runtime dir)"
        ),
    },
    "julia": {
        "executable": Field(
            "remote_path", "julia", "the Julia executable on the cluster", nullable=False
        ),
        "modules": Field("str_list", [], "environment modules loaded before Julia runs"),
        "depot_path": Field("remote_path", None, "JULIA_DEPOT_PATH; default <remote_root>/depot"),
        "precompile_on": Field(
            "str",
            "login",
            "where Pkg.instantiate/precompile run (where the network is)",
            ("login", "job"),
            nullable=False,
        ),
        "cpu_target": Field(
            "str",
            None,
            "JULIA_CPU_TARGET for set-up and jobs (e.g. 'generic;skylake-avx512,clone_all'), so "
            "caches built on the login node serve compute nodes of another CPU type",
        ),
    },
    "slurm": {
        "partition": Field("str", None, "default partition"),
        "account": Field("str", None, "default account"),
        "qos": Field("str", None, "default QOS"),
        "max_array_parallel": Field("int", None, "default array throttle (%N)", minimum=1),
        "max_array_size": Field(
            "int", None, "largest array to submit (the lower of this and the cluster's "
            "MaxArraySize); bigger sweeps are split into several array jobs", minimum=1,
        ),
        "test_only": Field(
            "bool", True, "run 'sbatch --test-only' before submitting", nullable=False
        ),
    },
    "collect": {
        "plots": Field(
            "bool", True, "draw plots into collected run folders (needs matplotlib)", nullable=False
        ),
        "compression": Field(
            "str",
            "auto",
            "compress the file stream: auto (text over a real link), zstd, gzip or none",
            ("auto", "zstd", "gzip", "none"),
            nullable=False,
        ),
    },
}


@dataclass
class Resolved:
    """A resolved profile: values plus the layer each came from."""

    values: dict[str, dict[str, Any]]
    sources: dict[str, str]  # "section.key" -> layer
    origin: str  # where the profile came from (file path or 'built-in')

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key]


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    origin: str
    transport: str
    scheduler: str
    remote_root: str
    home_dir: str | None
    min_free_home_mb: int
    min_free_root_mb: int
    source: str | None
    ssh: SshSettings | None
    julia_executable: str
    julia_modules: tuple[str, ...]
    depot_path: str
    precompile_on: str
    slurm_partition: str | None
    slurm_account: str | None
    slurm_qos: str | None
    slurm_max_array_parallel: int | None
    slurm_test_only: bool
    description: str = ""
    slurm_max_array_size: int | None = None
    julia_cpu_target: str | None = None
    collect_plots: bool = True
    collect_compression: str = "auto"
    resolved: Resolved | None = field(default=None, compare=False, repr=False)

    @property
    def is_local(self) -> bool:
        return self.transport == "local"


def _defaults() -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    values: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    for section, fields in SCHEMA.items():
        values[section] = {}
        for key, spec in fields.items():
            default = spec.default
            values[section][key] = (
                list(default)
                if isinstance(default, list)
                else (dict(default) if isinstance(default, dict) else default)
            )
            sources[f"{section}.{key}".lstrip(".")] = "default"
    return values, sources


def apply_layer(
    values: dict[str, dict[str, Any]], sources: dict[str, str], doc: YamlDoc, layer: str
) -> None:
    """Validate ``doc`` against the schema and lay its values over ``values``."""
    sections = set(SCHEMA) - {""}
    valid_top = set(SCHEMA[""]) | sections
    for key, value in doc.data.items():
        if key in sections:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise doc.error(
                    (key,), f"section '{key}' must be a mapping", "indent its keys under it"
                )
            for sub, item in value.items():
                if sub not in SCHEMA[key]:
                    raise unknown_key_error(doc, (key, sub), SCHEMA[key])
                values[key][sub] = coerce(doc, (key, sub), SCHEMA[key][sub], item)
                sources[f"{key}.{sub}"] = layer
        elif key in SCHEMA[""]:
            values[""][key] = coerce(doc, (key,), SCHEMA[""][key], value)
            sources[key] = layer
        else:
            raise unknown_key_error(doc, (key,), valid_top)


def _local_builtin_text() -> str:
    return (
        "name: local\n"
        "description: this machine, no SSH, no SLURM (the embedded default)\n"
        "transport: local\n"
        "scheduler: direct\n"
    )


def find_profile(selector: str | None) -> tuple[str, Path | None]:
    """Turn ``--cluster NAME|PATH`` (or the defaults) into (name, file or None for built-in local)."""
    chosen = selector or os.environ.get("GLOBTIM_HPC_CLUSTER") or _user_default_cluster()
    if not chosen:
        chosen = LOCAL_PROFILE_NAME
    candidate = Path(expand_path(chosen))
    if chosen.endswith((".yaml", ".yml")) or "/" in chosen:
        if not candidate.is_file():
            raise ConfigError(
                "cluster profile file not found",
                "give a profile name (see configs/) or an existing YAML file",
                path=str(candidate),
            )
        return candidate.stem, candidate
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", chosen):
        raise ConfigError(
            f"'{chosen}' is not a valid profile name",
            "use letters, digits, '.', '_' and '-', or give a path to a YAML file",
        )
    searched = [paths.user_config_dir() / "clusters", paths.configs_dir()]
    for folder in searched:
        path = folder / f"{chosen}.yaml"
        if path.is_file():
            return chosen, path
    if chosen == LOCAL_PROFILE_NAME:
        return chosen, None
    known = sorted(
        {p.stem for folder in searched if folder.is_dir() for p in folder.glob("*.yaml")}
    )
    raise ConfigError(
        f"no cluster profile named '{chosen}'",
        f"known profiles: {', '.join(known) or '(none)'}; or pass --cluster PATH/TO/profile.yaml "
        f"(searched {', '.join(str(s) for s in searched)})",
    )


def _user_default_cluster() -> str | None:
    path = paths.user_config_dir() / "config.yaml"
    if not path.is_file():
        return None
    doc = load_yaml_file(path)
    for key in doc.data:
        if key != "default_cluster":
            raise unknown_key_error(doc, (key,), ["default_cluster"])
    value = doc.data.get("default_cluster")
    if value is not None and not isinstance(value, str):
        raise doc.error(("default_cluster",), "expected a profile name or path")
    return value


def load_profile(
    selector: str | None = None, flag_values: Mapping[str, Any] | None = None
) -> ClusterProfile:
    """Resolve the cluster profile named by ``selector`` (or the defaults) and validate it."""
    name, path = find_profile(selector)
    values, sources = _defaults()
    if path is None:
        doc = parse_yaml_text(_local_builtin_text(), "<built-in local profile>")
        origin = "built-in"
        apply_layer(values, sources, doc, "built-in")
    else:
        doc = load_yaml_file(path)
        origin = str(path)
        apply_layer(values, sources, doc, f"profile {path}")
    if flag_values:
        flag_doc = YamlDoc(path="<command-line flags>", data=dict(flag_values))
        apply_layer(values, sources, flag_doc, "flag")
    if values[""]["name"] is None:
        values[""]["name"] = name
        sources["name"] = "file name" if path else "built-in"
    return _build(values, sources, origin, doc)


def _settle_home_folders(values: dict[str, dict[str, Any]], transport: str, doc: YamlDoc) -> None:
    """``~`` in a path on the cluster: this machine's home for ``local``, an error over SSH.

    Expanding it here would silently point at the laptop's home; the remote shell never sees
    it unquoted either, so it cannot mean the cluster's home.
    """
    for section, keys in SCHEMA.items():
        for key, spec in keys.items():
            value = values[section].get(key)
            if spec.kind != "remote_path" or not isinstance(value, str) or not value.startswith("~"):
                continue
            if transport == "local":
                values[section][key] = os.path.expanduser(value)
                continue
            keypath = (section, key) if section else (key,)
            raise doc.error(
                keypath,
                f"'{value}' starts with '~', which is not expanded on the cluster",
                "write the absolute path on the cluster, e.g. /home/<user>/... or /projects/...",
            )


def _build(
    values: dict[str, dict[str, Any]], sources: dict[str, str], origin: str, doc: YamlDoc
) -> ClusterProfile:
    top, ssh, julia, slurm = values[""], values["ssh"], values["julia"], values["slurm"]
    _settle_home_folders(values, top["transport"], doc)
    if top["transport"] == "ssh" and not ssh["target"]:
        raise doc.error(
            ("ssh",),
            "transport is 'ssh' but ssh.target is not set",
            "set ssh.target to the login node's host name or ~/.ssh/config alias",
        )
    remote_root = top["remote_root"]
    if remote_root is None:
        if top["transport"] == "local":
            remote_root = str(paths.default_local_root())
            values[""]["remote_root"] = remote_root
            sources["remote_root"] = "default (local)"
        else:
            raise doc.error(
                ("remote_root",) if ("remote_root",) in doc.positions else (),
                "remote_root is not set",
                "set remote_root to a folder on project space (not the home quota), "
                "e.g. /projects/<group>/<user>/globtim-hpc",
            )
    if not str(remote_root).startswith("/"):
        raise doc.error(
            ("remote_root",), f"remote_root must be an absolute path, got {remote_root!r}"
        )
    depot = julia["depot_path"] or f"{str(remote_root).rstrip('/')}/depot"
    if julia["depot_path"] is None:
        sources["julia.depot_path"] = "derived from remote_root"
        values["julia"]["depot_path"] = depot
    ssh_settings: SshSettings | None = None
    if top["transport"] == "ssh":
        # The other ssh keys are SshSettings' field names, so a key added to the schema
        # arrives without a second list to forget (and an unmatched one fails every load).
        ssh_settings = SshSettings(
            **{key: value for key, value in ssh.items() if key not in ("hosts", "known_hosts")},
            overrides=tuple(
                HopOverride(host=alias, **entry) for alias, entry in sorted(ssh["hosts"].items())
            ),
            known_hosts_files=tuple(ssh["known_hosts"]),
        )
    return ClusterProfile(
        name=top["name"],
        origin=origin,
        description=top["description"] or "",
        transport=top["transport"],
        scheduler=top["scheduler"],
        remote_root=str(remote_root).rstrip("/") or "/",
        home_dir=top["home_dir"],
        min_free_home_mb=top["min_free_home_mb"],
        min_free_root_mb=top["min_free_root_mb"],
        source=top["source"],
        ssh=ssh_settings,
        julia_executable=julia["executable"],
        julia_modules=tuple(julia["modules"]),
        depot_path=depot,
        precompile_on=julia["precompile_on"],
        julia_cpu_target=julia["cpu_target"],
        **{f"slurm_{key}": value for key, value in slurm.items()},  # as with ssh, above
        collect_plots=values["collect"]["plots"],
        collect_compression=values["collect"]["compression"],
        resolved=Resolved(values=values, sources=sources, origin=origin),
    )


def profile_rows(profile: ClusterProfile) -> list[tuple[str, Any, str]]:
    """(dotted key, value, layer) for every setting, in schema order: what --show-config prints."""
    assert profile.resolved is not None
    rows: list[tuple[str, Any, str]] = []
    for section, fields in SCHEMA.items():
        for key in fields:
            dotted_key = f"{section}.{key}".lstrip(".")
            rows.append(
                (
                    dotted_key,
                    profile.resolved.values[section][key],
                    profile.resolved.sources[dotted_key],
                )
            )
    return rows
