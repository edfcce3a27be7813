"""Which server folders the app may read when a visitor types a path, and a safe way to bring
data instead: uploads.

The app serves whoever reaches it, so a typed path is read only inside the configured roots:
`$CAM_EXPLORER_ROOTS` (folders separated by `os.pathsep`), else the dataset cache, the runs
folder and `data/` beside the app. A relative path is looked up inside the roots. A path
outside them and a path that does not exist get the same answer, so nobody can probe which
files the server has, and nothing from outside the roots is ever listed or echoed.

Each visitor (a browser session) has a private space, named by a random token only that session
holds: its uploads under `data/uploads/<token>/` and its runs and decoders under
`<runs>/sessions/<token>/`. A typed path that resolves into another session's space gets the same
answer as a missing one, and a visitor sees their own uploads as `uploads/<name>`, never the token.

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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from explorer.errors import ExplorerError

ROOTS_ENV = "CAM_EXPLORER_ROOTS"
REPO_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_DIR / "data"
UPLOADS = "uploads"
SESSIONS = "sessions"
MAX_ENTRY_NAME = 255  # bytes of one path component, as most file systems allow
MAX_ENTRY_PATH = 1024
MAX_ZIP_BYTES = 200 * 2**20
MAX_UNPACKED_BYTES = 1 * 2**30
MAX_FILES = 20_000
DATASET_KINDS = ("synthetic", "cub", "openimages", "voc", "folder")


class ServerPathError(ExplorerError):
    """A path a visitor typed is not one the server shares (or does not exist: the same words)."""


def runs_dir() -> Path:
    """``$CAM_EXPLORER_RUNS`` when set, else ``runs/`` in the repository."""
    env = os.environ.get("CAM_EXPLORER_RUNS")
    return Path(env).expanduser() if env else REPO_DIR / "runs"


@dataclass(frozen=True)
class SessionSpace:
    """One visitor's private folders, named by their token (see `new_token`)."""

    token: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{16,64}", self.token):
            raise ServerPathError("That session folder name is not valid.")

    @property
    def uploads(self) -> Path:
        return DATA_DIR / UPLOADS / self.token

    @property
    def runs(self) -> Path:
        return runs_dir() / SESSIONS / self.token

    @property
    def decoders(self) -> Path:
        return self.runs / "fcam"

    def owns(self, resolved: Path) -> bool:
        return any(resolved.is_relative_to(p.resolve()) for p in (self.uploads, self.runs))


def private_roots() -> list[Path]:
    """Where the sessions' private spaces live: nobody reaches into them but their owner."""
    return [(DATA_DIR / UPLOADS).resolve(), (runs_dir() / SESSIONS).resolve()]


def public_name(text: str) -> str:
    """A path or dataset spec as it may be shown on a page: a session's upload folder becomes
    `uploads/<name>` and a run folder inside a session space `<name>` (the token never shows)."""
    for root in private_roots():
        pattern = re.escape(str(root)) + r"/[0-9a-f]{16,64}(?=/|$)"
        text = re.sub(pattern, UPLOADS if root.name == UPLOADS else SESSIONS, text)
    for raw in (DATA_DIR / UPLOADS, runs_dir() / SESSIONS):  # an unresolved spelling of the same folders
        text = re.sub(re.escape(str(raw)) + r"/[0-9a-f]{16,64}(?=/|$)", raw.name, text)
    return text


def allowed_roots() -> list[Path]:
    """The folders a typed path may point into, resolved."""
    env = os.environ.get(ROOTS_ENV)
    if env:
        roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    else:
        from explorer.datasets.synthetic import default_cache_root

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


def server_path(text: str, *, folder: bool = True, space: SessionSpace | None = None) -> Path:
    """The path a visitor typed, resolved inside the allowed roots and outside every other
    session's space; ServerPathError (always the same words, whether it is missing or not allowed)
    otherwise. `uploads/<name>` names a folder of the visitor's own uploads (`space`)."""
    text = text.strip()
    if not text or "\x00" in text or len(text) > MAX_ENTRY_PATH:
        raise ServerPathError("Type the path of a folder on the server, for example data/photos.")
    typed = Path(text).expanduser()
    roots, private = allowed_roots(), private_roots()
    own_upload = typed.parts[:1] == (UPLOADS,) and space is not None
    candidates = ([space.uploads.joinpath(*typed.parts[1:])] if own_upload and space is not None else
                  [typed] if typed.is_absolute() else [root / typed for root in roots] + [REPO_DIR / typed])
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
            mode = resolved.stat().st_mode
        except (OSError, RuntimeError, ValueError):
            continue
        if not any(resolved.is_relative_to(root) for root in roots) and not own_upload:
            continue
        if any(resolved.is_relative_to(root) for root in private) and not (space is not None and space.owns(resolved)):
            continue  # another visitor's uploads or runs: the same answer as a missing folder
        if (stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)) and os.access(resolved, os.R_OK):
            return resolved
    raise _not_shared(text)


