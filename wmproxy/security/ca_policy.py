"""The namespace policies of a grid CA directory: which subjects each CA may certify.

A CA directory holds, beside each CA's ``<hash>.0`` certificate, the names that CA may issue
certificates to, in one or both of two formats (``<hash>``: the OpenSSL subject name hash of the
CA the file belongs to, new-style ``X509_NAME_hash`` or old-style ``X509_NAME_hash_old``,
:func:`old_name_hash`):

* ``<hash>.namespaces``, the EUGridPMA (IGTF) EACL format::

      #NAMESPACES-VERSION: 1.0
      TO Issuer "/C=XX/O=Example/CN=Example CA" \\
        PERMIT Subject "/C=XX/O=Example/.*"
      TO Issuer SELF DENY Subject "/C=XX/O=Example/CN=Root.*"

  one rule per logical line (a line ending in ``\\`` continues on the next; ``#`` starts a
  comment outside quotes); ``SELF`` is the CA of the file's hash; keywords in any case.
  In a subject, ``.*`` matches any text (slashes included), every other character stands for
  itself, a ``\\`` making the next one literal: the patterns IGTF writes (``"/C=ZA/O=Thawte
  Consulting (Pty) Ltd./CN=..."``, ``"... CA G4  [Run by the Issuer]"``) are literal names,
  and no other regular-expression operator is read (a pattern relying on one matches its
  literal text only: it refuses, never accepts, more).
* ``<hash>.signing_policy``, the Globus EACL format::

      access_id_CA   X509    '/C=XX/O=Example/CN=Example CA'
      pos_rights     globus  CA:sign
      cond_subjects  globus  '"/C=XX/O=Example/*" "/DC=org/DC=example/*"'

  blocks of these three lines (``#`` lines and blank lines ignored); in a subject, ``*``
  matches any text (slashes included) and ``?`` one character.

Names are compared in the slash form (:func:`wmproxy.security.dn.slash_dn`), case-insensitively
and with the attribute labels OpenSSL spells several ways made one (``Email=``, ``E=`` and
``emailAddress=``; ``UserID=`` and ``UID=``), as CANL does.

What applies to a certificate issued by a CA (never to a proxy, issued by an end-entity
certificate or a proxy, nor to a self-signed CA): the rules naming its issuer, found in the
issuer's own files (``<issuer hash>.namespaces``) or, when those name it nowhere, in the files
of the CAs above it on the verified path (an intermediate CA's namespace may be written in its
root's file), the first file that names it deciding. With rules, a matching ``DENY`` refuses,
else a matching ``PERMIT`` accepts, else the certificate is refused. How the two formats combine
and what a CA with neither is (:data:`MODES`) follows CANL's namespace checking modes; the
default, ``eugridpma_globus``, is CANL's default: the namespaces file if it names the issuer,
else the signing policy, else no restriction. A policy file that cannot be read or parsed is
logged (with the error) and counts as missing when the other format's file decides; when none
decides, the certificates it would have decided are refused (in the ``eugridpma_and_globus``
modes, always): a broken file never lets a name through.

Both names of a CA are looked up (IGTF distributions ship each file under both hashes, some
sites under the old one only; canl-java reads one of them, chosen by its OpenSSL 1.x mode, and
canl-c the new one only). The files under the new-style names and those under the old-style
names are two policies, each judged as above on its own (both formats, up the path); each one
that decides must accept (a ``DENY`` of either refuses; a name only one of them permits is
refused), and in the ``_require`` modes one must decide. A file under one name never cuts off
what the other name's files decide (an old-named ``.namespaces`` does not replace a new-named
``.signing_policy``, nor an intermediate CA's old-named file its root's new-named one): together
they never allow more than either alone. This is stricter than CANL, which never reads the
second name. An old-style hash that is also a directory CA's new-style hash is not looked up (its
files are that CA's, :func:`wmproxy.security.chain._load_ca_dir`).

Each file is parsed once per process and parsed again when its ``stat`` (mtime, size) changes:
the files are part of the CA directory's parse (:func:`wmproxy.security.chain._load_ca_dir`)
and of its change detection, so a policy rewritten in place is seen by the next verification
through its CA, as a CRL is.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cachetools import LRUCache
from cryptography import x509

from wmproxy.config import NAMESPACE_MODES
from wmproxy.errors import ProxyVerificationError
from wmproxy.security.dn import slash_dn

_log = logging.getLogger(__name__)

#: File name suffixes of the two formats.
NAMESPACES = "namespaces"
SIGNING_POLICY = "signing_policy"

#: ``[security] namespace_mode`` values (CANL's ``NamespaceCheckingMode`` of the same names):
#:
#: * ``eugridpma_globus`` (default): the ``.namespaces`` rules of the issuer if any, else its
#:   ``.signing_policy`` rules; a CA with neither is not restricted.
#: * ``eugridpma_globus_require``: the same, and a CA with neither is refused.
#: * ``eugridpma_and_globus``: both formats' rules, each where it names the issuer; neither:
#:   not restricted.
#: * ``eugridpma_and_globus_require``: the same, and a CA with neither is refused.
#: * ``ignore``: no namespace check (any trusted CA may certify any name: not advised).
MODES = NAMESPACE_MODES
DEFAULT_MODE = "eugridpma_globus"

_modes: dict[str, str] = {}


def configure(ca_dir: str, mode: str) -> None:
    """Check the certificates verified against ``ca_dir`` in ``mode`` (:data:`MODES`) from now
    on, in this process (the service's edges call this with ``[security]``'s values)."""
    if mode not in MODES:
        raise ValueError(f"unknown namespace mode {mode!r} (one of {', '.join(MODES)})")
    _modes[os.fspath(ca_dir)] = mode


def mode_of(ca_dir: str) -> str:
    """The mode the certificates verified against ``ca_dir`` are checked in."""
    return _modes.get(ca_dir, DEFAULT_MODE)


class CaPolicyError(ProxyVerificationError):
    """A certificate of a verified path is outside what its issuing CA may certify."""


class PolicySyntaxError(ValueError):
    """A policy file that does not parse."""


# --- names ---


def old_name_hash(name_der: bytes) -> str:
    """The old-style OpenSSL hash (``X509_NAME_hash_old``, ``openssl x509 -subject_hash_old``)
    of a name given as its DER: the first 4 bytes of the MD5 digest of the DER, read little-endian,
    as 8 hex digits (the new-style hash, ``X509_NAME_hash``, hashes a canonical form with SHA-1)."""
    digest = hashlib.md5(name_der, usedforsecurity=False).digest()  # what OpenSSL names the files by
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


#: Attribute labels written several ways (lower case) -> one spelling (lower case).
_LABELS = {"e": "emailaddress", "email": "emailaddress", "userid": "uid", "s": "st"}
_LABEL = re.compile(r"/([^/=]+)=")


def normalize_dn(dn: str) -> str:
    """``dn`` (slash form, or a pattern of one) case-folded, its attribute labels spelled one way."""
    return _LABEL.sub(lambda m: f"/{_LABELS.get(m.group(1).lower(), m.group(1))}=", dn).casefold()


def _namespaces_pattern(text: str) -> re.Pattern[str]:
    """A namespaces subject: ``.*`` any text, ``\\x`` a literal x, anything else literal."""
    parts: list[str] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            literal.append(text[i + 1])
            i += 2
        elif text.startswith(".*", i):
            parts.append(re.escape("".join(literal)))
            literal = []
            parts.append(".*")
            i += 2
        else:
            literal.append(text[i])
            i += 1
    parts.append(re.escape("".join(literal)))
    return re.compile("".join(parts), re.DOTALL)


def _globus_pattern(text: str) -> re.Pattern[str]:
    """A signing policy subject: ``*`` any text, ``?`` one character, anything else literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text), re.DOTALL)


