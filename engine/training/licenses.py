"""Licence checks for fetched corpus packages: a package is used only when every licence it states is permissive.

    >>> license_allowed("(MIT OR GPL-3.0)")        # one permissive alternative suffices
    True
    >>> license_allowed("Apache-2.0 AND LGPL-2.1")  # every conjunct must be permissive
    False
"""

from __future__ import annotations

import re
from email.parser import Parser

# Normalised names (lower case, no spaces) of the licences we accept, Debian's spellings included.
ALLOWED = {
    "mit", "expat", "mit-0", "x11", "isc", "0bsd", "bsd-2-clause", "bsd-3-clause", "bsd-4-clause-uc",
    "apache-2.0", "apache-2", "apache", "zlib", "zlib/libpng", "libpng", "bsl-1.0", "boost", "unlicense",
    "cc0-1.0", "cc0", "public-domain", "publicdomain", "psf-2.0", "python-2.0", "mpl-2.0", "curl",
    "blueoak-1.0.0", "wtfpl", "bzip2-1.0.6", "ncsa", "unicode-dfs-2016", "unicode-3.0", "bsd-source-code",
    "mpl-2", "python", "unicode", "w3c", "openldap-2.8", "fsful", "fsfullr", "fsfullr-no-warranty",
    # Debian copyright files' own names for BSD-style and NCSA-style permissive texts
    "bsd-c3", "bsd-3-google", "bsd-3-clause~google", "u-of-i-bsd-like",
}
_ALIASES = {"bsd-2": "bsd-2-clause", "bsd-3": "bsd-3-clause", "bsd-2-clause-freebsd": "bsd-2-clause",
            "apache-2.0+": "apache-2.0", "mit/x11": "mit", "public_domain": "public-domain",
            "bsd-3-clause-clear": "bsd-3-clause", "bsl": "bsl-1.0", "boost-1.0": "bsl-1.0"}


def normalise(name: str) -> str:
    name = re.sub(r"\s+", "-", name.strip().strip("()").strip().lower())
    name = name.removesuffix("-license").removesuffix("-licence")
    return _ALIASES.get(name, name)


def license_allowed(expression: str) -> bool:
    """An SPDX-like expression with AND, OR and parentheses (AND binds tighter); WITH exceptions are ignored."""
    expression = re.sub(r"(?i)\s+with\s+.*?(?=\s+(?:and|or)\s+|\)|,|$)", "", expression or "")
    tokens = [t.strip() for t in re.split(r"(?i)(\(|\)|\s+and\s+|\s+or\s+|\s*,\s*)", expression) if t.strip()]
    if not tokens:
        return False
    try:
        value, rest = _any_of(tokens)
    except IndexError:  # unbalanced parentheses or a dangling operator
        return False
    return value and not rest


def _any_of(tokens: list[str]) -> tuple[bool, list[str]]:
    value, tokens = _all_of(tokens)
    while tokens and tokens[0].lower() == "or":
        other, tokens = _all_of(tokens[1:])
        value = value or other
    return value, tokens


def _all_of(tokens: list[str]) -> tuple[bool, list[str]]:
    value, tokens = _term(tokens)
    while tokens and tokens[0].lower() in ("and", ","):
        other, tokens = _term(tokens[1:])
        value = value and other
    return value, tokens


def _term(tokens: list[str]) -> tuple[bool, list[str]]:
    if tokens[0] == "(":
        value, rest = _any_of(tokens[1:])
        if not rest or rest[0] != ")":
            raise IndexError("unbalanced")
        return value, rest[1:]
    if tokens[0].lower() in ("and", "or", ",", ")"):
        raise IndexError("operator where a licence was expected")
    return normalise(tokens[0]) in ALLOWED, tokens[1:]


def npm_license(package_json: dict) -> str:
    """The `license` field, or the old `licenses` list joined as alternatives."""
    lic = package_json.get("license")
    if isinstance(lic, dict):
        lic = lic.get("type")
    if not lic and isinstance(package_json.get("licenses"), list):
        lic = " OR ".join(str(x.get("type", "")) for x in package_json["licenses"] if isinstance(x, dict))
    return str(lic or "unknown")


def debian_licenses(copyright_text: str) -> list[str]:
    """The licence of each `Files:` stanza of a machine-readable debian/copyright, packaging (debian/*) excluded.

    An empty list means the file is not in the machine-readable format: the caller treats it as unknown.
    """
    if "Format:" not in copyright_text.split("\n\n", 1)[0]:
        return []
    licenses = []
    for stanza in re.split(r"\n\s*\n", copyright_text):
        files = re.search(r"(?im)^Files:\s*(.+(?:\n[ \t]+.+)*)", stanza)
        lic = re.search(r"(?im)^License:[ \t]*(.+)$", stanza)
        if files and lic and not all(f.startswith("debian/") for f in files.group(1).split()):
            licenses.append(lic.group(1).strip())
    return licenses


def debian_license(copyright_text: str) -> str:
    """One expression for the whole package: the stanzas' distinct licences joined by AND."""
    distinct = list(dict.fromkeys(debian_licenses(copyright_text)))
    return " AND ".join(f"({x})" if re.search(r"(?i)\s(or|and)\s", x) else x for x in distinct) or "unknown"


# Trove classifiers ("License :: OSI Approved :: MIT License") as licence names.
CLASSIFIERS = {"MIT License": "MIT", "BSD License": "BSD-3-Clause", "Apache Software License": "Apache-2.0",
               "ISC License (ISCL)": "ISC", "Python Software Foundation License": "PSF-2.0",
               "zlib/libpng License": "Zlib", "The Unlicense (Unlicense)": "Unlicense",
               "Public Domain": "public-domain",
               "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0", "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0"}


def pypi_license(pkg_info: str) -> str:
    """From an sdist's PKG-INFO: License-Expression, else its licence classifiers (any one), else License."""
    meta = Parser().parsestr(pkg_info)
    if meta.get("License-Expression"):
        return meta["License-Expression"]
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return " OR ".join(CLASSIFIERS.get(c, c) for c in classifiers)
    return (meta.get("License") or "unknown").strip().splitlines()[0][:80] or "unknown"
