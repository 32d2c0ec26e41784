"""The experiment grid: every training run of the paper, as SLURM job arrays or one shell script.

The paper's Tables 1-4 need, for each dataset (BraTS 2018/2019/2020), each configuration and each
DRUwAS variant (:data:`nnunetv2_druwas.variants.VARIANTS`), the five folds of nnU-Net's
cross-validation. ``nnunetv2_druwas grid`` turns such a selection into job scripts:

- one SLURM **job array** per dataset x configuration x trainer, one array task per fold (the array
  index *is* the fold), each task running ``nnUNetv2_train D C $SLURM_ARRAY_TASK_ID -tr T -p P``;
- the Swish continuation (variant ``swish``, which starts from the final ReLU weights of variant
  ``full``) as its own array with ``--dependency=aftercorr:<full array>``: Swish fold k starts as
  soon as ReLU fold k has finished successfully, without waiting for the other folds. SLURM makes a
  task whose counterpart is not in the ReLU array wait for the whole ReLU array (and cancels it when
  any ReLU task fails), so a Swish fold whose ReLU fold is already trained still gets a task in the
  ReLU array: that task finds the fold done and exits at once;
- one last job, ``python -m analysis.tables``, with ``--dependency=afterok`` on every array.

``--reference nnunet resenc-m`` (:data:`nnunetv2_druwas.variants.REFERENCES`) adds nnU-Net's own
trainings (``nnUNetTrainer`` under ``nnUNetPlans``, resp. ``nnUNetResEncUNetMPlans``) on the same
datasets, configurations and folds, each array ending every task with ``nnunetv2_druwas
evaluate-results --fold-dir`` (nnU-Net's trainer writes no metrics). Plans that are not ready
(:func:`nnunetv2_druwas.plans.missing`) get one job per dataset, ``python -m nnunetv2_druwas.plans``,
which those arrays wait for (``afterok``). ``--repeats R`` adds repeats 1..R-1
(``<trainer>_repeat<k>``, :func:`nnunetv2_druwas.variants.repeat_trainer_name`) of every selected
trainer, references included, each its own array; Swish repeat k waits for ReLU repeat k.

Every job carries ``--kill-on-invalid-dep=yes``, so a failed training cancels what waits for it
instead of leaving it pending forever.

Runs that are done (:func:`nnunetv2_druwas.folds.fold_state`: the fold has the trainer's
``brats_metrics.csv``) are left out when the scripts are written, and each job asks again when it
starts (``python -m nnunetv2_druwas.folds FOLD_DIR -- nnUNetv2_train ...``; the results may have
changed in between): a finished fold exits at once, a fold with a checkpoint continues with ``--c``
(the training, or only the final validation and BraTS evaluation when ``checkpoint_final.pth`` is
there without the metrics), any other fold trains from scratch.

The job scripts export the variables of :data:`nnunetv2_druwas.env.VARIABLES` that are set when
the grid is written (:func:`nnunetv2_druwas.env.job_exports`), ``DRUWAS_LR`` included, so a
resubmission resumes with the same settings.

``--format shell`` writes the same job scripts plus ``run_all.sh``, which runs them one after
another in dependency order on a single machine. ``--submit`` hands the arrays to ``sbatch`` in
dependency order and records the job ids in ``submitted.json``; ``--status`` reports every run as
done / running / queued / incomplete / evaluation failed / missing (``queue unknown`` when ``squeue``
cannot be read); ``--estimate`` prints the GPU-hours of a grid. The files of a grid are replaced
together (:func:`nnunetv2_druwas.files.replaced_together`).

Output folder layout::

    OUT/grid.json        the selection (so --status --out OUT needs nothing else)
    OUT/jobs/*.sh        one script per job (SLURM header + bash body)
    OUT/run_all.sh       --format shell only
    OUT/logs/            job output, one file per job (and fold)
    OUT/tables/          what python -m analysis.tables writes
    OUT/submitted.json   job ids, after --submit

One module per concern: :mod:`~nnunetv2_druwas.grid.selection` (which runs a selection needs),
:mod:`~nnunetv2_druwas.grid.jobs` (which jobs, in dependency order), :mod:`~nnunetv2_druwas.grid.scripts`
(writing the job scripts), :mod:`~nnunetv2_druwas.grid.submit` (``sbatch`` in order),
:mod:`~nnunetv2_druwas.grid.status` (``--status``), :mod:`~nnunetv2_druwas.grid.estimate`
(``--estimate``), :mod:`~nnunetv2_druwas.grid.cli` (the subcommand). This package re-exports their
public names (``from nnunetv2_druwas import grid; grid.write_grid(...)``).
"""
from nnunetv2_druwas.folds import FoldState, fold_state
from nnunetv2_druwas.grid.cli import add_arguments, run
from nnunetv2_druwas.grid.estimate import (DEFAULT_TRAIN_CASES, NNUNET_DEFAULT_EPOCHS, NNUNET_ITERATIONS,
                                          format_gpu_hours, gpu_hours, recipe_epochs, recipe_iterations)
from nnunetv2_druwas.grid.jobs import TABLES_JOB, Job, JobSettings, executable, plan_jobs
from nnunetv2_druwas.grid.scripts import (LOG_MARK, array_spec, environment_exports, render_job, render_run_all,
                                         sbatch_header, write_grid)
from nnunetv2_druwas.grid.selection import (RECIPE_CHOICES, RECIPE_GROUPS, Run, Selection, array_name, dataset_name,
                                           run_folder, select_trainers)
from nnunetv2_druwas.grid.status import ASK_SQUEUE, QUEUE_UNKNOWN, format_status, grid_status, queue_states
from nnunetv2_druwas.grid.submit import submit

__all__ = [
    "FoldState", "fold_state",
    "add_arguments", "run",
    "DEFAULT_TRAIN_CASES", "NNUNET_DEFAULT_EPOCHS", "NNUNET_ITERATIONS", "format_gpu_hours", "gpu_hours",
    "recipe_epochs", "recipe_iterations",
    "TABLES_JOB", "Job", "JobSettings", "executable", "plan_jobs",
    "LOG_MARK", "array_spec", "environment_exports", "render_job", "render_run_all", "sbatch_header", "write_grid",
    "RECIPE_CHOICES", "RECIPE_GROUPS", "Run", "Selection", "array_name", "dataset_name", "run_folder",
    "select_trainers",
    "ASK_SQUEUE", "QUEUE_UNKNOWN", "format_status", "grid_status", "queue_states",
    "submit",
]
