"""A visitor's own data, brought by upload: a zip of photos or of a dataset, unpacked safely into
a folder of this session's (explorer.server_files), then named like any shared folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from explorer.runs import slug
from explorer.server_files import UPLOADS, SessionSpace, dataset_spec, new_token, server_path, unpack_zip
from explorer.ui.widgets import WIDGET_PREFIX, attempt

MAX_ZIP_MB = 25  # the server's own upload ceiling (.streamlit/config.toml)
_TOKEN = "cam.upload_token"
_UNPACKED = "cam.uploads"


def session_space() -> SessionSpace:
    """This session's private folders (named by a random token only this session knows): its
    uploads, runs and decoders, which no other session lists or opens."""
    return SessionSpace(st.session_state.setdefault(_TOKEN, new_token()))


def upload_folder() -> Path:
    return session_space().uploads


def typed_folder(text: str) -> Path:
    """A folder a visitor typed: shared, or one of their own uploads (`uploads/<name>`)."""
    return server_path(text, space=session_space())


def typed_dataset(spec: str) -> str:
    """A dataset spec a visitor typed, resolved as `typed_folder` resolves folders."""
    return dataset_spec(spec, space=session_space())


def data_uploader() -> None:
    """The sidebar's "Your data": a zip goes in, a folder name to type comes out."""
    with st.expander("Your data (a zip)"):
        upload = st.file_uploader("A zip of photos or of a dataset (CUB, OpenImages or VOC layout)", type=["zip"],
                                  max_upload_size=MAX_ZIP_MB, key=WIDGET_PREFIX + "data_zip",
                                  help=f"At most {MAX_ZIP_MB} MB; unpacked into a folder of your own that the "
                                       "pages' folder and dataset fields accept.")
        unpacked: dict[str, str] = st.session_state.setdefault(_UNPACKED, {})
        if upload is not None:
            data = upload.getvalue()
            digest = hashlib.sha256(data).hexdigest()[:10]
            if digest not in unpacked:
                dest = upload_folder() / f"{slug(Path(upload.name).stem)}-{digest}"
                if dest.is_dir() or attempt("unpacking the zip", lambda: unpack_zip(data, dest)) is not None:
                    unpacked[digest] = f"{UPLOADS}/{dest.name}"
        for name in unpacked.values():
            st.caption(f"`{name}`: type `folder:{name}` for photos, or `cub:` / `openimages:` / `voc:` with it "
                       "for a dataset.")
