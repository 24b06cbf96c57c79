#!/usr/bin/env bash
# Fetches the public pydicom test corpus (pydicom + pydicom-data wheels, pinned by version and
# SHA-256) into $1 (default: .cache/corpus) and unpacks the DICOM files under $1/files.
# Idempotent: does nothing when the files are already there.
set -euo pipefail
dest=${1:-.cache/corpus}
mkdir -p "$dest"
if [ -f "$dest/files/.complete" ]; then exit 0; fi
python3 -m pip download --quiet --no-deps -d "$dest/wheels" pydicom==3.0.2 pydicom-data==1.0.0
( cd "$dest/wheels" && sha256sum -c - <<'SUMS'
abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b  pydicom-3.0.2-py3-none-any.whl
622ac97265f1d91f76b5120b5bd6eb0f57737c392ef863b72c71779c91e33637  pydicom_data-1.0.0-py3-none-any.whl
SUMS
)
rm -rf "$dest/files" && mkdir -p "$dest/files"
python3 - "$dest" <<'PY'
import sys, zipfile, pathlib
dest = pathlib.Path(sys.argv[1])
for whl, prefix in [("pydicom-3.0.2-py3-none-any.whl", "pydicom/data/test_files/"),
                    ("pydicom_data-1.0.0-py3-none-any.whl", "data_store/data/")]:
    with zipfile.ZipFile(dest / "wheels" / whl) as z:
        for name in z.namelist():
            if name.startswith(prefix) and not name.endswith("/"):
                out = dest / "files" / name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(z.read(name))
PY
touch "$dest/files/.complete"
