"""Stage `site`: stats, scores, figures, runs.json, claim verdicts and run manifests -> a static HTML site.

The landing page shows each paper's verdicts first (a table per paper, each claim with its badge and
evidence), then the statistics per comparison, what was not run and why, and every run. The site works
offline from file://: no CDN, no JavaScript, relative links only. It is built in a temporary directory
beside `out_dir` and swapped in whole, so a failed build leaves the previous site untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_json, read_parquet
from coopbench.base.normalization import rule_text
from coopbench.base.schema import SCORES_COLUMNS
from leaderboard.aggregate import read_runs
from leaderboard.figures import FIGURES, FORMATS, comparison_dir, curve_name, has_data
from leaderboard.stats import read_stats
from leaderboard.verdicts import VERDICTS

PACKAGE_DIR = Path(__file__).parent
MARKER = ".coopbench-site"  # marks a directory this stage may replace
CAPTIONS = {
    "aggregate": "IQM, mean, median and optimality gap of final normalized scores",
    "performance_profile": "Performance profile: fraction of runs above each normalized score",
    "sample_efficiency": "Sample efficiency: IQM normalized score at each shared evaluation point",
}


def build_site(stats_json: Path, scores_parquet: Path, figures_dir: Path, out_dir: Path, runs_json: Path,
               claims_dir: Path, suite: str, animations_dir: Path | None = None) -> Path:
    """Render index.html and one page per completed run into `out_dir`; return the index path."""
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    stats = read_stats(stats_json)
    scores = read_parquet(scores_parquet, SCORES_COLUMNS)
    runs = read_runs(runs_json)
    manifests = _manifests_matching([Path(r["run_dir"]) for r in runs["runs"]], scores, scores_parquet)
    figures = [Path(figures_dir) / comparison_dir(c) / f"{name}.{fmt}" for c, cstats in stats["comparisons"].items()
               for name in [*(f for f in FIGURES if has_data(cstats, f)), *map(curve_name, cstats["env_curves"])]
               for fmt in FORMATS]
    for path in figures:
        if not path.is_file():
            raise CoopbenchError(f"figure missing: {path}", "re-run the figures stage")
    claims = _read_claims(Path(claims_dir))
    animations = _read_animations(animations_dir)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        _render(staging, stats, scores, manifests, runs, claims, figures, Path(figures_dir), suite, animations)
        _swap_in(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "index.html"


def _read_animations(animations_dir: Path | None) -> dict:
    """task -> {file (absolute path of the GIF) or error, algo, seed, ...} from the animations stage's index.json."""
    if animations_dir is None:
        return {}
    index = read_json(Path(animations_dir) / "index.json")
    entries = index.get("animations") if isinstance(index, dict) else None
    if not isinstance(entries, dict):
        raise CoopbenchError(f"{animations_dir}/index.json is not an index of the animations stage",
                             "re-run the animations stage")
    out = {}
    for task, entry in entries.items():
        if "file" in entry:
            path = Path(animations_dir) / entry["file"]
            if not path.is_file():
                raise CoopbenchError(f"animation missing: {path}", "re-run the animations stage")
            entry = {**entry, "path": path}
        out[task] = entry
    return out


def _read_claims(claims_dir: Path) -> list[dict]:
    papers = []
    for path in sorted(claims_dir.glob("*.json")):
        paper = read_json(path)
        if not isinstance(paper, dict) or not isinstance(paper.get("claims"), list) or "counts" not in paper:
            raise CoopbenchError(f"{path} is not a verdict file of the claims stage", "re-run the claims stage")
        papers.append(paper)
    return papers


def slug(name: str) -> str:
    """A file-name-safe form of an env/algo name: '/' -> '__', anything unusual -> '_'."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(name).replace("/", "__"))
    return safe if safe.strip(".") else safe.replace(".", "_")


def run_page(env: str, algo: str, config_hash: str, seed: int) -> str:
    """The path of a run's page, relative to the site root."""
    return f"runs/{slug(env)}/{slug(algo)}/{slug(config_hash)}/seed-{int(seed)}.html"


def fmt_num(x) -> str:
    """Four significant digits; large values as integers; missing values as a dash."""
    if x is None or (isinstance(x, float) and x != x):
        return "—"
    x = float(x)
    return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"


