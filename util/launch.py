"""Run command lines as jobs: N at a time on this machine, or through submitit on a Slurm
cluster. A job is a name, a command (list of str) and a log file; nothing here knows what
the commands do.

- `local`: each job is a subprocess with its output in its log; `slots` says how many run at
  once and what each slot adds to the environment (e.g. the GPU it owns).
- `slurm`: every job is submitted through submitit as one job array (`--jobs` caps how many
  run at once) and waited for; each job's log is submitit's stdout file.
- `submitit-local`: the same submission code as `slurm`, run by submitit's local executor on
  this machine (all jobs at once), to try a cluster setup, or test it, without a cluster.

A failed job is reported with its log path and the others still run.
"""
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from util.args import add_flag, nonnegative_int, positive_int
from util.errors import UserError

LAUNCHERS = ("local", "slurm", "submitit-local")
POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 60  # a stopped job gets this long to save its checkpoint
# The flags of the cluster's jobs, {dest: (flag, default)}: jobs on this machine ignore them.
SLURM_FLAGS = {"partition": ("--partition", None), "account": ("--account", None), "time_min": ("--time", 4320),
               "gpus_per_job": ("--gpus-per-job", 1), "cpus_per_job": ("--cpus-per-job", 4),
               "mem_gb": ("--mem-gb", 16), "slurm_options": ("--slurm-option", [])}


@dataclass
class Job:
    name: str      # shown in messages, e.g. "lol-gold1 f=2"
    command: list  # argv, run in the launcher's working folder
    log: Path      # the local launcher's log file (submitit keeps its own)


def add_launcher_arguments(parser):
    group = parser.add_argument_group("launching jobs (see README: Sweeps in parallel, and on a Slurm cluster)")
    add = group.add_argument
    add("--launcher", choices=LAUNCHERS, default="local",
        help="local: on this machine (default); slurm: submit each job through submitit; "
             "submitit-local: slurm's submission path run on this machine")
    add("--jobs", type=positive_int, default=1,
        help="jobs at once (local: subprocesses, one per GPU if there are GPUs, else the CPU threads "
             "split between them; slurm: the job array's parallelism). Default 1")
    add("--partition", help="slurm: partition (default: the cluster's)")
    add("--account", help="slurm: account to charge (default: the user's)")
    add("--time", dest="time_min", type=positive_int, default=SLURM_FLAGS["time_min"][1],
        help="slurm: time limit of each job in minutes (default 4320, 3 days)")
    add_flag(group, "gpus_per_job", type=nonnegative_int, default=SLURM_FLAGS["gpus_per_job"][1],
             help="slurm: GPUs per job (default 1)")
    add_flag(group, "cpus_per_job", type=positive_int, default=SLURM_FLAGS["cpus_per_job"][1],
             help="slurm: CPU cores per job (default 4; data loading is on the GPU, so few are needed)")
    add_flag(group, "mem_gb", type=positive_int, default=SLURM_FLAGS["mem_gb"][1],
             help="slurm: memory per job in GB (default 16)")
    add("--slurm-option", dest="slurm_options", action="append", default=[], metavar="KEY=VALUE",
        help="slurm: any other sbatch option, repeatable (e.g. qos=high, constraint=a100)")


def submitit_parameters(args):
    """The executor parameters of the launcher flags (slurm_* ones are ignored by `submitit-local`)."""
    extra = {}
    for option in args.slurm_options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise UserError(f"--slurm-option takes KEY=VALUE (an sbatch option without its dashes), got {option!r}")
        extra[key.lstrip("-")] = value
    parameters = {"name": "foldedcnn", "timeout_min": args.time_min, "gpus_per_node": args.gpus_per_job,
                  "cpus_per_task": args.cpus_per_job, "mem_gb": args.mem_gb, "tasks_per_node": 1, "nodes": 1,
                  "slurm_array_parallelism": args.jobs, "slurm_additional_parameters": extra}
    if args.partition:
        parameters["slurm_partition"] = args.partition
    if args.account:
        parameters["slurm_account"] = args.account
    return parameters




def check_launcher(args):
    """A UserError, before any job runs, if this machine cannot use `args.launcher`, or if
    Slurm flags were given to the local launcher, which would ignore them."""
    launcher = args.launcher
    if launcher == "local":
        given = [flag for dest, (flag, default) in SLURM_FLAGS.items() if getattr(args, dest, default) != default]
        if given:
            raise UserError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to Slurm jobs, and "
                            f"--launcher local runs the jobs here: add --launcher slurm, or drop "
                            f"{'it' if len(given) == 1 else 'them'}")
        return
    if importlib.util.find_spec("submitit") is None:
        raise UserError(f"--launcher {launcher} needs submitit: pip install submitit (it is in requirements.txt)")
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if launcher == "slurm" and missing:
        raise UserError(f"--launcher slurm needs Slurm's {' and '.join(missing)} on PATH: run train.py on the "
                        "cluster's login node (--launcher submitit-local tries the same submission here)")


