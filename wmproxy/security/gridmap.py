"""Grid identity → local account policy: grid-mapfile, VOMS rules and ban list (the LCMAPS analogue).

Pure: reads the three policy files and decides, for a DN and its FQANs, which static
account or which account pool applies. Leasing a pool account (the gridmapdir) and
resolving the account with ``pwd`` are ``wmproxy.services.mapping``'s job.

The reference calls LCMAPS with the caller's DN and first FQAN
(``wmproxy-behaviour.md`` §6.3); the file formats and matching rules follow the LCMAPS
plug-ins ``lcmaps_localaccount``, ``lcmaps_poolaccount``, ``lcmaps_voms_poolaccount``,
``lcmaps_ban_dn`` and ``lcmaps_ban_fqan``:

* Every file has one entry a line; blank lines and lines starting with ``#`` are
  ignored. A DN or FQAN is written in double quotes (``\\"`` and ``\\\\`` escape a quote
  and a backslash inside them); without quotes it ends at the first blank. OpenSSL's
  ``\\xHH`` bytes (``/CN=Jos\\xC3\\xA9``, the DN as LCMAPS and the original logged it)
  are read as the UTF-8 text they encode (``/CN=José``), the form of the caller's DN.
* grid-mapfile: ``"<DN pattern>" <account>`` or ``"<DN pattern>" .<pool>``. Several
  accounts on a line (``a,b`` or ``a b``): the first one is used, as LCMAPS does. A line
  without an account, or with a name ``pwd`` cannot hold (``/``, ``:``), is skipped with a
  WARNING, as LCMAPS skips it; an unterminated quote fails the whole file.
* VOMS rules: ``"<FQAN pattern>" <account>`` or ``"<FQAN pattern>" .<pool>`` (the
  voms-grid-mapfile / groupmapfile format). Only the caller's **first** FQAN is
  matched and the **first** matching rule wins.
* ban list: ``"<DN pattern>"`` or ``"<FQAN pattern>"``, one per line. A pattern whose
  first component holds ``=`` (``/C=IT/...``) is a DN, otherwise an FQAN; an FQAN
  pattern bans the caller when it matches **any** of the caller's FQANs
  (``lcmaps_ban_fqan``).
* Patterns are anchored and case-sensitive; ``*`` matches any run of characters
  (``/atlas/*`` matches ``/atlas/Role=pilot``, ``/atlas/higgs`` and, through its long form
  ``/atlas/Role=NULL/Capability=NULL``, ``/atlas``), except in a grid-mapfile line with
  a static account, whose DN is compared literally (``lcmaps_localaccount``: a ``*``
  there is an ordinary character).
* An FQAN pattern without ``*`` is compared in VOMS' short form: ``/Role=NULL`` and
  ``/Capability=NULL`` are dropped, so ``/atlas/Role=NULL/Capability=NULL`` is ``/atlas``.
  A pattern with ``*`` is kept as written and matched against the caller's FQAN in both
  its short and its long form (:func:`fqan_matches`), as LCMAPS matches the long form.
* A pool ``.wmpatl`` is the set of existing accounts named ``wmpatl<digits>``
  (``-strict_poolprefix_match yes``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from wmproxy.errors import AuthorizationError

log = logging.getLogger(__name__)

# An account or pool name as ``pwd`` may resolve it (local files, LDAP, SSSD/AD:
# ``dan@ad.example.org``, ``1user``): no blank, ``/``, ``:`` or control character; 64 at
# most (``jobs.local_account``, ``pool_leases.account``).
_ACCOUNT = re.compile(r"[^\s/:\x00-\x1f\x7f]{1,64}")
# OpenSSL's escaped bytes in a oneline DN: \xC3\xA9
_HEX_RUN = re.compile(r"(?:\\x[0-9A-Fa-f]{2})+")
# file name -> digest of the version whose skipped lines were last logged
_WARNED: dict[str, str] = {}


class MappingError(AuthorizationError):
    """The credential cannot be mapped to a local account: banned, no mapping, pool
    exhausted, missing account or unreadable policy (1207, AuthorizationFault).

    Message: "LCMAPS failed to map user credential: <why>" as in the reference.
    """

    code = 1207
    prefix = "LCMAPS failed to map user credential: "


class MappingNotAllowedError(AuthorizationError):
    """The mapping resolved to a privileged account: uid 0, or the service's own uid or
    group (1208 "Mapping not allowed", AuthorizationFault)."""

    code = 1208
    prefix = "Mapping not allowed: "


@dataclass(frozen=True)
class MapEntry:
    """One line of a grid-mapfile or of the VOMS rules: a pattern and its target.

    Attributes:
        pattern: DN or FQAN pattern (:func:`fqan_pattern`), ``*`` as wildcard.
        target: account name, or pool name with its leading dot (``.wmpatl``).
        line: line number in its file, for messages.
    """

    pattern: str
    target: str
    line: int = 0

    @property
    def pool(self) -> str | None:
        """The pool name without the dot, or None for a static account."""
        return self.target[1:] if self.target.startswith(".") else None


@dataclass(frozen=True)
class MappingPolicy:
    """The site's whole mapping policy, as read from its three files."""

    gridmap: tuple[MapEntry, ...] = ()
    voms_rules: tuple[MapEntry, ...] = ()
    bans: tuple[str, ...] = ()


