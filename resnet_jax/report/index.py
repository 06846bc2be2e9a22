"""`resnet-jax report`: a study's work directories into figures, tables and an index under <root>/report/.

  report/errors.<fmt>           training (dashed) and test (solid) error against iterations, per variant
  report/results.md, .csv       final errors per (variant, depth): mean, std, min, max over seeds, beside
                                the paper's numbers, with both test protocols named, and where the runs trained;
                                results.md also the verdicts: each of the study's CLAIMS tested over the seeds
  report/verdicts.json          the verdicts: per claim its text, holds (true, false or null) and the statistic
  report/layer_responses.<fmt>  Fig. 7: std of each 3x3 layer's response in the trained models
  report/gradient_norms.<fmt>   per-layer gradient norms at a few training steps (train.analysis_every_steps)
  report/landscapes.<fmt>       loss contours around the trained weights, plain beside residual (Li et al. 2018)
  report/landscape_slices.<fmt> 1-D slices of the same landscapes, every depth and variant in one plot
  report/lesions.<fmt>          test error with blocks deleted at test time (Veit et al. 2016)
  report/index.md               all of the above on one page

The analyses a study file lists in ANALYSES run first, on the first finished seed of every group
(their records are kept, so a second report reuses them); records made with `resnet-jax analyze`
appear as well.
"""

from __future__ import annotations


from resnet_jax import storage
from resnet_jax.analysis.analyses import ANALYSES, lacking_records, run_analyses
from resnet_jax.analysis.responses import NUM_IMAGES
from resnet_jax.report import plots, responses, tables, verdicts
from resnet_jax.report.analyze import draw_record, figures
from resnet_jax.report.plots import check_formats
from resnet_jax.report.runs import StudyRuns, load_runs
from resnet_jax.studies import launchers
from resnet_jax.train.workdir import recorded_config

ANALYSES_LOG = "analyses.log"  # in each member's work directory: its analyses run by the report's pool

ERRORS_CAPTION = (
    "Dashed: training error, the mean over each logging interval of the training batches' error "
    "(augmented images, BatchNorm in training mode), as in the paper's curves. Solid: test error on the "
    "whole evaluation split. Thin lines: each seed; bold: the mean over seeds (their number in the legend).")
TABLE_NOTE = (
    "Over the seeds of each row: test error is each seed's last evaluation, train error its last logged "
    "training error (the mean over that logging interval); shown as mean ± sample standard deviation "
    "(ddof=1; none with one seed) and the lowest–highest seed. Paper: the paper's test error where the "
    "study gives one; the headers name how the paper and these runs tested.")
RESPONSES_CAPTION = (
    "Standard deviation of each 3x3 layer's response (after BN, before the ReLU or the addition) on "
    f"the first {NUM_IMAGES} evaluation images, BatchNorm in inference mode, as in the paper's "
    "Fig. 7. Top: in network order; bottom: sorted by magnitude. Mean over seeds.")
GRADIENTS_CAPTION = (
    "Norm of the loss gradient of each weight layer (stem, block convolutions, classifier; shortcut "
    "projections left out) on one training batch, at a few points in training. Lines: geometric mean "
    "over seeds; shaded: the lowest to the highest seed.")


def _figure_link(paths: list[str], report_dir: str, alt: str) -> str:
  """Markdown that shows the first PNG/SVG and links every format."""
  names = [storage.relative(p, report_dir) for p in paths]
  shown = next((n for n in names if not n.endswith(".pdf")), None)
  image = f"![{alt}]({shown})\n\n" if shown else ""
  return image + "Files: " + ", ".join(f"[{n}]({n})" for n in names) + "\n"


def _index(study: StudyRuns, table: str, note: str, claims: str, sections: list[tuple[str, str, str]]) -> str:
  finished = sum(r.finished is not None for r in study.runs)
  lines = [f"# {study.name}: report", ""]
  summary = study.doc.strip().split("\n\n")[0] if study.doc.strip() else ""
  if summary:
    lines += [summary, ""]
  lines += [f"{len(study.runs)} models under `{storage.shown(study.root)}`, {finished} finished."]
  unfinished = [r.name for r in study.runs if r.finished is None]
  if unfinished:
    lines += [f"Unfinished (their last logged step is shown): {', '.join(unfinished)}."]
  if study.missing:
    lines += [f"No metrics (not started, or failed before logging): {', '.join(study.missing)}."]
  lines += ["", "## Results", "", table, " ".join(filter(None, [TABLE_NOTE, note])), "",
            "Also as [results.csv](results.csv).", ""]
  if claims:
    lines += ["## Verdicts", "", claims]
  for title, link, caption in sections:
    lines += [f"## {title}", "", link, caption, ""]
  return "\n".join(lines)


