"""Resolve a host from ssh_config files with the meaning OpenSSH gives them.

``ssh -G HOST`` is the reference. Only the options the toolkit uses are interpreted; every
other keyword is read (so its arguments are checked for quoting) and ignored.

The rules followed, as OpenSSH 9.x applies them:

- keywords are case-insensitive; ``Keyword value``, ``Keyword=value`` and quoted arguments;
- for every option the first value obtained wins; ``IdentityFile`` accumulates;
- ``Host`` patterns (``*``, ``?``, ``!negation``) match the host as given, case-sensitively;
- ``Match all|host|originalhost|user|localuser|canonical|final`` are evaluated; ``Match final``
  (or ``CanonicalizeHostname``) triggers a second pass in which ``Host`` lines match the
  resolved host name; ``Match exec`` and ``localnetwork`` are refused rather than guessed;
- ``Include`` paths are relative to ~/.ssh (user files) or /etc/ssh (the system file), globs
  are expanded in sorted order, and an Include inside an inactive block never activates;
- options given "on the command line" (the profile's explicit values) win over the files;
- a ``ProxyJump`` list ``a,b`` reaches the target through ``b``, and ``b`` itself through
  ``a`` (OpenSSH runs ``ssh -J a b -W target``), so a jump's own config ProxyJump is
  followed only when it is the first of the list.

No network access: host names are never looked up and nothing is canonicalised.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.settings import SshSettings

StrictHostKeyChecking = Literal["yes", "no", "ask", "accept-new"]

DEFAULT_PORT = 22
SYSTEM_CONFIG = "/etc/ssh/ssh_config"
_MAX_INCLUDE_DEPTH = 16
_MAX_JUMP_DEPTH = 16
_DEFAULT_IDENTITY_FILES = (
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
)
_DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
_DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


@dataclass(frozen=True)
class JumpSpec:
    """One element of a ProxyJump list: ``[user@]host[:port]`` or ``ssh://[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        text = f"[{self.host}]" if ":" in self.host else self.host
        if self.user:
            text = f"{self.user}@{text}"
        if self.port is not None:
            text = f"{text}:{self.port}"
        return text