@dataclass(frozen=True)
class MappingDecision:
    """What the policy says about one identity, before any account is looked up.

    Attributes:
        account: the static account name, or None when a pool applies.
        pool: the pool name (without dot), or None for a static account.
        group: the lease group: the matched VOMS rule's pattern for a VOMS mapping,
            ``""`` for a grid-mapfile (DN) mapping. A pool lease belongs to
            (pool, DN, group), as the gridmapdir's ``<DN>:<group>`` link.
        source: ``"grid-mapfile"`` or ``"VOMS rules"`` with the line, for messages.
    """

    account: str | None
    pool: str | None
    group: str
    source: str


def normalise_fqan(fqan: str) -> str:
    """VOMS short form: drop ``/Role=NULL`` and ``/Capability=NULL``
    (``/atlas/Role=NULL/Capability=NULL`` → ``/atlas``)."""
    parts = [p for p in fqan.strip().split("/") if p not in ("Role=NULL", "Capability=NULL")]
    short = "/".join(parts)
    return short.rstrip("/") or short


def fqan_forms(fqan: str) -> tuple[str, str]:
    """The caller's FQAN in VOMS short and long form: ``/atlas/Role=NULL/Capability=NULL``
    and ``/atlas`` both give ``("/atlas", "/atlas/Role=NULL/Capability=NULL")``;
    ``/atlas/Role=pilot`` gives ``("/atlas/Role=pilot", "/atlas/Role=pilot/Capability=NULL")``."""
    parts = [p for p in fqan.strip().split("/") if p]
    group = "".join(f"/{p}" for p in parts if not p.startswith(("Role=", "Capability=")))
    role = next((p for p in parts if p.startswith("Role=")), "Role=NULL")
    capability = next((p for p in parts if p.startswith("Capability=")), "Capability=NULL")
    return normalise_fqan(fqan), f"{group}/{role}/{capability}"


def fqan_pattern(pattern: str) -> str:
    """How an FQAN pattern of the VOMS rules or the ban list is kept: without ``*`` in
    short form (``/atlas/Role=NULL/Capability=NULL`` → ``/atlas``), with ``*`` as written
    (``/atlas/*/Role=NULL/Capability=NULL`` stays: shortening it would drop the role)."""
    pattern = pattern.strip()
    return pattern if "*" in pattern else normalise_fqan(pattern)


def fqan_matches(pattern: str, fqan: str) -> bool:
    """An FQAN pattern (as :func:`fqan_pattern` keeps it) applies to the caller's FQAN.

    A pattern without ``*`` is compared with the FQAN's short form. A pattern with ``*``
    is matched against both the short and the long form, as LCMAPS 1.6.6
    (``lcmaps_voms_localaccount``, ``lcmaps_ban_fqan``) matches the long form VOMS hands
    it: ``/atlas/*`` maps and bans ``/atlas/Role=NULL/Capability=NULL``, and
    ``/atlas/*/Role=NULL/Capability=NULL`` matches ``/atlas/higgs/Role=NULL/Capability=NULL``
    but not ``/atlas/Role=production/Capability=NULL``.
    """
    if "*" not in pattern:
        return pattern == normalise_fqan(fqan)
    return any(pattern_matches(pattern, form) for form in fqan_forms(fqan))


def pattern_matches(pattern: str, value: str) -> bool:
    """Anchored, case-sensitive match with ``*`` = any run of characters."""
    regex = ".*".join(re.escape(piece) for piece in pattern.split("*"))
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def is_dn_pattern(pattern: str) -> bool:
    """A DN's first component holds ``=`` (``/C=IT``); an FQAN's is the VO name."""
    return "=" in pattern.lstrip("/").split("/", 1)[0]


def pool_members(pool: str, accounts: list[str]) -> list[str]:
    """The names in ``accounts`` that belong to ``pool`` (``<pool><digits>``), sorted."""
    member = re.compile(re.escape(pool) + r"[0-9]+")
    return sorted(name for name in accounts if member.fullmatch(name))


def _fold_hex(run: str) -> str:
    """A run of ``\\xHH`` (OpenSSL ``X509_NAME_oneline``'s spelling of the bytes of a
    non-ASCII value, ``Jos\\xC3\\xA9``) as the UTF-8 text it encodes (``José``), the form
    of the caller's DN (:func:`wmproxy.security.dn.slash_dn`); kept as written when the
    bytes are not UTF-8."""
    try:
        return bytes.fromhex(run.replace("\\x", "")).decode()
    except UnicodeDecodeError:
        return run


def _split_subject(text: str, where: str) -> tuple[str, str]:
    """Split ``"<subject>" rest`` or ``subject rest`` into (subject, rest).

    In the subject, runs of ``\\xHH`` (either case) become the UTF-8 text they encode
    (:func:`_fold_hex`); inside quotes ``\\"`` and ``\\\\`` are a quote and a backslash,
    and any other backslash is itself (``\\s``), as LCMAPS 1.6.6 reads it.
    """
    if not text.startswith('"'):
        pieces = text.split(None, 1)
        subject = _HEX_RUN.sub(lambda run: _fold_hex(run.group()), pieces[0])
        return subject, pieces[1].strip() if len(pieces) > 1 else ""
    out: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        run = _HEX_RUN.match(text, i) if char == "\\" else None
        if run:
            out.append(_fold_hex(run.group()))
            i = run.end()
            continue
        if char == "\\" and text[i + 1 : i + 2] in ('"', "\\"):
            out.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(out), text[i + 1 :].strip()
        out.append(char)
        i += 1
    raise MappingError(f"{where}: unterminated quote")


def _lines(text: str) -> list[tuple[int, str]]:
    result = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            result.append((number, line))
    return result


def parse_mapfile(text: str, name: str = "grid-mapfile", *, fqans: bool = False) -> tuple[MapEntry, ...]:
    """Parse a grid-mapfile (DN patterns) or, with ``fqans=True``, a VOMS rules file.

    Args:
        text: the file's content.
        name: file name used in messages.
        fqans: the patterns are FQANs: store them as :func:`fqan_pattern` does.

    A line without a subject or a target, or whose target is no usable account or pool
    name (empty, or with a blank, ``/`` or ``:``), is skipped with a WARNING naming the
    file and line, logged once per version of the file: LCMAPS 1.6.6 skips such a line
    (``"<DN>"`` alone) or fails only the DNs it names, and maps everyone else.

    Raises:
        MappingError: an unterminated quote (message names the file and line): the
            rest of the file could not be read as intended.
    """
    entries = []
    skipped = []
    for number, line in _lines(text):
        where = f"{name} line {number}"
        subject, rest = _split_subject(line, where)
        targets = [t for t in re.split(r"[,\s]+", rest) if t]
        if not subject or not targets:
            skipped.append(f"{where}: expected '\"<{'FQAN' if fqans else 'DN'}>\" <account>|.<pool>'")
            continue
        target = targets[0]  # several accounts: the first wins, as LCMAPS
        if not _ACCOUNT.fullmatch(target.removeprefix(".")):
            skipped.append(f"{where}: invalid account or pool name {target!r}")
            continue
        entries.append(MapEntry(fqan_pattern(subject) if fqans else subject, target, number))
    if skipped:
        _warn_once(name, text, skipped)
    return tuple(entries)