def dataset_spec(spec: str, space: SessionSpace | None = None) -> str:
    """A dataset spec a visitor typed, with its folder resolved inside the roots: "synthetic" and
    "gallery" pass as they are; "<kind>:<path>" must name a shared folder (or one of `space`'s)."""
    spec = spec.strip()
    kind, sep, where = spec.partition(":")
    if spec in ("synthetic", "synthetic-v1", "gallery"):
        return spec
    if kind not in DATASET_KINDS or not sep:
        raise ServerPathError(f"'{spec}' is not a dataset; give synthetic, synthetic-v1, gallery, or "
                              f"{', '.join(k + ':<folder>' for k in DATASET_KINDS)}.")
    return f"{kind}:{server_path(where, space=space)}"


# ----------------------------------------------------------------------------- uploads

def session_upload_dir(token: str) -> Path:
    """This visitor's own folder for uploads (`token` is theirs alone: see `new_token`)."""
    return SessionSpace(token).uploads


def new_token() -> str:
    return secrets.token_hex(16)


ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
               zipfile.ZIP_LZMA: "lzma"}


def _entry_parts(entry: zipfile.ZipInfo) -> tuple[str, ...]:
    """The entry's path parts, once every rule about one entry holds: inside the zip's folder,
    not a link, not encrypted, a compression Python can undo, names a file system accepts."""
    shown = entry.filename[:100]
    name = entry.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in parts or not parts or "\x00" in name:
        raise ServerPathError(f"The zip entry '{shown}' points outside the zip's folder; refused.")
    if stat.S_ISLNK(entry.external_attr >> 16):
        raise ServerPathError(f"The zip entry '{shown}' is a symbolic link; links are not unpacked.")
    if entry.flag_bits & 0x1:
        raise ServerPathError(f"The zip entry '{shown}' is encrypted; upload a zip without a password.")
    if entry.compress_type not in ZIP_METHODS:
        raise ServerPathError(f"The zip entry '{shown}' uses compression method {entry.compress_type}, which cannot be "
                              f"unpacked here; re-create the zip with ordinary compression ({', '.join(ZIP_METHODS.values())}).")
    if len(name.encode("utf-8")) > MAX_ENTRY_PATH or any(len(p.encode("utf-8")) > MAX_ENTRY_NAME for p in parts):
        raise ServerPathError(f"The zip entry '{shown}...' has a name longer than a file system allows "
                              f"({MAX_ENTRY_NAME} bytes a name, {MAX_ENTRY_PATH} a path); shorten it and zip again.")
    return parts


def _check_entry_names(names: list[tuple[str, ...]]) -> None:
    """No two entries may land on one path: the same name twice, or a file where another entry
    needs a folder of that name."""
    seen: set[tuple[str, ...]] = set()
    for parts in names:
        if parts in seen:
            raise ServerPathError(f"The zip holds '{'/'.join(parts)[:100]}' twice; which one is meant cannot be told. "
                                  "Remove the duplicate and zip again.")
        seen.add(parts)
    folders = {parts[:i] for parts in names for i in range(1, len(parts))}
    clash = next((parts for parts in names if parts in folders), None)
    if clash is not None:
        raise ServerPathError(f"The zip holds a file '{'/'.join(clash)[:100]}' and a folder of the same name; "
                              "rename one and zip again.")


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
    names = [_entry_parts(entry) for entry in files]
    _check_entry_names(names)
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
    # Damaged data (CRC, truncation); NotImplementedError / RuntimeError are zipfile's own words for a
    # compression or encryption it cannot undo, which _entry_parts already refuses from the headers.
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServerPathError(f"The zip is damaged ({exc}); nothing was unpacked.") from exc
    except OSError as exc:  # the server's disk refused (full, a name it cannot hold): say so, keep nothing
        shutil.rmtree(staging, ignore_errors=True)
        raise ServerPathError(f"The zip could not be unpacked on this server ({exc.strerror or exc}); nothing was "
                              "kept.") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest
