#!/usr/bin/env python3
"""pydicom reads what nephrod's DICOM writer wrote: every file, with every decoder plugin pydicom
has for its transfer syntax, gives the expected HU exactly.

Usage:
  check_written_dicom.py DICOM_DIR EXPECTED_HU.npy   one series
  check_written_dicom.py ROOT                        every ROOT/<variant>/{dicom/,expected_hu.npy}
                                                     (as `NEPHROD_WRITER_OUT=ROOT cargo test
                                                     --test dicom_writer_variants` leaves them)

EXPECTED_HU.npy is float32 of shape (k, j, i): slice k along the slice normal (row × column
direction), row j, column i. Frames (of single- or multi-frame files) are placed by the projection
of ImagePositionPatient on the normal; HU = stored × RescaleSlope + RescaleIntercept, taken from
the per-frame, then shared functional groups (Enhanced CT), else the top level. Exit status 1 on
any mismatch or unreadable file; one line per series, one closing line.
"""

import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import get_decoder, pixel_array


def _group_attr(ds, frame, seq_kw, kw):
    """Attribute `kw` from functional group `seq_kw`: per-frame item, shared item, top level."""
    for fg_kw in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        fgs = ds.get(fg_kw)
        if not fgs:
            continue
        item = fgs[frame] if fg_kw.startswith("PerFrame") else fgs[0]
        seq = item.get(seq_kw)
        if seq and kw in seq[0]:
            return seq[0][kw].value
    return ds.get(kw)


def _frames(path, plugin):
    ds = pydicom.dcmread(path)
    arr = pixel_array(path, decoding_plugin=plugin) if plugin else ds.pixel_array
    n = int(ds.get("NumberOfFrames", 1) or 1)
    arr = np.asarray(arr).reshape(n, int(ds.Rows), int(ds.Columns))
    out = []
    for f in range(n):
        pos = np.array(
            _group_attr(ds, f, "PlanePositionSequence", "ImagePositionPatient"), float
        )
        ori = np.array(
            _group_attr(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient"), float
        )
        slope = float(_group_attr(ds, f, "PixelValueTransformationSequence", "RescaleSlope") or 1)
        icpt = float(
            _group_attr(ds, f, "PixelValueTransformationSequence", "RescaleIntercept") or 0
        )
        normal = np.cross(ori[:3], ori[3:])
        hu = (arr[f].astype(np.float64) * slope + icpt).astype(np.float32)
        out.append((float(pos @ normal), hu))
    return ds.file_meta.TransferSyntaxUID, out


def check_series(dicom_dir, expected_npy):
    """Returns (ok, message)."""
    want = np.load(expected_npy)
    files = sorted(p for p in Path(dicom_dir).rglob("*") if p.is_file())
    if not files:
        return False, f"{dicom_dir}: no files"
    ts = str(pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID)
    plugins = list(get_decoder(ts).available_plugins) or [""]
    for plugin in plugins:
        frames = []
        for p in files:
            try:
                _, fr = _frames(p, plugin)
            except Exception as e:  # noqa: BLE001 - report any reader failure as a mismatch
                return False, f"{p}: pydicom ({plugin or 'native'}) failed: {e!r}"
            frames.extend(fr)
        frames.sort(key=lambda t: t[0])
        got = np.stack([hu for _, hu in frames])
        if got.shape != want.shape:
            return False, f"{dicom_dir}: shape {got.shape} vs expected {want.shape}"
        if not np.array_equal(got, want):
            bad = np.argwhere(got != want)
            k, j, i = bad[0]
            return False, (
                f"{dicom_dir} ({plugin or 'native'}): {len(bad)} voxels differ, first at "
                f"(i={i}, j={j}, k={k}): {got[k, j, i]} vs {want[k, j, i]}"
            )
    return True, (
        f"{dicom_dir}: {len(files)} file(s), {want.shape[0]} frames, TS {ts}, "
        f"decoders {', '.join(p or 'native' for p in plugins)}: exact"
    )


def main(argv):
    if len(argv) == 3:
        series = [(Path(argv[1]), Path(argv[2]))]
    elif len(argv) == 2:
        root = Path(argv[1])
        series = [
            (d / "dicom", d / "expected_hu.npy")
            for d in sorted(root.iterdir())
            if (d / "expected_hu.npy").is_file()
        ]
        if not series:
            print(f"{root}: no <variant>/expected_hu.npy found", file=sys.stderr)
            return 1
    else:
        print(__doc__, file=sys.stderr)
        return 2
    failed = 0
    for dicom_dir, npy in series:
        ok, msg = check_series(dicom_dir, npy)
        print(("ok   " if ok else "FAIL ") + msg)
        failed += not ok
    print(f"pydicom {pydicom.__version__}: {len(series) - failed} series exact, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