# --- parsing ---


@dataclass(frozen=True)
class Rule:
    """One subject rule: for the CA ``issuer`` (normalized; None: ``SELF``, the CA of the
    file's hash), subjects matching ``pattern`` are permitted (or denied)."""

    issuer: str | None
    permit: bool
    subject: str  # as written
    pattern: re.Pattern[str]
    where: str  # file:line


@dataclass(frozen=True)
class PolicyFile:
    """One parsed policy file (``error``: why it could not be parsed or read, else "")."""

    name: str
    rules: tuple[Rule, ...] = ()
    error: str = ""

    def rules_for(self, issuer: str, own: bool) -> list[Rule]:
        """The rules naming the CA ``issuer`` (normalized slash DN); ``own``: the file is that CA's."""
        return [rule for rule in self.rules if rule.issuer == issuer or (own and rule.issuer is None)]

    @property
    def problem(self) -> str:
        """``error`` without the file's name it starts with (``line N: ...`` for a syntax error),
        for a report that names the file itself; "" for a file that parsed."""
        text = self.error.removeprefix(self.name).removeprefix(":").strip()
        line, colon, rest = text.partition(": ")
        return f"line {line}: {rest}" if colon and line.isdigit() else text


_QUOTED = r'"((?:[^"\\]|\\.)*)"'
#: A subject written ``'"<pattern>"'`` (as in one IGTF alias file) is read as ``"<pattern>"``.
_NS_ENTRY = re.compile(rf"TO\s+ISSUER\s+(?:(SELF)|{_QUOTED})\s+(PERMIT|DENY)\s+SUBJECT\s+(')?{_QUOTED}(?(4)')",
                       re.IGNORECASE)
