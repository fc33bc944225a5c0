"""Build ``wmpclient``, the gSOAP client of the reference WSDL (see ``tests/gsoap/__init__.py``).

``build()`` returns the path of the binary. It works in ``/tmp/wmproxy-gsoap-<hash>`` where the
hash covers the reference WSDL/XSD files, ``wmpclient.cpp``, ``typemap.dat``, this file and the
gSOAP tool versions, so it rebuilds only when one of them changes. The reference files are copied
into that directory only (wsdl2h resolves the WSDL's relative imports there), never into the repo.

Run by hand: ``python -m tests.gsoap.build`` prints the binary path.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE_DIR = Path(os.environ.get("WMPROXY_REFERENCE_WSDL_DIR", HERE.parents[2] / "shared" / "reference" / "wsdl"))
SOURCES = (HERE / "wmpclient.cpp", HERE / "typemap.dat", Path(__file__).resolve())
GENERATED = ("soapC.cpp", "soapWMProxyProxy.cpp", "soapDelegationSoapBindingProxy.cpp",
             "soapDelegation1SoapBindingProxy.cpp")
# what libgsoapssl++ was built with (struct soap's layout depends on it), when pkg-config is absent
DEFAULT_CFLAGS = ["-DWITH_IPV6", "-DWITH_OPENSSL", "-DWITH_GZIP", "-DWITH_DOM"]


class ToolchainMissing(RuntimeError):  # noqa: N818 - imported by tests/integration/test_gsoap_client.py
    """wsdl2h, soapcpp2, a C++ compiler or libgsoapssl++ is not installed."""


class BuildFailed(RuntimeError):  # noqa: N818 - imported by tests/integration/test_gsoap_client.py
    pass


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainMissing(f"{name} not found (Debian: apt-get install gsoap libgsoap-dev libssl-dev g++)")
    return path


def _run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=300)
    if result.returncode != 0:
        raise BuildFailed(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def _flags() -> tuple[list[str], list[str]]:
    pkg = shutil.which("pkg-config")
    if pkg:
        cflags = subprocess.run([pkg, "--cflags", "gsoapssl++"], capture_output=True, text=True, check=False)
        libs = subprocess.run([pkg, "--libs", "gsoapssl++"], capture_output=True, text=True, check=False)
        if cflags.returncode == 0 and libs.returncode == 0:
            return cflags.stdout.split(), [*libs.stdout.split(), "-lssl", "-lcrypto", "-lz"]
    return DEFAULT_CFLAGS, ["-lgsoapssl++", "-lssl", "-lcrypto", "-lz"]


def _import_dir(soapcpp2: str) -> Path:
    bundled = Path(soapcpp2).resolve().parents[1] / "share" / "gsoap" / "import"
    for candidate in (bundled, Path("/usr/share/gsoap/import")):
        if (candidate / "stlvector.h").exists():
            return candidate
    raise ToolchainMissing("gSOAP import directory (share/gsoap/import/stlvector.h) not found")


def _check_library(cxx: str, cflags: list[str], libs: list[str], work: Path) -> None:
    probe = work / "probe.cpp"
    probe.write_text('#include "stdsoap2.h"\nint main() { soap_ssl_init(); return 0; }\n'
                     'SOAP_NMAC struct Namespace namespaces[] = {{NULL, NULL, NULL, NULL}};\n')
    # the library calls back into generated code (soap_putfault...): only ask the linker to find it
    result = subprocess.run([cxx, *cflags, "-o", str(work / "probe"), str(probe), *libs,
                             "-Wl,--unresolved-symbols=ignore-all"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ToolchainMissing(f"cannot link against libgsoapssl++/OpenSSL: {result.stderr.strip()[:500]}")


def inputs_hash(wsdl2h: str, soapcpp2: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(REFERENCE_DIR.iterdir()) + list(SOURCES):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for tool in (wsdl2h, soapcpp2):
        st = Path(tool).stat()
        digest.update(f"{tool}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def build(root: Path | None = None) -> Path:
    """Return the path of an up-to-date ``wmpclient``; build it when needed (about 6-10 s)."""
    wsdl2h, soapcpp2 = _tool("wsdl2h"), _tool("soapcpp2")
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise ToolchainMissing("no C++ compiler (g++) found")
    if not (REFERENCE_DIR / "WMProxy.wsdl").exists():
        raise BuildFailed(f"reference WSDL not found in {REFERENCE_DIR}")
    root = root or Path(tempfile.gettempdir())
    target = root / f"wmproxy-gsoap-{inputs_hash(wsdl2h, soapcpp2)}"
    binary = target / "wmpclient"
    if binary.exists():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "wmproxy-gsoap.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions build once
        if binary.exists():
            return binary
        work = Path(tempfile.mkdtemp(prefix="wmproxy-gsoap-build-", dir=root))
        try:
            _build_in(work, wsdl2h, soapcpp2, cxx)
            if target.exists():
                shutil.rmtree(target)
            work.rename(target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return binary


def _build_in(work: Path, wsdl2h: str, soapcpp2: str, cxx: str) -> None:
    cflags, libs = _flags()
    _check_library(cxx, cflags, libs, work)
    wsdl = work / "wsdl"
    wsdl.mkdir()
    for path in REFERENCE_DIR.iterdir():
        if path.suffix in (".wsdl", ".xsd"):
            shutil.copy(path, wsdl / path.name)
    gen = work / "gen"
    gen.mkdir()
    # wsdl2h: fixed prefixes (ns1 = WMProxy, deleg1/deleg2, jsdl/jsdlposix) from typemap.dat
    _run([wsdl2h, "-t", str(HERE / "typemap.dat"), "-o", str(gen / "wmproxy.h"), str(wsdl / "WMProxy.wsdl")], cwd=wsdl)
    # soapcpp2: C++ proxy classes (-j), client side only (-C), no sample XML (-x), no WSDL/XSD (-w),
    # no soapClientLib (-L)
    _run([soapcpp2, "-j", "-C", "-x", "-w", "-L", "-I", str(_import_dir(soapcpp2)), "wmproxy.h"], cwd=gen)
    shutil.copy(HERE / "wmpclient.cpp", gen / "wmpclient.cpp")
    procs = []
    for source in (*GENERATED, "wmpclient.cpp"):
        procs.append((source, subprocess.Popen(
            [cxx, "-O0", "-c", "-w" if source != "wmpclient.cpp" else "-Wall", *cflags, "-I", str(gen),
             "-o", str(gen / (source + ".o")), str(gen / source)],
            cwd=gen, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    errors = []
    for source, proc in procs:
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            errors.append(f"{source}:\n{out}")
    if errors:
        raise BuildFailed("compilation failed:\n" + "\n".join(errors))
    objects = [str(gen / (s + ".o")) for s in (*GENERATED, "wmpclient.cpp")]
    _run([cxx, "-o", str(work / "wmpclient"), *objects, *libs], cwd=gen)


if __name__ == "__main__":
    start = time.monotonic()
    print(build())
    print(f"{time.monotonic() - start:.1f} s")
