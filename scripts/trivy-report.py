#!/usr/bin/env python3
"""Compute a Trivy-format JSON report for a Debian image from Debian's own data.

No Trivy here: an installed package counts as "vulnerable" when the
bookworm-security archive (or any Packages index given with --index) has a
newer version of it. The report keeps Trivy's field names and structure
(SchemaVersion 2, Metadata.OS, Results[] of Class "os-pkgs" with
Vulnerabilities[] of VulnerabilityID/PkgID/PkgName/InstalledVersion/
FixedVersion/Status/Severity), but the vulnerability IDs are made up and
labelled as such: COPA-TEST-<package>.

Where the installed packages come from (one of):
  --image IMAGE        `docker run --rm IMAGE` (or --engine podman) reads
                       /var/lib/dpkg/status, /etc/debian_version, /etc/os-release
  --rootfs DIR         an unpacked root filesystem
  --rootfs-tar TAR     a root filesystem tarball (e.g. $COPA_TEST_ROOTFS_TAR)
  --status FILE        a dpkg status file alone (then --os-version is needed)

Examples:
  scripts/trivy-report.py --image "$COPA_TEST_IMAGE_VULN" -o /tmp/report.json
  scripts/trivy-report.py --rootfs-tar "$COPA_TEST_ROOTFS_TAR" \\
      --artifact-name "$COPA_TEST_IMAGE_VULN" --only zlib1g,liblzma5 -o -

Python 3 standard library only. Exit status: 0 on success (also when nothing
is vulnerable, unless --require-some), 2 on bad input, 3 when --require-some
finds nothing, 4 when the index cannot be fetched.
"""

import argparse
import datetime
import gzip
import json
import lzma
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request

SECURITY_MIRROR = os.environ.get(
    "COPA_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
CODENAMES = {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie"}
MARK = "----copa-trivy-report----"


class Fail(Exception):
    def __init__(self, msg, code=2):
        super().__init__(msg)
        self.code = code


# ----------------------------------------------------- Debian version order --
def _order(c):
    """dpkg's order(): '~' sorts before everything, even the end of a part."""
    if c == "":
        return 0
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a, b):
    """dpkg's verrevcmp() on one part (upstream version or revision)."""
    i = j = 0
    la, lb = len(a), len(b)

    def at(s, k):
        return s[k] if k < len(s) else ""

    while i < la or j < lb:
        first_diff = 0
        while (i < la and not a[i].isdigit()) or (j < lb and not b[j].isdigit()):
            ac, bc = _order(at(a, i)), _order(at(b, j))
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < la and a[i] == "0":
            i += 1
        while j < lb and b[j] == "0":
            j += 1
        while i < la and a[i].isdigit() and j < lb and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < la and a[i].isdigit():
            return 1
        if j < lb and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(v):
    epoch, _, rest = v.partition(":") if ":" in v else ("0", "", v)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or "0"), upstream, revision


