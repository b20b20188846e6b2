"""Reading ssh_config files: Host and Match blocks, Include, and the active lines' options."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.ssh.config.lexer import split_line
from globtim_hpc.transport.ssh.config.match import MatchContext, evaluate_match
from globtim_hpc.transport.ssh.config.model import LocalContext
from globtim_hpc.transport.ssh.config.options import Options, apply_option
from globtim_hpc.transport.ssh.config.patterns import match_host_patterns
from globtim_hpc.transport.ssh.config.tokens import expand_hostname, expand_tilde

_MAX_INCLUDE_DEPTH = 16


@dataclass
class Reader:
    original_host: str
    local: LocalContext
    final_pass: bool = False
    host: str = ""  # what Host lines match: the alias, then in the final pass the HostName
    wants_final_pass: bool = False
    options: Options = field(default_factory=Options)

    def read_file(
        self, path: str, *, system: bool, active: bool, never_match: bool, depth: int
    ) -> None:
        if depth > _MAX_INCLUDE_DEPTH:
            raise ConfigError("Include nested too deeply (a loop?)", path=path)
        try:
            text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            if depth == 0 and not system:
                raise ConfigError("ssh config file not found", path=path) from None
            return
        except OSError as exc:
            raise ConfigError(f"cannot read ssh config file: {exc.strerror}", path=path) from exc
        for number, line in enumerate(text.splitlines(), start=1):
            where = f"{path}:{number}"
            parsed = split_line(line, where=where)
            if parsed is None:
                continue
            keyword, args = parsed
            if keyword == "host":
                active = not never_match and match_host_patterns(self.host, args)
            elif keyword == "match":
                active = not never_match and self._match(args, path=path, line=number)
            elif keyword == "include":
                for pattern in args:
                    for included in self._include_paths(pattern, system=system):
                        self.read_file(
                            included,
                            system=system,
                            active=active,
                            never_match=never_match or not active,
                            depth=depth + 1,
                        )
            elif active:
                apply_option(self.options, keyword, args, path=path, line=number)

    def _include_paths(self, pattern: str, *, system: bool) -> list[str]:
        expanded = expand_tilde(pattern, self.local)
        if not os.path.isabs(expanded):
            base = "/etc/ssh" if system else os.path.join(self.local.home, ".ssh")
            expanded = os.path.join(base, expanded)
        return sorted(glob.glob(expanded))

    def _match(self, args: list[str], *, path: str, line: int) -> bool:
        context = MatchContext(
            host=self._match_host(),
            original_host=self.original_host,
            user=self.options.user or self.local.user,
            local=self.local,
            final_pass=self.final_pass,
            port=self.options.port,
            host_key_alias=self.options.host_key_alias,
            proxy_jump=self._proxy_jump(),
        )
        matched, wants_final_pass = evaluate_match(args, context, path=path, line=line)
        self.wants_final_pass = self.wants_final_pass or wants_final_pass
        return matched

    def _proxy_jump(self) -> str:
        """%j in newer OpenSSH: the ProxyJump value as known so far."""
        value = self.options.proxy_jump
        return "" if not value or value.lower() == "none" else value

    def _match_host(self) -> str:
        if self.final_pass:
            return self.host
        if self.options.hostname is not None:
            return expand_hostname(self.options.hostname, self.original_host)
        return self.original_host
