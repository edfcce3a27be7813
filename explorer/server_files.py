"""Which server folders the app may read when a visitor types a path, and a safe way to bring
data instead: uploads.

The app serves whoever reaches it, so a typed path is read only inside the configured roots:
`$CAM_EXPLORER_ROOTS` (folders separated by `os.pathsep`), else the dataset cache, the runs
folder and `data/` beside the app. A relative path is looked up inside the roots. A path
outside them and a path that does not exist get the same answer, so nobody can probe which
files the server has, and nothing from outside the roots is ever listed or echoed.

An uploaded zip of a dataset is unpacked into the visitor's own folder under `data/uploads/`
with every entry checked first: no absolute path, no `..`, no link, at most `MAX_FILES` files and
`MAX_UNPACKED_BYTES` unpacked (declared sizes are checked before, and the bytes written counted
during, the unpacking, so a zip bomb stops at the limit).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from explorer.errors import ExplorerError

ROOTS_ENV = "CAM_EXPLORER_ROOTS"
REPO_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_DIR / "data"
UPLOADS = "uploads"
MAX_ZIP_BYTES = 200 * 2**20
MAX_UNPACKED_BYTES = 1 * 2**30
MAX_FILES = 20_000
DATASET_KINDS = ("synthetic", "cub", "openimages", "voc", "folder")


class ServerPathError(ExplorerError):
    """A path a visitor typed is not one the server shares (or does not exist: the same words)."""


def allowed_roots() -> list[Path]:
    """The folders a typed path may point into, resolved."""
    env = os.environ.get(ROOTS_ENV)
    if env:
        roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    else:
        from explorer.datasets.synthetic import default_cache_root
        from explorer.runs import runs_dir

        roots = [DATA_DIR, runs_dir(), default_cache_root()]
    return [r.resolve() for r in roots]


def describe_roots() -> str:
    """The roots as a visitor should read them (`data/` beside the app rather than its full path)."""
    shown = []
    for root in allowed_roots():
        try:
            shown.append(f"{root.relative_to(REPO_DIR)}/")
        except ValueError:
            shown.append(str(root))
    return ", ".join(shown)


def _not_shared(text: str) -> ServerPathError:
    return ServerPathError(f"'{text}' is not a folder this server shares. Put the data in one of its folders "
                           f"({describe_roots()}) or upload a zip of it.")


def server_path(text: str, *, folder: bool = True) -> Path:
    """The path a visitor typed, resolved inside the allowed roots; ServerPathError (always the
    same words, whether it is missing or not allowed) otherwise."""
    text = text.strip()
    if not text or "\x00" in text:
        raise ServerPathError("Type the path of a folder on the server, for example data/photos.")
    typed = Path(text).expanduser()
    roots = allowed_roots()
    candidates = [typed] if typed.is_absolute() else [root / typed for root in roots] + [REPO_DIR / typed]
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
            mode = resolved.stat().st_mode
        except (OSError, RuntimeError):
            continue
        if not any(resolved.is_relative_to(root) for root in roots):
            continue
        if (stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)) and os.access(resolved, os.R_OK):
            return resolved
    raise _not_shared(text)


def dataset_spec(spec: str) -> str:
    """A dataset spec a visitor typed, with its folder resolved inside the roots: "synthetic" and
    "gallery" pass as they are; "<kind>:<path>" must name a shared folder."""
    spec = spec.strip()
    kind, sep, where = spec.partition(":")
    if spec in ("synthetic", "synthetic-v1", "gallery"):
        return spec
    if kind not in DATASET_KINDS or not sep:
        raise ServerPathError(f"'{spec}' is not a dataset; give synthetic, synthetic-v1, gallery, or "
                              f"{', '.join(k + ':<folder>' for k in DATASET_KINDS)}.")
    return f"{kind}:{server_path(where)}"


# ----------------------------------------------------------------------------- uploads

def session_upload_dir(token: str) -> Path:
    """This visitor's own folder for uploads (`token` is theirs alone: see `new_token`)."""
    if not re.fullmatch(r"[0-9a-f]{16,64}", token):
        raise ServerPathError("That upload folder name is not valid.")
    return DATA_DIR / UPLOADS / token


def new_token() -> str:
    return secrets.token_hex(16)


def unpack_zip(data: bytes, dest: Path, *, max_unpacked: int = MAX_UNPACKED_BYTES, max_files: int = MAX_FILES) -> Path:
    """Unpack an uploaded zip into the new folder `dest` (which must not exist) and return it.

    Every entry is checked before anything is written; the bytes written are counted while
    writing, so a zip whose declared sizes lie still stops at `max_unpacked`. On any problem
    nothing is left behind.
    """
    if len(data) > MAX_ZIP_BYTES:
        raise ServerPathError(f"The zip is {len(data) / 2**20:.0f} MB; at most {MAX_ZIP_BYTES / 2**20:.0f} MB may be "
                              "uploaded.")
    import io

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ServerPathError(f"The upload is not a readable zip file ({exc}).") from exc
    files = [e for e in entries if not e.is_dir()]
    if not files:
        raise ServerPathError("The zip holds no files.")
    if len(files) > max_files:
        raise ServerPathError(f"The zip holds {len(files):,} files; at most {max_files:,} are unpacked.")
    declared = sum(e.file_size for e in files)
    if declared > max_unpacked:
        raise ServerPathError(f"The zip unpacks to {declared / 2**20:.0f} MB; at most {max_unpacked / 2**20:.0f} MB "
                              "are allowed.")
    names = []
    for entry in files:
        name = entry.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in parts or not parts or "\x00" in name:
            raise ServerPathError(f"The zip entry '{entry.filename[:100]}' points outside the zip's folder; refused.")
        if stat.S_ISLNK(entry.external_attr >> 16):
            raise ServerPathError(f"The zip entry '{entry.filename[:100]}' is a symbolic link; links are not unpacked.")
        names.append(parts)
    if dest.exists():
        raise ServerPathError(f"{dest.name} exists already; upload under another name.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    written = 0
    try:
        for entry, parts in zip(files, names):
            target = staging.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(entry) as source, open(target, "xb") as out:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > max_unpacked:  # the declared sizes lied: stop at the limit
                        raise ServerPathError(f"The zip unpacks to more than {max_unpacked / 2**20:.0f} MB; refused.")
                    out.write(chunk)
        staging.chmod(0o755)
        staging.rename(dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a damaged entry (CRC, truncated data)
        shutil.rmtree(staging, ignore_errors=True)
        raise ServerPathError(f"The zip is damaged ({exc}); nothing was unpacked.") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest
