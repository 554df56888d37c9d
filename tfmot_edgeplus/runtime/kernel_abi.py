"""The C ABI of the tflm_ops kernels, read from their headers.

``tflm_ops/include/edgeplus/edgeplus_types.h`` and ``edgeplus_ops.h`` are the only place
the structs and function signatures are written down: this module parses them (comments,
``typedef struct { ... } name;`` blocks, ``enum``s and the ``edgeplus_*`` prototypes;
the headers keep to that plain C99 subset) and builds the ctypes structures and
``argtypes``/``restype`` from what it read, so the binding cannot drift from the C::

    abi = kernel_abi.load_abi()
    abi.struct("edgeplus_dims")(1, 8, 8, 3)
    abi.field_names("edgeplus_conv_params")      # ('stride_h', 'stride_w', ...)

A C type the parser does not know (a new scalar or a function pointer) is an
:class:`AbiError` naming the header line, not a silently wrong binding.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import re
from pathlib import Path

__all__ = [
    "HEADER_DIR",
    "Abi",
    "AbiError",
    "CDecl",
    "load_abi",
    "parse_headers",
    "status_name",
]

HEADER_DIR = Path(__file__).resolve().parents[2] / "tflm_ops" / "include" / "edgeplus"
_HEADERS = ("edgeplus_types.h", "edgeplus_ops.h")

_SCALARS = {
    "int8_t": ctypes.c_int8,
    "uint8_t": ctypes.c_uint8,
    "int16_t": ctypes.c_int16,
    "int32_t": ctypes.c_int32,
    "uint32_t": ctypes.c_uint32,
    "int64_t": ctypes.c_int64,
    "int": ctypes.c_int,
    "void": None,
}


class AbiError(RuntimeError):
    """The headers hold a declaration this parser cannot turn into ctypes."""


@dataclasses.dataclass(frozen=True)
class CDecl:
    """One declared name: ``base`` type (no qualifiers) and pointer ``depth``."""

    name: str
    base: str
    depth: int

    @property
    def ctype(self) -> str:
        return self.base + "*" * self.depth


@dataclasses.dataclass(frozen=True)
class ParsedHeaders:
    enums: dict[str, dict[str, int]]
    structs: dict[str, tuple[CDecl, ...]]  # in declaration order
    functions: dict[str, tuple[CDecl, tuple[CDecl, ...]]]  # name -> (return, params)


def _strip(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"\\\n", " ", text)
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return re.sub(r'extern\s+"C"\s*\{|^\s*\}\s*$', " ", "\n".join(lines), flags=re.MULTILINE)


def _decls(text: str, where: str) -> list[CDecl]:
    """``const int32_t *a, *b`` -> CDecl(a, int32_t, 1), CDecl(b, int32_t, 1)."""
    m = re.fullmatch(r"\s*((?:const\s+|unsigned\s+)*[A-Za-z_]\w*)\s*(.*?)\s*", text, re.DOTALL)
    if m is None:
        raise AbiError(f"cannot read the declaration {text.strip()!r} ({where})")
    base = re.sub(r"\bconst\s+", "", m.group(1)).strip()
    out = []
    for part in m.group(2).split(","):
        dm = re.fullmatch(r"(\**)([A-Za-z_]\w*)?", re.sub(r"\bconst\b|\s+", "", part))
        if dm is None:
            raise AbiError(f"cannot read the declarator {part.strip()!r} of {text.strip()!r}")
        out.append(CDecl(dm.group(2) or "", base, len(dm.group(1))))
    return out


def parse_headers(texts: list[str]) -> ParsedHeaders:
    """The enums, structs and ``edgeplus_*`` prototypes of the headers' text."""
    enums: dict[str, dict[str, int]] = {}
    structs: dict[str, tuple[CDecl, ...]] = {}
    functions: dict[str, tuple[CDecl, tuple[CDecl, ...]]] = {}
    for text in texts:
        body = _strip(text)
        for m in re.finditer(r"typedef\s+enum\s*\{(.*?)\}\s*(\w+)\s*;", body, re.DOTALL):
            values = {}
            for item in m.group(1).split(","):
                if item.strip():
                    name, value = (s.strip() for s in item.split("="))
                    values[name] = int(value)
            enums[m.group(2)] = values
        for m in re.finditer(r"typedef\s+struct\s*\{(.*?)\}\s*(\w+)\s*;", body, re.DOTALL):
            fields = []
            for decl in m.group(1).split(";"):
                if decl.strip():
                    fields += _decls(decl, f"struct {m.group(2)}")
            structs[m.group(2)] = tuple(fields)
        body = re.sub(r"typedef\s+(struct|enum)\s*\{.*?\}\s*\w+\s*;", " ", body, flags=re.DOTALL)
        for m in re.finditer(r"([A-Za-z_][\w\s\*]*?)\b(edgeplus_\w+)\s*\(([^)]*)\)\s*;", body):
            (ret,) = _decls(m.group(1) + " r", m.group(2))
            params = m.group(3).strip()
            args = () if params in ("", "void") else tuple(
                d for p in params.split(",") for d in _decls(p, m.group(2))
            )  # fmt: skip
            functions[m.group(2)] = (CDecl("", ret.base, ret.depth), args)
    return ParsedHeaders(enums, structs, functions)