@dataclass(frozen=True)
class ResolvedHost:
    """Everything the SSH transport needs about one hop, as OpenSSH would use it."""

    alias: str
    hostname: str
    user: str
    port: int
    identity_files: tuple[str, ...]
    identities_only: bool
    proxy_jump: tuple[JumpSpec, ...]
    known_hosts_files: tuple[str, ...]
    strict_host_key_checking: StrictHostKeyChecking
    connect_timeout_s: float | None
    server_alive_interval_s: float | None
    global_known_hosts_files: tuple[str, ...] = _DEFAULT_GLOBAL_KNOWN_HOSTS
    host_key_alias: str | None = None
    proxy_command: str | None = None
    original_host: str = ""

    @property
    def address(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    @property
    def label(self) -> str:
        """How a hop is named in messages: its alias and where it really is."""
        return f"{self.alias} ({self.user}@{self.address})"


@dataclass(frozen=True)
class CommandLine:
    """Options that win over every config file, like ``ssh -l/-p/-J/-i/-o`` would."""

    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    proxy_jump: str | None = None
    identity_files: tuple[str, ...] = ()
    known_hosts_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalContext:
    """Facts about the local machine that tokens and defaults refer to (injectable for tests)."""

    home: str
    user: str
    uid: int
    hostname: str

    @classmethod
    def current(cls) -> LocalContext:
        # OpenSSH takes the home folder from the password database, not from $HOME.
        entry = pwd.getpwuid(os.getuid())
        return cls(
            home=entry.pw_dir, user=entry.pw_name, uid=os.getuid(), hostname=socket.gethostname()
        )


# ---------------------------------------------------------------------------------------------
# Lexing


def split_arguments(text: str, *, where: str = "") -> list[str]:
    """Split a config line's arguments like OpenSSH's argv_split (quotes, backslash, comments)."""
    args: list[str] = []
    current: list[str] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is None and ch in " \t\r\n":
            if in_word:
                args.append("".join(current))
                current, in_word = [], False
            i += 1
            continue
        if quote is None and ch == "#" and not in_word:
            break
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "\\'\" " and quote != "'":
            current.append(text[i + 1])
            in_word = True
            i += 2
            continue
        if quote is None and ch in "'\"":
            quote, in_word = ch, True
        elif ch == quote:
            quote = None
        else:
            current.append(ch)
            in_word = True
        i += 1
    if quote is not None:
        raise ConfigError("unterminated quote in ssh config line", path=where or None)
    if in_word:
        args.append("".join(current))
    return args


_KEYWORD = re.compile(r"\s*([^\s=]+)\s*(?:=\s*)?(.*)$", re.DOTALL)


def split_line(line: str, *, where: str = "") -> tuple[str, list[str]] | None:
    """Return (lower-case keyword, arguments) for one line, or None for blanks and comments."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    match = _KEYWORD.match(stripped)
    if match is None:  # pragma: no cover - the pattern accepts any non-blank text
        return None
    return match.group(1).lower(), split_arguments(match.group(2), where=where)


# ---------------------------------------------------------------------------------------------
# Patterns


def match_pattern(name: str, pattern: str) -> bool:
    """OpenSSH's match_pattern: ``*`` any run, ``?`` one character, nothing else special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def match_host_patterns(name: str, patterns: list[str]) -> bool:
    """A ``Host`` line: some positive pattern matches and no negated one does."""
    matched = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if match_pattern(name, pattern[1:]):
                return False
        elif match_pattern(name, pattern):
            matched = True
    return matched


def match_pattern_list(name: str, pattern_list: str, *, lower: bool) -> bool:
    """A comma-separated list as in ``Match host a,b,!c`` (negation vetoes)."""
    if lower:
        name, pattern_list = name.lower(), pattern_list.lower()
    return match_host_patterns(name, [p for p in pattern_list.split(",") if p])


# ---------------------------------------------------------------------------------------------
# ProxyJump


def _parse_port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"bad port {text!r} in {what}")
    return int(text)


def parse_jump(text: str) -> JumpSpec:
    """Parse one ProxyJump element: ``[user@]host[:port]``, ``[v6]:port``, or an ssh:// URI."""
    spec = text.strip()
    if spec.startswith("ssh://"):
        spec = spec[len("ssh://") :].rstrip("/")
        if "/" in spec:
            raise ConfigError(f"bad ProxyJump URI {text!r}: a path is not allowed")
    user: str | None = None
    if "@" in spec:
        user, spec = spec.rsplit("@", 1)
        if not user:
            raise ConfigError(f"bad ProxyJump element {text!r}: empty user")
    port: int | None = None
    if spec.startswith("["):
        end = spec.find("]")
        if end < 0:
            raise ConfigError(f"bad ProxyJump element {text!r}: unclosed '['")
        host, rest = spec[1:end], spec[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"bad ProxyJump element {text!r}")
            port = _parse_port(rest[1:], f"ProxyJump {text!r}")
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        port = _parse_port(port_text, f"ProxyJump {text!r}")
    else:
        host = spec
    if not host:
        raise ConfigError(f"bad ProxyJump element {text!r}: empty host")
    return JumpSpec(host=host, user=user, port=port)


def parse_proxy_jump(value: str) -> tuple[JumpSpec, ...]:
    """Parse a whole ProxyJump value; ``none`` is the empty chain."""
    if value.strip().lower() == "none":
        return ()
    return tuple(parse_jump(part) for part in value.split(","))


# ---------------------------------------------------------------------------------------------
# The config reader


@dataclass
class _Options:
    """Values obtained so far; None means 'not yet set' (first obtained value wins)."""

    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    identity_files: list[str] = field(default_factory=list)
    identities_only: bool | None = None
    proxy_jump: str | None = None
    proxy_command: str | None = None
    known_hosts_files: list[str] | None = None
    global_known_hosts_files: list[str] | None = None
    strict_host_key_checking: StrictHostKeyChecking | None = None
    connect_timeout_s: float | None = None
    connect_timeout_set: bool = False
    server_alive_interval_s: float | None = None
    host_key_alias: str | None = None
    canonicalize_hostname: bool = False


