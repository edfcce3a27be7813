// Text, tables and chart titles that do not fit their box, as {kind, ...} findings (tests/browser/test_layout_browser.py).
() => {
  const out = [];
  const seen = new Set();
  const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  // 1. text clipped by its own box (ellipsis or hidden overflow)
  for (const el of document.querySelectorAll('label, p, span, div, td, th, button, h1, h2, h3, li, code')) {
    if (!visible(el) || !el.textContent.trim() || el.closest('.katex')) continue;
    const style = getComputedStyle(el);
    const clips = style.overflowX === 'hidden' || style.overflow === 'hidden' || style.textOverflow === 'ellipsis' || style.overflowX === 'clip';
    if (!clips) continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      const text = el.textContent.trim().slice(0, 60);
      if (seen.has(text)) continue; seen.add(text);
      out.push({kind: 'clipped', text, scroll: el.scrollWidth, client: el.clientWidth, tag: el.tagName, testid: el.closest('[data-testid]')?.dataset.testid});
    }
  }
  // 2. data frames wider than their box (columns lost to a scroll)
  for (const el of document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller')) {
    if (el.scrollWidth > el.clientWidth + 1) out.push({kind: 'table', scroll: el.scrollWidth, client: el.clientWidth,
      top: Math.round(el.getBoundingClientRect().top + window.scrollY)});
  }
  // 3. plotly titles / axis titles outside their figure
  for (const svg of document.querySelectorAll('.js-plotly-plot .main-svg')) {
    const box = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll('.gtitle, .xtitle, .ytitle, .legendtext')) {
      const r = t.getBoundingClientRect();
      if (r.width && (r.left < box.left - 1 || r.right > box.right + 1)) out.push({kind: 'plot', text: t.textContent.slice(0, 60), over: Math.round(r.right - box.right), under: Math.round(box.left - r.left)});
    }
  }
  return out;
}
