"""Reports: results.json, report.md and a self-contained report.html (PNG plots and contact sheets
inlined), for one run or two side by side. Plots are drawn with Pillow (no plotting dependency)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tessera.eval.capability import CAPABILITY_METRICS
from tessera.eval.results import CLIP_METRICS, EvalError, plain, save_results

COLOURS = [(70, 130, 220), (230, 120, 40)]
LOWER_IS_BETTER = ("fwd",)


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def bar_chart(series: dict[str, dict[str, float | None]], title: str) -> Image.Image:
    """Horizontal bars in [0, 1], one group per metric, one colour per series (name -> {metric: value})."""
    font = ImageFont.load_default()
    names = list(series)
    metrics = [m for m in CLIP_METRICS if any(s.get(m) is not None for s in series.values())]
    row_h, left, width = 14 * len(names) + 8, 130, 560
    img = Image.new("RGB", (width, 40 + row_h * len(metrics) + 16 * len(names)), "white")
    d = ImageDraw.Draw(img)
    d.text((8, 8), title, fill="black", font=font)
    plot_w = width - left - 50
    for i, m in enumerate(metrics):
        y = 30 + i * row_h
        d.text((8, y + 4), m, fill="black", font=font)
        for j, name in enumerate(names):
            v = series[name].get(m)
            yy = y + 4 + 14 * j
            if v is not None:
                d.rectangle(
                    [left, yy, left + int(plot_w * max(0.0, min(1.0, v))), yy + 10], fill=COLOURS[j % 2]
                )
            d.text((left + plot_w + 6, yy), _fmt(v), fill="black", font=font)
        d.line([left, y, left, y + row_h - 4], fill=(150, 150, 150))
    y = 34 + row_h * len(metrics)
    for j, name in enumerate(names):
        d.rectangle([8, y + 16 * j, 18, y + 16 * j + 10], fill=COLOURS[j % 2])
        d.text((24, y + 16 * j), name, fill="black", font=font)
    return img


def _png_b64(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _table_md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


CSS = """body{font-family:sans-serif;max-width:1100px;margin:24px auto;color:#222}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.prompt{margin:18px 0;padding:8px;border-top:1px solid #ddd}.caption{font-size:90%;color:#555}"""


def _summary_rows(results: dict) -> list[list[str]]:
    rows = []
    for k, v in results["metrics"].items():
        split = results.get("by_split", {})
        rows.append(
            [
                k + (" (lower is better)" if k in LOWER_IS_BETTER else ""),
                _fmt(v),
                _fmt(split.get("train", {}).get(k)),
                _fmt(split.get("heldout", {}).get(k)),
            ]
        )
    return rows


def write_report(results: dict, out: Path) -> Path:
    """results.json, plots/metrics.png, report.md and report.html in `out`. The per-prompt table has a
    column for each clip metric and, after a `--capabilities` run, each capability score."""
    out.mkdir(parents=True, exist_ok=True)
    save_results(results, out)
    (out / "plots").mkdir(exist_ok=True)
    label = "truth renders (ceiling)" if results["truth"] else f"model {results['model']}"
    if results.get("videos"):
        label = f"the clips in {results['videos']}"
    if results.get("vae_only"):
        label = f"VAE round trip of the truth renders, {results['model']} (the VAE's ceiling)"
    bar_chart({label: results["metrics"]}, f"tessera eval: {label}").save(out / "plots" / "metrics.png")
    header = ["metric", "all", "train", "held-out"]
    summary = _summary_rows(results)
    caps = [m for m in CAPABILITY_METRICS if any(m in r.get("capabilities", {}) for r in results["prompts"])]
    scored = [m for m in CLIP_METRICS if any(m in r["metrics"] for r in results["prompts"])]
    per_header = ["prompt", *scored, *caps]
    per_rows = [
        [
            r["id"],
            *(_fmt(r["metrics"].get(m)) for m in scored),
            *(_fmt(r.get("capabilities", {}).get(m)) for m in caps),
        ]
        for r in results["prompts"]
    ]
    title = f"tessera eval — {results.get('suite', '')} suite — {label}"
    md = [
        f"# {title}",
        "",
        f"Settings: {json.dumps(results['settings'])}; device {results['device']}; {results['seconds']} s.",
        "",
        *[f"- {n}" for n in results["notes"]],
        "",
        "## Metrics",
        "",
        _table_md(header, summary),
        "",
        "![metrics](plots/metrics.png)",
        "",
        "## Per prompt",
        "",
        _table_md(per_header, per_rows),
        "",
    ]
    for r in results["prompts"]:
        md += [f"### {r['id']}", "", r["caption"], "", f"![{r['id']}]({r['sheet']})", ""]
    (out / "report.md").write_text("\n".join(md))
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Settings: {html.escape(json.dumps(results['settings']))}; "
        f"device {results['device']}; {results['seconds']} s.</p>",
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in results["notes"]) + "</ul>",
        "<h2>Metrics</h2>",
        _table_html(header, summary),
        f"<img src='{_png_b64(out / 'plots' / 'metrics.png')}'>",
        "<h2>Per prompt</h2>",
        _table_html(per_header, per_rows),
    ]
    for r in results["prompts"]:
        body.append(
            f"<div class='prompt'><h3>{html.escape(r['id'])} ({html.escape(', '.join(r['tags']))})</h3>"
            f"<p class='caption'>{html.escape(r['caption'])}</p>"
            f"<img src='{_png_b64(out / r['sheet'])}'></div>"
        )
    _write_html(out / "report.html", title, body)
    return out


def _write_html(path: Path, title: str, body: list[str]) -> None:
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
    page = f"<!doctype html><html><head>{head}</head><body>"
    path.write_text(page + "\n".join(body) + "</body></html>\n")


def load_results(folder: Path) -> dict:
    """results.json of a report folder, or an EvalError naming the folder."""
    path = Path(folder) / "results.json"
    if not path.exists():
        raise EvalError(f"{folder}: no results.json (run `tessera eval ... --out {folder}` first)")
    return json.loads(path.read_text())


def paired_difference(
    ra: dict | list[dict], rb: dict | list[dict], metric: str, resamples: int = 4000
) -> dict | None:
    """B − A of `metric` (a clip metric or a capability score) over the prompts both runs scored (by prompt
    id), with a 95% bootstrap interval over those prompts (fixed seed, so reruns agree): whether a change
    of the mean is more than which prompts happened to be drawn. `ra` and `rb` may be lists of runs
    paired in order (the same suite under several sampling seeds): each prompt's difference is then its
    mean over the pairs, over the prompts that every pair scored. None when fewer than two prompts have
    the metric in both."""
    ras, rbs = (ra if isinstance(ra, list) else [ra]), (rb if isinstance(rb, list) else [rb])
    per_pair = []
    for a, b in zip(ras, rbs, strict=True):
        va = {r["id"]: _prompt_score(r, metric) for r in a.get("prompts", [])}
        vb = {r["id"]: _prompt_score(r, metric) for r in b.get("prompts", [])}
        per_pair.append({i: vb[i] - va[i] for i in va if i in vb and va[i] is not None and vb[i] is not None})
    ids = [i for i in per_pair[0] if all(i in p for p in per_pair)]
    d = np.array([np.mean([p[i] for p in per_pair]) for i in ids])
    if len(d) < 2:
        return None
    means = np.random.default_rng(0).choice(d, (resamples, len(d))).mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"prompts": len(d), "mean": float(d.mean()), "low": float(lo), "high": float(hi)}


def _prompt_score(row: dict, metric: str) -> float | None:
    """One prompt's score: a clip metric, or a capability score after a --capabilities run."""
    v = row["metrics"].get(metric)
    return row.get("capabilities", {}).get(metric) if v is None else v


def _mean_metrics(runs: list[dict]) -> dict[str, float | None]:
    """Each metric's mean over runs; None where any run lacks it (a mean over fewer runs would mislead)."""
    keys = dict.fromkeys(k for r in runs for k in r["metrics"])
    vals = {k: [r["metrics"].get(k) for r in runs] for k in keys}
    return {k: None if any(v is None for v in vs) else float(np.mean(vs)) for k, vs in vals.items()}


def _run_list(spec: Path) -> list[str]:
    return [s for s in str(spec).split(",") if s]