def _warn_once(name: str, text: str, skipped: list[str]) -> None:
    """Log the skipped lines of ``name`` unless this version of it was logged already
    (the files are read on every registration)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    if _WARNED.get(name) == digest:
        return
    _WARNED[name] = digest
    for why in skipped:
        log.warning("%s; line skipped", why)


def parse_banfile(text: str, name: str = "ban list") -> tuple[str, ...]:
    """Parse a ban list: one quoted (or blank-free) DN or FQAN pattern a line; FQAN
    patterns kept as :func:`fqan_pattern` does.

    Raises:
        MappingError: an unterminated quote (message names the file and line).
    """
    bans = []
    for number, line in _lines(text):
        subject, _ = _split_subject(line, f"{name} line {number}")
        if subject:
            bans.append(subject if is_dn_pattern(subject) else fqan_pattern(subject))
    return tuple(bans)


def _read(path: str, what: str) -> str:
    if not path:
        return ""
    try:
        # bytes that are not UTF-8 (a Latin-1 DN) stay undecodable there and match no DN
        return Path(path).read_bytes().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise MappingError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


def read_policy(gridmap_file: str = "", voms_rules_file: str = "", ban_file: str = "") -> MappingPolicy:
    """Read the policy files; an empty path means "no such file configured".

    Raises:
        MappingError: a configured file cannot be read or has an unterminated quote
            (other bad lines are skipped: :func:`parse_mapfile`).
    """
    return MappingPolicy(
        gridmap=parse_mapfile(_read(gridmap_file, "grid-mapfile"), gridmap_file or "grid-mapfile"),
        voms_rules=parse_mapfile(_read(voms_rules_file, "VOMS rules file"), voms_rules_file or "VOMS rules",
                                 fqans=True),
        bans=parse_banfile(_read(ban_file, "ban list"), ban_file or "ban list"),
    )


def _check_bans(dn: str, fqans: tuple[str, ...], bans: tuple[str, ...]) -> None:
    for ban in bans:
        if is_dn_pattern(ban):
            if pattern_matches(ban, dn):
                raise MappingError(f"the DN {dn} is banned")
        else:
            for fqan in fqans:
                if fqan_matches(ban, fqan):
                    raise MappingError(f"the FQAN {normalise_fqan(fqan)} is banned")


def _decision(entry: MapEntry, group: str, source: str) -> MappingDecision:
    pool = entry.pool
    return MappingDecision(account=None if pool else entry.target, pool=pool, group=group,
                           source=f"{source} line {entry.line}")


def _dn_matches(entry: MapEntry, dn: str) -> bool:
    """A grid-mapfile line applies to ``dn``: a pool line's pattern may hold ``*``, a
    static account's DN is compared literally (``lcmaps_localaccount`` logs "No matching
    mapping found" for ``"/C=XX/O=Test/CN=Mallory*" acct`` and ``.../CN=Mallory Victim``),
    so a wildcard never lends one user's account to others."""
    return pattern_matches(entry.pattern, dn) if entry.pool else entry.pattern == dn


def decide(dn: str, fqans: tuple[str, ...], policy: MappingPolicy) -> MappingDecision:
    """Decide the mapping of a caller (``wmproxy-behaviour.md`` §6.3).

    Order: the ban list (the DN, and every FQAN); then the VOMS rules on the first
    FQAN, first matching rule winning; then the grid-mapfile on the DN, first
    matching line winning. Ban patterns, VOMS rules and grid-mapfile pool lines may
    hold ``*``; a grid-mapfile line with a static account matches its DN literally
    (``lcmaps_localaccount``; ``lcmaps_poolaccount`` takes wildcards, each DN then
    getting its own lease).

    Args:
        dn: the caller's DN in slash form.
        fqans: the caller's FQANs, primary first, in short or long form
            (:func:`fqan_matches`).
        policy: the site policy from :func:`read_policy`.

    Raises:
        MappingError: banned DN or FQAN, or no rule and no grid-mapfile line applies.
    """
    present = tuple(f.strip() for f in fqans if f.strip())
    _check_bans(dn, present, policy.bans)
    if present:
        for rule in policy.voms_rules:
            if fqan_matches(rule.pattern, present[0]):
                return _decision(rule, rule.pattern, "VOMS rules")
    for entry in policy.gridmap:
        if _dn_matches(entry, dn):
            return _decision(entry, "", "grid-mapfile")
    with_fqan = f" with FQAN {normalise_fqan(present[0])}" if present else ""
    raise MappingError(f"no mapping for DN {dn}{with_fqan}")