def version_cmp(a, b):
    """<0, 0, >0 as Debian version a sorts before, equal to, after b."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


def self_test():
    cases = [
        ("1.0", "1.0", 0), ("1.0-1", "1.0-2", -1), ("1:1.0", "2.0", 1),
        ("1.0~rc1", "1.0", -1), ("1.0", "1.0+b1", -1), ("2.36-9+deb12u7", "2.36-9+deb12u14", -1),
        ("10.42-1", "10.42-1+deb12u2", -1), ("1.5.4+dfsg2-5", "1.5.4+dfsg2-5+deb12u1", -1),
        ("252.39-1~deb12u2", "252.38-1~deb12u1", 1), ("2026b-0+deb12u1", "2026f-0+deb12u1", -1),
        ("1.0-1", "1.0-1~bpo1", 1), ("0:1.0", "1.0", 0), ("1.0a", "1.0", 1), ("1.0", "1.0.0", -1),
        ("1.01", "1.1", 0), ("1.0-0", "1.0", 0),
    ]
    bad = []
    for a, b, want in cases:
        got = version_cmp(a, b)
        got = (got > 0) - (got < 0)
        if got != want:
            bad.append(f"{a} vs {b}: got {got}, want {want}")
    if bad:
        raise Fail("version self-test failed: " + "; ".join(bad))
    print(f"self-test: {len(cases)} version comparisons ok", file=sys.stderr)


# --------------------------------------------------------- control files ----
def parse_paragraphs(text):
    """Deb822 paragraphs (dpkg status, Packages) as dicts of the first line
    of each field."""
    out = []
    cur = {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
                cur = {}
            continue
        if line[0] in " \t":
            continue  # continuation line
        key, sep, value = line.partition(":")
        if sep:
            cur[key] = value.strip()
    if cur:
        out.append(cur)
    return out


def parse_os_release(text):
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


# ------------------------------------------------------- installed packages --
# Podman's default rlimits and crun are refused on these machines (see
# DESIGN.md); the flags that work there.
PODMAN_RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def read_from_image(engine, image, extra):
    script = (
        f"cat /etc/debian_version; echo {MARK}; cat /etc/os-release; "
        f"echo {MARK}; cat /var/lib/dpkg/status"
    )
    flags = PODMAN_RUN_FLAGS if os.path.basename(engine) == "podman" and not extra else extra
    cmd = [engine, "run", "--rm", "--pull", "never", "--network", "none", *flags, "--entrypoint", "/bin/sh", image, "-c", script]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise Fail(f"{engine} not found")
    if res.returncode != 0:
        raise Fail(f"{' '.join(cmd[:2])} {image} failed: {res.stderr.strip()[-500:]}")
    parts = res.stdout.split(MARK + "\n")
    if len(parts) != 3:
        raise Fail(f"unexpected output reading {image}")
    return parts[0].strip(), parse_os_release(parts[1]), parts[2]


def image_metadata(engine, image):
    cmd = [engine, "image", "inspect", image]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {}
    try:
        info = json.loads(res.stdout)[0]
    except (ValueError, IndexError):
        return {}
    meta = {"ImageID": info.get("Id", "")}
    diff_ids = (info.get("RootFS") or {}).get("Layers") or []
    if diff_ids:
        meta["DiffIDs"] = diff_ids
    if info.get("RepoTags"):
        meta["RepoTags"] = info["RepoTags"]
    if info.get("RepoDigests"):
        meta["RepoDigests"] = info["RepoDigests"]
    meta["ImageConfig"] = {
        "architecture": info.get("Architecture") or "amd64",
        "os": info.get("Os") or "linux",
    }
    return meta


def read_from_rootfs(root):
    def rd(rel):
        try:
            with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    osr = rd("etc/os-release") or rd("usr/lib/os-release")
    return rd("etc/debian_version").strip(), parse_os_release(osr), rd("var/lib/dpkg/status")


def read_from_tar(path):
    wanted = {
        "etc/debian_version": "", "etc/os-release": "", "usr/lib/os-release": "",
        "var/lib/dpkg/status": "",
    }
    links = {}
    with tarfile.open(path) as tf:
        for m in tf:
            name = m.name[2:] if m.name.startswith("./") else m.name.lstrip("/")
            if name not in wanted:
                continue
            if m.isfile():
                wanted[name] = tf.extractfile(m).read().decode("utf-8", "replace")
            elif m.issym():
                links[name] = os.path.normpath(os.path.join(os.path.dirname(name), m.linkname)).lstrip("/")
    for name, target in links.items():
        if not wanted[name]:
            wanted[name] = wanted.get(target, "")
    osr = wanted["etc/os-release"] or wanted["usr/lib/os-release"]
    return wanted["etc/debian_version"].strip(), parse_os_release(osr), wanted["var/lib/dpkg/status"]


def installed_packages(status_text, arch):
    pkgs = {}
    for p in parse_paragraphs(status_text):
        if "Package" not in p or "Version" not in p:
            continue
        if p.get("Status", "").split()[-1:] != ["installed"]:
            continue
        if p.get("Architecture") not in (arch, "all"):
            continue
        pkgs[p["Package"]] = p["Version"]
    return pkgs


# -------------------------------------------------------------- the index ----
def load_index(src):
    """A Packages index from a URL or a file; .xz and .gz are decompressed."""
    if "://" in src:
        try:
            with urllib.request.urlopen(src, timeout=60) as r:
                data = r.read()
        except (urllib.error.URLError, OSError) as e:
            raise Fail(f"cannot fetch {src}: {e}", 4)
    else:
        try:
            with open(src, "rb") as f:
                data = f.read()
        except OSError as e:
            raise Fail(f"cannot read {src}: {e}", 4)
    if src.endswith(".xz"):
        data = lzma.decompress(data)
    elif src.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", "replace")


def newest_versions(index_texts, arch):
    best = {}
    for text in index_texts:
        for p in parse_paragraphs(text):
            name, ver = p.get("Package"), p.get("Version")
            if not name or not ver or p.get("Architecture") not in (arch, "all"):
                continue
            if name not in best or version_cmp(ver, best[name]) > 0:
                best[name] = ver
    return best


# ------------------------------------------------------------------- main ----
def main(argv):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--image", help="image to read with `ENGINE run --rm`")
    src.add_argument("--rootfs", help="unpacked root filesystem")
    src.add_argument("--rootfs-tar", help="root filesystem tarball")
    src.add_argument("--status", help="a dpkg status file")
    ap.add_argument("--engine", default="docker", help="docker (default) or podman, for --image")
    ap.add_argument(
        "--run-arg", action="append", default=[],
        help="extra flag for `ENGINE run` (repeatable; for podman it replaces the default "
        + " ".join(PODMAN_RUN_FLAGS) + ")",
    )
    ap.add_argument("--artifact-name", help="ArtifactName (default: the image, else 'rootfs')")
    ap.add_argument("--os-version", help="Metadata.OS.Name (default: /etc/debian_version)")
    ap.add_argument("--arch", default="amd64", help="Debian architecture (default amd64)")
    ap.add_argument("--suite", help="security suite (default: <codename>-security)")
    ap.add_argument(
        "--index", action="append", default=[],
        help="Packages index URL or file (repeatable); default: the suite's "
        "main/binary-ARCH/Packages.xz under $COPA_DEBIAN_SECURITY_MIRROR "
        f"({SECURITY_MIRROR})",
    )
    ap.add_argument("--only", help="comma-separated package names to keep")
    ap.add_argument("--exclude", help="comma-separated package names to drop")
    ap.add_argument("--severity", default="UNKNOWN", help="Severity of every entry (default UNKNOWN)")
    ap.add_argument("--require-some", action="store_true", help="exit 3 when nothing is vulnerable")
    ap.add_argument("-o", "--output", help="where to write the report ('-' for stdout)")
    ap.add_argument("--self-test", action="store_true", help="check the version comparison and exit")
    a = ap.parse_args(argv)

    if a.self_test:
        self_test()
        return 0
    if not a.output:
        raise Fail("-o/--output is required")

    meta = {}
    if a.image:
        version, osr, status = read_from_image(a.engine, a.image, a.run_arg)
        meta = image_metadata(a.engine, a.image)
    elif a.rootfs:
        version, osr, status = read_from_rootfs(a.rootfs)
    elif a.rootfs_tar:
        version, osr, status = read_from_tar(a.rootfs_tar)
    elif a.status:
        with open(a.status, encoding="utf-8", errors="replace") as f:
            version, osr, status = "", {}, f.read()
    else:
        raise Fail("one of --image, --rootfs, --rootfs-tar, --status is required")
    if not status.strip():
        raise Fail("no dpkg status found (not a Debian-based image?)")
    os_version = a.os_version or version
    if not os_version:
        raise Fail("cannot tell the Debian version: give --os-version")
    family = osr.get("ID", "debian")
    if family != "debian":
        raise Fail(f"only Debian is supported here, not {family!r}")

    suite = a.suite
    if not suite:
        codename = osr.get("VERSION_CODENAME") or CODENAMES.get(os_version.split(".")[0])
        if not codename:
            raise Fail(f"cannot tell the codename of Debian {os_version}: give --suite")
        suite = f"{codename}-security"
    indexes = a.index or [f"{SECURITY_MIRROR}/dists/{suite}/main/binary-{a.arch}/Packages.xz"]
    where = suite if not a.index else " + ".join(a.index)

    installed = installed_packages(status, a.arch)
    newest = newest_versions([load_index(i) for i in indexes], a.arch)

    only = set(filter(None, (a.only or "").split(",")))
    exclude = set(filter(None, (a.exclude or "").split(",")))
    vulns = []
    for name in sorted(installed):
        if (only and name not in only) or name in exclude:
            continue
        have, fixed = installed[name], newest.get(name)
        if fixed is None or version_cmp(fixed, have) <= 0:
            continue
        vulns.append({
            "VulnerabilityID": f"COPA-TEST-{name}",
            "PkgID": f"{name}@{have}",
            "PkgName": name,
            "InstalledVersion": have,
            "FixedVersion": fixed,
            "Status": "fixed",
            "Severity": a.severity,
            "Title": f"made-up test entry: {where} has {name} {fixed} (not a real CVE; "
            "computed by copa's scripts/trivy-report.py)",
        })
    if only - set(installed):
        print(f"trivy-report: not installed: {', '.join(sorted(only - set(installed)))}", file=sys.stderr)

    artifact = a.artifact_name or a.image or "rootfs"
    metadata = {"OS": {"Family": "debian", "Name": os_version}}
    metadata.update(meta)
    metadata.setdefault("ImageConfig", {"architecture": a.arch, "os": "linux"})
    result = {
        "Target": f"{artifact} (debian {os_version})",
        "Class": "os-pkgs",
        "Type": "debian",
    }
    if vulns:
        result["Vulnerabilities"] = vulns
    report = {
        "SchemaVersion": 2,
        "CreatedAt": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ArtifactName": artifact,
        "ArtifactType": "container_image",
        "Metadata": metadata,
        "Results": [result],
    }
    text = json.dumps(report, indent=2) + "\n"
    if a.output == "-":
        sys.stdout.write(text)
    elif os.path.exists(a.output) and not os.path.isfile(a.output):
        with open(a.output, "w") as f:  # a device or a pipe: write in place
            f.write(text)
    else:  # a regular file: replace it atomically
        d = os.path.dirname(os.path.abspath(a.output))
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".trivy-report.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, a.output)
    summary = ", ".join(f"{v['PkgName']} {v['InstalledVersion']} -> {v['FixedVersion']}" for v in vulns)
    print(
        f"trivy-report: {len(vulns)} of {len(installed)} installed packages have a newer "
        f"version in {where}" + (f": {summary}" if summary else ""),
        file=sys.stderr,
    )
    if a.require_some and not vulns:
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Fail as e:
        print(f"trivy-report: error: {e}", file=sys.stderr)
        sys.exit(e.code)