_NS_VERSION = "#NAMESPACES-VERSION:"
_UNESCAPE = re.compile(r"\\(.)")


def _strip_comment(line: str) -> str:
    """``line`` up to a ``#`` outside double quotes (a ``\\`` escapes the next character)."""
    quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "#" and not quoted:
            return line[:i]
        i += 1
    return line


def parse_namespaces(text: str, name: str = "namespaces") -> tuple[Rule, ...]:
    """The rules of a ``.namespaces`` file. Raises PolicySyntaxError."""
    rules: list[Rule] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.upper().startswith(_NS_VERSION):
            version = raw[len(_NS_VERSION):].strip()
            if version != "1.0":
                raise PolicySyntaxError(f"{name}:{number}: unsupported namespaces version {version!r}")
            continue
        line = _strip_comment(raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1] + " "
            continue
        entry = (pending + line).strip()
        pending = ""
        if not entry:
            continue
        found = _NS_ENTRY.fullmatch(entry)
        if found is None:
            raise PolicySyntaxError(f"{name}:{start}: not a 'TO Issuer \"<DN>\"|SELF PERMIT|DENY Subject "
                                    f"\"<pattern>\"' rule: {entry[:200]!r}")
        self_token, issuer, verdict, _, subject = found.groups()
        rules.append(Rule(None if self_token else normalize_dn(_UNESCAPE.sub(r"\1", issuer)),
                          verdict.upper() == "PERMIT", subject, _namespaces_pattern(normalize_dn(subject)),
                          f"{name}:{start}"))
    if pending.strip():
        raise PolicySyntaxError(f"{name}: the last rule continues past the end of the file")
    return tuple(rules)


_SP_ACCESS = re.compile(r"access_id_CA\s+X509\s+'([^']*)'", re.IGNORECASE)
_SP_RIGHTS = re.compile(r"pos_rights\s+globus\s+CA:sign", re.IGNORECASE)
_SP_SUBJECTS = re.compile(r"cond_subjects\s+globus\s+(?:'([^']*)'|(\S.*))", re.IGNORECASE)


def parse_signing_policy(text: str, name: str = "signing_policy") -> tuple[Rule, ...]:
    """The rules of a ``.signing_policy`` file (all permits). Raises PolicySyntaxError."""
    rules: list[Rule] = []
    issuer: str | None = None
    signs = False
    subjects: list[tuple[str, int]] = []

    def close() -> None:
        if issuer is not None and signs:
            rules.extend(Rule(issuer, True, subject, _globus_pattern(normalize_dn(subject)), f"{name}:{number}")
                         for subject, number in subjects)

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if (found := _SP_ACCESS.fullmatch(line)) is not None:
            close()
            issuer, signs, subjects = normalize_dn(found.group(1)), False, []
        elif issuer is None:
            raise PolicySyntaxError(f"{name}:{number}: expected access_id_CA X509 '<DN>': {line[:200]!r}")
        elif _SP_RIGHTS.fullmatch(line):
            signs = True
        elif (found := _SP_SUBJECTS.fullmatch(line)) is not None:
            inner = found.group(1) if found.group(1) is not None else found.group(2)
            quoted = re.findall(r'"([^"]*)"', inner)
            listed = quoted if quoted or '"' in inner else inner.split()
            subjects.extend((subject, number) for subject in listed if subject.strip())
        else:
            raise PolicySyntaxError(f"{name}:{number}: expected pos_rights globus CA:sign or cond_subjects "
                                    f"globus '\"<pattern>\" ...': {line[:200]!r}")
    close()
    return tuple(rules)


#: Parsed policy files, per process: (CA directory, file name) -> ((mtime ns, size), parse).
_parsed: dict[tuple[str, str], tuple[tuple[int, int], PolicyFile]] = {}
_parsed_lock = threading.Lock()


