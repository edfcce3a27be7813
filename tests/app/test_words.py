"""Words for people: no page shows a raw Python representation (a dict, a list of dicts, a
tensor or an object's repr) where a person expects a sentence, a number or a table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from explorer.ui import PAGE_GUIDE
from tests.app.conftest import open_page

RAW = re.compile(r"\{'|\[\{|dict\(|tensor\(|array\(|object at 0x|PosixPath\(|np\.float|<explorer\.|Decimal\(")


def shown_text(at) -> str:
    """Everything a visitor reads on the page: prose, captions, alerts, labels, metrics, table
    cells and chart titles and axes."""
    parts = [str(e.value) for group in (at.title, at.header, at.subheader, at.markdown, at.caption, at.info,
                                         at.error, at.warning, at.success) for e in group]
    parts += [str(w.label) for group in (at.selectbox, at.multiselect, at.slider, at.radio, at.text_input,
                                         at.number_input, at.checkbox, at.button) for w in group]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    for frame in at.dataframe:
        table = frame.value
        parts += [str(c) for c in table.columns] + [str(v) for v in table.astype(str).to_numpy().ravel()]
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        layout = spec.get("layout", {})
        parts += [json.dumps(layout.get("title", "")), *(json.dumps(v.get("title", "")) for k, v in layout.items()
                                                        if k.startswith(("xaxis", "yaxis")) and isinstance(v, dict))]
        parts += [str(trace.get("name", "")) for trace in spec.get("data", [])]
    for image in at.image:
        parts += [str(c) for c in image.captions]
    return "\n".join(parts)


@pytest.mark.parametrize("page", [Path(path).stem for path, *_ in PAGE_GUIDE] + ["home"])
def test_no_page_shows_a_raw_python_repr(page: str) -> None:
    at = open_page(page)
    text = shown_text(at)
    found = sorted({text[max(0, m.start() - 40):m.end() + 40] for m in RAW.finditer(text)})
    assert not found, found
