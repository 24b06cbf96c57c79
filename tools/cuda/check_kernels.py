#!/usr/bin/env python3
"""Compile every kernels/*.cu for the GPUs nephrod targets, without a GPU, and report resources.

For each kernel file and each architecture (default sm_87 — Jetson Orin — and sm_90):
  1. NVRTC (libnvrtc from the PyPI wheel nvidia-cuda-nvrtc-cu12, called through ctypes) compiles
     the source to PTX for compute_XY, with the options in kernels/nvrtc_options.txt — the same
     options src/engine/cuda uses at start-up;
  2. the PTX's `.version` must not exceed --max-ptx-isa (default 8.5, what a JetPack 6.1/6.2
     driver, CUDA 12.6, can load), so the PTX stays a loadable fallback;
  3. ptxas (from nvidia-cuda-nvcc-cu12) assembles it for sm_XY with -v: registers, spill stores
     and loads, stack frame, shared and constant memory per kernel;
  4. NVRTC compiles the source once more straight to a CUBIN for sm_XY (nvrtcGetCUBIN), the path
     the appliance takes at start-up.
Exit status: 0 when everything compiled and no kernel spills; 1 otherwise (2: bad setup).
`--json PATH` writes the per-kernel report (read by tests/kernels_compile.rs); `--out DIR` keeps
the .ptx and .cubin files (release builds can ship the sm_87 cubins from there).

How nephrod ships its kernels (decided here, implemented in src/engine/cuda):
  * The .cu sources are embedded in the binary. At start-up the CUDA backend compiles them with
    the NVRTC found on the device (JetPack's own libnvrtc.so.12, the same CUDA release as its
    driver) straight to SASS for the device's exact architecture (`--gpu-architecture=sm_87`,
    nvrtcGetCUBIN) and caches the CUBIN on disk under a SHA-256 of source + arch + options +
    NVRTC version. Loading a CUBIN involves no PTX JIT, so the driver's PTX ISA limit (8.2 on
    JetPack 6.0, 8.5 on 6.1/6.2) never applies — NVRTC 12.9 would emit PTX 8.8, which those
    drivers reject, but its SASS for sm_87 loads under CUDA 12.x minor-version compatibility.
  * CI pins this check to CUDA 12.6 (tools/cuda/requirements-cuda.txt), JetPack 6.1/6.2's
    release, so the registers and spills reported here are those of the compiler the appliance
    runs, and the PTX ISA (8.5) stays loadable should the PTX path ever be needed.
  * A device without a usable NVRTC falls back to the CPU backend with a warning (never
    silently). Shipping prebuilt sm_87 cubins (`--out`) is the planned alternative for an
    image without NVRTC; not wired into the runtime yet.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)\s*\(')


def wheel_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{module} not found: pip install -r tools/cuda/requirements-cuda.txt")
    return Path(list(spec.submodule_search_locations)[0])


class Nvrtc:
    """The few NVRTC entry points the check needs, via ctypes."""

    def __init__(self, lib: Path):
        self.lib = ctypes.CDLL(str(lib))
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = f"{major.value}.{minor.value}"

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            raise RuntimeError(f"{what}: {self.lib.nvrtcGetErrorString(rc).decode()}")

    def compile(self, source: str, name: str, options: list[str], cubin: bool) -> tuple[bytes | None, str]:
        """Returns (PTX or CUBIN bytes, or None on a compile error; the compile log)."""
        prog = ctypes.c_void_p()
        self._check(
            self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
            "nvrtcCreateProgram",
        )
        try:
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            rc = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self._check(self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
            buf = ctypes.create_string_buffer(size.value)
            self._check(self.lib.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
            log = buf.value.decode(errors="replace").strip()
            if rc != 0:
                return None, log
            get_size, get = (
                (self.lib.nvrtcGetCUBINSize, self.lib.nvrtcGetCUBIN)
                if cubin
                else (self.lib.nvrtcGetPTXSize, self.lib.nvrtcGetPTX)
            )
            self._check(get_size(prog, ctypes.byref(size)), "get size")
            out = ctypes.create_string_buffer(size.value)
            self._check(get(prog, out), "get output")
            return out.raw[: size.value], log
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def parse_ptxas(log: str) -> dict[str, dict]:
    """Per-kernel resources from `ptxas -v` output."""
    kernels: dict[str, dict] = {}
    current = None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            current = kernels.setdefault(m.group(1), {})
            continue
        m = re.search(r"Function properties for (\w+)", line)
        if m:
            current = kernels.setdefault(m.group(1), {})
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            current.update(stack_bytes=int(m.group(1)), spill_store_bytes=int(m.group(2)),
                           spill_load_bytes=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
            sm = re.search(r"(\d+) bytes smem", line)
            current["smem_bytes"] = int(sm.group(1)) if sm else 0
            cm = re.search(r"(\d+) bytes cmem\[0\]", line)
            current["cmem0_bytes"] = int(cm.group(1)) if cm else 0
    return kernels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", type=Path, default=REPO / "kernels")
    ap.add_argument("--arch", action="append", help="sm_XY (repeatable; default sm_87 and sm_90)")
    ap.add_argument("--max-ptx-isa", default="8.5", help="highest PTX .version allowed (default 8.5)")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--out", type=Path, help="keep .ptx/.cubin files here")
    ap.add_argument("--maxrregcount", type=int, help="ptxas -maxrregcount (kernels without __launch_bounds__; to see the spill check fire)")
    args = ap.parse_args()
    archs = args.arch or ["sm_87", "sm_90"]

    nvrtc_lib = wheel_dir("nvidia.cuda_nvrtc") / "lib" / "libnvrtc.so.12"
    ptxas = wheel_dir("nvidia.cuda_nvcc") / "bin" / "ptxas"
    if not nvrtc_lib.exists() or not ptxas.exists():
        print(f"missing {nvrtc_lib} or {ptxas}", file=sys.stderr)
        return 2
    nvrtc = Nvrtc(nvrtc_lib)
    ptxas_version = subprocess.run([str(ptxas), "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    options = [
        line.strip()
        for line in (args.kernels / "nvrtc_options.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    sources = sorted(args.kernels.glob("*.cu"))
    if not sources:
        print(f"no .cu files in {args.kernels}", file=sys.stderr)
        return 2
    max_isa = tuple(int(v) for v in args.max_ptx_isa.split("."))

    out_dir = args.out or Path(tempfile.mkdtemp(prefix="nephrod-cuda-check-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"nvrtc": nvrtc.version, "ptxas": ptxas_version, "options": options, "archs": archs,
              "max_ptx_isa": args.max_ptx_isa, "files": []}
    failures: list[str] = []
    print(f"NVRTC {nvrtc.version}; {ptxas_version}; options {options}")
    print(f"{'kernel':<28} {'arch':<6} {'regs':>5} {'spill st/ld':>12} {'stack':>6} {'smem':>6}")
    for src in sources:
        text = src.read_text()
        declared = KERNEL_RE.findall(text)
        entry = {"file": src.name, "declared": declared, "archs": {}}
        report["files"].append(entry)
        for arch in archs:
            num = arch.removeprefix("sm_")
            result: dict = {"ok": False}
            entry["archs"][arch] = result
            ptx, log = nvrtc.compile(text, src.name, options + [f"--gpu-architecture=compute_{num}"], cubin=False)
            if ptx is None:
                failures.append(f"{src.name} [{arch}]: NVRTC error:\n{log}")
                continue
            ptx_text = ptx.rstrip(b"\0").decode()
            m = re.search(r"^\.version (\d+)\.(\d+)", ptx_text, re.M)
            isa = (int(m.group(1)), int(m.group(2))) if m else (99, 99)
            result["ptx_isa"] = f"{isa[0]}.{isa[1]}"
            if isa > max_isa:
                failures.append(f"{src.name} [{arch}]: PTX ISA {isa[0]}.{isa[1]} > {args.max_ptx_isa}")
            ptx_path = out_dir / f"{src.stem}.{arch}.ptx"
            ptx_path.write_text(ptx_text)
            cubin_path = out_dir / f"{src.stem}.{arch}.cubin"
            cmd = [str(ptxas), f"-arch={arch}", "-v", str(ptx_path), "-o", str(cubin_path)]
            if args.maxrregcount:
                cmd.append(f"-maxrregcount={args.maxrregcount}")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                failures.append(f"{src.name} [{arch}]: ptxas error:\n{proc.stderr}{proc.stdout}")
                continue
            kernels = parse_ptxas(proc.stderr + proc.stdout)
            result["kernels"] = kernels
            missing = sorted(set(declared) - set(kernels))
            if missing:
                failures.append(f"{src.name} [{arch}]: ptxas reported nothing for {missing}")
            for name, info in sorted(kernels.items()):
                spills = info.get("spill_store_bytes", 0) + info.get("spill_load_bytes", 0)
                if "registers" not in info:
                    failures.append(f"{src.name} [{arch}] {name}: no register count in ptxas output")
                if spills:
                    failures.append(f"{src.name} [{arch}] {name}: {spills} spill bytes")
                print(f"{name:<28} {arch:<6} {info.get('registers', -1):>5} "
                      f"{info.get('spill_store_bytes', -1):>5}/{info.get('spill_load_bytes', -1):<6} "
                      f"{info.get('stack_bytes', -1):>6} {info.get('smem_bytes', -1):>6}")
            cubin, log = nvrtc.compile(text, src.name, options + [f"--gpu-architecture={arch}"], cubin=True)
            if not cubin:
                failures.append(f"{src.name} [{arch}]: NVRTC CUBIN error:\n{log}")
                continue
            (out_dir / f"{src.stem}.{arch}.nvrtc.cubin").write_bytes(cubin)
            result["nvrtc_cubin_bytes"] = len(cubin)
            result["ok"] = not missing
    report["failures"] = failures
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    print(f"{len(sources)} files x {len(archs)} archs: {'OK' if not failures else f'{len(failures)} failure(s)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
