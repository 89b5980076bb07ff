"""Fetch the non-Python corpus: pinned npm, Debian and PyPI packages, licence-checked, filtered, deduplicated.

    codestral-lsp train --fetch-corpus [--corpus-cache DIR]

Each package is downloaded with its registry's own client (`npm pack`, `apt-get download`, `pip download`
of the source distribution) and unpacked under CACHE/packages/<name>/. Its licence (npm: package.json
`license`; Debian: the machine-readable debian/copyright, packaging stanzas excluded; PyPI: PKG-INFO's
License-Expression or licence classifiers) must pass `license_allowed`, or the
package is skipped and reported. Source files are taken by extension (corpus.LANGUAGES), minus
generated, minified, vendored and huge ones, then deduplicated per language, exactly and by MinHash,
in the order of PINNED. CACHE/manifest.json records what was kept; nothing here is committed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from .corpus import LANGUAGE_OF_EXTENSION, LANGUAGES, MAX_FILE_CHARS, is_heldout
from .dedup import Deduplicator
from .licenses import debian_license, license_allowed, npm_license, pypi_license


@dataclass(frozen=True)
class Pin:
    registry: str  # "npm", "debian" or "pypi"
    name: str
    version: str
    headers: str = "c"  # the language of .h files: "cpp" for C++ libraries


def npm(spec: str, headers: str = "c") -> Pin:
    # "@scope/name@1.0": the version follows the last "@" unless that "@" opens a scope
    name, _, version = spec.rpartition("@") if spec.count("@") > spec.startswith("@") else (spec, "", "")
    return Pin("npm", name, version, headers)


def pypi(spec: str, headers: str = "c") -> Pin:
    name, _, version = spec.partition("==")
    return Pin("pypi", name, version, headers)


def deb(spec: str, headers: str = "c") -> Pin:
    name, version = spec.split("=")
    return Pin("debian", name, version, headers)


# Versions as fetched for the first corpus (Debian 12 "bookworm"); bump them deliberately.
PINNED: list[Pin] = [
    # TypeScript sources (packages that ship their src/, not only built files)
    *map(npm, ["rxjs@7.8.2", "zod@4.6.7", "fp-ts@2.16.11", "immer@11.2.14", "mobx@7.1.3", "ajv@8.20.0",
               "@tanstack/query-core@5.108.4", "io-ts@2.2.22", "effect@4.1.5", "vscode-languageserver-protocol@3.18.5",
               "inversify@8.2.3", "class-validator@0.15.1", "typeorm@1.1.3", "@vue/reactivity@3.5.47", "date-fns@4.4.0",
               "@trpc/server@11.25.2", "@trpc/client@11.25.2", "@tanstack/react-query@5.108.4",
               "@tanstack/virtual-core@3.19.13", "@tanstack/router-core@1.171.39", "@tanstack/store@0.11.3",
               "@tanstack/form-core@1.33.5", "@reduxjs/toolkit@2.16.0", "redux@5.0.1", "@preact/signals-core@1.14.5",
               "@effect/platform@0.97.2", "@effect/cli@0.77.2", "jotai@2.20.3"]),
    # JavaScript sources
    *map(npm, ["lodash@4.18.1", "express@5.3.0", "koa@3.3.0", "commander@14.0.3", "chalk@5.6.2", "yargs@18.2.0",
               "debug@4.4.3", "semver@7.8.6", "eslint@10.16.0", "webpack@5.113.0", "three@0.187.0", "moment@2.31.0",
               "luxon@3.7.2", "jquery@4.1.0", "ws@8.23.1", "mongoose@9.13.2", "knex@3.3.0", "pg@8.23.1",
               "fastify@5.12.8", "undici@7.30.3", "ramda@0.32.0", "preact@11.2.0", "socket.io@4.8.4", "axios@1.21.1",
               "esprima@4.0.1", "underscore@1.13.8"]),
    # Java (Debian ships Java as compiled jars only): the Android sources inside npm packages; React
    # Native's are pinned to 0.71, before most of its Android code moved to Kotlin
    npm("react-native@0.71.7", headers="cpp"),
    *map(npm, ["cordova-android@15.1.0", "cordova-plugin-file@8.1.3",
               "cordova-plugin-camera@8.0.0", "cordova-plugin-inappbrowser@7.0.0", "cordova-plugin-geolocation@5.0.0",
               "cordova-plugin-media@7.0.0"]),
    # Go
    *map(deb, ["golang-github-spf13-cobra-dev=1.6.1-1",
               "golang-github-spf13-pflag-dev=1.0.6~git20210604-d5e0c0615ace-1",
               "golang-github-stretchr-testify-dev=1.8.1-1", "golang-github-gorilla-mux-dev=1.8.0-1",
               "golang-github-sirupsen-logrus-dev=1.9.0-1", "golang-github-pkg-errors-dev=0.9.1-2",
               "golang-github-google-go-cmp-dev=0.5.9-1", "golang-golang-x-net-dev=1:0.7.0+dfsg-1",
               "golang-golang-x-text-dev=0.7.0-1", "golang-golang-x-tools-dev=1:0.5.0+ds-1",
               "golang-github-prometheus-client-golang-dev=1.14.0-3", "golang-google-grpc-dev=1.33.3-2",
               "golang-github-gin-gonic-gin-dev=1.8.1-1", "golang-github-urfave-cli-dev=1.22.9-2",
               "golang-github-burntsushi-toml-dev=1.2.0-2", "golang-gopkg-yaml.v3-dev=3.0.1-3",
               "golang-github-spf13-viper-dev=1.10.1-1", "golang-github-fsnotify-fsnotify-dev=1.6.0-2",
               "golang-github-hashicorp-golang-lru-dev=0.5.4-2", "golang-github-google-uuid-dev=1.3.0-1",
               "golang-github-gorilla-websocket-dev=1.5.0-2", "golang-github-klauspost-compress-dev=1.15.12+ds1-3",
               "golang-github-miekg-dns-dev=1.1.50-2", "golang-github-go-kit-kit-dev=0.10.0-1"]),
    # Rust
    *map(deb, ["librust-serde-dev=1.0.152-2", "librust-serde-json-dev=1.0.87-1", "librust-regex-dev=1.7.1-1",
               "librust-regex-syntax-dev=0.6.27-1", "librust-tokio-dev=1.24.2-1", "librust-clap-dev=4.0.32-1",
               "librust-rand-dev=0.8.5-1", "librust-itertools-dev=0.10.3-1", "librust-anyhow-dev=1.0.69-1",
               "librust-thiserror-dev=1.0.38-1", "librust-syn-dev=1.0.107-1", "librust-proc-macro2-dev=1.0.47-1",
               "librust-log-dev=0.4.17-3", "librust-futures-util-dev=0.3.21-1", "librust-bytes-dev=1.2.1-1",
               "librust-hashbrown-dev=0.12.3-1", "librust-indexmap-dev=1.9.2-1", "librust-memchr-dev=2.5.0-1",
               "librust-nom-dev=7.1.1-1", "librust-rayon-dev=1.6.1-1", "librust-rayon-core-dev=1.10.1-1",
               "librust-crossbeam-channel-dev=0.5.6-1", "librust-smallvec-dev=1.9.0-1",
               "librust-chrono-dev=0.4.23-2", "librust-hyper-dev=0.14.19-1", "librust-url-dev=2.3.1-1",
               "librust-walkdir-dev=2.3.2-1", "librust-tempfile-dev=3.3.0-1"]),
    # C++
    *(deb(s, "cpp") for s in ["libgtest-dev=1.12.1-0.2", "libgmock-dev=1.12.1-0.2", "nlohmann-json3-dev=3.11.2-2",
                              "libfmt-dev=9.1.0+ds1-2", "libspdlog-dev=1:1.10.0+ds-0.4",
                              "libabsl-dev=20220623.1-1+deb12u2", "libeigen3-dev=3.4.0-4", "catch2=2.13.10-1",
                              "libglm-dev=0.9.9.8+ds-6", "rapidjson-dev=1.1.0+dfsg2-7.1", "libpugixml-dev=1.13-0.2",
                              "libyaml-cpp-dev=0.7.0+dfsg-8+b1", "libtinyxml2-dev=9.0.0+dfsg-3.1",
                              "libcli11-dev=2.1.2+ds-1", "libcxxopts-dev=3.1.1-1", "libbenchmark-dev=1.7.1-1",
                              "libre2-dev=20220601+dfsg-1+b1"]),
    # C and C++ inside Python packages' source distributions (their Python files are not read here)
    *map(pypi, ["brotli==1.2.1", "zstandard==0.25.0", "psutil==7.2.2", "mmh3==5.3.1", "bitarray==3.12.3",
                "markupsafe==3.0.4", "cffi==2.1.1", "pycryptodome==4.5.0", "pyahocorasick==2.3.1",
                "simplejson==4.3.0", "multidict==7.2.1", "xxhash==4.1.0"]),
    pypi("greenlet==3.5.6", headers="cpp"),
    # C
    *map(deb, ["libstb-dev=0.0~git20220908.8b5f1f3+ds-1", "libcjson-dev=1.7.15-1+deb12u4",
               "zlib1g-dev=1:1.2.13.dfsg-1", "libuv1-dev=1.44.2-1+deb12u1", "libsqlite3-dev=3.40.1-2+deb12u2",
               "libzstd-dev=1.5.4+dfsg2-5", "libcurl4-openssl-dev=7.88.1-10+deb12u15", "libjansson-dev=2.14-2",
               "libevent-dev=2.1.12-stable-8", "libyaml-dev=0.2.5-1", "libexpat1-dev=2.5.0-1+deb12u2",
               "libsodium-dev=1.0.18-1+deb12u1", "liblmdb-dev=0.9.24-1", "libutf8proc-dev=2.8.0-1",
               "libmd4c-dev=0.4.8-1"]),
]

SKIP_DIRS = {"node_modules", "vendor", "third_party", "third-party", "dist", "umd", "bundles", "coverage",
             "min", "esm5", "fesm2015", "fesm2022", "__snapshots__", ".git"}
GENERATED = re.compile(r"(?i)code generated .{0,80}do not edit|@generated|auto-?generated|"
                       r"this file (?:is|was|has been) (?:automatically )?generated|generated by (?:protoc|bindgen|"
                       r"swig|flex|bison|cbindgen|cython|the protocol buffer)")


def is_generated(name: str, text: str) -> bool:
    """Minified, bundled or machine-written: not code a person types."""
    if re.search(r"[.-]min\.js$|\.bundle\.js$|\.d\.[cm]?ts$", name):
        return True
    lines = text.split("\n")
    if max(map(len, lines)) > 1000 or len(text) / len(lines) > 120:
        return True
    return bool(GENERATED.search(text[:3000]))


OBJECTIVE_C = re.compile(r"(?m)^\s*(?:@interface|@protocol|@implementation|@property|#import)\b")


def language_of(name: str, pin: Pin) -> str | None:
    lang = LANGUAGE_OF_EXTENSION.get(os.path.splitext(name)[1].lower())
    return pin.headers if name.endswith(".h") else lang


def candidate_files(root: Path, pin: Pin):
    """(relative path, language, text) of each source file worth reading, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for f in sorted(filenames):
            path, lang = Path(dirpath) / f, language_of(f, pin)
            if lang is None or lang == "python" or path.is_symlink() or path.stat().st_size > MAX_FILE_CHARS:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if lang in ("c", "cpp") and OBJECTIVE_C.search(text):
                continue  # iOS headers in npm packages: Objective-C, not a language the server completes
            if text.strip() and not is_generated(f, text):
                yield str(path.relative_to(root)), lang, text