_BOOL = {"yes": True, "true": True, "no": False, "false": False}
_STRICT: dict[str, StrictHostKeyChecking] = {
    "yes": "yes",
    "true": "yes",
    "no": "no",
    "false": "no",
    "off": "no",
    "ask": "ask",
    "accept-new": "accept-new",
}


@dataclass
class _Reader:
    original_host: str
    local: LocalContext
    final_pass: bool = False
    host: str = ""  # what Host lines match: the alias, then in the final pass the HostName
    wants_final_pass: bool = False
    options: _Options = field(default_factory=_Options)

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
                self._apply(keyword, args, path=path, line=number)

    def _include_paths(self, pattern: str, *, system: bool) -> list[str]:
        expanded = expand_tilde(pattern, self.local)
        if not os.path.isabs(expanded):
            base = "/etc/ssh" if system else os.path.join(self.local.home, ".ssh")
            expanded = os.path.join(base, expanded)
        return sorted(glob.glob(expanded))

    def _match(self, args: list[str], *, path: str, line: int) -> bool:
        if not args:
            raise ConfigError("Match needs criteria", path=path, line=line)
        i = 0
        result = True
        while i < len(args):
            word = args[i]
            negate = word.startswith("!")
            criterion = word[1:].lower() if negate else word.lower()
            i += 1
            if criterion == "all":
                if len(args) > 1 and not any(a.lower() in ("canonical", "final") for a in args):
                    raise ConfigError("'Match all' must stand alone", path=path, line=line)
                matched = True
            elif criterion in ("canonical", "final"):
                if criterion == "final":
                    self.wants_final_pass = True
                matched = self.final_pass
            else:
                if i >= len(args):
                    raise ConfigError(f"Match {criterion} needs an argument", path=path, line=line)
                value = args[i]
                i += 1
                if not result:
                    continue  # the outcome is settled; nothing left to evaluate
                if criterion == "host":
                    matched = match_pattern_list(self._match_host(), value, lower=True)
                elif criterion == "originalhost":
                    matched = match_pattern_list(self.original_host, value, lower=True)
                elif criterion == "user":
                    user = self.options.user or self.local.user
                    matched = match_pattern_list(user, value, lower=False)
                elif criterion == "localuser":
                    matched = match_pattern_list(self.local.user, value, lower=False)
                else:
                    raise ConfigError(
                        f"'Match {criterion}' is not supported here",
                        "set host, user, port and ProxyJump explicitly in the cluster profile",
                        path=path,
                        line=line,
                    )
            if matched == negate:
                result = False
        return result

    def _match_host(self) -> str:
        if self.final_pass:
            return self.host
        if self.options.hostname is not None:
            return expand_hostname(self.options.hostname, self.original_host)
        return self.original_host

    def _apply(self, keyword: str, args: list[str], *, path: str, line: int) -> None:
        opts = self.options

        def one() -> str:
            if not args:
                raise ConfigError(f"{keyword} needs a value", path=path, line=line)
            return args[0]

        def boolean() -> bool:
            value = one().lower()
            if value not in _BOOL:
                raise ConfigError(
                    f"{keyword} must be yes or no, not {value!r}", path=path, line=line
                )
            return _BOOL[value]

        def seconds() -> float | None:
            value = one()
            if value.lower() == "none":
                return None
            number = parse_time_s(value)
            if number is None:
                raise ConfigError(f"bad time {value!r} for {keyword}", path=path, line=line)
            return number

        if keyword == "hostname":
            if opts.hostname is None:
                opts.hostname = one()
        elif keyword == "user":
            if opts.user is None:
                opts.user = one()
        elif keyword == "port":
            value = one()
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise ConfigError(f"bad port {value!r}", path=path, line=line)
            if opts.port is None:
                opts.port = int(value)
        elif keyword == "identityfile":
            opts.identity_files.append(one())
        elif keyword == "identitiesonly":
            flag = boolean()
            if opts.identities_only is None:
                opts.identities_only = flag
        elif keyword == "proxyjump":
            value = one()
            parse_proxy_jump(value)  # syntax is checked even where it does not apply
            if opts.proxy_jump is None and opts.proxy_command is None:
                opts.proxy_jump = value
                if value.lower() != "none":
                    # OpenSSH turns a ProxyJump into a ProxyCommand; a later one no longer applies
                    opts.proxy_command = "none"
        elif keyword == "proxycommand":
            if opts.proxy_command is None and opts.proxy_jump is None:
                opts.proxy_command = " ".join(args)
        elif keyword == "userknownhostsfile":
            if opts.known_hosts_files is None and args:
                opts.known_hosts_files = list(args)
        elif keyword == "globalknownhostsfile":
            if opts.global_known_hosts_files is None and args:
                opts.global_known_hosts_files = list(args)
        elif keyword == "stricthostkeychecking":
            value = one().lower()
            if value not in _STRICT:
                raise ConfigError(f"bad StrictHostKeyChecking {value!r}", path=path, line=line)
            if opts.strict_host_key_checking is None:
                opts.strict_host_key_checking = _STRICT[value]
        elif keyword == "connecttimeout":
            value_s = seconds()
            if not opts.connect_timeout_set:
                opts.connect_timeout_s, opts.connect_timeout_set = value_s, True
        elif keyword == "serveraliveinterval":
            value_s = seconds()
            if opts.server_alive_interval_s is None:
                opts.server_alive_interval_s = value_s or 0.0
        elif keyword == "hostkeyalias":
            if opts.host_key_alias is None:
                opts.host_key_alias = one()
        elif keyword == "canonicalizehostname" and one().lower() in ("yes", "always", "true"):
            opts.canonicalize_hostname = True


