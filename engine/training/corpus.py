"""The training corpus: Python read from the installed packages, other languages from the fetched cache.

Every file belongs to one language; an example's language is drawn by the mix weights in LANGUAGES
(renormalised over the languages present), then a file of that language in proportion to its size
(capped, so huge files do not dominate). With Python alone the draws are exactly those of the
Python-only recipe, so earlier runs resume unchanged.

A file is held out when a hash of its path inside its package is 0 modulo HELDOUT_MODULUS (about 2%),
so the split is stable across machines, package versions that keep the path, and corpus growth.
"""

from __future__ import annotations

import json
import os
import random
import sysconfig
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path

import xxhash


@dataclass(frozen=True)
class Language:
    extensions: tuple[str, ...]
    mix: float  # share of training examples, before renormalising over the languages present
    line_comment: str = "//"  # comment markers: held-out tasks never ask for a comment line
    block_comment: tuple[str, str] | None = ("/*", "*/")
    block_opener: str = r"[{(\[]$|^\s*(?:case\b.*|default\s*):$"  # a line of code that opens a block body


# Names are the server's languageIds (JSX and TSX fold into their base language). Weights follow what
# the server is used for; Python stays the largest share.
LANGUAGES: dict[str, Language] = {
    "python": Language((".py", ".pyi"), 0.40, line_comment="#", block_comment=None,
                       block_opener=r"[{(\[:]$"),
    "typescript": Language((".ts", ".tsx", ".mts", ".cts"), 0.15),
    "javascript": Language((".js", ".jsx", ".mjs", ".cjs"), 0.12),
    "go": Language((".go",), 0.08),
    "rust": Language((".rs",), 0.08),
    "java": Language((".java",), 0.07),
    "cpp": Language((".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx", ".ipp"), 0.05),
    "c": Language((".c", ".h"), 0.05),
}
LANGUAGE_OF_EXTENSION = {ext: name for name, lang in LANGUAGES.items() for ext in lang.extensions}
# The server's languageId of a file where it is not the corpus language's (held-out tasks carry the file's).
LSP_ID_OF_EXTENSION = {".tsx": "typescriptreact", ".jsx": "javascriptreact"}

# Permissively licensed pure-Python packages read from site-packages at training time (never committed).
PACKAGES = ["numpy", "click", "flask", "jinja2", "werkzeug", "attr", "rich", "pygls", "lsprotocol",
            "jsonschema", "setuptools", "pip", "libcst", "typer", "pydantic", "docutils", "networkx",
            "sympy", "torch", "transformers"]
MAX_FILE_CHARS = 400_000  # larger files are generated tables, not code
HELDOUT_MODULUS = 50  # a file is held out when hash(path) % 50 == 0: about 2% of files
DEFAULT_CACHE = Path.home() / ".cache" / "codestral-lsp" / "corpus"


@dataclass
class Source:
    name: str
    root: str
    license: str
    files: list[str]
    chars: int
    language: str = "python"


def package_license(dist_name: str) -> str:
    try:
        meta = metadata.metadata(dist_name)
    except metadata.PackageNotFoundError:
        return "unknown"
    expr = meta.get("License-Expression")
    if expr:
        return expr
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return "; ".join(classifiers)
    return (meta.get("License") or "unknown").splitlines()[0][:80]


def python_files(root: Path, skip_dirs: tuple[str, ...] = ()) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and d != "__pycache__")
        out += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py")]
    return out


def gather_sources(extra_dirs: list[str] | None = None, packages: list[str] | None = None) -> list[Source]:
    """The standard library, the listed packages that are installed, and any extra folders."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    roots = [("python-stdlib", stdlib, "PSF-2.0", ("site-packages", "idlelib", "turtledemo"))]
    dist_of = metadata.packages_distributions()
    for pkg in PACKAGES if packages is None else packages:
        spec = util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        dist = (dist_of.get(pkg) or [pkg])[0]
        roots.append((pkg, Path(spec.submodule_search_locations[0]), package_license(dist), ()))
    for d in extra_dirs or []:
        roots.append((Path(d).name, Path(d), "user-provided", (".git", "node_modules", ".venv")))
    sources, seen = [], set()
    for name, root, lic, skip in roots:
        files, chars = [], 0
        for path in python_files(root, skip):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            digest = xxhash.xxh64_intdigest(text.encode("utf-8", "surrogatepass"))
            if not text.strip() or len(text) > MAX_FILE_CHARS or digest in seen:
                continue
            seen.add(digest)
            files.append(str(path))
            chars += len(text)
        sources.append(Source(name, str(root), lic, files, chars))
    return sources


def fetched_sources(languages: list[str], cache: Path = DEFAULT_CACHE) -> list[Source]:
    """The fetched packages' files of these languages, as `fetch.py` recorded them in the manifest."""
    manifest_path = Path(cache) / "manifest.json"
    if not manifest_path.is_file():
        raise SystemExit(f"no fetched corpus in {cache}: run `codestral-lsp train --fetch-corpus` first")
    manifest = json.loads(manifest_path.read_text())
    sources = []
    for pkg in manifest["packages"]:
        root = Path(cache) / pkg["root"]
        for lang, entry in pkg["languages"].items():
            if lang in languages:
                files = [str(root / f) for f in entry["files"]]
                sources.append(Source(pkg["name"], str(root), pkg["license"], files, entry["chars"], lang))
    return sources