# -- downloads ---------------------------------------------------------------------------------------

def download(pin: Pin, dest: Path) -> tuple[Path, str]:
    """Unpack the package under dest/root once; returns the root and the version unpacked."""
    root, done = dest / "root", dest / ".complete"
    if done.is_file() and (not pin.version or done.read_text() == pin.version):
        return root, done.read_text()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    if pin.registry == "npm":
        version = _npm_unpack(f"{pin.name}@{pin.version}" if pin.version else pin.name, dest, root)
    elif pin.registry == "pypi":
        version = _sdist_unpack(f"{pin.name}=={pin.version}" if pin.version else pin.name, dest, root)
    else:
        _deb_unpack(f"{pin.name}={pin.version}", dest, root)
        version = pin.version
    done.write_text(version)
    return root, version


def _npm_unpack(spec: str, dest: Path, root: Path) -> str:
    out = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(dest)], check=True,
                         capture_output=True, text=True).stdout
    packed = json.loads(out)[0]
    tgz = dest / packed["filename"].replace("@", "").replace("/", "-")
    with tarfile.open(tgz) as tar:
        tar.extractall(root, filter="data")
    tgz.unlink()
    return packed["version"]


def _sdist_unpack(spec: str, dest: Path, root: Path) -> str:
    """The source distribution only (no wheel, no dependencies, nothing built)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    "--no-build-isolation", "-d", str(dest), spec], check=True, capture_output=True)
    (archive,) = [p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip"))]
    shutil.unpack_archive(archive, root, filter="data")
    archive.unlink()
    (pkg_info,) = root.glob("*/PKG-INFO")
    return Parser().parsestr(pkg_info.read_text(errors="replace"))["Version"]


def _deb_unpack(spec: str, dest: Path, root: Path) -> None:
    subprocess.run(["apt-get", "download", "-q", spec], cwd=dest, check=True, capture_output=True)
    (debfile,) = dest.glob("*.deb")
    subprocess.run(["dpkg-deb", "-x", str(debfile), str(root)], check=True)
    debfile.unlink()


def package_license(pin: Pin, root: Path, dest: Path) -> str:
    if pin.registry == "npm":
        return npm_license(json.loads((root / "package" / "package.json").read_text()))
    if pin.registry == "pypi":
        return pypi_license(next(root.glob("*/PKG-INFO")).read_text(errors="replace"))
    doc = root / "usr" / "share" / "doc" / pin.name
    if doc.is_symlink():  # the -dev package shares its library package's documentation folder
        other = os.readlink(doc).rstrip("/").split("/")[-1]
        return debian_license(_copyright_of(other, dest / "doc"))
    copyright_file = doc / "copyright"
    return debian_license(copyright_file.read_text(errors="replace")) if copyright_file.is_file() else "unknown"


def _copyright_of(package: str, dest: Path) -> str:
    """debian/copyright of another package (downloaded only to read it)."""
    if not (dest / "copyright").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        _deb_unpack(package, dest, dest / "root")
        found = dest / "root" / "usr" / "share" / "doc" / package / "copyright"
        (dest / "copyright").write_text(found.read_text(errors="replace") if found.is_file() else "")
        shutil.rmtree(dest / "root")
    return (dest / "copyright").read_text()


# -- the corpus ---------------------------------------------------------------------------------------

def fetch_corpus(cache: Path, pins: list[Pin] = PINNED) -> dict:
    """Download what is missing, select and deduplicate files, write CACHE/manifest.json, print sizes."""
    packages, skipped = [], []
    dedup = {lang: Deduplicator() for lang in LANGUAGES}
    for pin in pins:
        dest = cache / "packages" / re.sub(r"[^\w.+-]", "_", pin.name)
        try:
            root, version = download(pin, dest)
            lic = package_license(pin, root, dest)
        except (subprocess.CalledProcessError, OSError, ValueError, tarfile.TarError) as exc:
            skipped.append({"name": pin.name, "reason": f"download failed: {_why(exc)}"})
            continue
        if not license_allowed(lic):
            skipped.append({"name": pin.name, "reason": f"licence not on the allow-list: {lic}"})
            continue
        entry = select_files(pin, version, root, lic, dedup)
        entry["root"] = str(root.relative_to(cache))
        if entry["languages"]:
            packages.append(entry)
        else:
            skipped.append({"name": pin.name, "reason": "no source files after filtering"})
    manifest = {"packages": packages, "skipped": skipped,
                "duplicates_dropped": {lang: {"exact": d.dropped_exact, "near": d.dropped_near}
                                       for lang, d in dedup.items() if d.dropped_exact or d.dropped_near}}
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(summary(manifest), file=sys.stderr)
    return manifest


def select_files(pin: Pin, version: str, root: Path, lic: str, dedup: dict[str, Deduplicator]) -> dict:
    languages: dict[str, dict] = {}
    for rel, lang, text in candidate_files(root, pin):
        if dedup[lang].keep(text):
            entry = languages.setdefault(lang, {"files": [], "chars": 0, "heldout_files": 0})
            entry["files"].append(rel)
            entry["chars"] += len(text)
            entry["heldout_files"] += is_heldout(str(root / rel), str(root))
    return {"name": pin.name, "version": version, "registry": pin.registry, "license": lic,
            "languages": languages}


def _why(exc: Exception) -> str:
    stderr = getattr(exc, "stderr", None)
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or str(exc))
    return text.strip().splitlines()[-1][:160] if text.strip() else type(exc).__name__


def summary(manifest: dict) -> str:
    """Per-language packages, files, characters and held-out files; then the skipped packages."""
    rows: dict[str, list[int]] = {}
    for pkg in manifest["packages"]:
        for lang, e in pkg["languages"].items():
            row = rows.setdefault(lang, [0, 0, 0, 0])
            for i, v in enumerate((1, len(e["files"]), e["chars"], e["heldout_files"])):
                row[i] += v
    lines = [f"{'language':<12}{'packages':>9}{'files':>9}{'chars':>10}{'held out':>10}"]
    for lang in [x for x in LANGUAGES if x in rows]:
        p, f, c, h = rows[lang]
        lines.append(f"{lang:<12}{p:>9}{f:>9}{c / 1e6:>9.1f}M{h:>10}")
    lines += [f"skipped {s['name']}: {s['reason']}" for s in manifest["skipped"]]
    return "\n".join(lines)
