"""Fetch the Swagger UI and ReDoc files that /docs and /redoc serve (app/static/docs), from the npm registry with
`npm pack`, at the versions pinned in app/static/docs/ASSETS.json, and check them against its checksums.

    python scripts/docs_assets.py            # fetch the pinned versions; fail if a tarball's integrity differs
    python scripts/docs_assets.py --update   # record what the pinned versions hold now (after changing a version)

To move to a new release: change "version" in ASSETS.json, run with --update, review the diff (ASSETS.json gets
the new tarball integrity and file checksums), run the docs tests, commit.
"""

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parents[1] / "app" / "static" / "docs"
MANIFEST = ASSETS_DIR / "ASSETS.json"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pack(name: str, version: str, workdir: Path) -> Path:
    """The package's tarball from the registry, by npm's own client."""
    out = subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=workdir,
    ).stdout
    return workdir / json.loads(out)[0]["filename"]


def _integrity(tarball: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="record new integrities and checksums")
    update = parser.parse_args().update
    manifest = json.loads(MANIFEST.read_text())
    with tempfile.TemporaryDirectory() as scratch:
        for package in manifest["packages"]:
            tarball = _pack(package["name"], package["version"], Path(scratch))
            integrity = _integrity(tarball)
            if not update and integrity != package["integrity"]:
                print(
                    f"{package['name']}@{package['version']}: tarball integrity {integrity} is not the recorded "
                    f"{package['integrity']}",
                    file=sys.stderr,
                )
                return 1
            package["integrity"] = integrity
            with tarfile.open(tarball) as archive:
                for file in package["files"]:
                    member = archive.extractfile(f"package/{file['from']}")
                    target = ASSETS_DIR / file["name"]
                    target.write_bytes(member.read())
                    if not update and sha256_of(target) != file["sha256"]:
                        print(f"{file['name']}: checksum differs from ASSETS.json", file=sys.stderr)
                        return 1
                    file["sha256"] = sha256_of(target)
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print("docs assets:", ", ".join(f"{p['name']}@{p['version']}" for p in manifest["packages"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
