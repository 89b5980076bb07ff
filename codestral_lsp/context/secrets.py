"""Secrets in text: found, and replaced by a placeholder before a prompt leaves the machine.

Most kinds are found by detect-secrets' plugins: AWS, Azure storage, GitHub, GitLab, Slack, OpenAI,
npm, PyPI, Stripe and other tokens, JWTs, private-key headers, `password = "..."` style assignments
(its keyword detector) and high-entropy quoted literals. They are called through `analyze_string`
only: their `analyze_line` may verify a secret with its service, over the network. The few kinds it
lacks are the patterns in `EXTRA` (GCP API keys, current OpenAI keys, Azure client secrets, bearer
tokens, passwords in URLs and on command lines, whole private-key blocks).

High-entropy literals, quoted or the bare value of a `NAME=value` / `name: value` line, count when
they look random (entropy over detect-secrets' limit, or long and mixing upper case, lower case and
digits throughout) and are not what look-alikes are: a digest or a commit named as one on its line
(lock files, `integrity=`, git SHAs), a UUID, base64 of readable text (a test vector). Keyword
values are not secrets when they are a sentence or repeat the name they are assigned to.
`codestral-lsp eval --redaction` measures recall and false positives on a seeded corpus.

A value a plugin finds is widened to the whole token around it (a JWT's signature, a key cut by the
plugin's pattern), and the token is replaced by `PLACEHOLDER`:

    >>> redact('aws_id = "AKIAIOSFODNN7EXAMPLE"\\nx = 1\\n')
    ('aws_id = "<redacted>"\\nx = 1\\n', 1)
    >>> redact("def area(w, h):\\n    return w * h\\n")
    ('def area(w, h):\\n    return w * h\\n', 0)
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache

from detect_secrets.filters.heuristic import is_likely_id_string, is_potential_uuid, is_sequential_string
from detect_secrets.plugins import keyword
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString, HexHighEntropyString
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

PLACEHOLDER = "<redacted>"

# detect-secrets' pattern plugins (its IP-address plugin is left out: addresses are not secrets)
PATTERNS = tuple(cls() for cls in (
    ArtifactoryDetector, AWSKeyDetector, AzureStorageKeyDetector, BasicAuthDetector, DiscordBotTokenDetector,
    GitHubTokenDetector, GitLabTokenDetector, JwtTokenDetector, MailchimpDetector, NpmDetector, OpenAIDetector,
    PrivateKeyDetector, PypiTokenDetector, SendGridDetector, SlackDetector, SquareOAuthDetector, StripeDetector,
    TelegramBotTokenDetector, TwilioKeyDetector))
KEYWORD = keyword.KeywordDetector()
# `name = "value"` in code; `NAME=value` and `name: value` in .env, YAML, INI and the like
KEYWORD_FORMS = (keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP, keyword.CONFIG_DENYLIST_REGEX_TO_GROUP)
# Forms its keyword detector misses: a typed declaration (`password: str = '...'`, `const PASSWORD: &str = "..."`)
# or a value with any characters in quotes; a Java properties line (`spring.datasource.password=...`)
PASSWORD_WORDS = ("password", "passwd", "pwd", "secret")  # in one case each, or capitalised: never mixed, as in a key
PASSWORD_NAME = r"[\w.\-]*(?:%s)[\w.\-]*" % "|".join(f(w) for w in PASSWORD_WORDS for f in (str, str.title, str.upper))
OWN_KEYWORD_FORMS = (
    re.compile(rf"{PASSWORD_NAME}[\"'\]]*\s*(?::\s*[\w&\[\]<>]+\s*)?(?:=|:=|:)\s*(?P<q>[\"'])(?P<v>[^\"'\n]+)(?P=q)"),
    re.compile(rf"^\s*{PASSWORD_NAME}\s*[=:]\s*(?P<v>[^\s\"']+)\s*$"),
)
ENTROPY = (Base64HighEntropyString(), HexHighEntropyString())  # quoted literals, detect-secrets' default limits

EXTRA = (  # the secret is the group "v" where there is one, else the whole match
    re.compile(r"AIza[0-9A-Za-z_\-]{35}"),  # GCP API key
    re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{32,}"),  # OpenAI key (current formats)
    re.compile(r"\b(?:github_pat|glpat)_[A-Za-z0-9_]{22,}"),  # GitHub fine-grained token
    re.compile(r"(?<![\w~.\-])[\w~.\-]{3}\dQ~[\w~.\-]{31,34}"),  # Azure AD client secret
    re.compile(r"[A-Za-z][\w+.\-]*://[^\s:/@\"']+:(?P<v>[^\s/\"']+)@[\w.\-]"),  # scheme://user:password@host
    re.compile(r"\s-p(?P<q>[\"'])(?P<v>[^\"'\s]{4,})(?P=q)"),  # mysql -p'password'
)
BEARER = re.compile(r"(?i)\bbearer\s+(?P<v>[\w\-.~+/]{20,}=*)")  # a token, if it looks random (`_disordered`)
# The bare value of `NAME=value` (.env, shell, properties) or `name: value` (YAML): a candidate literal
BARE_VALUE = re.compile(r"^\s*(?:export\s+)?[A-Za-z_][\w.\-]*\s*[=:]\s*(?P<v>[\w+/=\-.~]{16,})\s*(?:#.*)?$")
# Words saying a literal is a digest or a commit (lock files, SRI, git), looked for on its line
DIGEST_CONTEXT = re.compile(
    r"(?i)(?<![a-z])(?:sha(?:1|224|256|384|512)?|integrity|checksum|hash(?:es)?|digest|commit|rev|revision|etag|h1)"
    r"(?![a-z])")
UUID_HEX = re.compile(r"[0-9a-fA-F]{12}[1-8][0-9a-fA-F]{3}[89abAB][0-9a-fA-F]{15}")  # a UUID without its dashes
UUID_CONTEXT = re.compile(r"(?i)uuid|guid")  # ... when its line says so (1 in 64 random hex keys has that shape)
LABEL = re.compile(r"(?i)\s.*\b(?:password|passwd|secret|token|key)\b|\b(?:password|passwd|secret|token|key)\b.*\s"
                   r"|^\W*(?:password|passwd|secret|token|key)\W*$")
USER_PASSWORD = re.compile(r"[\w.@+\-]+:\S+")  # base64 of this is an HTTP Basic credential, not a test vector
SENTENCE_WORDS = 5  # a keyword value of this many words or more is a message (i18n, logs), not a password
# A keyword value is a label when it names the thing ("Password", "Client secret", "Enter your password")
# A private-key block, whole; or its end when a window starts inside it, or its start when one ends there.
KEY_BLOCK = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)"
    r"|\A[A-Za-z0-9+/=\s:\-,]*?-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----", re.DOTALL)
TOKEN_BEFORE = re.compile(r"[A-Za-z0-9_\-+/]")  # not "=": `KEY=value` keeps its name
TOKEN_AFTER = re.compile(r"[A-Za-z0-9_\-.+/=]")
KEYWORD_MIN = 4  # shorter keyword values (`password = ""`, `token: x`) are left alone
CONFIG_VALUE = re.compile(r"[\w\-.+/=~!@#$%^&*?]+")  # an unquoted value is a bare word, never a call or an expression
NOT_A_VALUE = re.compile(r"None|null|nil|true|false|True|False|undefined|[a-z_]+|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def redact(text: str) -> tuple[str, int]:
    """text with every secret replaced by PLACEHOLDER, and how many were replaced."""
    spans = find_secrets(text)
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], PLACEHOLDER]
        last = end
    out.append(text[last:])
    return "".join(out), len(spans)


def has_secret(text: str, after: int = 0) -> bool:
    """Whether a secret in text ends past `after` (a suggestion's start, after the line it continues).

    >>> has_secret('token = "ghp_' + 36 * "a" + '"', after=8)
    True
    """
    return any(end > after for _, end in find_secrets(text))


def find_secrets(text: str) -> list[tuple[int, int]]:
    """Sorted, non-overlapping (start, end) spans of the secrets in text."""
    spans = [m.span() for m in KEY_BLOCK.finditer(text)]
    start = 0
    for line in text.split("\n"):
        spans += [(start + a, start + b) for a, b in line_secrets(line)]
        start += len(line) + 1
    return _merge(spans)


@lru_cache(maxsize=8192)
def line_secrets(line: str) -> tuple[tuple[int, int], ...]:
    """The spans of secrets in one line (memoised: lines repeat from keystroke to keystroke)."""
    if len(line) > 4000 or not line.strip():
        return ()
    values = set()
    for plugin in PATTERNS:
        values.update(v for v in plugin.analyze_string(line) if v)
    values.update(_keyword_values(line))
    for plugin in ENTROPY:
        values.update(v for v in _literals(plugin, line) if _random(v, line, plugin))
    values.update(m.group("v") if "v" in pattern.groupindex else m.group()
                  for pattern in EXTRA for m in pattern.finditer(line))
    values.update(v for v in (m.group("v") for m in BEARER.finditer(line)) if _disordered(v, ENTROPY[0]))
    values = {v for v in values if PLACEHOLDER not in v}  # what was redacted already
    return tuple(_merge([_widen(line, i, i + len(v)) for v in values for i in _occurrences(line, v)]))


def _keyword_values(line: str):
    """Values assigned to a password-like name; an unquoted one must be a bare word, not a name or a call."""
    quoted = [v for v in KEYWORD.analyze_string(line, denylist_regex_to_group=KEYWORD_FORMS[0])]
    quoted += [m.group("v") for m in OWN_KEYWORD_FORMS[0].finditer(line)]
    bare = [v for v in KEYWORD.analyze_string(line, denylist_regex_to_group=KEYWORD_FORMS[1])]
    bare += [m.group("v") for m in OWN_KEYWORD_FORMS[1].finditer(line)]
    bare = [v for v in bare if CONFIG_VALUE.fullmatch(v) and not NOT_A_VALUE.fullmatch(v)]
    for v in quoted + bare:
        if len(v) < KEYWORD_MIN or v.count(" ") + 1 >= SENTENCE_WORDS or LABEL.search(v) or _names_itself(v, line):
            continue  # short, a message or a label, or a constant that names itself (`PASSWORD = "PASSWORD"`)
        yield v


def _names_itself(value: str, line: str) -> bool:
    """Whether the value's letters and digits are also the rest of the line's (`"a.b.secret": "A b secret"`)."""
    squash = lambda text: re.sub(r"[^a-z0-9]", "", text.lower())  # noqa: E731
    return squash(value) in squash(line.replace(value, " ", 1))


def _literals(plugin, line: str):
    """The plugin's quoted literals, and the bare value of a `NAME=value` line made of its characters."""
    yield from plugin.analyze_string(line)
    bare = BARE_VALUE.match(line)
    if bare and all(c in plugin.charset for c in bare.group("v")):
        yield bare.group("v")


def _random(value: str, line: str, plugin) -> bool:
    """A literal that looks random (`_disordered`) and is not an id, a UUID, a sequence, a character set
    (no character twice: an alphabet, not a key), a digest, or base64 of readable text."""
    return (len(set(value)) < len(value) and _disordered(value, plugin)
            and not is_sequential_string(value) and not is_potential_uuid(value)
            and not (UUID_HEX.fullmatch(value) and UUID_CONTEXT.search(line))
            and not is_likely_id_string(value, line, plugin)
            and not DIGEST_CONTEXT.search(line.replace(value, " "))
            and not _encoded_text(value))


def _disordered(value: str, plugin) -> bool:
    """Entropy over the plugin's limit, or `_mixed` upper case, lower case and digits. A random
    32-character key often stays under the entropy limit (4.5 bits: only 62% of them pass it)."""
    return plugin.calculate_shannon_entropy(value) > plugin.entropy_limit or _mixed(value, 3, 4)


def _mixed(value: str, kinds: int, every: int) -> bool:
    """20+ characters of at least `kinds` of upper case, lower case and digits, changing kind at least once
    every `every` letters or digits: identifiers change kind at word boundaries only."""
    classes = [c.isupper() + 2 * c.isdigit() for c in value if c.isalnum()]
    changes = sum(a != b for a, b in zip(classes, classes[1:]))
    return len(value) >= 20 and len(set(classes)) >= kinds and changes * every >= len(classes)


def _encoded_text(value: str) -> bool:
    """Whether value is base64 of readable text (a test vector), other than a `user:password` pair."""
    try:
        text = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return len(text) >= 4 and text.isprintable() and not USER_PASSWORD.fullmatch(text)


def _occurrences(line: str, value: str):
    i = line.find(value)
    while i >= 0:
        yield i
        i = line.find(value, i + len(value))


def _widen(line: str, start: int, end: int) -> tuple[int, int]:
    """The span grown over token characters on both sides: a value cut short becomes the whole token."""
    while start > 0 and TOKEN_BEFORE.match(line[start - 1]):
        start -= 1
    while end < len(line) and TOKEN_AFTER.match(line[end]):
        end += 1
    return start, end


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out