def load_file(ca_dir: str, name: str, stamp: tuple[int, int]) -> PolicyFile:
    """The parse of the policy file ``name`` of ``ca_dir`` whose ``stat`` was ``stamp`` (mtime ns,
    size): parsed once per distinct stamp. Never raises: an unreadable or malformed file gives a
    :class:`PolicyFile` with its ``error`` (logged once)."""
    key = (ca_dir, name)
    with _parsed_lock:
        kept = _parsed.get(key)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    parser = parse_namespaces if name.endswith("." + NAMESPACES) else parse_signing_policy
    try:
        with open(os.path.join(ca_dir, name), "rb") as fh:
            text = fh.read().decode("utf-8", errors="replace")
        parsed = PolicyFile(name, parser(text, name))
    except (OSError, PolicySyntaxError) as exc:
        parsed = PolicyFile(name, error=str(exc) if isinstance(exc, PolicySyntaxError) else
                            f"{name}: {exc.strerror or type(exc).__name__}")
        _log.error("CA policy file %s of %s cannot be used: %s; the certificates its rules decide are "
                   "refused until it is fixed", name, ca_dir, parsed.error)
    with _parsed_lock:
        _parsed[key] = (stamp, parsed)
    return parsed


def forget_others(ca_dir: str, names: Iterable[str]) -> None:
    """Drop the kept parses of ``ca_dir``'s files not in ``names`` (removed files)."""
    keep = set(names)
    with _parsed_lock:
        for key in [key for key in _parsed if key[0] == ca_dir and key[1] not in keep]:
            del _parsed[key]


# --- checking ---


@dataclass(frozen=True)
class _Verdict:
    defined: bool  # rules decided
    refusal: str = ""  # why refused ("" accepted)
    broken: bool = False  # an unusable file was met before any rules naming the issuer


_UNDEFINED = _Verdict(False)


@dataclass(frozen=True, eq=False)
class Policies:
    """The policy files of one parse of a CA directory, by the hash of their name."""

    ca_dir: str = ""
    namespaces: dict[str, PolicyFile] = field(default_factory=dict)
    signing: dict[str, PolicyFile] = field(default_factory=dict)
    #: Verdicts of :meth:`check`, by the certificate's DER: (the names (hashes) of the CAs above
    #: it, the mode, the refusal or ""). Not by the certificate object: an entry kept the parsed
    #: certificate alive (some 9 KB with its names), and a certificate parsed again (its chain
    #: fell out of the parsed-chain caches of ``chain``, 256 entries) took a new entry, so that
    #: the cache filled with copies of the same users' certificates that no lookup could find.
    _verdicts: LRUCache[bytes, tuple[tuple[tuple[str, ...], ...], str, str]] = field(
        default_factory=lambda: LRUCache(VERDICTS_MAX), repr=False)
    _verdicts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, ca_dir: str, files: dict[str, tuple[int, int]]) -> Policies:
        """The policies of the files ``files`` (name -> (mtime ns, size)) of ``ca_dir``: those named
        ``<hash>.namespaces`` and ``<hash>.signing_policy`` (:func:`load_file`)."""
        namespaces: dict[str, PolicyFile] = {}
        signing: dict[str, PolicyFile] = {}
        for name, stamp in files.items():
            digest, _, suffix = name.partition(".")
            if suffix == NAMESPACES:
                namespaces[digest] = load_file(ca_dir, name, stamp)
            elif suffix == SIGNING_POLICY:
                signing[digest] = load_file(ca_dir, name, stamp)
        forget_others(ca_dir, [n for n in files if n.endswith((NAMESPACES, SIGNING_POLICY))])
        return cls(ca_dir, namespaces, signing)

    def check(self, cert: x509.Certificate, issuer_hashes: Sequence[str | Sequence[str]], der: bytes) -> None:
        """Refuse ``cert`` (whose DER is ``der``), issued by the CA of ``issuer_hashes[0]`` (the
        subject name hashes of the verified path above ``cert``, its issuer first; each a hash or
        the CA's hashes, the new-style one first, then the old-style one), when that CA's policy
        does not allow its subject (module doc, :func:`mode_of` the directory's mode).

        A self-issued certificate (a root) is no CA's to allow. The verdict is kept per
        certificate (its DER) and ``issuer_hashes`` while these policies are the directory's (a
        refusal is logged when found, and at most once a minute when repeated).

        Raises:
            CaPolicyError: with the CA, the subject and the rule or file that decided.
        """
        mode = mode_of(self.ca_dir)
        if mode == "ignore":
            return
        hashes = tuple((names,) if isinstance(names, str) else tuple(dict.fromkeys(names)) for names in issuer_hashes)
        with self._verdicts_lock:
            kept = self._verdicts.get(der)
        if kept is not None and kept[0] == hashes and kept[1] == mode:
            refusal = kept[2]
        else:
            refusal = self._verdict(cert, hashes, mode)
            with self._verdicts_lock:
                self._verdicts[der] = (hashes, mode, refusal)
        if refusal:
            issuer, subject, why = refusal.split("\n", 2)
            self._refuse(issuer, subject, why)

    def _verdict(self, cert: x509.Certificate, hashes: tuple[tuple[str, ...], ...], mode: str) -> str:
        """:meth:`check`'s answer: "" (allowed), else "<issuer>\\n<subject>\\n<why>".

        The files under the CAs' new-style names and those under their old-style names are two
        policies, each judged whole (:func:`_decide`): each that is defined must accept (a file
        under one name never cuts off what the other name's files decide, module doc)."""
        if cert.subject == cert.issuer:
            return ""
        issuer_dn = slash_dn(cert.issuer)
        subject_dn = slash_dn(cert.subject)
        issuer, subject = normalize_dn(issuer_dn), normalize_dn(subject_dn)
        decided = [self._decide(issuer, subject, tuple(names[:1] for names in hashes), mode)]
        if any(len(names) > 1 for names in hashes):
            decided.append(self._decide(issuer, subject, tuple(names[1:] for names in hashes), mode))
        why = next((why for _, why in decided if why), "")
        if not why and mode.endswith("_require") and not any(defined for defined, _ in decided):
            why = f"the CA has no namespaces or signing_policy file naming it (namespace_mode {mode})"
        return f"{issuer_dn}\n{subject_dn}\n{why}" if why else ""

    def _decide(self, issuer: str, subject: str, hashes: tuple[tuple[str, ...], ...], mode: str) -> tuple[bool, str]:
        """The verdict of the files named ``hashes`` on ``subject`` issued by ``issuer`` in
        ``mode`` (but ``_require``'s): (whether defined, why refused or "")."""
        both = mode.startswith("eugridpma_and_globus")
        verdicts = []
        broken = ""
        for files in (self.namespaces, self.signing):
            verdict = _evaluate(files, issuer, subject, hashes)
            if verdict.broken:
                broken = broken or verdict.refusal
            elif verdict.defined:
                verdicts.append(verdict)
                if not both:
                    break
        why = broken if broken and (both or not verdicts) else ""
        why = why or next((verdict.refusal for verdict in verdicts if verdict.refusal), "")
        return bool(verdicts or why), why

    def _refuse(self, issuer: str, subject: str, why: str) -> None:
        _log_refusal(self.ca_dir, issuer, subject, why)
        raise CaPolicyError(f"the CA {issuer} may not certify {subject}: {why}")