def fmt_estimate(e: dict) -> str:
    return f"{fmt_num(e['point'])} [{fmt_num(e['ci_low'])}, {fmt_num(e['ci_high'])}]"


def fmt_as_published(summary: dict) -> str:
    """Our seeds summarised as the paper reports them: mean +- standard error, or median (quartiles)."""
    if "median" in summary:
        return f"median {fmt_num(summary['median'])} (quartiles {fmt_num(summary['q1'])}, {fmt_num(summary['q3'])})"
    if "mean" in summary:
        return f"mean {fmt_num(summary['mean'])} ± {fmt_num(summary.get('se'))} (se)"
    return ""


def _check_replaceable(out_dir: Path) -> None:
    # Refuse to wipe a directory this stage did not write (say, a mistyped --out of ".").
    if out_dir.exists() and not (out_dir / MARKER).exists() and any(out_dir.iterdir()):
        raise CoopbenchError(
            f"{out_dir} exists and is not a coopbench site", "choose a new or empty output directory"
        )


def _swap_in(staging: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    os.replace(out_dir, old / "site")
    os.replace(staging, out_dir)
    shutil.rmtree(old)


def _run_key(env, algo, config_hash, seed) -> tuple[str, str, str, int]:
    return (str(env), str(algo), str(config_hash), int(seed))


def _manifests_matching(
    run_dirs: list[Path], scores: pd.DataFrame, scores_parquet: Path
) -> dict[tuple, dict]:
    """The manifest of every listed run (completed or recorded as not completed), keyed by
    (env, algo, config_hash, seed); every run in scores.parquet must be among them, completed."""
    manifests = {}
    for run_dir in map(Path, run_dirs):
        manifest = read_json(run_dir / "manifest.json")
        try:
            key = _run_key(manifest["env"], manifest["algo"], manifest["config_hash"], manifest["seed"])
        except (KeyError, TypeError, ValueError):
            raise CoopbenchError(
                f"{run_dir / 'manifest.json'} lacks a valid env, algo, config_hash or seed",
                f"delete {run_dir} and re-run that job",
            ) from None
        manifests[key] = manifest
    scored = {
        _run_key(*row) for row in scores[["env", "algo", "config_hash", "seed"]].drop_duplicates().to_numpy()
    }
    completed = {key for key, m in manifests.items() if m.get("status") == "completed"}
    not_given, not_scored = sorted(scored - completed), sorted(completed - scored)
    if not_given or not_scored:
        raise CoopbenchError(
            f"the run dirs given and the runs in {scores_parquet} differ: "
            f"not given {not_given}, not scored {not_scored}",
            "re-run aggregate: runs.json and scores.parquet come from one aggregate run",
        )
    return manifests


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_num
    env.filters["estimate"] = fmt_estimate
    env.filters["as_published"] = fmt_as_published
    env.filters["steps"] = lambda n: f"{int(n):,}"
    return env


def _generated_at() -> str:
    # SOURCE_DATE_EPOCH (the reproducible-builds convention) pins the timestamp when set.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.isoformat(timespec="seconds")


def _render(site: Path, stats: dict, scores: pd.DataFrame, manifests: dict, runs_file: dict, claims: list[dict],
            figures: list[Path], figures_dir: Path, suite: str, animations: dict):
    templates = _environment()
    (site / MARKER).write_text(
        "written by `python -m leaderboard site`; the whole directory is replaced on rebuild\n"
    )
    (site / "assets").mkdir()
    for asset in ("style.css", "sort.js"):
        shutil.copy2(PACKAGE_DIR / "assets" / asset, site / "assets" / asset)
    for path in figures:
        target = site / "figures" / path.relative_to(figures_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)

    for entry in animations.values():
        if "path" in entry:
            (site / "animations").mkdir(exist_ok=True)
            shutil.copy2(entry["path"], site / "animations" / entry["file"])

    completed = sorted(k for k, m in manifests.items() if m.get("status") == "completed")
    runs = [_run_summary(key, manifests[key], scores) for key in completed]
    sent = {_run_key(r["env"], r["algo"], r["config_hash"], r["seed"]): r["communication"]
            for r in runs_file["runs"] if r.get("communication")}
    for run in runs:
        run["communication"] = sent.get(run["key"])
    not_completed = [r for r in runs_file["runs"] if r["status"] != "completed"]
    comparisons = [_comparison_view(name, cstats, runs, figures) for name, cstats in stats["comparisons"].items()]
    totals = {v: sum(p["counts"].get(v, 0) for p in claims) for v in VERDICTS}
    methods = sorted({r["algo"] for r in runs} | {s["algo"] for s in runs_file["skipped"]}
                     | {r["algo"] for r in not_completed})
    tasks = sorted({r["env"] for r in runs} | {s["env"] for s in runs_file["skipped"]}
                   | {r["env"] for r in not_completed})
    links = {"methods": {m: f"methods/{slug(m)}.html" for m in methods},
             "tasks": {t: f"tasks/{slug(t)}.html" for t in tasks},
             "comparisons": {c["name"]: c["href"] for c in comparisons},
             "papers": {p["paper"]: f"papers/{p['paper']}.html" for p in claims}}
    downloads = _write_downloads(site, scores, runs, runs_file, claims, comparisons)
    common = {"suite": suite, "generated_at": _generated_at(), "links": links, "verdicts": VERDICTS,
              "downloads": downloads}

    def page(path: str, template: str, **values) -> None:
        target = site / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(templates.get_template(template).render(root="../" * path.count("/"), **common, **values))

    def of_paper(paper: str, comparisons_of) -> bool:
        return any(c.startswith(paper + "/") for c in comparisons_of)

    page("index.html", "index.html", stats=stats, claims=claims, totals=totals, comparisons=comparisons,
         runs=runs, not_completed=not_completed, skipped=runs_file["skipped"], methods=methods, tasks=tasks,
         commits=sorted({r["commit"] for r in runs}))
    page("runs.html", "runs.html", runs=runs, not_completed=not_completed, skipped=runs_file["skipped"])
    for paper in claims:
        name = paper["paper"]
        page(links["papers"][name], "paper.html", paper=paper,
             comparisons=[c for c in comparisons if of_paper(name, [c["name"]])],
             skipped=[s for s in runs_file["skipped"] if of_paper(name, [s["comparison"]])],
             not_completed=[r for r in not_completed if of_paper(name, r["comparisons"])])
    for comp in comparisons:
        page(comp["href"], "comparison.html", comp=comp, settings=stats["settings"])
    for method in methods:
        page(links["methods"][method], "method.html", method=method, info=_method_info(method),
             rows=[(c, env, row) for c in comparisons for env in c["envs"] for row in env["rows"]
                   if row["algo"] == method],
             claims=[(p["paper"], c) for p in claims for c in p["claims"] if method in c["methods"]],
             skipped=[s for s in runs_file["skipped"] if s["algo"] == method])
    for task in tasks:
        page(links["tasks"][task], "task.html", task=task, info=_task_info(task), animation=animations.get(task),
             tables=[(c, env) for c in comparisons for env in c["envs"] if env["name"] == task],
             claims=[(p["paper"], c) for p in claims for c in p["claims"] if task in c["tasks"]],
             skipped=[s for s in runs_file["skipped"] if s["env"] == task])
    for run in runs:
        m = manifests[run["key"]]
        page(run["href"], "run.html", m=m, run=run, fields=_manifest_fields(m), curve=run["curve"].to_dict("records"),
             config=_config_sections(m.get("config", {})), raw_json=json.dumps(m, indent=2, sort_keys=True))


def _comparison_view(name: str, cstats: dict, runs: list[dict], figures: list[Path]) -> dict:
    """One comparison's page: its statistics, its figures (where it has the data), its per-env tables."""
    folder = comparison_dir(name)
    have = {p.stem for p in figures if p.parent.name == folder}
    envs = _env_tables(cstats, [r for r in runs if name in r["comparisons"]], name)
    for env in envs:
        stem = curve_name(env["name"])
        env["curve"] = f"figures/{folder}/{stem}" if stem in have else None
    page_slug = slug(name.replace(":", "-"))
    return {
        "communication": _communication_rows([r for r in runs if name in r["comparisons"]]),
        "name": name,
        "slug": page_slug,
        "href": f"comparisons/{page_slug}.html",
        "stats": cstats,
        "figures": [{"path": f"figures/{folder}/{fig}", "caption": CAPTIONS[fig]} for fig in FIGURES if fig in have],
        "envs": envs,
    }


def _communication_rows(runs: list[dict]) -> list[dict]:
    """Per task and method, what each agent sent over training (mean over the seeds that recorded it)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        if run.get("communication"):
            groups.setdefault((run["env"], run["algo"]), []).append(run["communication"])
    return [{"env": env, "algo": algo, "seeds": len(sent),
             "floats": float(np.mean([s["floats_per_agent"] for s in sent])),
             "bytes": float(np.mean([s["bytes_per_agent"] for s in sent])),
             "env_steps": int(np.mean([s["env_steps"] for s in sent]))}
            for (env, algo), sent in sorted(groups.items())]


def _method_info(method: str) -> dict:
    """The registry's summary and the algorithm's config file, shown on its page."""
    from algorithms.registry import ALGORITHMS
    from coopbench.claims import ANALYSIS_METHODS, PLANNED_ALGORITHMS
    from coopbench.config import config_dir

    path = config_dir() / "algorithms" / f"{method}.yaml"
    if method in ALGORITHMS.names():
        entry = ALGORITHMS.get(method)
        summary, family = entry.summary, entry.family
        source = entry.target.split(":")[0].replace(".", "/") + ".py"
    else:
        summary = f"not implemented yet: {PLANNED_ALGORITHMS.get(method) or ANALYSIS_METHODS.get(method, '')}"
        family, source = "", ""
    return {"summary": summary, "family": family, "source": source, "config_path": f"config/algorithms/{method}.yaml",
            "config": path.read_text() if path.is_file() else ""}


def _task_info(task: str) -> dict:
    """The task's registry summary and config file (parameters, normalization rule, notes)."""
    from coopbench.config import config_dir
    from environments.registry import ENVIRONMENTS

    path = config_dir() / "environments" / f"{task}.yaml"
    summary = ENVIRONMENTS.get(task).summary if task in ENVIRONMENTS.names() else ""
    return {"summary": summary, "config_path": f"config/environments/{task}.yaml",
            "config": path.read_text() if path.is_file() else ""}


def _write_downloads(site: Path, scores: pd.DataFrame, runs: list[dict], runs_file: dict, claims: list[dict],
                     comparisons: list[dict]) -> dict:
    """Every table as CSV and all scores as Parquet, under data/; returns their paths by name."""
    data = site / "data"
    data.mkdir()
    scores.to_parquet(data / "scores.parquet", index=False)
    run_columns = ("env", "algo", "config_hash", "seed", "status", "env_steps", "final_return", "final_normalized",
                   "wall_time_s", "commit")
    pd.DataFrame([{k: r[k] for k in run_columns} for r in runs], columns=run_columns).to_csv(
        data / "runs.csv", index=False)
    status_columns = ["env", "algo", "config_hash", "seed", "comparisons", "status", "reason"]
    pd.DataFrame(runs_file["runs"], columns=[*status_columns, "run_dir"])[status_columns].to_csv(
        data / "run-status.csv", index=False)
    rows = []
    for paper in claims:
        for c in paper["claims"]:
            estimate = c.get("estimate") or {}
            rows.append({"paper": paper["paper"], "id": c["id"], "source": c["source"], "tasks": " ".join(c["tasks"]),
                         "methods": " ".join(c["methods"]), "metric": c["metric"], "kind": c["published"]["kind"],
                         "published_value": c["published"].get("value"), "verdict": c["verdict"],
                         "estimate": estimate.get("point"), "ci_low": estimate.get("ci_low"),
                         "ci_high": estimate.get("ci_high"), "seeds_used": c.get("seeds_used"),
                         "budget_used": c.get("budget_used"), "note": c.get("note") or c.get("reason", "")})
    pd.DataFrame(rows).to_csv(data / "claims.csv", index=False)
    per_env = [{"comparison": comp["name"], "env": env["name"], "algo": row["algo"], "config_hash": row["config_hash"],
                "n_seeds": row["n_seeds"],
                **{f"{name}_{k}": row[name][k] for name in ("return_mean", "normalized_iqm")
                   for k in ("point", "ci_low", "ci_high")}}
               for comp in comparisons for env in comp["envs"] for row in env["rows"]]
    pd.DataFrame(per_env).to_csv(data / "per-env.csv", index=False)
    aggregate = [{"comparison": comp["name"], "algo": algo,
                  **{f"{metric}_{k}": est[k] for metric, est in m.items() for k in ("point", "ci_low", "ci_high")}}
                 for comp in comparisons for algo, m in comp["stats"]["aggregate"].items()]
    pd.DataFrame(aggregate).to_csv(data / "aggregate.csv", index=False)
    return {name: f"data/{name}" for name in ("scores.parquet", "runs.csv", "run-status.csv", "claims.csv",
                                              "per-env.csv", "aggregate.csv")}


def _run_summary(key: tuple, manifest: dict, scores: pd.DataFrame) -> dict:
    env, algo, config_hash, seed = key
    rows = scores[
        (scores["env"] == env)
        & (scores["algo"] == algo)
        & (scores["config_hash"] == config_hash)
        & (scores["seed"] == seed)
    ]
    curve = rows[rows["comparison"] == rows["comparison"].iloc[0]].sort_values("env_steps")
    curve.attrs["comparisons"] = sorted(set(rows["comparison"]))
    last = curve[curve["is_final"]].iloc[-1]
    code = manifest.get("code") or {}
    return {
        "key": key,
        "comparisons": curve.attrs["comparisons"],
        "env": env,
        "algo": algo,
        "config_hash": config_hash,
        "seed": seed,
        "href": run_page(*key),
        "status": manifest.get("status"),
        "env_steps": int(last["env_steps"]),
        "final_return": last["eval_return_mean"],
        "final_normalized": last["normalized_score"],
        "wall_time_s": manifest.get("wall_time_s"),
        "commit": f"{str(code.get('commit'))[:12]}{' (dirty)' if code.get('dirty') else ''}",
        "rule": rule_text(manifest.get("normalization") or {}),
        "env_notes": manifest.get("env_notes", ""),
        "curve": curve,
    }


def _env_tables(stats: dict, runs: list[dict], comparison: str) -> list[dict]:
    """One table per env of a comparison: the per-env rows of stats.json with links to their runs."""
    tables = []
    for env in stats["envs"]:
        env_runs = [r for r in runs if r["env"] == env]
        rows = [
            {**row, "runs": [r for r in env_runs if r["algo"] == row["algo"]]}
            for row in stats["per_env"]
            if row["env"] == env
        ]
        rules = sorted({r["rule"] for r in env_runs})
        notes = sorted({r["env_notes"] for r in env_runs if r["env_notes"]})
        tables.append({"name": env, "slug": slug(f"{comparison}-{env}".replace(":", "-")), "rows": rows,
                       "rules": rules, "notes": notes})
    return tables


def _manifest_fields(m: dict) -> list[tuple[str, str]]:
    code = m.get("code") or {}
    final = m.get("final") or {}
    norm = m.get("normalization") or {}
    return [
        ("Environment", m.get("env")),
        ("Algorithm", m.get("algo")),
        ("Seed", m.get("seed")),
        ("Config hash", m.get("config_hash")),
        ("Status", m.get("status")),
        ("Commit", f"{code.get('commit')}{' (dirty)' if code.get('dirty') else ''}"),
        ("Host", m.get("host")),
        ("Device", m.get("device")),
        ("Torch threads", m.get("torch_threads")),
        ("Container image", m.get("container_image")),
        ("Slurm job id", m.get("slurm_job_id") or "—"),
        ("Started", m.get("started_at")),
        ("Finished", m.get("finished_at")),
        ("Wall time (s)", fmt_num(m.get("wall_time_s"))),
        ("Env steps", f"{m['env_steps']:,}" if isinstance(m.get("env_steps"), int) else m.get("env_steps")),
        ("Env steps / s", fmt_num(m.get("env_steps_per_s"))),
        ("Resumes", m.get("resumes")),
        (
            "Final score",
            f"return {fmt_num(final.get('eval_return_mean'))} ± {fmt_num(final.get('eval_return_std'))}, "
            f"normalized {fmt_num(final.get('normalized_score'))} at {final.get('env_steps')} env steps",
        ),
        ("Normalization", rule_text(norm)),
    ]


def _config_sections(config: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """The resolved config as (section, [(key, value as JSON)]), sections env/algo/run first."""
    known = [s for s in ("env", "algo", "run") if s in config]
    sections = []
    for section in known + sorted(set(config) - set(known)):
        values = config[section] if isinstance(config[section], dict) else {"value": config[section]}
        sections.append((section, [(k, json.dumps(v, sort_keys=True)) for k, v in sorted(values.items())]))
    return sections