_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time_s(text: str) -> float | None:
    """OpenSSH time format: ``30``, ``90s``, ``1m30s``, ``2h`` ... -> seconds, or None if bad."""
    parts = re.findall(r"(\d+)([smhdwSMHDW]?)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return float(sum(int(n) * _TIME_UNITS[u.lower()] for n, u in parts))


# ---------------------------------------------------------------------------------------------
# Token expansion


def expand_hostname(value: str, original_host: str) -> str:
    """HostName knows only %h (the host as given) and %%."""
    return _expand_percent(value, {"h": original_host}, what="HostName")


def expand_tilde(path: str, local: LocalContext) -> str:
    if path == "~" or path.startswith("~/"):
        return local.home + path[1:]
    if path.startswith("~"):
        name, _, rest = path[1:].partition("/")
        try:
            home = pwd.getpwnam(name).pw_dir
        except KeyError:
            raise ConfigError(f"unknown user in path {path!r}") from None
        return f"{home}/{rest}" if rest else home
    return path


def _expand_percent(value: str, tokens: dict[str, str], *, what: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(value):
            raise ConfigError(f"{what}: '%' at the end of {value!r}")
        token = value[i + 1]
        if token == "%":
            out.append("%")
        elif token in tokens:
            out.append(tokens[token])
        else:
            raise ConfigError(f"{what}: unknown token %{token} in {value!r}")
        i += 2
    return "".join(out)


def _expand_env(value: str, what: str) -> str:
    def env(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{what}: environment variable {name} is not set (in {value!r})")
        return os.environ[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", env, value)


def expand_path(value: str, tokens: dict[str, str], local: LocalContext, *, what: str) -> str:
    """Tilde, then ``${ENV}``, then % tokens: how OpenSSH expands IdentityFile and friends."""
    return _expand_percent(_expand_env(expand_tilde(value, local), what), tokens, what=what)


def _tokens(
    *,
    hostname: str,
    original: str,
    port: int,
    user: str,
    jump: str,
    key_alias: str | None,
    local: LocalContext,
) -> dict[str, str]:
    short = local.hostname.split(".", 1)[0]
    digest = hashlib.sha1(f"{local.hostname}{hostname}{port}{user}".encode()).hexdigest()
    return {
        "C": digest,
        "d": local.home,
        "h": hostname,
        "i": str(local.uid),
        "j": jump,
        "k": key_alias or original,
        "L": short,
        "l": local.hostname,
        "n": original,
        "p": str(port),
        "r": user,
        "u": local.user,
    }


# ---------------------------------------------------------------------------------------------
# Public entry points


def default_config_files(local: LocalContext) -> list[tuple[str, bool]]:
    """Without -F OpenSSH reads ~/.ssh/config, then /etc/ssh/ssh_config."""
    return [(os.path.join(local.home, ".ssh", "config"), False), (SYSTEM_CONFIG, True)]


def resolve_host(
    host: str,
    config_file: str | None = None,
    *,
    command_line: CommandLine | None = None,
    local: LocalContext | None = None,
) -> ResolvedHost:
    """Resolve ``host`` as ``ssh [-F config_file] [command-line options] host`` would.

    ``config_file=None`` reads ~/.ssh/config and /etc/ssh/ssh_config like OpenSSH does; the
    string ``"none"`` reads no file at all.
    """
    local = local or LocalContext.current()
    cmd = command_line or CommandLine()
    if config_file is None:
        files = default_config_files(local)
    elif config_file.lower() == "none":
        files = []
    else:
        files = [(expand_tilde(config_file, local), False)]

    start = _Options(
        hostname=cmd.hostname,
        user=cmd.user,
        port=cmd.port,
        identity_files=list(cmd.identity_files),
        known_hosts_files=list(cmd.known_hosts_files) or None,
    )
    if cmd.proxy_jump is not None:
        parse_proxy_jump(cmd.proxy_jump)
        start.proxy_jump = cmd.proxy_jump
        if cmd.proxy_jump.lower() != "none":
            start.proxy_command = "none"

    reader = _Reader(original_host=host, local=local, host=host, options=start)
    for path, system in files:
        reader.read_file(path, system=system, active=True, never_match=False, depth=0)
    if reader.wants_final_pass or reader.options.canonicalize_hostname:
        reader.final_pass = True
        reader.host = expand_hostname(reader.options.hostname or host, host).lower()
        reader.options.hostname = reader.host
        for path, system in files:
            reader.read_file(path, system=system, active=True, never_match=False, depth=0)
    return _finish(host, reader.options, local)


def _finish(host: str, opts: _Options, local: LocalContext) -> ResolvedHost:
    hostname = expand_hostname(opts.hostname or host, host).lower()
    user = opts.user or local.user
    port = opts.port or DEFAULT_PORT
    jumps = parse_proxy_jump(opts.proxy_jump) if opts.proxy_jump else ()
    proxy_command = opts.proxy_command if opts.proxy_command not in (None, "none") else None
    if proxy_command is not None:
        jumps = ()
    tokens = _tokens(
        hostname=hostname,
        original=host,
        port=port,
        user=user,
        jump=jumps[-1].host if jumps else "",
        key_alias=opts.host_key_alias,
        local=local,
    )
    identity_files = tuple(
        expand_path(p, tokens, local, what="IdentityFile")
        for p in (opts.identity_files or _DEFAULT_IDENTITY_FILES)
    )
    known_hosts = tuple(
        expand_path(p, tokens, local, what="UserKnownHostsFile")
        for p in (opts.known_hosts_files or _DEFAULT_USER_KNOWN_HOSTS)
        if p.lower() != "none"
    )
    global_known_hosts = tuple(
        expand_path(p, tokens, local, what="GlobalKnownHostsFile")
        for p in (opts.global_known_hosts_files or _DEFAULT_GLOBAL_KNOWN_HOSTS)
        if p.lower() != "none"
    )
    return ResolvedHost(
        alias=host,
        hostname=hostname,
        user=user,
        port=port,
        identity_files=identity_files,
        identities_only=bool(opts.identities_only),
        proxy_jump=jumps,
        known_hosts_files=known_hosts,
        strict_host_key_checking=opts.strict_host_key_checking or "ask",
        connect_timeout_s=opts.connect_timeout_s,
        server_alive_interval_s=opts.server_alive_interval_s,
        global_known_hosts_files=global_known_hosts,
        host_key_alias=opts.host_key_alias,
        proxy_command=proxy_command,
        original_host=host,
    )


def _overrides_for(settings: SshSettings, host: str) -> CommandLine:
    for override in settings.overrides:
        if override.host == host:
            return CommandLine(
                hostname=override.hostname,
                user=override.user,
                port=override.port,
                identity_files=(override.identity_file,) if override.identity_file else (),
            )
    return CommandLine()


def _merge(first: CommandLine, second: CommandLine) -> CommandLine:
    """Combine two sets of command-line options; ``first`` wins where both say something."""
    return CommandLine(
        hostname=first.hostname or second.hostname,
        user=first.user or second.user,
        port=first.port or second.port,
        proxy_jump=first.proxy_jump if first.proxy_jump is not None else second.proxy_jump,
        identity_files=first.identity_files + second.identity_files,
        known_hosts_files=first.known_hosts_files or second.known_hosts_files,
    )


def resolve_chain(
    settings: SshSettings, *, local: LocalContext | None = None
) -> list[ResolvedHost]:
    """Every hop from the first jump host to the target (last), as OpenSSH would connect."""
    local = local or LocalContext.current()
    common = CommandLine(
        identity_files=tuple(settings.extra_identity_files),
        known_hosts_files=tuple(settings.known_hosts_files),
    )
    target_cmd = _merge(
        _merge(
            CommandLine(proxy_jump=settings.proxy_jump), _overrides_for(settings, settings.target)
        ),
        common,
    )
    chain = _resolve_recursive(settings, settings.target, target_cmd, common, local, depth=0)
    return [_fill_defaults(hop, settings) for hop in chain]


def _resolve_recursive(
    settings: SshSettings,
    host: str,
    cmd: CommandLine,
    common: CommandLine,
    local: LocalContext,
    *,
    depth: int,
) -> list[ResolvedHost]:
    if depth > _MAX_JUMP_DEPTH:
        raise ConfigError(
            f"ProxyJump chain deeper than {_MAX_JUMP_DEPTH} hops (a loop?) at {host!r}"
        )
    resolved = resolve_host(host, settings.config_file, command_line=cmd, local=local)
    if resolved.proxy_command is not None:
        raise ConfigError(
            f"{host}: ProxyCommand is not supported ({resolved.proxy_command!r})",
            "use ProxyJump in ssh_config or proxy_jump in the cluster profile",
        )
    if not resolved.proxy_jump:
        return [resolved]
    last, extra = resolved.proxy_jump[-1], resolved.proxy_jump[:-1]
    if (last.host, last.port or DEFAULT_PORT, last.user or resolved.user) == (
        resolved.hostname,
        resolved.port,
        resolved.user,
    ):
        raise ConfigError(f"{host}: ProxyJump loop via {last.host}")
    jump_cmd = _merge(
        CommandLine(
            user=last.user,
            port=last.port,
            proxy_jump=",".join(str(j) for j in extra) if extra else None,
        ),
        _merge(_overrides_for(settings, last.host), common),
    )
    before = _resolve_recursive(settings, last.host, jump_cmd, common, local, depth=depth + 1)
    return [*before, resolved]


def _fill_defaults(hop: ResolvedHost, settings: SshSettings) -> ResolvedHost:
    """Profile values apply where ssh_config said nothing."""
    return replace(
        hop,
        connect_timeout_s=hop.connect_timeout_s
        if hop.connect_timeout_s
        else settings.connect_timeout_s,
        server_alive_interval_s=(
            hop.server_alive_interval_s if hop.server_alive_interval_s else settings.keepalive_s
        ),
    )