def _evaluate(files: dict[str, PolicyFile], issuer: str, subject: str,
              hashes: Sequence[tuple[str, ...]]) -> _Verdict:
    """The verdict of one format's ``files`` on ``subject`` issued by ``issuer`` (module doc):
    ``hashes`` the name of each CA above it under one naming (new-style or old-style, one policy
    at a time: :meth:`Policies._verdict`), an empty tuple for a CA without such a name."""
    for position, names in enumerate(hashes):
        found = next((files[name] for name in names if name in files), None)
        if found is None:
            continue
        if found.error:
            return _Verdict(False, f"its policy file cannot be used ({found.error})", broken=True)
        rules = found.rules_for(issuer, own=position == 0)
        if rules:
            return _Verdict(True, _judge(found, rules, subject))
    return _UNDEFINED


def _judge(policy: PolicyFile, rules: list[Rule], subject: str) -> str:
    """Why ``rules`` (of ``policy``, naming the issuer) refuse ``subject``; "" if they accept it."""
    permitted = False
    for rule in rules:
        if rule.pattern.fullmatch(subject):
            if not rule.permit:
                return f"denied by {rule.where} (DENY Subject \"{rule.subject}\")"
            permitted = True
    if permitted:
        return ""
    listed = " ".join(f'"{rule.subject}"' for rule in rules if rule.permit)
    return f"outside its namespace ({policy.name} permits {listed or 'nothing'})"


#: Verdicts kept per parse of a CA directory (:attr:`Policies._verdicts`).
VERDICTS_MAX = 1024

#: Refusals logged, per process: (CA directory, issuer, subject) -> when (monotonic); the same one
#: is logged again after :data:`LOG_AGAIN` seconds.
LOG_AGAIN = 60.0
_logged: LRUCache[tuple[str, str, str], float] = LRUCache(1024)
_logged_lock = threading.Lock()


def _log_refusal(ca_dir: str, issuer: str, subject: str, why: str) -> None:
    now = time.monotonic()
    key = (ca_dir, issuer, subject)
    with _logged_lock:
        last = _logged.get(key)
        if last is not None and now - last < LOG_AGAIN:
            return
        _logged[key] = now
    _log.warning("CA namespace policy: refused the certificate %s issued by the CA %s (%s): %s",
                 subject, issuer, ca_dir, why)