def run_jobs(jobs, launcher, *, slots=None, submitit_folder=None, parameters=None, cwd=None, desc="jobs"):
    """Run `jobs` and wait for all of them, with a progress bar over jobs titled `desc`;
    returns {job name: failure message naming its log}."""
    if not jobs:
        return {}
    if launcher == "local":
        return _run_local(jobs, slots or [{}], cwd, desc)
    return _run_submitit(jobs, "local" if launcher == "submitit-local" else "slurm",
                         submitit_folder, parameters or {}, cwd, desc)


def _report(bar, job, failure):
    bar.update()
    bar.write(f"{job.name}: " + (f"failed ({failure})" if failure else "done"))


def _run_local(jobs, slots, cwd, desc):
    pending, running, failures = list(jobs), {}, {}  # running: slot -> (job, process, log file)
    bar = tqdm(total=len(jobs), desc=desc, unit="job")
    try:
        while pending or running:
            for slot, extra_env in enumerate(slots):
                if slot not in running and pending:
                    running[slot] = _start(pending.pop(0), extra_env, cwd)
            time.sleep(POLL_SECONDS)
            for slot, (job, process, log) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()
                del running[slot]
                if process.returncode:
                    failures[job.name] = f"exit code {process.returncode}; log: {job.log}"
                _report(bar, job, failures.get(job.name))
    finally:
        _stop(running.values())
        bar.close()
    return failures


def _start(job, extra_env, cwd):
    job.log.parent.mkdir(parents=True, exist_ok=True)
    log = open(job.log, "a")  # a rerun's log follows the earlier one: nothing is lost
    log.write(f"\n[{time.strftime('%Y-%m-%d %H:%M:%S')}] {' '.join(f'{k}={v}' for k, v in extra_env.items())}"
              f" {shlex.join(job.command)}\n")
    log.flush()
    process = subprocess.Popen(job.command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **extra_env})
    return job, process, log


def _stop(running):
    """Interrupt the jobs still running (as Ctrl-C would) and wait for them to save; a second
    Ctrl-C or SIGTERM while waiting kills them at once. No job outlives the launcher."""
    running = list(running)
    for _, process, _ in running:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    try:
        for _, process, _ in running:
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    except KeyboardInterrupt:
        for _, process, _ in running:
            process.kill()
            process.wait()
        raise
    finally:
        for _, _, log in running:
            log.close()


def _run_submitit(jobs, cluster, folder, parameters, cwd, desc):
    import submitit

    if cluster == "local":
        parameters = {k: v for k, v in parameters.items() if not k.startswith("slurm_")}
    try:
        executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster=cluster)
        executor.update_parameters(**parameters)
        with executor.batch():  # one job array: --jobs caps how many of its jobs run at once
            handles = [executor.submit(submitit.helpers.CommandFunction(job.command, cwd=cwd)) for job in jobs]
    except Exception as err:  # sbatch refused (bad partition, account, option): its message says why
        message = " ".join(str(err).split())
        raise UserError(f"submitting the jobs to {cluster} failed: {message}") from None
    print(f"submitted {len(handles)} jobs ({cluster}): {', '.join(h.job_id for h in handles)}; logs in {folder}")
    failures, waiting = {}, dict(zip(handles, jobs))
    bar = tqdm(total=len(jobs), desc=desc, unit="job")
    try:
        while waiting:
            time.sleep(POLL_SECONDS)
            for handle, job in list(waiting.items()):
                if handle.done():
                    del waiting[handle]
                    if handle.exception() is not None:
                        failures[job.name] = f"job {handle.job_id}, {_failure(handle)}; log: {handle.paths.stdout}"
                    _report(bar, job, failures.get(job.name))
    except KeyboardInterrupt:
        if cluster != "local":
            ids = " ".join(h.job_id for h in waiting)
            print(f"\nthe cluster jobs keep running; rerun this command to wait for them again once they "
                  f"end, or cancel them: scancel {ids}")
        raise
    finally:
        bar.close()
    return failures


def _failure(handle):
    """Why a submitit job failed: its command's exit code where submitit reports one (the
    local executor says FINISHED for a command that failed), else the scheduler's state."""
    exit_code = re.search(r"returned non-zero exit status (-?[0-9]+)", str(handle.exception()))
    if exit_code:
        return f"exit code {exit_code[1]}"
    return f"state {handle.state}" if handle.state not in ("FINISHED", "COMPLETED") else "failed"


def cpu_slots(jobs, threads=None):
    """`jobs` slots that share this machine's CPU: (slots, threads per job), the cores split
    evenly unless `threads` is given."""
    return [{}] * jobs, threads or max(1, (os.cpu_count() or 1) // jobs)


def gpu_slots(jobs, gpu_count):
    """One slot per GPU (CUDA_VISIBLE_DEVICES), at most `jobs` of them."""
    return [{"CUDA_VISIBLE_DEVICES": str(i)} for i in range(min(jobs, gpu_count))]