class Abi:
    """ctypes types and signatures built from the parsed headers."""

    def __init__(self, parsed: ParsedHeaders):
        self.parsed = parsed
        self._structs: dict[str, type[ctypes.Structure]] = {}
        for name, fields in parsed.structs.items():
            self._structs[name] = type(
                name,
                (ctypes.Structure,),
                {"_fields_": [(f.name, self.ctype(f.base, f.depth)) for f in fields]},
            )

    def ctype(self, base: str, depth: int = 0):
        """The ctypes type of C ``base`` with ``depth`` pointers."""
        if base == "char" and depth == 1:
            return ctypes.c_char_p
        if base == "void" and depth == 1:
            return ctypes.c_void_p
        if base in self.parsed.enums:
            t = ctypes.c_int
        elif base in _SCALARS:
            t = _SCALARS[base]
        elif base in self._structs:
            t = self._structs[base]
        else:
            raise AbiError(f"no ctypes type for the C type {base!r}")
        for _ in range(depth):
            t = ctypes.POINTER(t if t is not None else ctypes.c_void_p)
        return t

    def struct(self, name: str) -> type[ctypes.Structure]:
        return self._structs[name]

    def field_names(self, name: str) -> tuple[str, ...]:
        return tuple(f.name for f in self.parsed.structs[name])

    def bind(self, lib: ctypes.CDLL) -> ctypes.CDLL:
        """Set every prototype's ``restype``/``argtypes`` on ``lib``; AbiError when the
        library lacks a function its header declares (a stale build)."""
        for name, (ret, args) in self.parsed.functions.items():
            try:
                fn = getattr(lib, name)
            except AttributeError:
                raise AbiError(f"{lib._name} has no {name} (declared in the headers)") from None
            fn.restype = self.ctype(ret.base, ret.depth)
            fn.argtypes = [self.ctype(a.base, a.depth) for a in args]
        return lib


@functools.cache
def load_abi(header_dir: Path = HEADER_DIR) -> Abi:
    """The ABI of the headers in ``header_dir`` (parsed once)."""
    paths = [Path(header_dir) / h for h in _HEADERS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise AbiError(f"the edgeplus C headers are missing: {', '.join(missing)}")
    return Abi(parse_headers([p.read_text() for p in paths]))


def status_name(code: int) -> str:
    """The edgeplus_status name of ``code`` (from edgeplus_types.h's enum)."""
    names = {v: k for k, v in load_abi().parsed.enums["edgeplus_status"].items()}
    return names.get(int(code), f"EDGEPLUS_ERR_UNKNOWN({int(code)})")
