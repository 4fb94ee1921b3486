"""Charts drawn on the server as SVG: no script, nothing to vendor, readable without JS."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from rgrid.console.data import format_microns


@dataclass
class Bar:
    label: str
    value: int  # microns
    extra: int = 0  # microns stacked on top (idle)


def bar_chart(bars: list[Bar], width: int = 720, height: int = 220) -> str:
    """Stacked bars (executions, then idle) with the label under each and the total on top."""
    if not bars:
        return '<p class="muted">no costs in this window</p>'
    top = max(b.value + b.extra for b in bars)
    if top == 0:
        return '<p class="muted">every day in this window cost €0.00</p>'

    pad, base = 24, height - 36
    slot = (width - 2 * pad) / len(bars)
    bar_w = max(min(slot * 0.7, 60), 2)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="cost by day">',
        f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" class="axis"/>',
    ]
    for i, bar in enumerate(bars):
        x = pad + i * slot + (slot - bar_w) / 2
        h_run = (base - 20) * bar.value / top
        h_idle = (base - 20) * bar.extra / top
        total = format_microns(bar.value + bar.extra)
        parts.append(
            f"<g><title>{escape(bar.label)}: {escape(format_microns(bar.value))} runs, "
            f"{escape(format_microns(bar.extra))} idle</title>"
            f'<rect x="{x:.1f}" y="{base - h_run:.1f}" width="{bar_w:.1f}" '
            f'height="{h_run:.1f}" class="runs"/>'
            f'<rect x="{x:.1f}" y="{base - h_run - h_idle:.1f}" width="{bar_w:.1f}" '
            f'height="{h_idle:.1f}" class="idle"/>'
            f'<text x="{x + bar_w / 2:.1f}" y="{base - h_run - h_idle - 4:.1f}" '
            f'class="value">{escape(total)}</text>'
            f'<text x="{x + bar_w / 2:.1f}" y="{base + 14}" class="label">'
            f"{escape(bar.label[5:] if len(bar.label) == 10 else bar.label)}</text></g>"
        )
    parts.append("</svg>")
    parts.append(
        '<p class="legend"><span class="swatch runs"></span> executions '
        '<span class="swatch idle"></span> idle</p>'
    )
    return "".join(parts)