def write_compare(a: Path, b: Path, out: Path) -> dict:
    """Two result folders side by side: compare.md, compare.html and plots/compare.png in `out`; per
    metric also the paired per-prompt difference with its bootstrap interval (`paired_difference`).
    `a` and `b` may each name several folders separated by commas, paired in order (one model's runs
    under several sampling seeds against the other's under the same seeds): the table then shows each
    side's mean over its runs, every pair's B − A, and the paired interval over prompts of the per-prompt
    differences averaged over the pairs."""
    na, nb = _run_list(a), _run_list(b)
    if not na or len(na) != len(nb):
        raise EvalError(
            f"--compare A B: A and B must name the same number of result folders (comma-separated, paired in "
            f"order); got {len(na)} and {len(nb)}"
        )
    ras, rbs = [load_results(Path(n)) for n in na], [load_results(Path(n)) for n in nb]
    for x, y, ra, rb in zip(na, nb, ras, rbs, strict=True):
        sa, sb = ra.get("settings", {}), rb.get("settings", {})
        if ra.get("suite") != rb.get("suite") or sa.get("seed") != sb.get("seed"):
            raise EvalError(
                f"--compare: {x} and {y} must be the same suite under the same seed to be paired; got "
                f"{ra.get('suite')} seed {sa.get('seed')} and {rb.get('suite')} seed {sb.get('seed')}"
            )
    ma, mb = _mean_metrics(ras), _mean_metrics(rbs)
    multi = len(na) > 1
    label_a, label_b = (f"{n[0]} (+{len(n) - 1})" if multi else n[0] for n in (na, nb))
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    names = [f"A: {label_a}", f"B: {label_b}"]
    bar_chart({names[0]: ma, names[1]: mb}, "A vs B" + (f", mean of {len(na)} runs" if multi else "")).save(
        out / "plots" / "compare.png"
    )
    keys = list(dict.fromkeys([*ma, *mb]))
    paired = {k: paired_difference(ras, rbs, k) for k in keys}
    per_run = {
        k: [
            None
            if x["metrics"].get(k) is None or y["metrics"].get(k) is None
            else y["metrics"][k] - x["metrics"][k]
            for x, y in zip(ras, rbs, strict=True)
        ]
        for k in keys
    }
    rows = [
        [
            k,
            _fmt(ma.get(k)),
            _fmt(mb.get(k)),
            _fmt(None if ma.get(k) is None or mb.get(k) is None else mb[k] - ma[k]),
            *([", ".join("–" if v is None else f"{v:+.3f}" for v in per_run[k])] if multi else []),
            "–"
            if paired[k] is None
            else f"{paired[k]['mean']:+.3f} [{paired[k]['low']:+.3f}, "
            f"{paired[k]['high']:+.3f}] ({paired[k]['prompts']})",
        ]
        for k in keys
    ]
    mean_of = " (mean of runs)" if multi else ""
    header = [
        "metric",
        names[0] + mean_of,
        names[1] + mean_of,
        "B − A",
        *(["B − A per pair"] if multi else []),
        "paired B − A [95% interval] (prompts)",
    ]
    title = f"{label_a} vs {label_b}"
    runs_md = (
        [f"Pairs (A / B): {', '.join(f'{x} / {y}' for x, y in zip(na, nb, strict=True))}", ""]
        if multi
        else []
    )
    (out / "compare.md").write_text(
        "\n".join(
            [
                f"# tessera eval: {title}",
                "",
                *runs_md,
                _table_md(header, rows),
                "",
                "![compare](plots/compare.png)",
                "",
            ]
        )
    )
    _write_html(
        out / "compare.html",
        title,
        [
            f"<h1>{html.escape(title)}</h1>",
            *(f"<p>{html.escape(line)}</p>" for line in runs_md if line),
            _table_html(header, rows),
            f"<img src='{_png_b64(out / 'plots' / 'compare.png')}'>",
        ],
    )
    result = {
        "a": ",".join(na),
        "b": ",".join(nb),
        "metrics": {k: [ma.get(k), mb.get(k)] for k in keys},
        "per_run": per_run,
        "paired": paired,
    }
    (out / "compare.json").write_text(json.dumps(plain(result), indent=1) + "\n")
    return result