def corpus_sources(languages: list[str], extra_dirs: list[str] | None = None,
                   cache: Path = DEFAULT_CACHE) -> list[Source]:
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown:
        raise SystemExit(f"unknown languages {unknown}; known: {', '.join(LANGUAGES)}")
    sources = gather_sources(extra_dirs, packages=[] if extra_dirs else None) if "python" in languages else []
    others = [lang for lang in languages if lang != "python"]
    return sources + (fetched_sources(others, cache) if others else [])


def is_heldout(path: str, root: str) -> bool:
    rel = os.path.relpath(path, root)
    return xxhash.xxh64_intdigest(rel.encode()) % HELDOUT_MODULUS == 0


@dataclass
class Pool:
    """The files of one language, with their sampling weights."""
    train: list[str] = field(default_factory=list)
    heldout: list[str] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)


class Corpus:
    """Documents split into train and held-out by a hash of their path inside their package."""

    def __init__(self, sources: list[Source], mix: dict[str, float] | None = None):
        self.sources = sources
        self.pools: dict[str, Pool] = {}
        for s in sources:
            pool = self.pools.setdefault(s.language, Pool())
            for f in s.files:
                (pool.heldout if is_heldout(f, s.root) else pool.train).append(f)
        for pool in self.pools.values():
            # Sample files in proportion to their size, capped so huge files do not dominate.
            pool.weights = [min(os.path.getsize(f), 60_000) for f in pool.train]
        self.languages = [lang for lang in LANGUAGES if lang in self.pools] + sorted(set(self.pools) - set(LANGUAGES))
        mix = mix or {lang: spec.mix for lang, spec in LANGUAGES.items()}
        total = sum(mix.get(lang, 0.0) for lang in self.languages) or 1.0
        self.mix = {lang: mix.get(lang, 0.0) / total for lang in self.languages}
        self.train = [f for lang in self.languages for f in self.pools[lang].train]
        self.heldout = [f for lang in self.languages for f in self.pools[lang].heldout]
        self._cache: dict[str, str] = {}
        self._cached_chars = 0

    def pick_train(self, rng: random.Random) -> str:
        pool = self.pools[self._pick_language(rng, lambda p: p.train)]
        return rng.choices(pool.train, pool.weights)[0]

    def pick_heldout(self, rng: random.Random) -> str:
        return rng.choice(self.pools[self._pick_language(rng, lambda p: p.heldout)].heldout)

    def _pick_language(self, rng: random.Random, files_of) -> str:
        present = [lang for lang in self.languages if files_of(self.pools[lang])]
        if len(present) == 1:  # no draw: one language samples exactly as the Python-only recipe did
            return present[0]
        return rng.choices(present, [self.mix[lang] for lang in present])[0]

    CACHE_CHARS = 40_000_000  # texts kept for the next draws, bounded by size (4,000 files of up to 400K chars: GBs)

    def text(self, path: str) -> str:
        if path not in self._cache:
            text = Path(path).read_text(encoding="utf-8")
            if self._cached_chars + len(text) > self.CACHE_CHARS:
                self._cache.clear()
                self._cached_chars = 0
            self._cache[path] = text
            self._cached_chars += len(text)
        return self._cache[path]

    def manifest(self) -> list[dict]:
        return [{"name": s.name, "language": s.language, "license": s.license, "files": len(s.files),
                 "chars": s.chars, "heldout_files": sum(is_heldout(f, s.root) for f in s.files)}
                for s in self.sources]