def _analysis_sections(study: StudyRuns, out: str, formats: tuple[str, ...]) -> list[tuple[str, str, str]]:
  """Run the study's ANALYSES on the first finished seed of every group, then the figures of every record
  found (several seeds of a group may be one member: its shared checkpoint, first model)."""
  first = [next((r for r in runs if r.finished is not None), None) for runs in study.groups().values()]
  finished = list(dict.fromkeys(r.checkpoint_dir for r in first if r is not None))
  _analyses_at_once(study, finished, formats)
  run_analyses(finished, study.analyses, lambda name, record, stem: draw_record(name, record, stem, formats))
  sections = []
  for title, plot, stem, caption in (figure for name in ANALYSES for figure in figures(name).STUDY_FIGURES):
    paths = plot(study, storage.join(out, stem), formats)
    if paths:
      sections.append((title, _figure_link(paths, out, stem.replace("_", " ")), caption))
  return sections


def run_member_analyses(root: str, member_dir: str, formats: tuple[str, ...]) -> None:
  """The study's ANALYSES of one member, each record drawn (`report --analyses-of`: one job of the pool)."""
  run_analyses([member_dir], load_runs(root).analyses,
               lambda name, record, stem: draw_record(name, record, stem, formats))


def _analyses_at_once(study: StudyRuns, member_dirs: list[str], formats: tuple[str, ...]) -> None:
  """On a CPU of several cores, the members still lacking records analysed at once, one process per core
  (a sweep's pool, the deepest first); what fails here is run again, and reported, in this process."""
  lacking = lacking_records(member_dirs, study.analyses) if study.analyses else []
  if len(lacking) < 2 or launchers.local_gpus() or launchers.jobs_at_once("auto", len(lacking)) < 2:
    return
  jobs = [launchers.Job(storage.basename(d), ["report", study.root, "--analyses-of", d, "--formats", ",".join(formats)],
                        d, cost=recorded_config(d).model.depth, log_name=ANALYSES_LOG) for d in lacking]
  launchers.run_local(sorted(jobs, key=lambda job: -job.cost), label="analyses")


def make_report(root: str, formats: tuple[str, ...] = ("png",)) -> str:
  """Write every figure and table of the study under <root>/report/; returns the index path."""
  check_formats(formats)
  study = load_runs(root)
  out = storage.join(root, "report")
  storage.makedirs(out)
  rows = tables.table_rows(study)
  table = tables.to_markdown(rows)
  note = " ".join(filter(None, [tables.protocol_note(rows), tables.origin_note(study)]))
  found = verdicts.study_verdicts(study)
  verdicts.write_verdicts(found, storage.join(out, verdicts.VERDICTS_FILE))
  claims = f"{verdicts.to_markdown(found)}\n{verdicts.NOTE}\n" if found else ""
  storage.write_text(storage.join(out, "results.md"),
                     table + (f"\n{note}\n" if note else "") + (f"\n## Verdicts\n\n{claims}" if claims else ""))
  tables.write_csv(rows, storage.join(out, "results.csv"))
  sections = [("Error curves", _figure_link(plots.error_curves(study, storage.join(out, "errors"), formats),
                                            out, "error curves"), ERRORS_CAPTION)]
  stds = responses.study_responses(study, storage.join(out, responses.CACHE_FILE))
  if stds:
    paths = responses.plot_responses(study, stds, storage.join(out, "layer_responses"), formats)
    sections.append(("Layer responses (Fig. 7)", _figure_link(paths, out, "layer responses"), RESPONSES_CAPTION))
  else:
    sections.append(("Layer responses (Fig. 7)", "", "No finished run with a checkpoint yet."))
  paths = plots.gradient_norms(study, storage.join(out, "gradient_norms"), formats)
  if paths:
    sections.append(("Per-layer gradient norms", _figure_link(paths, out, "gradient norms"), GRADIENTS_CAPTION))
  else:
    sections.append(("Per-layer gradient norms", "", "Not recorded: set train.analysis_every_steps > 0."))
  sections += _analysis_sections(study, out, formats)
  index = storage.join(out, "index.md")
  storage.write_text(index, _index(study, table, note, claims, sections))
  return index
