"""Resolve a host from ssh_config files with the meaning OpenSSH gives them.

``ssh -G HOST`` is the reference. Only the options the toolkit uses are interpreted; every
other keyword is read (so its arguments are checked for quoting) and ignored.

The rules followed, as OpenSSH 9.x applies them:

- keywords are case-insensitive; ``Keyword value``, ``Keyword=value`` and quoted arguments;
- for every option the first value obtained wins; ``IdentityFile`` accumulates;
- ``Host`` patterns (``*``, ``?``, ``!negation``) match the host as given, case-sensitively;
- ``Match all|host|originalhost|user|localuser|canonical|final`` are evaluated; ``Match final``
  (or ``CanonicalizeHostname``) triggers a second pass in which ``Host`` lines match the
  resolved host name; ``Match exec`` runs the user's command through the user's shell
  with its ``%`` tokens expanded, exactly as ssh does (see ``match``); ``localnetwork`` is
  refused rather than guessed;
- ``Include`` paths are relative to ~/.ssh (user files) or /etc/ssh (the system file), globs
  are expanded in sorted order, and an Include inside an inactive block never activates;
- options given "on the command line" (the profile's explicit values) win over the files;
- a ``ProxyJump`` list ``a,b`` reaches the target through ``b``, and ``b`` itself through
  ``a`` (OpenSSH runs ``ssh -J a b -W target``), so a jump's own config ProxyJump is
  followed only when it is the first of the list.

No network access: host names are never looked up and nothing is canonicalised. A
``ProxyCommand`` is resolved but refused by ``resolve_chain`` (paramiko cannot run it): the
OpenSSH transport (``ssh.client: openssh``) runs it.

Modules: ``model`` (the data), ``lexer`` (lines), ``patterns`` (host patterns), ``jump``
(ProxyJump values), ``tokens`` (~, ${ENV}, %), ``options`` (keywords), ``match`` (Match),
``reader`` (files, Include), ``resolve`` (one host, the chain).
"""

from __future__ import annotations

from globtim_hpc.transport.ssh.config.jump import parse_jump, parse_proxy_jump
from globtim_hpc.transport.ssh.config.lexer import split_arguments, split_line
from globtim_hpc.transport.ssh.config.model import (
    DEFAULT_PORT,
    CommandLine,
    JumpSpec,
    LocalContext,
    ResolvedHost,
    StrictHostKeyChecking,
)
from globtim_hpc.transport.ssh.config.options import parse_time_s
from globtim_hpc.transport.ssh.config.patterns import match_host_patterns, match_pattern
from globtim_hpc.transport.ssh.config.resolve import (
    SYSTEM_CONFIG,
    default_config_files,
    resolve_chain,
    resolve_host,
)

__all__ = [
    "DEFAULT_PORT",
    "SYSTEM_CONFIG",
    "CommandLine",
    "JumpSpec",
    "LocalContext",
    "ResolvedHost",
    "StrictHostKeyChecking",
    "default_config_files",
    "match_host_patterns",
    "match_pattern",
    "parse_jump",
    "parse_proxy_jump",
    "parse_time_s",
    "resolve_chain",
    "resolve_host",
    "split_arguments",
    "split_line",
]
